"""End-effector streams beside the joint streams of a dataset, by forward kinematics (ROS-free).

The same recording trains either kind of policy: `state` and `action` hold the arm joints (then the
gripper opening when there is one); `state_ee` and `action_ee` hold the tip pose the forward
kinematics of the robot's URDF gives for those joints (control/kinematics.py), as the columns of an
end-effector chunk (control/ee_chunk.EE_COLUMNS: position in the base frame, 6D rotation), then the
same gripper column. A policy with `action_space: ee` reads state_ee/action_ee.
"""
from __future__ import annotations

import numpy as np

from ros2_imitation.control.ee_chunk import EE_COLUMNS, ee_columns

EE_KEYS = {'state': 'state_ee', 'action': 'action_ee'}


def joints_to_ee(kinematics, values: np.ndarray) -> np.ndarray:
    """(T, dof [+ extra]) arm joints first -> (T, 9 [+ extra]): the tip pose, the extra columns kept."""
    values = np.asarray(values, dtype=np.float64)
    dof = kinematics.dof
    if values.ndim != 2 or values.shape[1] < dof:
        raise ValueError(f'expected (T, >= {dof}) joint columns, got shape {values.shape}')
    poses = [kinematics.tip_pose(q) for q in values[:, :dof]]
    positions = np.array([p for p, _ in poses]).reshape(-1, 3)
    rotations = np.array([r for _, r in poses]).reshape(-1, 3, 3)
    return np.concatenate([ee_columns(positions, rotations), values[:, dof:]], axis=1).astype(np.float32)


def ee_streams(data: dict, robot, kinematics=None) -> dict:
    """{'state_ee': ..., 'action_ee': ...} for the `state` and `action` arrays of `data` (a dataset's
    arrays, arm joints in the robot profile's order first). A ValueError when the profile has no
    kinematics section."""
    from ros2_imitation.control.kinematics import ArmKinematics
    kin = kinematics or ArmKinematics.for_robot(robot)
    return {ee: joints_to_ee(kin, data[key]) for key, ee in EE_KEYS.items() if key in data}


def ee_names(robot, with_gripper: bool) -> list:
    """The columns of state_ee/action_ee."""
    return list(EE_COLUMNS) + ([robot.gripper.command_name] if with_gripper else [])
