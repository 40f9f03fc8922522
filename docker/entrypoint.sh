#!/usr/bin/env bash
# Source ROS 2 and the colcon workspace, then run the command (default: robot.launch.py).
# Stop it with SIGINT (Ctrl-C; the images' STOPSIGNAL, compose's stop_signal): ros2 launch then stops
# its nodes in order. SIGTERM makes ros2 launch exit at once and orphans them (ros2/launch#666).
# exec: the command is the process docker signals.
set -e
source /opt/ros/jazzy/setup.bash
source /ws/install/setup.bash
exec "$@"
