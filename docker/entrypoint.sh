#!/usr/bin/env bash
# Source ROS 2 and the colcon workspace, then run the command (default: robot.launch.py).
set -e
source /opt/ros/jazzy/setup.bash
source /ws/install/setup.bash
exec "$@"
