"""Demonstration recording in sim: config/graphs/record_sim.yaml (sim, chunk controller, scripted
expert, episode recorder).

    ros2 launch ros2_imitation record.launch.py task:=push_cube output_dir:=$HOME/demos
    ros2 run ros2_imitation ros2-imitation record-demos --attach --episodes 50 --out $HOME/demos   # drives them

or drive episodes by hand with the services (docs/recording.md): /expert/pause, /controller/stop +
/controller/resume, /sim/reset, /recorder/start, /expert/reset, ..., /recorder/stop_success.

Where the bags go: `record-demos --attach` points the recorder at its --out; otherwise output_dir, a
relative one taken from the folder `ros2 launch` runs in (the recorder logs the absolute path).
"""
from ros2_imitation.graph.launch_support import graph_launch_description


def generate_launch_description():
    return graph_launch_description('record_sim')
