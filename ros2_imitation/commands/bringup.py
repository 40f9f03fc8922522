HELP = 'start a node graph (config/graphs/<GRAPH>.yaml), one process per node'


def add_arguments(p):
    p.add_argument('graph', help='graph name (see `ros2-imitation graphs`) or path to a graph YAML')
    p.add_argument('--arg', action='append', metavar='NAME=VALUE', help='a graph argument')
    p.add_argument('--set', action='append', metavar='NODE.PARAM=VALUE', help='override one node parameter')
    p.add_argument('--duration', type=float, default=None, help='stop after this many seconds')


def run(args) -> int:
    from ros2_imitation.commands import key_values
    from ros2_imitation.graph import bringup
    from ros2_imitation.graph.spec import load_graph
    graph = load_graph(args.graph, key_values(args.arg, '--arg'), key_values(args.set, '--set'))
    return bringup.run(graph, duration=args.duration)
