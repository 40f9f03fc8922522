"""The full stack in sim: config/graphs/demo.yaml (sim, proprioception, diffusion policy, controller).

    ros2 launch ros2_imitation demo.launch.py model:=/path/to/policy sigma:=0.05
    ros2 service call /sim/reset std_srvs/srv/Trigger   # a new episode (seed: the /sim seed parameter)
"""
from ros2_imitation.graph.launch_support import graph_launch_description


def generate_launch_description():
    return graph_launch_description('demo')
