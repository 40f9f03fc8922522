"""The safety layer: whatever comes in, commands stay finite, inside limits and rate-limited."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ros2_imitation.control.safety import SafetyFilter, Watchdog
from ros2_imitation.robot import RobotProfile

PANDA = RobotProfile.load('panda')
LIM = PANDA.limits
N = PANDA.dof
DT = 1 / 500
TOL = 1e-12


def fresh():
    return SafetyFilter(LIM, DT, PANDA.arm_joints)


def test_step_is_the_tighter_of_velocity_and_max_step():
    np.testing.assert_allclose(fresh().max_step, np.minimum(LIM.velocity * DT, LIM.max_step))
    assert np.all(SafetyFilter(LIM, 1 / 100).max_step == LIM.max_step)


def test_position_passes_small_moves_and_clamps_large_ones():
    f = fresh()
    home = PANDA.home
    target = home + 0.001
    np.testing.assert_array_equal(f.position(target, home), target)
    assert f.events == () and f.reason is None
    cmd = f.position(home + 1.0, home)
    np.testing.assert_allclose(cmd - home, f.max_step)
    assert f.events == ('step',) and 'panda_joint1' in f.reason


def test_position_nan_holds_and_huge_clamps_to_safe_range():
    f = fresh()
    home = PANDA.home
    target = home.copy()
    target[2] = np.nan
    target[0] = 1e300
    cmd = f.position(target, home)
    assert cmd[2] == home[2]
    assert cmd[0] == home[0] + f.max_step[0]
    np.testing.assert_array_equal(f.position(np.full(N, np.nan), home), home)
    assert 'nonfinite' in f.events
    near = LIM.safe_upper - 1e-4
    assert np.all(f.position(near + 1.0, near) == LIM.safe_upper)
    assert f.counts['nonfinite'] == 2 and f.counts['position'] >= 1
    f.reset_counts()
    assert not f.counts


def test_position_inside_margin_never_jumps_or_moves_outward():
    f = fresh()
    prev = LIM.lower + 0.01    # inside the margin, e.g. where the arm was at start-up
    np.testing.assert_array_equal(f.position(LIM.lower - 1.0, prev), prev)   # no outward move
    inward = f.position(PANDA.home, prev)
    assert np.all(inward > prev) and np.all(inward - prev <= f.max_step + TOL)


def test_velocity_and_effort():
    f = fresh()
    qd = np.array([100.0, -100.0, np.nan, np.inf, 0.5, 0.0, -0.1])
    out = f.velocity(qd)
    np.testing.assert_array_equal(out[:4], [LIM.velocity[0], -LIM.velocity[1], 0.0, 0.0])
    assert set(f.events) == {'nonfinite', 'velocity'}
    tau = f.effort([1e9, -1e9, np.nan, -np.inf, 1.0, 0.0, -1.0])
    np.testing.assert_array_equal(tau, [87, -87, 0, 0, 1, 0, -1])


def test_impedance_law_and_damping_only():
    f = fresh()
    q = PANDA.home
    q_d = q + 0.01
    qd = np.full(N, 0.1)
    tau = f.impedance(q_d, np.zeros(N), q, qd, PANDA.stiffness, PANDA.damping)
    expected = PANDA.stiffness * 0.01 - PANDA.damping * 0.1
    np.testing.assert_allclose(tau, np.clip(expected, -LIM.effort, LIM.effort), atol=1e-12)
    np.testing.assert_allclose(f.damping_only(qd, PANDA.damping), -PANDA.damping * 0.1, atol=1e-12)
    big = f.impedance(q + 10, np.zeros(N), q, np.zeros(N), PANDA.stiffness, PANDA.damping)
    np.testing.assert_array_equal(big, LIM.effort)
    with pytest.raises(ValueError):
        f.impedance(q, qd, q, qd, -PANDA.stiffness, PANDA.damping)
    with pytest.raises(ValueError):
        f.effort(np.zeros(N + 1))


def test_watchdog():
    w = Watchdog(0.5)
    assert w.expired(0.0) and w.age(0.0) == math.inf
    w.feed(10.0)
    assert not w.expired(10.4) and w.age(10.4) == pytest.approx(0.4)
    assert w.expired(10.6)
    assert not w.expired(9.9)         # small skew backwards is fine
    assert w.expired(0.0)             # a clock reset is not "fresh"
    w.feed(float('nan'))
    assert w.last == 10.0
    w.reset()
    assert w.expired(10.0)
    with pytest.raises(ValueError):
        Watchdog(0.0)


# ---------------------------------------------------------------- properties

anything = st.floats(allow_nan=True, allow_infinity=True)
vectors = hnp.arrays(float, N, elements=st.one_of(anything, st.floats(-4, 4)))


def inside(lo, hi):
    return hnp.arrays(float, N, elements=st.floats(0, 1)).map(lambda u: lo + u * (hi - lo))


@settings(max_examples=300, deadline=None)
@given(vectors, inside(LIM.safe_lower, LIM.safe_upper))
def test_position_from_a_safe_command_stays_safe(target, prev):
    f = fresh()
    cmd = f.position(target, prev)
    assert np.all(np.isfinite(cmd))
    assert np.all(cmd >= LIM.safe_lower) and np.all(cmd <= LIM.safe_upper)
    assert np.all(np.abs(cmd - prev) <= f.max_step + TOL)


@settings(max_examples=300, deadline=None)
@given(vectors, inside(LIM.lower, LIM.upper))
def test_position_from_inside_hard_limits_is_bounded_and_rate_limited(target, prev):
    f = fresh()
    cmd = f.position(target, prev)
    assert np.all(cmd >= LIM.lower) and np.all(cmd <= LIM.upper)
    assert np.all(np.abs(cmd - prev) <= f.max_step + TOL)


@settings(max_examples=300, deadline=None)
@given(vectors, vectors)
def test_position_with_garbage_previous_command_is_still_within_limits(target, prev):
    cmd = fresh().position(target, prev)
    assert np.all(np.isfinite(cmd)) and np.all(cmd >= LIM.lower) and np.all(cmd <= LIM.upper)


@settings(max_examples=300, deadline=None)
@given(vectors, vectors, vectors, vectors)
def test_effort_outputs_are_finite_and_bounded(q_d, qd_d, q, qd):
    f = fresh()
    for tau in (f.effort(q_d), f.impedance(q_d, qd_d, q, qd, PANDA.stiffness, PANDA.damping),
                f.damping_only(qd, PANDA.damping)):
        assert np.all(np.isfinite(tau)) and np.all(np.abs(tau) <= LIM.effort)
    qd_cmd = f.velocity(qd)
    assert np.all(np.isfinite(qd_cmd)) and np.all(np.abs(qd_cmd) <= LIM.velocity)
