"""Node graphs (config/graphs/*.yaml): the one description that bringup and the launch files share.

A graph file::

    description: ...
    include: [sim]                     # graphs merged first; nodes with the same name are merged
    use_sim_time: true
    episode_resets: [/expert/reset]    # Trigger services an episode runner calls after a sim reset
    arguments:                         # become launch arguments and `bringup --arg name=value`
      task: {default: push_cube, sets: [sim.task], description: ...}
    nodes:
      sim:
        executable: sim_node
        package: ros2_imitation        # default; other packages are only started by ros2 launch
        parameters: {task: push_cube}
        remappings: {/from: /to}
        required: true                 # bringup stops everything when it exits (default true)

ROS-free on purpose: the launch files import it on a robot, and tests import it without ROS.
"""
import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ros2_imitation.paths import PACKAGE, read_config, resolve

PARAMETER_TYPES = (bool, int, float, str)


class GraphError(ValueError):
    pass


@dataclass
class NodeSpec:
    name: str
    executable: str
    package: str = PACKAGE
    namespace: str = ''
    parameters: dict = field(default_factory=dict)
    remappings: dict = field(default_factory=dict)
    required: bool = True

    @property
    def module(self) -> str:
        if self.package != PACKAGE:
            raise GraphError(f'node {self.name!r}: {self.package}/{self.executable} is not part of '
                             f'{PACKAGE}; only `ros2 launch` can start it')
        return f'{PACKAGE}.nodes.{self.executable}'

    def ros_arguments(self, params_file: str) -> list:
        args = ['--ros-args', '-r', f'__node:={self.name}', '--params-file', params_file]
        if self.namespace:
            args += ['-r', f'__ns:={self.namespace}']
        for src, dst in self.remappings.items():
            args += ['-r', f'{src}:={dst}']
        return args

    def write_params_file(self, folder: str) -> str:
        path = Path(folder) / f'{self.name}.params.yaml'
        path.write_text(yaml.safe_dump({'/**': {'ros__parameters': self.parameters}}))
        return str(path)


@dataclass
class Argument:
    name: str
    default: object
    sets: list
    description: str = ''


@dataclass
class Graph:
    name: str
    description: str
    nodes: list
    arguments: dict
    use_sim_time: bool
    episode_resets: list = field(default_factory=list)

    def node(self, name: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.name == name:
                return spec
        raise GraphError(f'graph {self.name!r} has no node {name!r} (nodes: {[n.name for n in self.nodes]})')


def _merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


TOP_KEYS = {'description': str, 'include': list, 'use_sim_time': bool, 'episode_resets': list,
            'arguments': dict, 'nodes': dict}
NODE_KEYS = {'executable': str, 'package': str, 'namespace': str, 'parameters': dict,
             'remappings': dict, 'required': bool}
ARGUMENT_KEYS = {'default': object, 'sets': list, 'description': str}
TYPE_NAMES = {str: 'a string', list: 'a list', bool: 'true or false', dict: 'a mapping', object: 'a value'}


def _check_keys(where: str, body: dict, known: dict, what: str) -> None:
    """Unknown keys (typos) and values of the wrong type are errors naming the file and the key."""
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise GraphError(f'{where}: {what} has unknown keys {unknown} (known: {sorted(known)})')
    for key, kind in known.items():
        if key in body and body[key] is not None and not isinstance(body[key], kind):
            raise GraphError(f'{where}: {what} key {key!r} must be {TYPE_NAMES[kind]}, '
                             f'got {body[key]!r}')


def _read(name_or_path: str, seen: tuple = ()) -> dict:
    path = resolve('graphs', name_or_path)
    if path in seen:
        raise GraphError(f'graph include cycle: {" -> ".join(map(str, seen + (path,)))}')
    path, raw = read_config('graphs', str(path), 'graph', GraphError)
    where = f'graph {path}'
    _check_keys(where, raw, TOP_KEYS, 'the graph')
    for key in ('include', 'episode_resets'):
        if not all(isinstance(v, str) for v in raw.get(key) or []):
            raise GraphError(f'{where}: {key!r} must be a list of strings, got {raw[key]!r}')
    for name, body in (raw.get('nodes') or {}).items():
        if not isinstance(body, dict):
            raise GraphError(f'{where}: node {name!r} must be a mapping, got {body!r}')
        _check_keys(where, body, NODE_KEYS, f'node {name!r}')
    for name, spec in (raw.get('arguments') or {}).items():
        if not isinstance(spec, dict):
            raise GraphError(f'{where}: argument {name!r} must be a mapping, got {spec!r}')
        _check_keys(where, spec, ARGUMENT_KEYS, f'argument {name!r}')
    merged = {}
    for include in raw.get('include', []) or []:
        try:
            merged = _merge(merged, _read(include, seen + (path,)))
        except FileNotFoundError as exc:
            raise GraphError(f'{where}: include {include!r}: {exc}') from None
    own = {k: v for k, v in raw.items() if k != 'include'}
    merged = _merge(merged, own)
    merged['name'] = path.stem
    merged['path'] = str(path)
    return merged


def parse_value(text: str):
    """A command-line value typed the way ROS parameters are (YAML scalars)."""
    value = yaml.safe_load(text)
    return text if value is None else value


def _check_parameter(where: str, key: str, value):
    ok = isinstance(value, PARAMETER_TYPES) or (
        isinstance(value, list) and value and all(isinstance(v, PARAMETER_TYPES) for v in value)
        and len({type(v) if not isinstance(v, (int, float)) or isinstance(v, bool) else float
                 for v in value}) == 1)
    if not ok:
        raise GraphError(f'{where}: parameter {key!r} has a value ROS cannot hold: {value!r}')


def load_graph(name_or_path: str, arguments: dict | None = None, overrides: dict | None = None) -> Graph:
    """Read a graph, apply argument values ({arg: value}) and overrides ({'node.param': value})."""
    raw = _read(name_or_path)
    where = f'graph {raw["name"]!r} ({raw["path"]})'
    nodes_raw = raw.get('nodes')
    if not isinstance(nodes_raw, dict) or not nodes_raw:
        raise GraphError(f'{where}: needs a non-empty `nodes` mapping')
    use_sim_time = bool(raw.get('use_sim_time', False))
    nodes = []
    for name, body in nodes_raw.items():
        if not isinstance(body, dict) or 'executable' not in body:
            raise GraphError(f'{where}: node {name!r} needs an `executable`')
        unknown = set(body) - set(NODE_KEYS)
        if unknown:
            raise GraphError(f'{where}: node {name!r} has unknown keys {sorted(unknown)}')
        params = dict(body.get('parameters') or {})
        params.setdefault('use_sim_time', use_sim_time)
        remaps = body.get('remappings') or {}
        if not isinstance(params, dict) or not isinstance(remaps, dict):
            raise GraphError(f'{where}: node {name!r}: parameters and remappings must be mappings')
        nodes.append(NodeSpec(name=name, executable=str(body['executable']),
                              package=str(body.get('package', PACKAGE)),
                              namespace=str(body.get('namespace', '')), parameters=params,
                              remappings={str(k): str(v) for k, v in remaps.items()},
                              required=bool(body.get('required', True))))
    graph = Graph(name=raw['name'], description=str(raw.get('description', '')), nodes=nodes,
                  arguments={}, use_sim_time=use_sim_time,
                  episode_resets=[str(s) for s in raw.get('episode_resets') or []])
    for arg_name, spec in (raw.get('arguments') or {}).items():
        if not isinstance(spec, dict) or not spec.get('sets'):
            raise GraphError(f'{where}: argument {arg_name!r} needs `sets: [node.param, ...]`')
        graph.arguments[arg_name] = Argument(arg_name, spec.get('default'), list(spec['sets']),
                                             str(spec.get('description', '')))
        for target in spec['sets']:
            node_name, _, param = str(target).partition('.')
            if not param:
                raise GraphError(f'{where}: argument {arg_name!r} sets {target!r}, expected node.param')
            graph.node(node_name)
    values = {name: arg.default for name, arg in graph.arguments.items() if arg.default is not None}
    for key, value in (arguments or {}).items():
        if key not in graph.arguments:
            raise GraphError(f'{where}: unknown argument {key!r} (arguments: {sorted(graph.arguments)})')
        values[key] = value
    for key, value in values.items():
        for target in graph.arguments[key].sets:
            node_name, _, param = target.partition('.')
            graph.node(node_name).parameters[param] = value
    for target, value in (overrides or {}).items():
        node_name, _, param = target.partition('.')
        if not param:
            raise GraphError(f'override {target!r}: expected node.param=value')
        graph.node(node_name).parameters[param] = value
    for spec in graph.nodes:
        for key, value in spec.parameters.items():
            _check_parameter(f'{where}, node {spec.name!r}', key, value)
    for spec in graph.nodes:
        if spec.package == PACKAGE and spec.executable not in node_executables():
            raise GraphError(f'{where}: node {spec.name!r}: executable {spec.executable!r} is not one of '
                             f"{PACKAGE}'s nodes {node_executables()}")
    return graph


def task_graph(name: str, task: str | None) -> str:
    """`name`, or its variant for `task` when config/graphs/<name>_<task>.yaml exists: a task whose
    nodes are wired differently (pick_place: the wrist camera, the gripper width) has its own graph."""
    if task:
        try:
            resolve('graphs', f'{name}_{task}')
            return f'{name}_{task}'
        except FileNotFoundError:
            pass
    return name


def node_executables() -> list:
    """The package's node executables: the modules ros2_imitation/nodes/*_node.py."""
    folder = Path(__file__).resolve().parent.parent / 'nodes'
    return sorted(p.stem for p in folder.glob('*_node.py'))


def params_folder() -> str:
    return tempfile.mkdtemp(prefix='ros2_imitation_params_')
