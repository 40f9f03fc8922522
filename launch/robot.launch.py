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
two machines on the same ROS_DOMAIN_ID (docker/compose.yaml does exactly that). A gripper policy with
a wrist camera: robot_pick_place.launch.py.
"""
from ros2_imitation.graph.robot_launch import camera_check, node_check, robot_launch_description

GRAPH = 'robot'
check_nodes = node_check(GRAPH)
check_camera = camera_check(GRAPH)


def generate_launch_description():
    return robot_launch_description(GRAPH)
