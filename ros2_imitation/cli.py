"""`ros2-imitation <subcommand>`: one entry point for everything a user runs."""
import argparse
import sys

from ros2_imitation.graph import GraphError, parse_value


def _pairs(items, what):
    out = {}
    for item in items or []:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise SystemExit(f'ros2-imitation: {what} {item!r} is not KEY=VALUE')
        out[key] = parse_value(value)
    return out


def cmd_bringup(args) -> int:
    from ros2_imitation import bringup
    from ros2_imitation.graph import load_graph
    graph = load_graph(args.graph, _pairs(args.arg, '--arg'), _pairs(args.set, '--set'))
    return bringup.run(graph, duration=args.duration)


def cmd_graphs(args) -> int:
    from ros2_imitation.graph import load_graph
    from ros2_imitation.paths import share_dir
    for path in sorted((share_dir() / 'config' / 'graphs').glob('*.yaml')):
        graph = load_graph(path.stem)
        nodes = ', '.join(n.name for n in graph.nodes)
        print(f'{path.stem:12s} {graph.description}\n{"":12s} nodes: {nodes}')
        for arg in graph.arguments.values():
            print(f'{"":12s} --arg {arg.name}={arg.default}  {arg.description}')
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='ros2-imitation', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('bringup', help='start a node graph (config/graphs/<GRAPH>.yaml), one process per node')
    p.add_argument('graph', help='graph name (see `ros2-imitation graphs`) or path to a graph YAML')
    p.add_argument('--arg', action='append', metavar='NAME=VALUE', help='a graph argument')
    p.add_argument('--set', action='append', metavar='NODE.PARAM=VALUE', help='override one node parameter')
    p.add_argument('--duration', type=float, default=None, help='stop after this many seconds')
    p.set_defaults(func=cmd_bringup)

    p = sub.add_parser('graphs', help='list the shipped node graphs and their arguments')
    p.set_defaults(func=cmd_graphs)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (GraphError, FileNotFoundError) as exc:
        print(f'ros2-imitation {args.command}: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
