"""`ros2-imitation <subcommand>`: one entry point for everything a user runs.

Each subcommand is a module in ros2_imitation/commands/ with HELP, add_arguments(parser) and
run(args) -> exit code; the module name with '_' as '-' is the subcommand's name.
"""
import argparse
import importlib
import pkgutil
import sys

from ros2_imitation import commands
from ros2_imitation.graph.spec import GraphError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='ros2-imitation', description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True, metavar='SUBCOMMAND')
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith('_'):
            continue
        module = importlib.import_module(f'{commands.__name__}.{info.name}')
        p = sub.add_parser(info.name.replace('_', '-'), help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        try:
            return args.func(args)
        except (GraphError, FileNotFoundError) as exc:
            print(f'ros2-imitation {args.command}: {exc}', file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        # Ctrl-C before a command took over its signals (while it imports, say): 128 + SIGINT, no
        # traceback; commands that run things (bringup, demo...) stop those first
        print('ros2-imitation: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
