"""The policy stack on a Panda in Gazebo (gz sim Harmonic, ROS 2 Jazzy): for machines that have Gazebo.

    ros2 launch ros2_imitation gazebo.launch.py                       # GUI, trajectory mode
    ros2 launch ros2_imitation gazebo.launch.py gui:=false mode:=position model:=/path/to/policy

Starts
  * gz sim with config/gazebo/panda_table.sdf (ros_gz_sim's gz_sim.launch.py; `gui:=false` runs the
    server only, rendering the camera headless),
  * robot_state_publisher with config/gazebo/panda.urdf (a Panda with ros2_control tags, the
    gz_ros2_control plugin and a camera), spawned into the world by ros_gz_sim `create`,
  * controller_manager spawners, once the robot is in: joint_state_broadcaster, then the arm
    controller that takes controller_node's commands in its `mode` (trajectory ->
    joint_trajectory_controller, position -> position_controller; the other one is loaded inactive)
    and gripper_controller (config/gazebo/controllers.yaml),
  * ros_gz_bridge parameter_bridge with config/gazebo/bridge.yaml: /clock, and the camera on
    realsense2_camera's /camera/camera/color/image_raw and .../camera_info,
  * proprioception, policy and controller: config/graphs/gazebo.yaml, the same graph file
    `ros2-imitation bringup gazebo` runs, with use_sim_time.

docs/gazebo.md says which topic maps to what.
"""
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition, UnlessCondition
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from ros2_imitation.graph.launch_support import graph_actions
from ros2_imitation.paths import share_dir

GRAPH = 'gazebo'
ROBOT_NAME = 'panda'
CONTROLLER_MANAGER = '/controller_manager'
# controller_node `mode` -> the gz_ros2_control controller that takes its commands
ARM_CONTROLLERS = {'trajectory': 'joint_trajectory_controller', 'position': 'position_controller'}


def gazebo_file(name: str):
    return share_dir() / 'config' / 'gazebo' / name


def robot_description() -> str:
    """The URDF with `$(find ros2_imitation)` resolved, as xacro would resolve it."""
    return gazebo_file('panda.urdf').read_text().replace('$(find ros2_imitation)', str(share_dir()))


def check_mode(context, *args, **kwargs):
    mode = context.launch_configurations.get('mode', 'trajectory')
    if mode not in ARM_CONTROLLERS:
        raise RuntimeError(f'gazebo.launch.py: mode:={mode} has no Gazebo controller here; '
                           f'use one of {sorted(ARM_CONTROLLERS)}')
    return []


def spawner(controller: str, inactive: bool = False, condition=None) -> Node:
    arguments = [controller, '--controller-manager', CONTROLLER_MANAGER,
                 '--controller-manager-timeout', '60']
    if inactive:
        arguments.append('--inactive')
    extra = {'condition': condition} if condition is not None else {}
    return Node(package='controller_manager', executable='spawner', arguments=arguments,
                output='screen', **extra)


def generate_launch_description():
    mode = LaunchConfiguration('mode')
    gui = LaunchConfiguration('gui')

    gz_sim = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare('ros_gz_sim'), 'launch', 'gz_sim.launch.py'])),
        launch_arguments={
            # -r: run at once; server only (-s) renders the camera with --headless-rendering (EGL)
            'gz_args': ['-r -v 3 ', LaunchConfiguration('world'),
                        PythonExpression(["'' if '", gui, "'.lower() == 'true' else ' -s --headless-rendering'"])],
            'on_exit_shutdown': 'true',
        }.items())

    robot_state_publisher = Node(
        package='robot_state_publisher', executable='robot_state_publisher',
        name='robot_state_publisher',  # gz_ros2_control reads robot_description from this node
        parameters=[{'robot_description': ParameterValue(robot_description(), value_type=str),
                     'use_sim_time': True}],
        output='screen')
    spawn_robot = Node(
        package='ros_gz_sim', executable='create',
        arguments=['-topic', 'robot_description', '-name', ROBOT_NAME],
        output='screen')
    bridge = Node(
        package='ros_gz_bridge', executable='parameter_bridge', name='gz_bridge',
        parameters=[{'config_file': str(gazebo_file('bridge.yaml'))}],
        output='screen')

    joint_state_broadcaster = spawner('joint_state_broadcaster')
    arm_controllers = []
    for kind, controller in ARM_CONTROLLERS.items():
        selected = PythonExpression(["'", mode, f"' == '{kind}'"])
        arm_controllers += [spawner(controller, condition=IfCondition(selected)),
                            spawner(controller, inactive=True, condition=UnlessCondition(selected))]

    # config/graphs/gazebo.yaml: its arguments (model, device, sigma, mode, dry_run, control_rate)
    # and its nodes (proprioception, policy, controller)
    stack = graph_actions(GRAPH)
    declarations = [a for a in stack if isinstance(a, DeclareLaunchArgument)]
    stack_nodes = [a for a in stack if not isinstance(a, DeclareLaunchArgument)]

    return LaunchDescription([
        DeclareLaunchArgument('world', default_value=str(gazebo_file('panda_table.sdf')),
                              description='SDF world for gz sim (the Panda is spawned at its origin)'),
        DeclareLaunchArgument('gui', default_value='true',
                              description='true: gz sim with its GUI; false: server only, headless rendering'),
        *declarations,
        OpaqueFunction(function=check_mode),  # before anything starts
        gz_sim,
        bridge,
        robot_state_publisher,
        spawn_robot,
        # controllers once the robot (and with it gz_ros2_control's controller_manager) exists
        RegisterEventHandler(OnProcessExit(target_action=spawn_robot, on_exit=[joint_state_broadcaster])),
        RegisterEventHandler(OnProcessExit(target_action=joint_state_broadcaster,
                                           on_exit=[*arm_controllers, spawner('gripper_controller')])),
        *stack_nodes,
    ])
