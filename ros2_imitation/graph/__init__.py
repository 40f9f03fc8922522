"""Node graphs: their YAML, bringup, the ros2 launch side, and talking to a running graph."""
