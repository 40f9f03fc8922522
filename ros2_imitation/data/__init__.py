"""Demonstrations to datasets: the rosbag2 recorder core, bag reading, bag -> zarr, reports and media (ROS-free)."""
