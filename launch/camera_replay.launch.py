"""camera_node replaying a video file on realsense2_camera's topics: config/graphs/camera_replay.yaml.

    ros2 launch ros2_imitation camera_replay.launch.py video_file:=/path/to/view.mp4
    ros2 launch ros2_imitation camera_replay.launch.py video_file:=/path/to/view.mp4 frame_rate:=10.0 width:=96

For tests and replays: whatever reads /camera/camera/color/image_raw (the policy, a recorder) gets the
file's frames, stamped with the time they are published. `loop:=false` stops at the end of the file.
"""
from launch.actions import DeclareLaunchArgument, OpaqueFunction

from launch import LaunchDescription
from ros2_imitation.graph.launch_support import graph_actions

GRAPH = 'camera_replay'


def check_video_file(context, *args, **kwargs):
    """Refuse to start without video_file (camera_node would die on it at once)."""
    if not context.launch_configurations.get('video_file', '').strip():
        raise RuntimeError('camera_replay.launch.py: needs video_file:=/path/to/video')
    return []


def generate_launch_description():
    stack = graph_actions(GRAPH)
    declarations = [a for a in stack if isinstance(a, DeclareLaunchArgument)]
    nodes = [a for a in stack if not isinstance(a, DeclareLaunchArgument)]
    return LaunchDescription([*declarations, OpaqueFunction(function=check_video_file), *nodes])
