"""ROS 2 nodes: thin adapters between messages and the ROS-free core."""
from ros2_imitation.nodes import stopping

if stopping.is_node_process():
    # before the node's module imports rclpy, torch, MuJoCo (seconds): a Ctrl-C meanwhile is noted
    # and the node stops before it starts, instead of a KeyboardInterrupt traceback
    stopping.STOP.install()
