HELP = 'list the shipped node graphs and their arguments'


def add_arguments(p):
    pass


def run(args) -> int:
    from ros2_imitation.graph.spec import load_graph
    from ros2_imitation.paths import share_dir
    for path in sorted((share_dir() / 'config' / 'graphs').glob('*.yaml')):
        graph = load_graph(path.stem)
        print(f'{path.stem:14s} {graph.description}')
        print(f'{"":14s} nodes: {", ".join(n.name for n in graph.nodes)}')
        for arg in graph.arguments.values():
            print(f'{"":14s} --arg {arg.name}={arg.default}  {arg.description}')
    return 0
