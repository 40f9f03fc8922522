"""ROS-free regression tests for the bugs the fault suite found (the DDS tests show them only by luck
of timing)."""
import numpy as np
import pytest

from ros2_imitation.control.controller import ChunkController
from ros2_imitation.control.trajectory import Trajectory, TrajectoryFollower
from ros2_imitation.robot import RobotProfile
from ros2_imitation.sensors.images import image_to_rgb

ROBOT = RobotProfile.load('panda')


def test_a_hold_sampled_before_it_was_set_is_the_held_pose():
    """A clock jumping back (a sim restart, a bogus /clock) sampled a one-knot hold before its
    origin: IndexError in the control thread, which then died silently."""
    follower = TrajectoryFollower(ROBOT.arm_joints, 'cubic')
    follower.hold(ROBOT.home, 1000.0)
    q, qd = follower.sample(10.0)
    np.testing.assert_array_equal(q, ROBOT.home)
    assert not qd.any()


@pytest.mark.parametrize('mode', ['position', 'impedance', 'impedance_target', 'trajectory'])
def test_the_controller_survives_the_clock_jumping_both_ways(mode):
    core = ChunkController(ROBOT, mode, 500.0)
    names, q = list(ROBOT.arm_joints), ROBOT.home.copy()
    t = 20.0
    for step in range(50):
        t += 0.002
        core.on_joint_state(names, q, np.zeros(7), t)
        core.update(t)
    times = t + 0.05 + np.arange(16) * 0.1
    assert core.on_chunk(Trajectory.from_absolute(names, times, np.repeat(q[None] + 0.05, 16, 0)), t) is None
    # (receipt time of a joint state on the node's clock, time of a control cycle): the node's
    # clock jumps ahead, a joint state arrives while it is there, then the clock is back
    events = [(t, t + 1000.0), (t + 1000.0, t + 1000.0), (t, t), (t + 0.002, t + 0.002), (1.0, 1.0),
              (t + 0.004, t + 0.004), (t - 500.0, t - 500.0), (t + 0.006, t + 0.006), (t + 0.008, t + 0.008)]
    for received, now in events:
        core.on_joint_state(names, q, np.zeros(7), received)
        command = core.update(now)
        if command is not None and command.values is not None:
            assert np.all(np.isfinite(command.values))
            if command.kind in ('position', 'target'):
                assert np.all(command.values >= ROBOT.limits.lower) and np.all(command.values <= ROBOT.limits.upper)
            if command.kind == 'effort':
                assert np.all(np.abs(command.values) <= ROBOT.limits.effort)


@pytest.mark.parametrize('args, message', [
    ((b'', 'rgb8', 0, 0, 0), 'no pixels'),
    ((bytes(960), 'rgb8', 10, 32, 50), 'shorter than a row'),
    ((bytes(10), 'rgb8', 10, 32, 96), 'has 10 bytes, expected 960'),
    ((bytes(960), 'yuv422', 10, 32, 96), 'unsupported image encoding'),
])
def test_bad_frames_are_refused_with_a_reason_that_says_why(args, message):
    with pytest.raises(ValueError, match=message):
        image_to_rgb(*args, size=(8, 8))
