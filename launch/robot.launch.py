"""A physical arm: camera, proprioception, diffusion policy and chunk controller (config/graphs/robot.yaml).

    ros2 launch ros2_imitation robot.launch.py model:=/path/to/policy mode:=trajectory dry_run:=true
    ros2 launch ros2_imitation robot.launch.py camera_driver:=realsense2_camera   # Intel's driver instead
    ros2 launch ros2_imitation robot.launch.py nodes:=policy device:=cuda         # the GPU machine of two
    ros2 launch ros2_imitation robot.launch.py nodes:=camera,proprioception,controller   # the robot PC
    ros2 launch ros2_imitation robot.launch.py camera_backend:=file video_file:=/path/to/view.mp4   # a recorded view

The controller starts in dry run: commands go to /controller/dry_run/* until dry_run:=false
(docs/physical_arm.md has the first-run checklist). With camera_driver:=realsense2_camera the package's
camera_node is replaced by realsense2_camera's rs_launch.py, which publishes the same topics.
`nodes` (default `all`) picks which of the graph's nodes this machine runs, so one graph splits across
two machines on the same ROS_DOMAIN_ID (docker/compose.yaml does exactly that).
"""
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from ros2_imitation.graph.launch_support import graph_actions
from ros2_imitation.graph.spec import load_graph

GRAPH = 'robot'


def selected(node: str, nodes) -> list:
    """A Python expression (for PythonExpression): is `node` one of the comma-separated `nodes`?"""
    return ["('", nodes, "'.strip() == 'all' or '", node, "' in [n.strip() for n in '", nodes, "'.split(',')])"]


def check_nodes(context, *args, **kwargs):
    """Refuse a `nodes:=` value naming a node the graph does not have (a typo would start nothing)."""
    value = context.launch_configurations.get('nodes', 'all').strip()
    if value == 'all':
        return []
    known = [spec.name for spec in load_graph(GRAPH).nodes]
    names = [n.strip() for n in value.split(',') if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise RuntimeError(f'robot.launch.py: nodes:={value} names {unknown or "nothing"}; '
                           f"the graph's nodes are {known} (or all)")
    return []


def check_camera(context, *args, **kwargs):
    """Refuse camera_backend:=file without a video_file before anything starts (camera_node would
    die on it at once)."""
    config = context.launch_configurations
    nodes = config.get('nodes', 'all').strip()
    runs_camera = nodes == 'all' or 'camera' in [n.strip() for n in nodes.split(',')]
    if (runs_camera and config.get('camera_driver', 'ros2_imitation') != 'realsense2_camera'
            and config.get('camera_backend') == 'file' and not config.get('video_file', '').strip()):
        raise RuntimeError('robot.launch.py: camera_backend:=file needs video_file:=/path/to/video '
                           '(and optionally video_frame_rate:=, video_loop:=)')
    return []


def generate_launch_description():
    driver = LaunchConfiguration('camera_driver')
    nodes = LaunchConfiguration('nodes')
    own_camera = ["'", driver, "' != 'realsense2_camera'"]
    use_driver = ["'", driver, "' == 'realsense2_camera'"]
    realsense = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare('realsense2_camera'), 'launch', 'rs_launch.py'])),
        launch_arguments={'camera_namespace': 'camera', 'camera_name': 'camera',
                          'rgb_camera.color_profile': '640,480,30', 'enable_depth': 'false'}.items(),
        condition=IfCondition(PythonExpression([*use_driver, ' and ', *selected('camera', nodes)])))
    conditions = {spec.name: IfCondition(PythonExpression(selected(spec.name, nodes)))
                  for spec in load_graph(GRAPH).nodes}
    conditions['camera'] = IfCondition(PythonExpression([*own_camera, ' and ', *selected('camera', nodes)]))
    # config/graphs/robot.yaml: its arguments (camera_backend, video_file, ...) and its nodes
    stack = graph_actions(GRAPH, conditions=conditions)
    declarations = [a for a in stack if isinstance(a, DeclareLaunchArgument)]
    stack_nodes = [a for a in stack if not isinstance(a, DeclareLaunchArgument)]
    return LaunchDescription([
        DeclareLaunchArgument('camera_driver', default_value='ros2_imitation',
                              description='ros2_imitation (camera_node) or realsense2_camera'),
        DeclareLaunchArgument('nodes', default_value='all',
                              description='comma-separated graph nodes to run on this machine '
                                          '(camera, proprioception, policy, controller) or all'),
        OpaqueFunction(function=check_nodes),
        *declarations,
        OpaqueFunction(function=check_camera),   # after the graph's arguments are declared
        realsense,
        *stack_nodes,
    ])
