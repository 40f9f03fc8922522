"""A physical arm with a gripper and a wrist camera: the robot graph for a gripper policy such as
models/pick_place (config/graphs/robot_pick_place.yaml).

    ros2 launch ros2_imitation robot_pick_place.launch.py model:=/path/to/pick_place \
        camera_serial:=_128422271784 wrist_camera_serial:=_036522072563 gripper_mode:=action
    ros2 launch ros2_imitation robot_pick_place.launch.py camera_driver:=realsense2_camera \
        camera_serial:=_128422271784 wrist_camera_serial:=_036522072563

Two RealSense cameras told apart by serial number (realsense2_camera takes it with a leading `_`
so that it stays a string; camera_node takes either): the fixed one on /camera/camera/..., the one on
the hand on /wrist_camera/camera/.... Proprioception adds the gripper opening to the state, and the
controller sends the chunks' gripper column out by gripper_mode (forward, trajectory or action:
control_msgs/action/GripperCommand, as franka_gripper and the Robotiq driver take it). Everything
else is robot.launch.py's: dry run first, nodes:= to split the graph across machines.
"""
from ros2_imitation.graph.robot_launch import camera_check, node_check, robot_launch_description

GRAPH = 'robot_pick_place'
check_nodes = node_check(GRAPH)
check_camera = camera_check(GRAPH)


def generate_launch_description():
    return robot_launch_description(GRAPH)
