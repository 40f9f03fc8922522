"""Chunk validation (JTC rules), interpolation, chunk switching and JTC re-timing, without ROS."""
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ros2_imitation.control.trajectory import Trajectory, TrajectoryFollower, drop_overtaken, retime_for_jtc, validate

J = ('j1', 'j2', 'j3')
NOW = 1000.25
EPOCH = 1_700_000_000.25   # ROS wall time: a float resolves only ~0.24 us there


def make(stamp=NOW, times=(0.1, 0.2, 0.3), names=J, positions=None, velocities=None):
    if positions is None:
        positions = [[0.1 * (i + 1) + j for j in range(len(names))] for i in range(len(times))]
    return Trajectory.from_arrays(names, stamp, times, positions, velocities)


# ---------------------------------------------------------------- validation

def test_good_trajectory_accepted():
    assert validate(make(), J, NOW) is None
    assert validate(make(names=('j3', 'j1', 'j2')), J, NOW) is None   # any order


@pytest.mark.parametrize('traj, words', [
    (make(names=('j1', 'j2'), positions=[[0, 0]] * 3), 'missing'),
    (make(names=('j1', 'j2', 'j3', 'jx'), positions=[[0] * 4] * 3), 'unknown'),
    (make(names=('j1', 'j2', 'j2'), positions=[[0] * 3] * 3), 'duplicate'),
    (make(names=(), positions=[[], [], []]), 'empty joint_names'),
    (make(times=(), positions=[]), 'no points'),
    (make(times=(0.1, 0.3, 0.2)), 'strictly increasing'),
    (make(times=(0.1, 0.1, 0.2)), 'strictly increasing'),
    (make(times=(0.1, 0.1 + 2e-10, 0.2)), 'strictly increasing'),   # same nanosecond
    (make(times=(-0.1, 0.1, 0.2)), 'time_from_start must be'),
    (make(times=(0.1, np.inf, 0.2)), 'time_from_start must be'),
    (make(positions=[[0, 0, 0], [0, 0], [0, 0, 0]]), 'point 1 has 2 positions'),
    (make(positions=[[0, 0, 0]] * 2), '2 positions rows'),
    (make(velocities=[[0, 0, 0], [0, 0, 0, 0], [0, 0, 0]]), 'velocities'),
    (make(velocities=[[1, 1, 1], [], [0, 0, 0]]), 'give all or none'),
    (make(positions=[[0, np.nan, 0]] * 3), 'non-finite positions'),
    (make(velocities=[[0, 0, np.inf], [0] * 3, [0] * 3]), 'non-finite velocities'),
    (make(positions=[[0, 1e9, 0]] * 3), 'beyond'),
    (make(stamp=NOW - 1.0), 'past'),
    (make(stamp=np.nan), 'stamp'),
    (make(stamp=-1.0), 'stamp'),
    (make(velocities=[[0] * 3, [0] * 3, [0, 0.1, 0]]), 'non-zero velocity at the last point'),
])
def test_bad_trajectories_rejected_with_reason(traj, words):
    reason = validate(traj, J, NOW)
    assert reason is not None and words in reason, reason


def test_stamp_zero_means_now_and_end_exactly_now_is_accepted():
    assert validate(make(stamp=0.0), J, NOW) is None
    assert validate(make(stamp=0.0, times=(0.0,), positions=[[0, 0, 0]]), J, NOW) is None
    assert validate(make(stamp=NOW - 0.3), J, NOW) is None   # ends exactly now: JTC uses '<'


def test_options_partial_end_velocity_and_point_cap():
    partial = make(names=('j2',), positions=[[0.0]] * 3)
    assert validate(partial, J, NOW, allow_partial=True) is None
    moving = make(velocities=[[0] * 3, [0] * 3, [0, 0.1, 0]])
    assert validate(moving, J, NOW, allow_nonzero_end_velocity=True) is None
    assert validate(make(velocities=[[0] * 3, [0] * 3, [1e-9] * 3]), J, NOW) is None  # float eps
    n = 20
    big = make(times=np.arange(1, n + 1) * 0.01, positions=np.zeros((n, 3)))
    assert 'exceed' in validate(big, J, NOW, max_points=n - 1)


def test_reordered_maps_by_name():
    traj = make(names=('j3', 'j1', 'j2'), positions=[[3, 1, 2]] * 3, velocities=[[30, 10, 20]] * 3)
    r = traj.reordered(J)
    assert r.joint_names == J
    np.testing.assert_array_equal(r.positions, [[1, 2, 3]] * 3)
    np.testing.assert_array_equal(r.velocities, [[10, 20, 30]] * 3)
    with pytest.raises(ValueError, match='j1'):
        make(names=('j2', 'j3'), positions=[[0, 0]] * 3).reordered(J)
    filled = make(names=('j2',), positions=[[5.0]] * 3).reordered(J, fill=[7, 8, 9])
    np.testing.assert_array_equal(filled.positions, [[7, 5, 9]] * 3)


def test_chunk_timing_helpers():
    from ros2_imitation.runtime.chunking import chunk_times
    t = chunk_times(10.0, 4, 0.1, offset=1)
    np.testing.assert_allclose(t, [10.1, 10.2, 10.3, 10.4])
    assert drop_overtaken(t, now=10.0, latency=0.15) == 1   # 10.1 is overtaken
    assert drop_overtaken(t, now=10.2) == 2                 # exactly now counts as overtaken
    assert drop_overtaken(t, now=11.0) == 4
    traj = Trajectory.from_absolute(J, t, np.zeros((4, 3)))
    assert traj.stamp == 10.1 and traj.times[0] == 0.0
    np.testing.assert_allclose(traj.absolute_times(0.0), t)
    with pytest.raises(ValueError):
        Trajectory.from_absolute(J, [0.0, 0.1], np.zeros((2, 3)))


# ---------------------------------------------------------------- following

def follower_on(traj, interpolation, q0=(0.0, 0.0, 0.0), now=NOW):
    f = TrajectoryFollower(J, interpolation)
    f.replace(traj, now, current_position=q0)
    return f


def sweep(f, t0, t1, dt=1e-3):
    ts = np.arange(t0, t1, dt)
    q, qd = zip(*(f.sample(t) for t in ts))
    return ts, np.array(q), np.array(qd)


@pytest.mark.parametrize('interp', ['linear', 'cubic'])
def test_exact_at_knots_and_continuous(interp):
    traj = make(positions=[[0.1, 0.2, 0.3], [0.5, -0.2, 0.0], [0.2, 0.2, 0.2]])
    f = follower_on(traj, interp)
    q, _ = f.sample(NOW)
    np.testing.assert_allclose(q, 0.0)
    for t, p in zip(traj.times, traj.positions):
        np.testing.assert_allclose(f.sample(NOW + t)[0], p, atol=1e-9)
    _, qs, qds = sweep(f, NOW, NOW + 0.35)
    # continuous: 1 ms steps move less than peak speed * 1 ms (plus slack)
    assert np.max(np.abs(np.diff(qs, axis=0))) <= np.max(np.abs(qds)) * 1e-3 * 1.01 + 1e-9
    if interp == 'cubic':
        assert np.max(np.abs(np.diff(qds, axis=0))) < 0.5   # no velocity steps either


def test_cubic_uses_message_velocities_and_linear_uses_slopes():
    vel = [[1.0, 0, 0], [2.0, 0, 0], [0, 0, 0]]
    f = follower_on(make(velocities=vel), 'cubic')
    np.testing.assert_allclose(f.sample(NOW + 0.2)[1], vel[1], atol=1e-9)
    f = follower_on(make(positions=[[0, 0, 0], [1, 0, 0], [1, 0, 0]]), 'linear')
    np.testing.assert_allclose(f.sample(NOW + 0.15)[1], [10, 0, 0], atol=1e-9)


@pytest.mark.parametrize('interp', ['linear', 'cubic'])
def test_replacing_midway_has_no_jump(interp):
    rng = np.random.default_rng(0)
    f = follower_on(make(times=np.arange(1, 9) * 0.1, positions=rng.uniform(-1, 1, (8, 3))), interp)
    t_switch = NOW + 0.43
    before = f.sample(t_switch)
    # the new chunk started in the past and disagrees with the old one
    new = make(stamp=NOW + 0.2, times=np.arange(8) * 0.1, positions=rng.uniform(-1, 1, (8, 3)))
    f.replace(new, t_switch)
    after = f.sample(t_switch)
    np.testing.assert_allclose(after[0], before[0], atol=1e-12)
    if interp == 'cubic':
        np.testing.assert_allclose(after[1], before[1], atol=1e-9)
    # past points are skipped: the next knot is the first point after t_switch (NOW + 0.5)
    np.testing.assert_allclose(f.sample(NOW + 0.5)[0], new.positions[3], atol=1e-9)
    _, qs, _ = sweep(f, t_switch - 0.01, t_switch + 0.01, 1e-4)
    assert np.max(np.abs(np.diff(qs, axis=0))) < 0.05


def test_hold_after_end_idle_and_remaining():
    f = TrajectoryFollower(J, 'cubic')
    assert f.idle and f.sample(NOW) is None and not f.active(NOW) and f.time_remaining(NOW) == 0.0
    with pytest.raises(ValueError):
        f.replace(make(), NOW)
    f.replace(make(), NOW, current_position=[0, 0, 0])
    assert f.active(NOW + 0.1) and f.time_remaining(NOW + 0.1) == pytest.approx(0.2, abs=1e-6)
    q, qd = f.sample(NOW + 5.0)
    np.testing.assert_allclose(q, make().positions[-1])
    np.testing.assert_array_equal(qd, 0.0)
    assert not f.active(NOW + 0.31) and f.end_time == pytest.approx(NOW + 0.3)
    f.hold([1, 2, 3], NOW + 1)
    np.testing.assert_array_equal(f.sample(NOW + 1)[0], [1, 2, 3])
    with pytest.raises(ValueError):
        f.hold([np.nan, 0, 0], NOW + 1)


def test_future_stamp_partial_and_overdue_chunks():
    f = follower_on(make(stamp=NOW + 1.0, names=('j2',), positions=[[1.0]] * 3), 'linear', q0=[5, 0, 6])
    np.testing.assert_allclose(f.sample(NOW + 0.55)[0], [5, 0.5, 6])   # halfway to the first point
    # a chunk with nothing left ahead still reaches its final point, within min_segment
    f.replace(make(stamp=0.0, times=(0.0,), positions=[[9, 9, 9]]), NOW + 2)
    np.testing.assert_allclose(f.sample(NOW + 2 + f.min_segment)[0], [9, 9, 9], atol=1e-9)


def test_epoch_times_keep_sub_microsecond_knots_apart():
    # 1 us apart: distinct in a message, but rounded together if knots were absolute floats
    traj = make(stamp=EPOCH, times=(0.1, 0.100001, 0.2), positions=[[0, 0, 0], [1e-6, 0, 0], [0, 0, 0]])
    assert validate(traj, J, EPOCH) is None
    f = follower_on(traj, 'cubic', now=EPOCH)
    for t in np.linspace(EPOCH, EPOCH + 0.25, 100):
        assert np.all(np.isfinite(f.sample(t)[0]))
    np.testing.assert_allclose(f.sample(EPOCH + 0.1)[0], 0.0, atol=1e-6)   # t itself rounds ~0.2 us


def test_sample_is_cheap_enough_for_500_hz():
    n = 200
    f = follower_on(make(times=np.arange(1, n + 1) * 0.01, positions=np.zeros((n, 3))), 'cubic')
    ts = NOW + np.linspace(0, 2.0, 5000)
    start = time.perf_counter()
    for t in ts:
        f.sample(t)
    per_sample = (time.perf_counter() - start) / len(ts)
    assert per_sample < 2e-4, per_sample   # 500 Hz leaves 2 ms per cycle


# ---------------------------------------------------------------- JTC re-timing

def test_retime_for_jtc_is_accepted_and_drops_the_past():
    traj = make(stamp=NOW - 0.15, times=np.arange(6) * 0.1, positions=np.arange(18.0).reshape(6, 3),
                velocities=np.ones((6, 3)))
    out = retime_for_jtc(traj, NOW, min_lead=0.05)
    assert validate(out, J, NOW) is None
    assert out.stamp == pytest.approx(NOW + 0.05) and np.all(out.times > 0)
    np.testing.assert_array_equal(out.positions, traj.positions[3:])   # first kept point is at NOW + 0.15
    np.testing.assert_array_equal(out.velocities[-1], 0.0)
    cubic = retime_for_jtc(make(), NOW, estimate_velocities=True)
    assert validate(cubic, J, NOW) is None and cubic.velocities is not None
    overdue = retime_for_jtc(make(stamp=NOW - 5), NOW)
    assert validate(overdue, J, NOW) is None and len(overdue.times) == 1


# ---------------------------------------------------------------- properties

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def arbitrary_trajectories(draw):
    """Mostly plausible chunks, each part corrupted now and then, so both branches get exercised."""
    n = draw(st.integers(1, 8))
    good_values = st.floats(-3, 3)
    values = st.one_of(good_values, good_values, good_values, floats, st.sampled_from([1e300, -1e7]))
    if draw(st.integers(0, 3)):
        names = tuple(draw(st.permutations(J)))
    else:
        names = tuple(draw(st.lists(st.sampled_from(J + ('jx',)), min_size=1, max_size=4)))
    if draw(st.integers(0, 3)):
        times = np.cumsum(draw(hnp.arrays(float, n, elements=st.floats(1e-9, 1.0))))
    else:
        times = draw(hnp.arrays(float, n, elements=floats))
    corrupt = draw(st.integers(0, 3)) == 0
    positions = draw(hnp.arrays(float, (n, len(names)), elements=values if corrupt else good_values))
    velocities = None
    if draw(st.booleans()):
        velocities = draw(hnp.arrays(float, (n, len(names)), elements=values if corrupt else good_values))
    stamp = draw(st.one_of(st.just(0.0), st.floats(NOW - 1, NOW + 1), floats))
    return Trajectory(names, stamp, times, positions, velocities)


@settings(max_examples=300, deadline=None)
@given(arbitrary_trajectories(), st.sampled_from(['linear', 'cubic']), st.booleans())
def test_validated_trajectories_sample_finite(traj, interp, partial):
    if validate(traj, J, NOW, allow_partial=partial, allow_nonzero_end_velocity=True) is not None:
        return
    f = follower_on(traj, interp, q0=(0.1, -0.2, 0.3))
    end = f.end_time
    for t in np.linspace(NOW - 0.1, end + 0.1, 50):
        q, qd = f.sample(t)
        assert np.all(np.isfinite(q)) and np.all(np.isfinite(qd))
    if not partial:
        assert validate(retime_for_jtc(traj, NOW), J, NOW) is None
