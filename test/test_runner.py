"""runtime.PolicyRunner, the online rules policy_node and the rollouts share: no rclpy, no torch."""
import threading

import numpy as np
import pytest

from ros2_imitation.policy.config import PolicyConfig
from ros2_imitation.runtime.runner import SEED_STRIDE, PolicyRunner

JOINTS = ['j0', 'j1']
DT = 0.1


class RecordingPolicy:
    """The policy interface the runner calls (config + predict_chunk), answering a chunk that holds
    the newest state, and remembering every call's seed and prefix."""

    def __init__(self, **config):
        self.config = PolicyConfig(image_keys=(), state_dim=2, action_dim=2, down_dims=(16, 32),
                                   horizon=8, n_action_steps=4, action_offset_steps=1, **config)
        self.calls = []

    def predict_chunk(self, obs, seed=None, prefix=None, prefix_weights=None):
        self.calls.append({'seed': seed, 'prefix': prefix, 'obs': obs})
        return np.repeat(obs['state'][-1:], self.config.horizon, axis=0)


def runner(**kw):
    policy = RecordingPolicy()
    return PolicyRunner(policy, JOINTS, DT, **{'max_obs_age': 0.25, 'seed': 3, **kw}), policy


def feed(r, t, value=0.0):
    r.add('state', t, np.array([value, -value], np.float32))


def test_a_query_is_due_first_at_once_then_every_execute_steps():
    r, policy = runner()
    assert r.poll(1.0) is None and r.waiting == 'no state yet'
    due = []
    for k in range(13):
        t = 1.0 + k * DT
        feed(r, t, k)
        q = r.poll(t)
        if q is not None:
            due.append(round(t, 3))
            r.complete(q, r.infer(q), t)
    assert due == [1.0, 1.4, 1.8, 2.2]          # execute = n_action_steps = 4 steps of 0.1 s
    assert [c['seed'] for c in policy.calls] == [3 * SEED_STRIDE + i for i in range(4)]
    # the observation is the history on the grid: To = 2 samples 0.1 s apart, newest last
    assert policy.calls[1]['obs']['state'][:, 0].tolist() == [3.0, 4.0]


def test_stale_or_missing_observations_are_rejected_with_a_reason():
    r, _ = runner()
    feed(r, 1.0)
    assert r.poll(1.5) is None and 'newest state is 0.50 s old' in r.waiting
    assert r.stats.rejected == 1
    # a stream that stops between two queries is reported, not hidden behind 'not due yet'
    feed(r, 1.1)
    q = r.poll(1.1)
    r.complete(q, r.infer(q), 1.15)
    assert r.poll(1.2) is None and r.waiting == ''
    assert r.poll(2.0) is None and 's old' in r.waiting


def test_overtaken_actions_are_dropped_and_the_rest_timestamped():
    r, _ = runner(lead=0.0)
    feed(r, 2.0, 1.0)
    q = r.poll(2.0)
    out = r.complete(q, r.infer(q), 2.25)       # inference took 250 ms
    # index i applies at t_obs + (i - (To-1) + offset) dt: 2.1, 2.2, ... ; 2.1 and 2.2 are overtaken
    assert out.dropped == 2 and out.trajectory.stamp == pytest.approx(2.3)
    assert out.latency == pytest.approx(0.25)
    out2 = r.complete(r.poll(2.0) or q, r.infer(q), 3.0)    # a chunk wholly overtaken
    assert out2.trajectory is None and 'whole chunk overtaken' in out2.reason


def test_a_reset_during_inference_discards_the_chunk_and_restarts_the_clock():
    r, _ = runner()
    feed(r, 1.0)
    q = r.poll(1.0)
    r.reset(now=1.05)
    out = r.complete(q, r.infer(q), 1.1)
    assert out.trajectory is None and 'reset' in out.reason
    feed(r, 1.02)                  # captured before the reset, still in flight: not this episode
    assert r.poll(1.1) is None
    feed(r, 1.1)
    assert r.poll(1.1) is not None  # the clock restarted: due at once


def test_a_clock_jump_does_not_poison_the_latency_estimate():
    r, _ = runner(latency=0.1)
    feed(r, 5.0)
    q = r.poll(5.0)
    out = r.complete(q, r.infer(q), 50.0)           # the clock leapt forward mid-inference
    assert 'clock jump' in out.reason and r.latency_estimate == 0.1
    feed(r, 0.2)                                     # ...and back (a sim reset): a new timeline
    q = r.poll(0.2)
    assert q is not None
    out = r.complete(q, r.infer(q), 0.1)             # done "before" it was observed
    assert 'clock jump' in out.reason and r.latency_estimate == 0.1


def test_the_latency_estimate_converges_to_the_measured_latency():
    r, _ = runner(latency=0.1)
    t, estimates = 1.0, []
    for _ in range(40):
        feed(r, t)
        q = r.poll(t)
        r.complete(q, r.infer(q), t + 0.03)
        estimates.append(r.latency_estimate)
        t += 4 * DT
    assert abs(estimates[-1] - 0.03) < 1e-3 and estimates[0] > estimates[5] > estimates[-1]
    assert np.median(r.stats.latency) == pytest.approx(0.03)


def test_inpainting_freezes_what_runs_during_the_estimated_latency():
    r, policy = runner(continuity='inpaint', latency=0.15, lead=0.0)
    feed(r, 1.0)
    q = r.poll(1.0)
    r.complete(q, r.infer(q), 1.0)
    for k in range(1, 5):
        feed(r, 1.0 + k * DT)
    q = r.poll(1.4)
    # overlap with the previous chunk, the first 0.15 s worth frozen (weight 1), then decaying
    assert q.prefix is not None and q.weights[0] == 1.0 and 0 < q.weights[-1] < 1


def test_wait_wakes_on_a_new_sample_of_the_driving_stream():
    r, _ = runner()
    assert r.wait(0.01) is False
    threading.Timer(0.05, feed, (r, 1.0)).start()
    assert r.wait(2.0) is True


def test_stats_are_summarised_while_another_thread_records():
    """policy_node's diagnostics timer summarises while the inference thread records new stages."""
    from ros2_imitation.runtime.runner import RECENT, RunnerStats
    stats, done = RunnerStats(), threading.Event()

    def record():
        for i in range(20000):
            stats.stage(f'stage{i % 50}', 0.001)
            stats.stage('latency', 0.05)
        done.set()

    threading.Thread(target=record).start()
    summaries = 0
    while not done.is_set():
        stats.summary()
        summaries += 1
    final = stats.summary()
    assert summaries > 0 and final['latency_p50_ms'] == 50.0 and final['stage49_ms'] == 1.0
    assert len(stats.latency) == RECENT


def test_a_model_is_a_folder_or_the_name_of_a_shipped_one(tmp_path, monkeypatch):
    from ros2_imitation.paths import share_dir
    from ros2_imitation.runtime.runner import model_path
    shipped = share_dir() / 'models'
    assert model_path('') == str(shipped / 'push_cube')
    assert model_path('push_cube') == str(shipped / 'push_cube')
    assert model_path(str(tmp_path)) == str(tmp_path)                 # a folder: as given
    assert model_path('no_such_model') == 'no_such_model'             # load_policy names it
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'push_cube').mkdir()                                  # a folder here wins over the name
    assert model_path('push_cube') == 'push_cube'
