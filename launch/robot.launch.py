"""A physical arm: camera, proprioception, diffusion policy and chunk controller (config/graphs/robot.yaml).

    ros2 launch ros2_imitation robot.launch.py model:=/path/to/policy mode:=trajectory dry_run:=true
    ros2 launch ros2_imitation robot.launch.py camera_driver:=realsense2_camera   # Intel's driver instead

The controller starts in dry run: commands go to /controller/dry_run/* until dry_run:=false
(docs/physical_arm.md has the first-run checklist). With camera_driver:=realsense2_camera the package's
camera_node is replaced by realsense2_camera's rs_launch.py, which publishes the same topics.
"""
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from ros2_imitation.launch_support import graph_actions


def generate_launch_description():
    driver = LaunchConfiguration('camera_driver')
    use_driver = PythonExpression(["'", driver, "' == 'realsense2_camera'"])
    own_camera = PythonExpression(["'", driver, "' != 'realsense2_camera'"])
    realsense = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare('realsense2_camera'), 'launch', 'rs_launch.py'])),
        launch_arguments={'camera_namespace': 'camera', 'camera_name': 'camera',
                          'rgb_camera.color_profile': '640,480,30', 'enable_depth': 'false'}.items(),
        condition=IfCondition(use_driver))
    return LaunchDescription([
        DeclareLaunchArgument('camera_driver', default_value='ros2_imitation',
                              description='ros2_imitation (camera_node) or realsense2_camera'),
        realsense,
        *graph_actions('robot', conditions={'camera': IfCondition(own_camera)}),
    ])
