"""ROS-free MuJoCo simulation core: a Franka Panda on a table, tasks, a camera and IK."""
from ros2_imitation.sim.env import PandaSim
from ros2_imitation.sim.kinematics import solve_ik
from ros2_imitation.sim.tasks import TASKS, make_task

__all__ = ['PandaSim', 'solve_ik', 'TASKS', 'make_task']
