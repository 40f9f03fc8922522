"""Commanding the arm safely: the chunk controller, the safety layer, trajectories and interpolation (ROS-free)."""
