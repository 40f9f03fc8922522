"""End-effector chunks as trajectory_msgs/MultiDOFJointTrajectory (nodes/conversions.py): the round
trip keeps the pose and the gripper; frames, ragged points and quaternions that are no rotation are
refused with a reason."""
import numpy as np
import pytest

from ros2_imitation.control.ee_chunk import EE_COLUMNS, ee_columns
from ros2_imitation.control.task_space import quaternion_to_rotation, rotation_from_6d
from ros2_imitation.control.trajectory import Trajectory
from ros2_imitation.nodes.conversions import ee_trajectory_from_msg, ee_trajectory_to_msg

BASE, TIP, GRIP = 'panda_link0', 'panda_hand_tcp', 'panda_gripper'


def ee_chunk(n=4, gripper=True):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(n, 4))
    rotations = np.array([quaternion_to_rotation(v / np.linalg.norm(v)) for v in q])
    cols = ee_columns(0.4 + 0.1 * rng.random((n, 3)), rotations)
    names = list(EE_COLUMNS)
    if gripper:
        cols = np.concatenate([cols, np.linspace(0.0, 0.08, n)[:, None]], axis=1)
        names.append(GRIP)
    return Trajectory.from_arrays(names, 12.5, 0.1 * np.arange(1, n + 1), cols.tolist())


@pytest.mark.parametrize('gripper', [True, False])
def test_an_ee_chunk_round_trips_through_the_message(gripper):
    traj = ee_chunk(gripper=gripper)
    msg = ee_trajectory_to_msg(traj, BASE, TIP, GRIP if gripper else None)
    assert msg.header.frame_id == BASE and list(msg.joint_names) == [TIP] + ([GRIP] if gripper else [])
    back, reason = ee_trajectory_from_msg(msg, BASE, TIP, GRIP)
    assert reason is None and back.stamp == pytest.approx(12.5) and np.allclose(back.times, traj.times)
    assert list(back.joint_names) == list(traj.joint_names)
    assert np.allclose(back.positions[:, :3], traj.positions[:, :3])
    assert np.allclose(rotation_from_6d(back.positions[:, 3:9]), rotation_from_6d(traj.positions[:, 3:9]), atol=1e-9)
    if gripper:
        assert np.allclose(back.positions[:, 9], traj.positions[:, 9])


def test_bad_ee_chunks_are_refused_with_a_reason():
    msg = ee_trajectory_to_msg(ee_chunk(), BASE, TIP, GRIP)
    msg.header.frame_id = 'world'
    assert 'frame' in ee_trajectory_from_msg(msg, BASE, TIP, GRIP)[1]
    msg = ee_trajectory_to_msg(ee_chunk(), BASE, TIP, GRIP)
    msg.points[2].transforms[0].rotation.w = 3.0
    assert 'not unit' in ee_trajectory_from_msg(msg, BASE, TIP, GRIP)[1]
    msg.points[2].transforms[0].rotation.x = msg.points[2].transforms[0].rotation.y = 0.0
    msg.points[2].transforms[0].rotation.z = msg.points[2].transforms[0].rotation.w = 0.0
    assert 'zero' in ee_trajectory_from_msg(msg, BASE, TIP, GRIP)[1]
    msg = ee_trajectory_to_msg(ee_chunk(), BASE, TIP, GRIP)
    msg.points[1].transforms.pop()
    assert 'transforms for 2 frames' in ee_trajectory_from_msg(msg, BASE, TIP, GRIP)[1]
    msg = ee_trajectory_to_msg(ee_chunk(), BASE, TIP, GRIP)
    msg.joint_names = ['tool0', GRIP]
    assert "no 'panda_hand_tcp'" in ee_trajectory_from_msg(msg, BASE, TIP, GRIP)[1]
    msg = ee_trajectory_to_msg(ee_chunk(), BASE, TIP, GRIP)
    msg.points.clear()
    assert 'no points' in ee_trajectory_from_msg(msg, BASE, TIP, GRIP)[1]
