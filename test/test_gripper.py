"""The gripper, ROS-free: whatever the chunk's width column says, the commanded width is finite, inside
the profile's range and moves at most max_speed * dt per cycle; holds never open the gripper; the arm
is commanded exactly as from the same chunk without the gripper column."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ros2_imitation.control.controller import ChunkController
from ros2_imitation.control.gripper import GripperChannel, SendGate
from ros2_imitation.control.safety import GripperFilter
from ros2_imitation.control.trajectory import Trajectory
from ros2_imitation.robot import RobotProfile

ROBOT = RobotProfile.load('panda')
SPEC = ROBOT.gripper
ARM, FINGERS = ROBOT.arm_joints, ROBOT.gripper_joints
RATE = 250.0
DT = 1.0 / RATE
STEP = SPEC.max_speed * DT
NAMES = ARM + (SPEC.command_name,)
anything = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1.0, 1.0),
                     st.floats(SPEC.width_min, SPEC.width_max))


def make(width=0.04, **kw):
    ctrl = ChunkController(ROBOT, 'position', RATE, **kw)
    joint_state(ctrl, 0.0, width)
    return ctrl


def joint_state(ctrl, t, width=0.04, q=None):
    q = ROBOT.home if q is None else q
    ctrl.on_joint_state(ARM + FINGERS, list(q) + [width / 2, width / 2], [], t)


def chunk(t0, widths, dt=0.1, names=NAMES):
    times = t0 + np.arange(len(widths)) * dt
    arm = ROBOT.home + 0.05 * np.sin(np.arange(len(widths)))[:, None]
    cols = np.column_stack([arm, widths]) if len(names) == len(ARM) + 1 else arm
    return Trajectory.from_absolute(names, times, cols)


def cycle(ctrl, t0, t1):
    """(times, arm commands, gripper widths or None) over [t0, t1)."""
    out = []
    for t in np.arange(t0, t1, DT):
        joint_state(ctrl, t)
        arm = ctrl.update(t)
        out.append((t, arm, ctrl.gripper_update(t)))
    return out


def check_widths(widths, start=None):
    prev = start
    for w in widths:
        assert w is not None and math.isfinite(w) and SPEC.width_min <= w <= SPEC.width_max
        if prev is not None:
            assert abs(w - prev) <= STEP + 1e-12
        prev = w


@settings(max_examples=150, deadline=None)
@given(st.lists(anything, min_size=1, max_size=12), st.floats(SPEC.width_min, SPEC.width_max))
def test_whatever_the_chunk_says_the_width_is_finite_in_range_and_rate_limited(widths, measured):
    ctrl = make(measured)
    assert ctrl.on_chunk(chunk(0.01, widths), 0.0) is None   # the arm columns are fine
    out = [g for _, _, g in cycle(ctrl, 0.0, 0.01 + 0.1 * len(widths) + 0.2) if g is not None]
    assert out, 'a measured width always gives a width to hold'
    check_widths(out, start=measured)


@settings(max_examples=300, deadline=None)
@given(anything, st.one_of(st.none(), st.floats(-1.0, 1.0), st.just(math.nan)))
def test_the_filter_alone_keeps_every_command_safe(target, previous):
    f = GripperFilter(SPEC, DT)
    out = f.width(target, previous)
    if out is None:
        assert previous is None or not math.isfinite(previous)
        return
    assert math.isfinite(out) and SPEC.width_min <= out <= SPEC.width_max
    if previous is not None and math.isfinite(previous):
        assert abs(out - min(max(previous, SPEC.width_min), SPEC.width_max)) <= STEP + 1e-12


def test_a_nan_in_the_gripper_column_holds_the_last_width_and_the_arm_still_runs():
    ctrl = make(0.08)
    widths = [0.08, 0.07, math.nan, math.nan, 0.06]
    assert ctrl.on_chunk(chunk(0.01, widths), 0.0) is None
    out = cycle(ctrl, 0.0, 0.5)
    g = {round(t, 4): w for t, _, w in out}
    assert g[0.2] == pytest.approx(g[0.3])           # NaN neighbours: held where it was
    assert ctrl.gripper.filter.counts['nonfinite'] > 0
    assert all(arm is not None for _, arm, _ in out)  # the arm was not refused for the gripper's NaN
    check_widths([w for _, _, w in out], start=0.08)


def test_when_chunks_stop_the_width_is_held_never_opened():
    ctrl = make(0.08)
    ctrl.on_chunk(chunk(0.01, [0.08, 0.06, 0.04, 0.02, 0.01]), 0.0)
    out = cycle(ctrl, 0.0, 4.0)      # past chunk_timeout + hold_timeout: the arm goes resting
    after = [w for t, _, w in out if t > 0.41 and w is not None]   # the chunk ended: still closing
    assert after and np.all(np.diff(after) <= 0)                 # at max speed, then held: never opens
    held = [w for t, _, w in out if t > 1.0 and w is not None]
    assert held and max(held) == min(held) == pytest.approx(0.01)
    assert ctrl.state == 'resting' and ctrl.gripper.width_cmd == pytest.approx(0.01)


def test_stop_and_reset_hold_the_gripper_and_nothing_is_sent_before_a_gripper_chunk():
    ctrl = make(0.05)
    assert all(g is None for _, _, g in cycle(ctrl, 0.0, 0.2))      # no gripper chunk yet
    ctrl.on_chunk(chunk(0.3, [0.05, 0.0, 0.0]), 0.25)
    cycle(ctrl, 0.25, 0.4)
    width = ctrl.gripper.width_cmd
    ctrl.stop(0.4)
    assert all(g is None for _, _, g in cycle(ctrl, 0.4, 0.6)) and ctrl.gripper.width_cmd == width
    ctrl.resume(0.6)
    ctrl.reset(0.6)
    assert all(g is None for _, _, g in cycle(ctrl, 0.6, 0.8))      # a new episode: until the next chunk


def test_the_arm_is_commanded_exactly_as_from_the_chunk_without_the_gripper_column():
    with_g, without = make(), make()
    widths = np.linspace(0.08, 0.0, 10)
    assert with_g.on_chunk(chunk(0.01, widths), 0.0) is None
    assert without.on_chunk(chunk(0.01, widths, names=ARM), 0.0) is None
    a, b = cycle(with_g, 0.0, 1.2), cycle(without, 0.0, 1.2)
    assert all(np.array_equal(x[1].values, y[1].values) for x, y in zip(a, b))
    assert all(g is None for _, _, g in b)


def test_a_robot_without_a_gripper_rejects_a_gripper_column_and_mode():
    arm_only = RobotProfile(**{**ROBOT.__dict__, 'gripper': None})
    ctrl = ChunkController(arm_only, 'position', RATE)
    ctrl.on_joint_state(ARM, ROBOT.home, [], 0.0)
    assert 'unknown joints' in ctrl.on_chunk(chunk(0.01, [0.04, 0.04]), 0.0)
    assert ctrl.gripper_mode == 'none'
    with pytest.raises(ValueError, match='has no gripper'):
        ChunkController(arm_only, 'position', RATE, gripper_mode='forward')


def test_the_first_command_starts_from_the_measured_width():
    channel = GripperChannel(SPEC, DT)
    channel.on_joint_state(FINGERS, [0.03, 0.03])
    channel.on_chunk([0.0, 1.0], [0.0, 0.0])
    assert channel.update(0.0) == pytest.approx(0.06 - STEP)


def test_the_send_gate_waits_for_the_deadband_or_a_settled_width_and_one_goal_at_a_time():
    gate = SendGate(deadband=0.005, one_at_a_time=True)
    assert gate.offer(0.08) == 0.08                  # the first goes at once
    assert gate.offer(0.07) is None                  # in flight: waits
    gate.done()
    assert gate.offer(0.069) == 0.069                # then the newest
    gate.done()
    assert gate.offer(0.066) is None                 # inside the deadband, still moving
    assert gate.offer(0.066) == 0.066                # settled: the final value goes
    gate.done()
    assert gate.offer(0.066) is None and gate.stats == {'gripper_sent': 3, 'gripper_waited': 1}
    gate.force()
    assert gate.offer(0.066) == 0.066                # a stop: hold here, sent whatever
