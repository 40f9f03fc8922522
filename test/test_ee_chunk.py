"""End-effector chunks -> joint chunks (control/ee_chunk.py) on the Panda's URDF: reachable paths
are followed to 0.1 mm, the workspace box and the speed limits apply before the IK, garbage rotations
reject the whole chunk, unreachable points cut it."""
import numpy as np
import pytest

from ros2_imitation.control.ee_chunk import EE_COLUMNS, EEChunkConverter, TaskSpaceLimits, ee_columns
from ros2_imitation.control.ik import DifferentialIK
from ros2_imitation.control.task_space import Workspace
from ros2_imitation.control.trajectory import Trajectory
from ros2_imitation.robot import RobotProfile

PANDA = RobotProfile.load('panda')
BOX = Workspace((0.2, -0.5, 0.02), (0.8, 0.5, 0.7))


@pytest.fixture(scope='module')
def converter():
    return EEChunkConverter(DifferentialIK.for_robot(PANDA), TaskSpaceLimits(BOX, 0.25, 1.0))


def chunk(positions, rotations, dt=0.1, stamp=10.0):
    times = 0.1 + dt * np.arange(len(positions))
    return Trajectory(EE_COLUMNS, stamp, times, ee_columns(positions, rotations))


def home_pose(converter):
    return converter.ik.kin.tip_pose(PANDA.home)


def test_a_reachable_line_is_followed_point_by_point(converter):
    p0, r0 = home_pose(converter)
    path = p0 + np.linspace(0, 1, 16)[:, None] * np.array([0.08, -0.05, -0.04])
    arm, reasons = converter.convert(chunk(path, [r0] * 16), PANDA.home, now=10.0)
    assert reasons == [] and arm.joint_names == PANDA.arm_joints and arm.positions.shape == (16, 7)
    assert np.allclose(arm.times, 0.1 + 0.1 * np.arange(16))      # within the speed limits: timing kept
    for q, p in zip(arm.positions, path):
        assert np.linalg.norm(converter.ik.kin.tip_pose(q)[0] - p) < 1e-4
    assert np.all(arm.positions >= PANDA.limits.safe_lower) and np.all(arm.positions <= PANDA.limits.safe_upper)


def test_a_target_outside_the_workspace_is_clamped_onto_it_and_reported(converter):
    p0, r0 = home_pose(converter)
    path = np.array([p0 + [0, 0, -0.1 * k] for k in range(1, 9)])     # down through the table
    arm, reasons = converter.convert(chunk(path, [r0] * 8, dt=1.0), PANDA.home, now=10.0)
    tips = np.array([converter.ik.kin.tip_pose(q)[0] for q in arm.positions])
    assert tips[:, 2].min() > BOX.lower[2] - 1e-4
    assert any('outside the workspace on z' in r for r in reasons)


def test_a_chunk_too_fast_for_the_limits_is_slowed_down_not_sped_up(converter):
    p0, r0 = home_pose(converter)
    path = p0 + np.linspace(0.01, 0.2, 8)[:, None] * np.array([1.0, 0.0, 0.0])   # 0.2 m in 0.8 s
    arm, reasons = converter.convert(chunk(path, [r0] * 8), PANDA.home, now=10.0)
    steps = np.linalg.norm(np.diff(np.vstack([p0, path]), axis=0), axis=1)
    dts = np.diff(np.concatenate([[0.0], arm.times]))
    assert np.all(steps / dts <= 0.25 + 1e-6) and arm.times[-1] >= 0.2 / 0.25 - 1e-6
    assert any('slowed' in r for r in reasons)


def test_a_fast_rotation_is_slowed_to_the_angular_limit(converter):
    p0, r0 = home_pose(converter)
    yaw = np.linspace(0.05, 0.8, 8)
    rotations = [np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ r0 for a in yaw]
    arm, _ = converter.convert(chunk([p0] * 8, rotations), PANDA.home, now=10.0)
    assert arm.times[-1] >= 0.8 / 1.0 - 1e-6


@pytest.mark.parametrize('bad, match', [(np.nan, 'non-finite'), (0.0, 'first column is zero')])
def test_a_chunk_with_a_rotation_that_is_none_is_rejected_whole(converter, bad, match):
    p0, r0 = home_pose(converter)
    traj = chunk([p0] * 4, [r0] * 4)
    traj.positions[2, 3:6] = bad
    arm, reasons = converter.convert(traj, PANDA.home, now=10.0)
    assert arm is None and 'rejected' in reasons[-1] and match in reasons[-1]


def test_an_unreachable_point_cuts_the_chunk_there(converter):
    """Beyond the arm's reach inside a wide box: the reachable prefix runs, the rest is dropped."""
    wide = EEChunkConverter(DifferentialIK.for_robot(PANDA), TaskSpaceLimits(Workspace((-2, -2, -2), (2, 2, 2)), 5.0, 5.0))
    p0, r0 = home_pose(wide)
    path = [p0, p0 + [0.02, 0, 0], np.array([1.6, 0.0, 0.4]), np.array([1.7, 0.0, 0.4])]
    arm, reasons = wide.convert(chunk(path, [r0] * 4, dt=2.0), PANDA.home, now=10.0)
    assert len(arm.times) == 2 and 'cut at point 2 of 4' in reasons[-1]
    arm, reasons = wide.convert(chunk(path[2:], [r0] * 2, dt=2.0), PANDA.home, now=10.0)
    assert arm is None and 'point 0' in reasons[-1]
