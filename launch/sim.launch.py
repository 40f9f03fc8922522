"""The MuJoCo Panda simulation alone: config/graphs/sim.yaml.

    ros2 launch ros2_imitation sim.launch.py task:=reach real_time_factor:=1.0
"""
from ros2_imitation.graph.launch_support import graph_launch_description


def generate_launch_description():
    return graph_launch_description('sim')
