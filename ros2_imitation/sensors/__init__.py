"""Sensors to arrays: camera backends, image decoding, joint mapping by name (ROS-free)."""
