"""ament_python package; also installs with plain pip (see README)."""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'ros2_imitation'


def tree(folder):
    """data_files entries that keep the folder structure under share/<pkg>/ (a model's
    runtime_cache/, exports made on this machine, is never installed)."""
    entries = {}
    for path in glob(os.path.join(folder, '**', '*'), recursive=True):
        if os.path.isfile(path) and 'runtime_cache' not in path.split(os.sep):
            target = os.path.join('share', PACKAGE, os.path.dirname(path))
            entries.setdefault(target, []).append(path)
    return sorted(entries.items())


# One executable per node module: ros2_imitation/nodes/<name>_node.py -> <name>_node.
NODES = sorted(os.path.basename(p)[:-3] for p in glob(f'{PACKAGE}/nodes/*_node.py'))

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        *tree('launch'),
        *tree('config'),
        *tree('models'),
    ],
    python_requires='>=3.10',
    install_requires=[
        'numpy>=1.24',
        'pyyaml>=6',
        'tqdm>=4.60',
        'torch>=2.1',
        'diffusers>=0.30',
        'safetensors>=0.4',
        'mujoco>=3.2',
        'gymnasium-robotics>=1.2',
        'opencv-python-headless>=4.8',
        'rosbags>=0.10',
        'pyarrow>=14',       # LeRobot datasets: parquet (tested with 26.0.1)
        'av>=12',            # LeRobot datasets: mp4 video via PyAV, its own FFmpeg (tested with 18.1.0)
        'matplotlib>=3.7',
        'zarr>=3.0',
        'pin>=3.0',          # pinocchio: kinematics from the robot's URDF
    ],
    extras_require={
        # ROS 2 Kilted client wheels from PyPI, for machines without a ROS install.
        # Never install this extra on a ROS machine: it would shadow the system rclpy.
        'ros': [
            'ros-rclpy', 'ros-rmw-fastrtps-cpp', 'ros-sensor-msgs', 'ros-std-msgs',
            'ros-std-srvs', 'ros-trajectory-msgs', 'ros-geometry-msgs',
            'ros-rosgraph-msgs', 'ros-diagnostic-msgs', 'ros-visualization-msgs',
        ],
        # The same client wheels for ROS 2 Jazzy (the LTS on the robots' Ubuntu 24.04): each ros-jazzy-X
        # pins ros-X to its Jazzy release. `make test-jazzy` installs this instead of [ros], in its own
        # venv: never both in one environment.
        'ros-jazzy': [
            'ros-jazzy-rclpy[fastrtps]', 'ros-jazzy-sensor-msgs', 'ros-jazzy-std-msgs',
            'ros-jazzy-std-srvs', 'ros-jazzy-trajectory-msgs', 'ros-jazzy-geometry-msgs',
            'ros-jazzy-rosgraph-msgs', 'ros-jazzy-diagnostic-msgs', 'ros-jazzy-visualization-msgs',
        ],
        'realsense': ['pyrealsense2'],
        # the live view in the browser (ros2-imitation view, demo --view): Rerun, viewer bundled
        'view': ['rerun-sdk>=0.24'],
        # Faster CPU inference (ros2_imitation/policy/runtimes.py): ONNX export + ONNX Runtime / OpenVINO.
        'fast': ['onnxruntime>=1.32', 'openvino>=2026.4', 'onnx>=1.23', 'onnxscript>=0.7'],
        'test': ['pytest>=7', 'hypothesis>=6', 'mcap>=1.1', 'mcap-ros2-support>=0.5', 'pytest-rerunfailures>=14'],
    },
    zip_safe=True,
    maintainer='ros2_imitation developers',
    maintainer_email='dev@ros2-imitation.org',
    description='Diffusion action-chunk imitation policies on ROS 2 arms.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'ros2-imitation = ros2_imitation.cli:main',
            *[f'{n} = ros2_imitation.nodes.{n}:main' for n in NODES],
        ],
    },
)
