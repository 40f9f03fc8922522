"""The physical-arm launch files (launch/robot.launch.py, launch/robot_pick_place.launch.py).

Both run a robot graph (config/graphs/robot*.yaml) the way `ros2-imitation bringup` does, plus:
- `camera_driver:=realsense2_camera`: every camera of the graph (each `camera_node`) is replaced by
  Intel's rs_launch.py, in the namespace its topics name (/camera/camera/..., /wrist_camera/camera/...)
  and with the serial number the graph gives that camera (`camera_serial`, `wrist_camera_serial`);
- `nodes:=policy` or `nodes:=camera,proprioception,controller`: which of the graph's nodes this
  machine runs, so one graph splits across two machines on the same ROS_DOMAIN_ID;
- checks that refuse a bad argument before anything starts.

Only imported by the launch files, on a machine with the ROS 2 launch system.
"""
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from ros2_imitation.graph.launch_support import graph_actions
from ros2_imitation.graph.spec import load_graph

CAMERA_EXECUTABLE = 'camera_node'
DEFAULT_IMAGE_TOPIC = '/camera/camera/color/image_raw'     # camera_node's and realsense2_camera's


def selected(node: str, nodes) -> list:
    """A Python expression (for PythonExpression): is `node` one of the comma-separated `nodes`?"""
    return ["('", nodes, "'.strip() == 'all' or '", node, "' in [n.strip() for n in '", nodes, "'.split(',')])"]


def runs_here(node: str, nodes: str) -> bool:
    nodes = nodes.strip()
    return nodes == 'all' or node in [n.strip() for n in nodes.split(',')]


def realsense_namespace(image_topic: str) -> tuple:
    """(camera_namespace, camera_name) of rs_launch.py that publish `image_topic`:
    /wrist_camera/camera/color/image_raw -> ('wrist_camera', 'camera')."""
    parts = [p for p in image_topic.split('/') if p]
    if len(parts) != 4 or parts[2:] != ['color', 'image_raw']:
        raise ValueError(f'camera topic {image_topic!r} is not a realsense2_camera one '
                         '(/<namespace>/<name>/color/image_raw)')
    return parts[0], parts[1]


def argument_setting(graph, target: str):
    """The graph argument that sets `target` ('node.param'), or None."""
    return next((a for a in graph.arguments.values() if target in a.sets), None)


def node_check(graph_name: str):
    """Refuse a `nodes:=` value naming a node the graph does not have (a typo would start nothing)."""
    def check_nodes(context, *args, **kwargs):
        value = context.launch_configurations.get('nodes', 'all').strip()
        if value == 'all':
            return []
        known = [spec.name for spec in load_graph(graph_name).nodes]
        names = [n.strip() for n in value.split(',') if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise RuntimeError(f'{graph_name}.launch.py: nodes:={value} names {unknown or "nothing"}; '
                               f"the graph's nodes are {known} (or all)")
        return []
    return check_nodes


def camera_check(graph_name: str):
    """Refuse a camera with backend `file` and no video before anything starts (camera_node would
    die on it at once), for each camera this machine runs with the package's camera_node."""
    def check_camera(context, *args, **kwargs):
        config = context.launch_configurations
        if config.get('camera_driver', 'ros2_imitation') == 'realsense2_camera':
            return []
        graph = load_graph(graph_name)
        for spec in graph.nodes:
            if spec.executable != CAMERA_EXECUTABLE or not runs_here(spec.name, config.get('nodes', 'all')):
                continue
            backend, video = (argument_setting(graph, f'{spec.name}.{key}') for key in ('backend', 'video_file'))
            if backend is None or config.get(backend.name) != 'file':
                continue
            if video is None or not config.get(video.name, '').strip():
                raise RuntimeError(f'{graph_name}.launch.py: {backend.name}:=file needs '
                                   f'{video.name if video else "a video_file argument"}:=/path/to/video '
                                   '(and optionally its frame rate and looping arguments)')
        return []
    return check_camera


def realsense_driver(graph, spec, nodes, use_driver) -> IncludeLaunchDescription:
    """rs_launch.py in place of camera_node `spec`: same topics, same serial number."""
    namespace, name = realsense_namespace(spec.parameters.get('image_topic', DEFAULT_IMAGE_TOPIC))
    serial = argument_setting(graph, f'{spec.name}.serial_no')
    arguments = {'camera_namespace': namespace, 'camera_name': name,
                 'rgb_camera.color_profile': str(spec.parameters.get('rgb_camera.color_profile', '640,480,30')),
                 'enable_depth': 'false'}
    if serial is not None:
        arguments['serial_no'] = LaunchConfiguration(serial.name)
    return IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare('realsense2_camera'), 'launch', 'rs_launch.py'])),
        launch_arguments=arguments.items(),
        condition=IfCondition(PythonExpression([*use_driver, ' and ', *selected(spec.name, nodes)])))


def robot_launch_description(graph_name: str) -> LaunchDescription:
    graph = load_graph(graph_name)
    driver = LaunchConfiguration('camera_driver')
    nodes = LaunchConfiguration('nodes')
    own_camera = ["'", driver, "' != 'realsense2_camera'"]
    use_driver = ["'", driver, "' == 'realsense2_camera'"]
    cameras = [spec for spec in graph.nodes if spec.executable == CAMERA_EXECUTABLE]
    conditions = {spec.name: IfCondition(PythonExpression(selected(spec.name, nodes))) for spec in graph.nodes}
    for spec in cameras:
        conditions[spec.name] = IfCondition(PythonExpression([*own_camera, ' and ', *selected(spec.name, nodes)]))
    # config/graphs/<graph>.yaml: its arguments (camera_backend, video_file, ...) and its nodes
    stack = graph_actions(graph_name, conditions=conditions)
    declarations = [a for a in stack if isinstance(a, DeclareLaunchArgument)]
    stack_nodes = [a for a in stack if not isinstance(a, DeclareLaunchArgument)]
    return LaunchDescription([
        DeclareLaunchArgument('camera_driver', default_value='ros2_imitation',
                              description='ros2_imitation (camera_node) or realsense2_camera, for every camera'),
        DeclareLaunchArgument('nodes', default_value='all',
                              description='comma-separated graph nodes to run on this machine '
                                          f'({", ".join(s.name for s in graph.nodes)}) or all'),
        OpaqueFunction(function=node_check(graph_name)),
        *declarations,
        OpaqueFunction(function=camera_check(graph_name)),   # after the graph's arguments are declared
        *(realsense_driver(graph, spec, nodes, use_driver) for spec in cameras),
        *stack_nodes,
    ])
