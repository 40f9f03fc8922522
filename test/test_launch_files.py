"""Launch files build the same graph that bringup runs.

ROS 2 `launch`/`launch_ros` cannot be installed from PyPI (FIELD_NOTES §1), so where they are missing
this test records what the launch files ask of them through minimal recording classes with the same
constructor signatures. Where the real packages exist (a ROS machine), the real ones are used.
"""
import importlib.util
import sys
import types

import pytest

from ros2_imitation.graph import load_graph
from ros2_imitation.paths import share_dir


class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(Recorded):
    pass


def _install_recording_modules():
    mods = {}
    for name in ('launch', 'launch.actions', 'launch.substitutions', 'launch.conditions',
                 'launch_ros', 'launch_ros.actions', 'launch_ros.substitutions',
                 'launch.launch_description_sources'):
        mods[name] = types.ModuleType(name)
    mods['launch'].LaunchDescription = type('LaunchDescription', (Recorded,), {
        'entities': property(lambda self: self.args[0] if self.args else [])})
    for cls in ('DeclareLaunchArgument', 'Shutdown', 'IncludeLaunchDescription', 'ExecuteProcess',
                'GroupAction', 'LogInfo', 'SetEnvironmentVariable', 'OpaqueFunction'):
        setattr(mods['launch.actions'], cls, type(cls, (Recorded,), {}))
    mods['launch.substitutions'].LaunchConfiguration = LaunchConfiguration
    for cls in ('PathJoinSubstitution', 'PythonExpression', 'TextSubstitution', 'Command',
                'EnvironmentVariable'):
        setattr(mods['launch.substitutions'], cls, type(cls, (Recorded,), {}))
    for cls in ('IfCondition', 'UnlessCondition'):
        setattr(mods['launch.conditions'], cls, type(cls, (Recorded,), {}))
    mods['launch.launch_description_sources'].PythonLaunchDescriptionSource = type(
        'PythonLaunchDescriptionSource', (Recorded,), {})
    mods['launch_ros.actions'].Node = type('Node', (Recorded,), {})
    mods['launch_ros.actions'].SetParameter = type('SetParameter', (Recorded,), {})
    mods['launch_ros.substitutions'].FindPackageShare = type('FindPackageShare', (Recorded,), {})
    mods['launch_ros'].actions = mods['launch_ros.actions']
    mods['launch_ros'].substitutions = mods['launch_ros.substitutions']
    mods['launch'].actions = mods['launch.actions']
    mods['launch'].substitutions = mods['launch.substitutions']
    return mods


@pytest.fixture
def launch_modules(monkeypatch):
    if importlib.util.find_spec('launch_ros') is not None:
        pytest.skip('real launch_ros present: run `ros2 launch --show-args` instead')
    for name, module in _install_recording_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, 'ros2_imitation.launch_support', raising=False)


def load_launch_file(name):
    path = share_dir() / 'launch' / name
    spec = importlib.util.spec_from_file_location(name.replace('.', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def test_sim_launch_matches_graph(launch_modules):
    description = load_launch_file('sim.launch.py')
    nodes = [e for e in description.entities if type(e).__name__ == 'Node']
    declared = {e.args[0]: e.kwargs['default_value'] for e in description.entities
                if type(e).__name__ == 'DeclareLaunchArgument'}
    graph = load_graph('sim')
    assert [n.kwargs['name'] for n in nodes] == [n.name for n in graph.nodes]
    for node, spec in zip(nodes, graph.nodes):
        assert node.kwargs['package'] == 'ros2_imitation'
        assert node.kwargs['executable'] == spec.executable
        params = node.kwargs['parameters'][0]
        assert set(params) == set(spec.parameters)
        for key, value in params.items():
            bound = [a for a in graph.arguments.values() if f'{spec.name}.{key}' in a.sets]
            if bound:  # a launch argument feeds it, with the graph's default
                assert isinstance(value, LaunchConfiguration) and value.args[0] == bound[0].name
                assert declared[bound[0].name] == str(bound[0].default)
            else:
                assert value == spec.parameters[key]
        assert 'on_exit' in node.kwargs  # a required node takes the launch down, as bringup does


def test_every_launch_file_builds(launch_modules):
    for path in sorted((share_dir() / 'launch').glob('*.launch.py')):
        description = load_launch_file(path.name)
        assert description.entities, path.name


def test_robot_launch_offers_either_camera_driver(launch_modules):
    description = load_launch_file('robot.launch.py')
    kinds = [type(e).__name__ for e in description.entities]
    nodes = {e.kwargs['name']: e for e in description.entities if type(e).__name__ == 'Node'}
    assert set(nodes) == {n.name for n in load_graph('robot').nodes}
    assert 'condition' in nodes['camera'].kwargs and 'condition' not in nodes['policy'].kwargs
    include = description.entities[kinds.index('IncludeLaunchDescription')]
    assert 'condition' in include.kwargs
    assert nodes['controller'].kwargs['parameters'][0]['dry_run'].args[0] == 'dry_run'
    assert load_graph('robot').node('controller').parameters['dry_run'] is True
