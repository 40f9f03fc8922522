"""ros2_imitation: diffusion action-chunk imitation policies on ROS 2 arms."""
__version__ = '0.1.0'
