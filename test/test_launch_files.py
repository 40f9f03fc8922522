"""Launch files build the same graph that bringup runs; the Gazebo description is consistent.

ROS 2 `launch`/`launch_ros` cannot be installed from PyPI (FIELD_NOTES §1), so where they are missing
this test records what the launch files ask of them through minimal recording classes with the same
constructor signatures. Where the real packages exist (a ROS machine), the real ones are used.
`evaluate()` plays the launch system's part for the few substitutions and conditions the files use,
so a test can ask "with mode:=position, which controllers are spawned active?".
"""
import contextlib
import importlib.util
import math
import sys
import types
import xml.etree.ElementTree as ET

import pytest
import yaml

from ros2_imitation.graph.spec import load_graph
from ros2_imitation.paths import share_dir
from ros2_imitation.robot import RobotProfile

GAZEBO = share_dir() / 'config' / 'gazebo'


class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(Recorded):
    pass


MODULES = ('launch', 'launch.actions', 'launch.substitutions', 'launch.conditions', 'launch.event_handlers',
           'launch.launch_description_sources', 'launch_ros', 'launch_ros.actions',
           'launch_ros.substitutions', 'launch_ros.parameter_descriptions')
# the package's modules that import launch: imported afresh over the recording modules
LAUNCH_IMPORTERS = ('ros2_imitation.graph.launch_support', 'ros2_imitation.graph.robot_launch')


def _install_recording_modules():
    mods = {name: types.ModuleType(name) for name in MODULES}
    mods['launch'].LaunchDescription = type('LaunchDescription', (Recorded,), {
        'entities': property(lambda self: self.args[0] if self.args else [])})
    for cls in ('DeclareLaunchArgument', 'Shutdown', 'IncludeLaunchDescription', 'ExecuteProcess',
                'GroupAction', 'LogInfo', 'SetEnvironmentVariable', 'OpaqueFunction', 'RegisterEventHandler',
                'TimerAction'):
        setattr(mods['launch.actions'], cls, type(cls, (Recorded,), {}))
    mods['launch.substitutions'].LaunchConfiguration = LaunchConfiguration
    for cls in ('PathJoinSubstitution', 'PythonExpression', 'TextSubstitution', 'Command',
                'EnvironmentVariable', 'FindExecutable'):
        setattr(mods['launch.substitutions'], cls, type(cls, (Recorded,), {}))
    for cls in ('IfCondition', 'UnlessCondition'):
        setattr(mods['launch.conditions'], cls, type(cls, (Recorded,), {}))
    for cls in ('OnProcessExit', 'OnProcessStart'):
        setattr(mods['launch.event_handlers'], cls, type(cls, (Recorded,), {}))
    mods['launch.launch_description_sources'].PythonLaunchDescriptionSource = type(
        'PythonLaunchDescriptionSource', (Recorded,), {})
    mods['launch_ros.actions'].Node = type('Node', (Recorded,), {})
    mods['launch_ros.actions'].SetParameter = type('SetParameter', (Recorded,), {})
    mods['launch_ros.substitutions'].FindPackageShare = type('FindPackageShare', (Recorded,), {})
    mods['launch_ros.parameter_descriptions'].ParameterValue = type('ParameterValue', (Recorded,), {})
    for parent, child in (('launch', 'actions'), ('launch', 'substitutions'), ('launch', 'conditions'),
                          ('launch', 'event_handlers'), ('launch', 'launch_description_sources'),
                          ('launch_ros', 'actions'), ('launch_ros', 'substitutions'),
                          ('launch_ros', 'parameter_descriptions')):
        setattr(mods[parent], child, mods[f'{parent}.{child}'])
    return mods


@pytest.fixture
def launch_modules(monkeypatch):
    if importlib.util.find_spec('launch_ros') is not None:
        pytest.skip('real launch_ros present: run `ros2 launch --show-args` instead')
    for name, module in _install_recording_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in LAUNCH_IMPORTERS:
        monkeypatch.delitem(sys.modules, name, raising=False)


@contextlib.contextmanager
def recording_modules():
    """The recording modules in sys.modules for a while (for other tests: test_docs, test_docker)."""
    names = (*MODULES, *LAUNCH_IMPORTERS)
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules.update(_install_recording_modules())
    for name in LAUNCH_IMPORTERS:
        sys.modules.pop(name, None)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def load_launch_module(name):
    path = share_dir() / 'launch' / name
    spec = importlib.util.spec_from_file_location(name.replace('.', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_launch_file(name):
    return load_launch_module(name).generate_launch_description()


def declared_arguments(name) -> dict:
    """{argument: default} of a launch file in launch/, read with the recording modules."""
    with recording_modules():
        description = load_launch_file(name)
        return {e.args[0]: e.kwargs.get('default_value') for e in description.entities
                if type(e).__name__ == 'DeclareLaunchArgument'}


def kind(entity) -> str:
    return type(entity).__name__


def of_kind(entities, name) -> list:
    return [e for e in entities if kind(e) == name]


def evaluate(value, config: dict):
    """What the launch system makes of a recorded substitution, given launch argument values."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return ''.join(evaluate(v, config) for v in value)
    if kind(value) == 'LaunchConfiguration':
        return str(config[value.args[0]])
    if kind(value) == 'PythonExpression':
        return str(eval(evaluate(value.args[0], config), {'math': math}))
    if kind(value) == 'PathJoinSubstitution':
        return '/'.join(evaluate(v, config) for v in value.args[0])
    if kind(value) == 'FindPackageShare':
        return f'<share of {value.args[0]}>'
    raise TypeError(f'cannot evaluate {value!r}')


def runs(entity, config: dict) -> bool:
    """Whether an action with a recorded condition runs, given launch argument values."""
    condition = entity.kwargs.get('condition')
    if condition is None:
        return True
    value = evaluate(condition.args[0], config).strip().lower() in ('true', '1')
    return value if kind(condition) == 'IfCondition' else not value


def defaults(description) -> dict:
    return {e.args[0]: e.kwargs['default_value'] for e in of_kind(description.entities, 'DeclareLaunchArgument')}


# ---------------------------------------------------------------- the graph launch files

def test_sim_launch_matches_graph(launch_modules):
    description = load_launch_file('sim.launch.py')
    nodes = of_kind(description.entities, 'Node')
    declared = defaults(description)
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


# launch file -> the graph config it runs (gazebo.launch.py: the graph's nodes beside Gazebo's own)
LAUNCH_GRAPHS = {'sim.launch.py': 'sim', 'demo.launch.py': 'demo', 'record.launch.py': 'record_sim',
                 'robot.launch.py': 'robot', 'robot_pick_place.launch.py': 'robot_pick_place',
                 'camera_replay.launch.py': 'camera_replay',
                 'gazebo.launch.py': 'gazebo'}


def test_every_launch_file_runs_a_graph():
    assert set(LAUNCH_GRAPHS) == {p.name for p in (share_dir() / 'launch').glob('*.launch.py')}


@pytest.mark.parametrize('name', sorted(LAUNCH_GRAPHS))
def test_launch_file_runs_its_graph_with_every_argument(launch_modules, name):
    """The graph's nodes with its parameters, each graph argument declared with the graph's default
    and feeding the parameters it `sets`: what `ros2-imitation bringup GRAPH` runs."""
    description = load_launch_file(name)
    graph = load_graph(LAUNCH_GRAPHS[name])
    declared = defaults(description)
    assert {arg: declared.get(arg) for arg in graph.arguments} == {
        arg: str(spec.default) for arg, spec in graph.arguments.items()}
    nodes = [n for n in of_kind(description.entities, 'Node') if n.kwargs['package'] == 'ros2_imitation']
    assert [n.kwargs['name'] for n in nodes] == [n.name for n in graph.nodes]
    for node, spec in zip(nodes, graph.nodes):
        assert node.kwargs['executable'] == spec.executable
        params = node.kwargs['parameters'][0]
        assert set(params) == set(spec.parameters)
        for key, value in params.items():
            bound = [a.name for a in graph.arguments.values() if f'{spec.name}.{key}' in a.sets]
            if bound:
                assert isinstance(value, LaunchConfiguration) and value.args[0] == bound[0], (spec.name, key)
            else:
                assert value == spec.parameters[key], (spec.name, key)
    # argument checks (OpaqueFunction) run after every declaration and before anything starts
    kinds = [kind(e) for e in description.entities]
    if 'OpaqueFunction' in kinds:
        last_check = max(i for i, k in enumerate(kinds) if k == 'OpaqueFunction')
        assert max(i for i, k in enumerate(kinds) if k == 'DeclareLaunchArgument') < last_check
        assert min(i for i, k in enumerate(kinds) if k in ('Node', 'IncludeLaunchDescription')) > last_check


class ProcessExited:
    """What launch hands an on_exit callable: the event (with the exit code) and the context."""

    def __init__(self, returncode):
        self.returncode = returncode


class Context:
    def __init__(self, is_shutdown=False):
        self.is_shutdown = is_shutdown


def test_a_required_node_that_fails_makes_ros2_launch_fail_naming_it(launch_modules):
    """Upstream LaunchService.run() returns 1 only for an exception raised inside launch (and 0 after
    any Shutdown): an error exit of a required node raises, naming the node and its exit code."""
    from ros2_imitation.graph.launch_support import RequiredNodeExited
    description = load_launch_file('demo.launch.py')
    nodes = {n.kwargs['name']: n for n in of_kind(description.entities, 'Node')}
    graph = load_graph('demo')
    for spec in graph.nodes:
        assert ('on_exit' in nodes[spec.name].kwargs) == spec.required, spec.name
    on_exit = nodes['controller'].kwargs['on_exit']
    for code in (1, 2, -9, -11):
        with pytest.raises(RequiredNodeExited, match=f"required node 'controller' exited with code {code}"):
            on_exit(ProcessExited(code), Context())
    # exit 0 on its own: the launch stops with that reason, logged (upstream does not log reasons)
    log, shutdown = on_exit(ProcessExited(0), Context())
    assert kind(log) == 'LogInfo' and "required node 'controller' exited with code 0" in log.kwargs['msg']
    assert kind(shutdown) == 'Shutdown'
    assert shutdown.kwargs['reason'] == "required node 'controller' exited with code 0"
    # exits while the launch is stopping (Ctrl-C, another node's failure, launch's SIGTERM/SIGKILL
    # escalation) are nobody's failure
    for code in (0, 1, -15, -9):
        assert on_exit(ProcessExited(code), Context(is_shutdown=True)) is None


def test_every_launch_file_builds(launch_modules):
    for path in sorted((share_dir() / 'launch').glob('*.launch.py')):
        description = load_launch_file(path.name)
        assert description.entities, path.name


def test_robot_launch_offers_either_camera_driver(launch_modules):
    description = load_launch_file('robot.launch.py')
    config = defaults(description)
    nodes = {e.kwargs['name']: e for e in of_kind(description.entities, 'Node')}
    assert set(nodes) == {n.name for n in load_graph('robot').nodes}
    include = of_kind(description.entities, 'IncludeLaunchDescription')[0]
    assert runs(nodes['camera'], config) and not runs(include, config)
    realsense = dict(config, camera_driver='realsense2_camera')
    assert not runs(nodes['camera'], realsense) and runs(include, realsense)
    assert all(runs(nodes[name], realsense) for name in ('proprioception', 'policy', 'controller'))
    assert nodes['controller'].kwargs['parameters'][0]['dry_run'].args[0] == 'dry_run'
    assert load_graph('robot').node('controller').parameters['dry_run'] is True


def camera_parameters(description, config) -> dict:
    camera = next(e for e in of_kind(description.entities, 'Node') if e.kwargs['name'] == 'camera')
    return {key: evaluate(value, config) if not isinstance(value, (bool, int, float)) else value
            for key, value in camera.kwargs['parameters'][0].items()}


def test_robot_launch_and_bringup_give_the_file_camera_its_video(launch_modules):
    """camera_backend:=file with video_file:= (and the replay rate and looping) reach camera_node,
    through `ros2 launch` and through `ros2-imitation bringup robot --arg ...` alike."""
    description = load_launch_file('robot.launch.py')
    config = dict(defaults(description), camera_backend='file', video_file='/data/view.mp4',
                  video_frame_rate='15.0', video_loop='false')
    params = camera_parameters(description, config)
    assert (params['backend'], params['video_file'], params['frame_rate'], params['loop']) == \
        ('file', '/data/view.mp4', '15.0', 'false')
    graph = load_graph('robot', {'camera_backend': 'file', 'video_file': '/data/view.mp4',
                                 'video_frame_rate': 15.0, 'video_loop': False})
    camera = graph.node('camera').parameters
    assert (camera['backend'], camera['video_file'], camera['frame_rate'], camera['loop']) == \
        ('file', '/data/view.mp4', 15.0, False)
    # the defaults are camera_node's own: the shipped graph still opens a RealSense
    from ros2_imitation.nodes.camera_node import PARAMETERS
    default = load_graph('robot').node('camera').parameters
    assert default['backend'] == 'realsense'
    assert {k: default[k] for k in ('video_file', 'frame_rate', 'loop', 'device')} == \
        {k: PARAMETERS[k] for k in ('video_file', 'frame_rate', 'loop', 'device')}
    usb = camera_parameters(description, dict(defaults(description), camera_backend='opencv', camera_device='2'))
    assert (usb['backend'], usb['device']) == ('opencv', '2')


@pytest.mark.parametrize('config, refused', [
    ({'camera_backend': 'file'}, True),
    ({'camera_backend': 'file', 'video_file': ' '}, True),
    ({'camera_backend': 'file', 'video_file': '/data/view.mp4'}, False),
    ({'camera_backend': 'file', 'nodes': 'policy,controller'}, False),          # no camera on this machine
    ({'camera_backend': 'file', 'camera_driver': 'realsense2_camera'}, False),  # Intel's driver instead
    ({'camera_backend': 'realsense'}, False),
])
def test_robot_launch_refuses_a_file_camera_without_a_video(launch_modules, config, refused):
    module = load_launch_module('robot.launch.py')
    context = types.SimpleNamespace(launch_configurations=dict(
        defaults(module.generate_launch_description()), **config))
    if refused:
        with pytest.raises(RuntimeError, match='video_file'):
            module.check_camera(context)
    else:
        assert module.check_camera(context) == []


def test_camera_replay_launch_replays_the_video_file(launch_modules):
    module = load_launch_module('camera_replay.launch.py')
    description = module.generate_launch_description()
    config = dict(defaults(description), video_file='/data/view.mp4', frame_rate='10.0', width='96')
    params = camera_parameters(description, config)
    assert (params['backend'], params['video_file'], params['frame_rate'], params['width']) == \
        ('file', '/data/view.mp4', '10.0', '96')
    assert params['image_topic'] == '/camera/camera/color/image_raw'
    with pytest.raises(RuntimeError, match='video_file'):
        module.check_video_file(types.SimpleNamespace(launch_configurations=defaults(description)))
    assert module.check_video_file(types.SimpleNamespace(launch_configurations=config)) == []


@pytest.mark.parametrize('selection, expected', [
    ('all', {'camera', 'proprioception', 'policy', 'controller'}),
    ('policy', {'policy'}),
    ('camera, proprioception,controller', {'camera', 'proprioception', 'controller'}),
])
def test_robot_launch_splits_the_graph_across_machines(launch_modules, selection, expected):
    description = load_launch_file('robot.launch.py')
    config = dict(defaults(description), nodes=selection)
    nodes = {e.kwargs['name']: e for e in of_kind(description.entities, 'Node')}
    assert {name for name, node in nodes.items() if runs(node, config)} == expected
    include = of_kind(description.entities, 'IncludeLaunchDescription')[0]
    realsense = dict(config, camera_driver='realsense2_camera')
    assert runs(include, realsense) == ('camera' in expected)


def test_robot_launch_passes_the_camera_serial_to_either_driver(launch_modules):
    """camera_serial:= reaches camera_node and, with camera_driver:=realsense2_camera, rs_launch.py."""
    description = load_launch_file('robot.launch.py')
    config = dict(defaults(description), camera_serial='_128422271784', camera_driver='realsense2_camera')
    include = of_kind(description.entities, 'IncludeLaunchDescription')[0]
    arguments = dict(include.kwargs['launch_arguments'])
    assert evaluate(arguments['serial_no'], config) == '_128422271784'
    assert (arguments['camera_namespace'], arguments['camera_name']) == ('camera', 'camera')
    assert camera_parameters(description, config)['serial_no'] == '_128422271784'


def test_robot_pick_place_launch_runs_two_realsense_cameras_by_serial(launch_modules):
    """The gripper policy's robot graph: a second camera on the hand, each told apart by its serial
    number, with either driver; the gripper opening in the state; the gripper output chosen by
    gripper_mode; nodes:= splits it as robot.launch.py does."""
    description = load_launch_file('robot_pick_place.launch.py')
    config = dict(defaults(description), camera_serial='_1111', wrist_camera_serial='_2222')
    nodes = {e.kwargs['name']: e for e in of_kind(description.entities, 'Node')}
    assert set(nodes) == {'camera', 'wrist_camera', 'proprioception', 'policy', 'controller'}
    wrist = {k: evaluate(v, config) if not isinstance(v, (bool, int, float)) else v
             for k, v in nodes['wrist_camera'].kwargs['parameters'][0].items()}
    assert (wrist['backend'], wrist['serial_no'], wrist['image_topic'], wrist['camera_info_topic']) == (
        'realsense', '_2222', '/wrist_camera/camera/color/image_raw', '/wrist_camera/camera/color/camera_info')
    assert camera_parameters(description, config)['serial_no'] == '_1111'
    policy = nodes['policy'].kwargs['parameters'][0]
    assert policy['image_topics'] == ['/camera/camera/color/image_raw', '/wrist_camera/camera/color/image_raw']
    assert nodes['proprioception'].kwargs['parameters'][0]['gripper_width'] is True
    assert evaluate(nodes['controller'].kwargs['parameters'][0]['gripper_mode'], dict(config, gripper_mode='action')) \
        == 'action'
    includes = of_kind(description.entities, 'IncludeLaunchDescription')
    assert len(includes) == 2
    realsense = dict(config, camera_driver='realsense2_camera')
    drivers = {dict(i.kwargs['launch_arguments'])['camera_namespace']: i for i in includes}
    assert {ns: evaluate(dict(i.kwargs['launch_arguments'])['serial_no'], realsense) for ns, i in drivers.items()} \
        == {'camera': '_1111', 'wrist_camera': '_2222'}
    assert all(runs(i, realsense) and not runs(i, config) for i in includes)
    assert not runs(nodes['wrist_camera'], realsense) and runs(nodes['wrist_camera'], config)
    robot_pc = dict(realsense, nodes='wrist_camera,controller')
    assert runs(drivers['wrist_camera'], robot_pc) and not runs(drivers['camera'], robot_pc)
    module = load_launch_module('robot_pick_place.launch.py')
    with pytest.raises(RuntimeError, match='wrist_video_file'):
        module.check_camera(types.SimpleNamespace(launch_configurations=dict(config, wrist_camera_backend='file')))
    assert module.check_camera(types.SimpleNamespace(launch_configurations=dict(
        config, wrist_camera_backend='file', nodes='policy'))) == []


def test_robot_launch_refuses_unknown_node_names(launch_modules):
    module = load_launch_module('robot.launch.py')
    context = types.SimpleNamespace(launch_configurations={'nodes': 'policy,controler'})
    with pytest.raises(RuntimeError, match='controler'):
        module.check_nodes(context)
    assert module.check_nodes(types.SimpleNamespace(launch_configurations={'nodes': 'policy, controller'})) == []
    assert module.check_nodes(types.SimpleNamespace(launch_configurations={})) == []


# ---------------------------------------------------------------- Gazebo

def gazebo_description():
    module = load_launch_module('gazebo.launch.py')
    return module, module.generate_launch_description()


def urdf():
    return ET.parse(GAZEBO / 'panda.urdf').getroot()


def test_gazebo_launch_includes_gz_sim_with_the_world(launch_modules):
    _, description = gazebo_description()
    config = defaults(description)
    assert config['gui'] == 'true' and config['world'].endswith('config/gazebo/panda_table.sdf')
    (include,) = of_kind(description.entities, 'IncludeLaunchDescription')
    assert evaluate(include.args[0].args[0], config) == '<share of ros_gz_sim>/launch/gz_sim.launch.py'
    arguments = dict(include.kwargs['launch_arguments'])
    assert set(arguments) == {'gz_args', 'on_exit_shutdown'}
    assert evaluate(arguments['gz_args'], config) == f'-r -v 3 {config["world"]}'
    headless = evaluate(arguments['gz_args'], dict(config, gui='false'))
    assert headless.split()[-2:] == ['-s', '--headless-rendering']
    assert arguments['on_exit_shutdown'] == 'true'


def test_gazebo_launch_spawns_the_robot_and_bridges_clock_and_camera(launch_modules):
    module, description = gazebo_description()
    nodes = of_kind(description.entities, 'Node')
    by_executable = {(n.kwargs['package'], n.kwargs['executable']): n for n in nodes
                     if n.kwargs['package'] != 'controller_manager'}
    rsp = by_executable[('robot_state_publisher', 'robot_state_publisher')]
    assert rsp.kwargs['name'] == 'robot_state_publisher'  # where gz_ros2_control looks for robot_description
    params = rsp.kwargs['parameters'][0]
    assert params['use_sim_time'] is True
    text = params['robot_description']
    assert kind(text) == 'ParameterValue' and text.kwargs['value_type'] is str
    plugin = ET.fromstring(text.args[0]).find('gazebo/plugin')
    assert plugin.get('filename') == 'gz_ros2_control-system'
    assert plugin.get('name') == 'gz_ros2_control::GazeboSimROS2ControlPlugin'
    assert plugin.findtext('robot_param_node') == 'robot_state_publisher'
    controllers_file = plugin.findtext('parameters')
    assert controllers_file == str(GAZEBO / 'controllers.yaml') and '$(find' not in text.args[0]
    create = by_executable[('ros_gz_sim', 'create')]
    args = create.kwargs['arguments']
    assert args[args.index('-topic') + 1] == 'robot_description'
    assert args[args.index('-name') + 1] == module.ROBOT_NAME
    bridge = by_executable[('ros_gz_bridge', 'parameter_bridge')]
    assert bridge.kwargs['parameters'][0]['config_file'] == str(GAZEBO / 'bridge.yaml')


def spawned(description, config):
    """{controller: 'active' | 'inactive'} the spawners start, following the OnProcessExit chain."""
    handlers = of_kind(description.entities, 'RegisterEventHandler')
    out, order = {}, []
    for handler in handlers:
        event = handler.args[0]
        assert kind(event) == 'OnProcessExit'
        order.append((event.kwargs['target_action'], event.kwargs['on_exit']))
    for _, actions in order:
        for action in actions:
            if kind(action) == 'Node' and runs(action, config):
                assert action.kwargs['package'] == 'controller_manager'
                assert action.kwargs['executable'] == 'spawner'
                args = action.kwargs['arguments']
                assert args[args.index('--controller-manager') + 1] == '/controller_manager'
                name = args[0]
                assert name not in out, f'{name} spawned twice'
                out[name] = 'inactive' if '--inactive' in args else 'active'
    return out, order


@pytest.mark.parametrize('mode, active, inactive', [
    ('trajectory', 'joint_trajectory_controller', 'position_controller'),
    ('position', 'position_controller', 'joint_trajectory_controller'),
])
def test_gazebo_launch_spawns_the_controller_of_the_mode(launch_modules, mode, active, inactive):
    _, description = gazebo_description()
    config = dict(defaults(description), mode=mode)
    controllers, order = spawned(description, config)
    assert controllers == {'joint_state_broadcaster': 'active', active: 'active', inactive: 'inactive',
                           'gripper_controller': 'active'}
    # the broadcaster after the robot is spawned, the others after the broadcaster
    create = next(n for n in of_kind(description.entities, 'Node') if n.kwargs['executable'] == 'create')
    assert order[0][0] is create and order[0][1][0].kwargs['arguments'][0] == 'joint_state_broadcaster'
    assert order[1][0] is order[0][1][0]
    # and the graph's controller_node publishes to the active controller's topic
    controller = next(n for n in of_kind(description.entities, 'Node') if n.kwargs.get('name') == 'controller')
    params = controller.kwargs['parameters'][0]
    assert evaluate(params['mode'], config) == mode
    topic = {'trajectory': params['trajectory_topic'], 'position': params['position_topic']}[mode]
    suffix = {'trajectory': 'joint_trajectory', 'position': 'commands'}[mode]
    assert topic == f'/{active}/{suffix}'


def test_gazebo_launch_refuses_modes_without_a_gazebo_controller(launch_modules):
    module, _ = gazebo_description()
    with pytest.raises(RuntimeError, match='impedance'):
        module.check_mode(types.SimpleNamespace(launch_configurations={'mode': 'impedance'}))
    assert module.check_mode(types.SimpleNamespace(launch_configurations={'mode': 'position'})) == []


def test_gazebo_launch_runs_the_gazebo_graph_on_sim_time(launch_modules):
    _, description = gazebo_description()
    graph = load_graph('gazebo')
    stack = [n for n in of_kind(description.entities, 'Node') if n.kwargs['package'] == 'ros2_imitation']
    assert [n.kwargs['name'] for n in stack] == [n.name for n in graph.nodes]
    assert {n.name for n in graph.nodes} == {'proprioception', 'policy', 'controller'}
    assert all(n.parameters['use_sim_time'] is True for n in graph.nodes)
    declared = defaults(description)
    assert {name: declared[name] for name in graph.arguments} == {
        name: str(arg.default) for name, arg in graph.arguments.items()}
    # the graph's declarations precede the check, the check precedes every process
    kinds = [kind(e) for e in description.entities]
    check = kinds.index('OpaqueFunction')
    assert max(i for i, k in enumerate(kinds) if k == 'DeclareLaunchArgument') < check
    assert min(i for i, k in enumerate(kinds) if k in ('Node', 'IncludeLaunchDescription')) > check


def test_gazebo_bridge_maps_clock_and_camera_onto_realsense_topics():
    bridges = yaml.safe_load((GAZEBO / 'bridge.yaml').read_text())
    by_ros = {b['ros_topic_name']: b for b in bridges}
    expected = {
        '/clock': ('rosgraph_msgs/msg/Clock', 'gz.msgs.Clock'),
        '/camera/camera/color/image_raw': ('sensor_msgs/msg/Image', 'gz.msgs.Image'),
        '/camera/camera/color/camera_info': ('sensor_msgs/msg/CameraInfo', 'gz.msgs.CameraInfo'),
    }
    assert set(by_ros) == set(expected)
    for topic, (ros_type, gz_type) in expected.items():
        bridge = by_ros[topic]
        assert (bridge['ros_type_name'], bridge['gz_type_name']) == (ros_type, gz_type)
        assert bridge['direction'] == 'GZ_TO_ROS'
        assert set(bridge) <= {'ros_topic_name', 'gz_topic_name', 'ros_type_name', 'gz_type_name',
                               'direction', 'lazy', 'publisher_queue', 'subscriber_queue'}
    assert by_ros['/clock']['gz_topic_name'] == '/clock'
    # the gz side is what the URDF's camera publishes
    sensor = urdf().find("gazebo/sensor[@type='camera']")
    assert by_ros['/camera/camera/color/image_raw']['gz_topic_name'] == sensor.findtext('topic')
    info = sensor.findtext('camera/camera_info_topic')
    assert by_ros['/camera/camera/color/camera_info']['gz_topic_name'] == info
    # gz-sensors' own default for the info topic (the image topic's folder + camera_info) agrees too
    assert info == sensor.findtext('topic').rsplit('/', 1)[0] + '/camera_info'
    # and the ROS side is what the policy and the recorder read
    assert load_graph('gazebo').node('policy').parameters['image_topics'] == ['/camera/camera/color/image_raw']
    recorded = load_graph('record_sim').node('recorder').parameters['topics']
    assert {'/camera/camera/color/image_raw', '/camera/camera/color/camera_info'} <= set(recorded)


def test_gazebo_urdf_joints_and_limits_match_the_robot_profile():
    robot, profile = urdf(), RobotProfile.load('panda')
    joints = {j.get('name'): j for j in robot.findall('joint')}
    links = {link.get('name') for link in robot.findall('link')}
    for joint in joints.values():
        assert joint.find('parent').get('link') in links and joint.find('child').get('link') in links
    lim = profile.limits
    for i, name in enumerate(profile.arm_joints):
        joint = joints[name]
        assert joint.get('type') == 'revolute'
        limit = joint.find('limit')
        got = [float(limit.get(k)) for k in ('lower', 'upper', 'velocity', 'effort')]
        assert got == pytest.approx([lim.lower[i], lim.upper[i], lim.velocity[i], lim.effort[i]]), name
    for name in profile.gripper_joints:
        assert joints[name].get('type') == 'prismatic'
    # every link that moves has mass (Gazebo drops massless links that are not merged)
    moving = {j.find('child').get('link') for j in joints.values() if j.get('type') != 'fixed'}
    for link in robot.findall('link'):
        if link.get('name') in moving:
            assert float(link.find('inertial/mass').get('value')) > 0, link.get('name')
    # ros2_control: every arm joint commanded by position within the same limits, starting at home
    control = robot.find('ros2_control')
    assert control.findtext('hardware/plugin') == 'gz_ros2_control/GazeboSimSystem'
    controlled = {j.get('name'): j for j in control.findall('joint')}
    assert set(controlled) == set(profile.arm_joints) | set(profile.gripper_joints)
    for i, name in enumerate(profile.arm_joints):
        command = controlled[name].find("command_interface[@name='position']")
        bounds = {p.get('name'): float(p.text) for p in command.findall('param')}
        assert bounds == pytest.approx({'min': lim.lower[i], 'max': lim.upper[i]})
        start = controlled[name].find("state_interface[@name='position']/param[@name='initial_value']")
        assert float(start.text) == pytest.approx(profile.home[i])
        assert lim.lower[i] < profile.home[i] < lim.upper[i]


def test_gazebo_camera_matches_the_mujoco_camera():
    from ros2_imitation.sim.scene import CAMERA
    robot = urdf()
    joint = next(j for j in robot.findall('joint') if j.find('child').get('link') == 'camera_link')
    assert joint.find('parent').get('link') == 'panda_link0'
    xyz = [float(v) for v in joint.find('origin').get('xyz').split()]
    roll, pitch, yaw = (float(v) for v in joint.find('origin').get('rpy').split())
    assert xyz == pytest.approx(CAMERA['pos'])
    # URDF rpy: R = Rz(yaw) Ry(pitch) Rx(roll); a Gazebo camera looks along its +x axis
    forward = [math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch), -math.sin(pitch)]
    target = [a - b for a, b in zip(CAMERA['lookat'], CAMERA['pos'])]
    norm = math.sqrt(sum(t * t for t in target))
    assert forward == pytest.approx([t / norm for t in target], abs=1e-5)
    sensor = robot.find("gazebo[@reference='camera_link']/sensor")
    assert float(sensor.findtext('camera/horizontal_fov')) == pytest.approx(math.radians(CAMERA['fovy']), abs=1e-4)
    assert sensor.findtext('camera/image/format') == 'R8G8B8'  # -> sensor_msgs/Image rgb8
    assert sensor.findtext('gz_frame_id') == 'camera_color_optical_frame'
    assert 'camera_color_optical_frame' in {link.get('name') for link in robot.findall('link')}


def test_gazebo_controllers_name_existing_joints():
    config = yaml.safe_load((GAZEBO / 'controllers.yaml').read_text())
    manager = config['controller_manager']['ros__parameters']
    declared = {name for name, body in manager.items() if isinstance(body, dict) and 'type' in body}
    assert declared == {'joint_state_broadcaster', 'joint_trajectory_controller', 'position_controller',
                        'gripper_controller'}
    robot = urdf()
    commanded = {j.get('name') for j in robot.findall('ros2_control/joint')
                 if j.find("command_interface[@name='position']") is not None}
    profile = RobotProfile.load('panda')
    for name in declared - {'joint_state_broadcaster'}:
        joints = config[name]['ros__parameters']['joints']
        assert set(joints) <= commanded, name
    for name in ('joint_trajectory_controller', 'position_controller'):
        assert config[name]['ros__parameters']['joints'] == list(profile.arm_joints)
    jtc = config['joint_trajectory_controller']['ros__parameters']
    assert jtc['command_interfaces'] == ['position'] and set(jtc['state_interfaces']) == {'position', 'velocity'}
    # the plugin in the URDF points at this file
    plugin = robot.find('gazebo/plugin')
    assert plugin.findtext('parameters') == '$(find ros2_imitation)/config/gazebo/controllers.yaml'


def test_gazebo_world_parses_and_renders_sensors():
    world = ET.parse(GAZEBO / 'panda_table.sdf').getroot().find('world')
    plugins = {p.get('name') for p in world.findall('plugin')}
    assert {'gz::sim::systems::Physics', 'gz::sim::systems::UserCommands',  # UserCommands: `create`
            'gz::sim::systems::SceneBroadcaster', 'gz::sim::systems::Sensors'} <= plugins
    models = {m.get('name') for m in world.findall('model')}
    assert {'table', 'cube', 'goal'} <= models


def test_gazebo_files_are_installed():
    """setup.py installs config/ as a tree: the Gazebo files land in share/ros2_imitation/config/gazebo."""
    import ast
    source = (share_dir() / 'setup.py').read_text()
    calls = [node for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'tree']
    assert 'config' in {call.args[0].value for call in calls}
    for name in ('panda.urdf', 'controllers.yaml', 'bridge.yaml', 'panda_table.sdf'):
        assert (GAZEBO / name).is_file()


def test_gazebo_urdf_kinematics_match_the_mujoco_sim():
    """Load the URDF with MuJoCo's URDF reader: the fingertip frame and the camera's optical frame are
    where the package's MuJoCo Panda has them, for any arm pose."""
    import re

    import mujoco
    import numpy as np

    from ros2_imitation.sim import scene
    from ros2_imitation.sim.kinematics import IKSolver
    sim = mujoco.MjModel.from_xml_string(scene.build_xml())
    sim_data = mujoco.MjData(sim)
    ik = IKSolver(sim)
    text = (GAZEBO / 'panda.urdf').read_text()
    text = re.sub(r'<gazebo.*?</gazebo>', '', text, flags=re.S)          # ROS/Gazebo-only elements
    text = re.sub(r'<ros2_control.*?</ros2_control>', '', text, flags=re.S)
    text = text.replace('<robot name="panda">', '<robot name="panda"><mujoco><compiler fusestatic="false" '
                        'discardvisual="true"/></mujoco>', 1)
    model = mujoco.MjModel.from_xml_string(text)
    data = mujoco.MjData(model)
    tcp = model.body('panda_hand_tcp').id
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(ik.lower, ik.upper)
        for i, name in enumerate(scene.ARM_JOINTS):
            data.qpos[model.joint(name).qposadr[0]] = q[i]
        mujoco.mj_kinematics(model, data)
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, data.xmat[tcp])
        position, expected = ik.fk(q)
        assert data.xpos[tcp] == pytest.approx(position, abs=1e-5)
        assert min(np.abs(quat - expected).max(), np.abs(quat + expected).max()) < 1e-5  # q and -q: same turn
    # camera: MuJoCo's looks along -z with +y up; the optical frame along +z with +y down
    mujoco.mj_forward(sim, sim_data)  # cameras are placed by mj_camlight, part of mj_forward
    camera = sim.camera(scene.CAMERA['name']).id
    optical = model.body('camera_color_optical_frame').id
    assert data.xpos[optical] == pytest.approx(sim_data.cam_xpos[camera], abs=1e-6)
    expected = sim_data.cam_xmat[camera].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
    assert data.xmat[optical].reshape(3, 3) == pytest.approx(expected, abs=1e-5)


def test_gazebo_wrist_camera_matches_the_mujoco_wrist_camera():
    """The URDF's wrist camera optical frame is where the MuJoCo sim's hand camera is, for any arm
    pose, with the same field of view, and its gz sensor publishes rgb8 in that frame."""
    import re

    import mujoco
    import numpy as np

    from ros2_imitation.sim import scene
    sim = mujoco.MjModel.from_xml_string(scene.build_xml(wrist_camera=True))
    sim_data = mujoco.MjData(sim)
    text = (GAZEBO / 'panda.urdf').read_text()
    text = re.sub(r'<gazebo.*?</gazebo>', '', text, flags=re.S)
    text = re.sub(r'<ros2_control.*?</ros2_control>', '', text, flags=re.S)
    text = text.replace('<robot name="panda">', '<robot name="panda"><mujoco><compiler fusestatic="false" '
                        'discardvisual="true"/></mujoco>', 1)
    model = mujoco.MjModel.from_xml_string(text)
    data = mujoco.MjData(model)
    camera = sim.camera(scene.WRIST_CAMERA['name']).id
    optical = model.body('wrist_camera_color_optical_frame').id
    rng = np.random.default_rng(1)
    lower, upper = np.array(scene.ARM_LOWER), np.array(scene.ARM_UPPER)
    for _ in range(10):
        q = rng.uniform(lower + 0.05, upper - 0.05)
        for i, name in enumerate(scene.ARM_JOINTS):
            data.qpos[model.joint(name).qposadr[0]] = q[i]
            sim_data.qpos[sim.joint(name).qposadr[0]] = q[i]
        mujoco.mj_kinematics(model, data)
        mujoco.mj_forward(sim, sim_data)
        assert data.xpos[optical] == pytest.approx(sim_data.cam_xpos[camera], abs=1e-5)
        expected = sim_data.cam_xmat[camera].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
        assert data.xmat[optical].reshape(3, 3) == pytest.approx(expected, abs=1e-5)
    robot = urdf()
    assert robot.find("joint[@name='wrist_camera_joint']/parent").get('link') == 'panda_hand'
    sensor = robot.find("gazebo[@reference='wrist_camera_link']/sensor")
    assert float(sensor.findtext('camera/horizontal_fov')) == pytest.approx(
        math.radians(scene.WRIST_CAMERA['fovy']), abs=1e-4)                    # square image: h = v
    assert sensor.findtext('camera/image/format') == 'R8G8B8'
    assert sensor.findtext('gz_frame_id') == 'wrist_camera_color_optical_frame'
    assert sensor.findtext('camera/camera_info_topic') == sensor.findtext('topic').rsplit('/', 1)[0] + '/camera_info'
    # the external camera stays the first camera sensor (the bridge test reads that one)
    assert urdf().find("gazebo/sensor[@type='camera']").findtext('topic') == '/gz/camera/image'
