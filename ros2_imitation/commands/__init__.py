"""Subcommands of `ros2-imitation`: one module each (see ros2_imitation/cli.py)."""
from ros2_imitation.graph.spec import parse_value


def key_values(items, what: str) -> dict:
    """['a=1', 'b=x'] -> {'a': 1, 'b': 'x'}, typed like ROS parameters."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise SystemExit(f'ros2-imitation: {what} {item!r} is not KEY=VALUE')
        out[key] = parse_value(value)
    return out
