"""Observation history on the policy grid and chunk scheduling: ROS-free."""
import numpy as np
import pytest

from ros2_imitation.runtime.chunking import ChunkScheduler
from ros2_imitation.runtime.observation import ObservationBuffer, ObservationError

JOINTS = [f'j{i}' for i in range(3)]


def test_history_takes_latest_at_or_before_each_grid_time():
    buf = ObservationBuffer(['image', 'state'], dt=0.1, n_obs=2, max_age=0.15)
    for k in range(10):   # images at 10 Hz, state at 50 Hz, both stamped with capture time
        buf.add('image', 1.0 + 0.1 * k, np.full((2, 2, 3), k, np.uint8))
    for k in range(50):
        buf.add('state', 1.0 + 0.02 * k, np.array([k], np.float32))
    obs = buf.history(1.9)
    assert obs['image'][:, 0, 0, 0].tolist() == [8, 9]
    assert obs['state'][:, 0].tolist() == [40, 45]


def test_history_rejects_stale_and_missing_streams_with_reason():
    buf = ObservationBuffer(['image', 'state'], dt=0.1, n_obs=2, max_age=0.1)
    buf.add('image', 2.0, np.zeros(1))
    with pytest.raises(ObservationError, match='no state'):
        buf.history(2.0)
    buf.add('state', 1.5, np.zeros(1))
    with pytest.raises(ObservationError, match='state is stale: newest sample 500 ms'):
        buf.history(2.0)


def test_history_pads_at_start_and_restarts_after_clock_jump():
    buf = ObservationBuffer(['state'], dt=0.1, n_obs=3, max_age=0.2)
    buf.add('state', 5.0, np.array([1.0]))
    assert buf.history(5.0)['state'][:, 0].tolist() == [1.0, 1.0, 1.0]
    buf.add('state', 0.5, np.array([2.0]))   # the clock went back by seconds: a new timeline
    assert buf.history(0.5)['state'][:, 0].tolist() == [2.0, 2.0, 2.0]


def chunk(horizon=16, value=0.0):
    return np.full((horizon, 3), value) + np.arange(horizon)[:, None] * 0.01


def test_schedule_timestamps_and_drops_overtaken_actions():
    s = ChunkScheduler(JOINTS, dt=0.1, first=1, offset=1, continuity='replan', lead=0.0)
    traj, dropped = s.schedule(chunk(), t_obs=10.0, now=10.25)
    # index i applies at 10.0 + (i - 1 + 1) * 0.1; indices 0 (before the newest obs) and 1..2
    # (due at 10.1, 10.2, overtaken by the 0.25 s latency) are dropped
    assert dropped == 3
    assert traj.stamp == pytest.approx(10.3) and traj.times[0] == 0.0
    assert np.allclose(np.diff(traj.times), 0.1)
    assert np.allclose(traj.positions[0], chunk()[3])
    assert s.schedule(chunk(), t_obs=10.0, now=12.0)[0] is None


def test_ensemble_blends_overlapping_predictions():
    s = ChunkScheduler(JOINTS, dt=0.1, first=1, offset=1, continuity='ensemble', lead=0.0)
    s.schedule(chunk(value=0.0), 10.0, 10.0)
    traj, _ = s.schedule(chunk(value=1.0), 10.8, 10.8)
    # where both chunks predict, the result sits between them; beyond the first chunk, the new one
    overlap = traj.stamp + traj.times <= 10.0 + 15 * 0.1 + 1e-9
    assert np.all((traj.positions[overlap] > 0.05) & (traj.positions[overlap] < 1.0))
    assert np.allclose(traj.positions[~overlap], chunk(value=1.0)[1:][-(~overlap).sum():])


def test_inpaint_prefix_follows_the_previous_chunk():
    s = ChunkScheduler(JOINTS, dt=0.1, first=1, offset=1, continuity='inpaint', lead=0.0)
    assert s.prefix(10.0, 16, 0.1) == (None, None)
    s.schedule(chunk(), 10.0, 10.0)
    prefix, weights = s.prefix(10.8, 16, delay=0.15)
    t_new = 10.8 + (np.arange(16) - 1 + 1) * 0.1
    k = int(np.sum(t_new <= 10.0 + 15 * 0.1 + 1e-9))
    assert prefix.shape == (k, 3) and weights.shape == (k,)
    # prefix[i] is what the previous chunk commands at the new chunk's time i
    assert np.allclose(prefix[0], chunk()[8])   # both due at 10.8 s
    assert weights[0] == 1.0 and weights[1] == 1.0 and weights[-1] < weights[2] < 1.0
