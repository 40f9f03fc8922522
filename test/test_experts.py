"""Scripted experts and data-collection noise, ROS-free: the expert drives PandaSim through the same
ChunkController and the same chunk timing as the graph (16 x 0.1 s chunks, a new one every 0.8 s)."""
import numpy as np
import pytest

from ros2_imitation.runtime.chunking import ChunkTiming
from ros2_imitation.sim import PandaSim
from ros2_imitation.sim.experts import (
    ActionNoise,
    Path,
    PushCubeExpert,
    Waypoint,
    hand_yaw,
    make_expert,
    nearest_symmetric_yaw,
)
from ros2_imitation.sim.kinematics import down_quat
from ros2_imitation.sim.rollout import ExpertAgent, Rollout

N_SEEDS = 40


@pytest.fixture(scope='module')
def push_sim():
    s = PandaSim(task='push_cube', render=False)
    yield s
    s.close()


def run_episodes(task, seeds, timeout, noise=None, **expert_kwargs) -> list[dict]:
    """The expert through the chunk controller in-process (rollout.Rollout), as the graph runs it."""
    rollout = Rollout(task=task, render=False, control_rate=250.0)
    agent = ExpertAgent(make_expert(task, rollout.sim.model, **expert_kwargs), noise)
    results = []
    for seed in seeds:
        r = rollout.run(agent, seed, timeout)
        results.append(dict(agent.info, seed=seed, success=r.success, time=r.duration))
    return results


def test_push_cube_expert_succeeds_from_random_states_in_two_modes():
    results = run_episodes('push_cube', range(N_SEEDS), 15.0)
    successes = sum(r['success'] for r in results)
    modes = {m: sum(r['mode'] == m for r in results) for m in PushCubeExpert.MODES}
    times = [r['time'] for r in results if r['success']]
    print(f'push_cube expert: {successes}/{N_SEEDS} successes, modes {modes}, '
          f'episode time {np.mean(times):.1f} s mean, {max(times):.1f} s max')
    assert successes >= 0.95 * N_SEEDS, [r for r in results if not r['success']]
    assert all(count >= 0.25 * N_SEEDS for count in modes.values()), modes
    assert max(r['max_ik_error'] for r in results) < 0.002


def test_modes_take_different_paths(push_sim):
    """Same initial state, the two modes: the hand comes down on opposite sides of the cube."""
    sides = {}
    for mode in ('left', 'right'):
        expert = make_expert('push_cube', push_sim.model, seed=0, modes=[mode])
        push_sim.reset(3)
        expert.reset()
        state = push_sim.task_state()
        q = push_sim.joint_positions()[:7]
        chunk = expert.plan(1.0, q, state)
        waypoints = expert.waypoints(expert.tcp(q)[0], expert.tcp(q)[1], state)
        cube, goal, u, v = expert._frame(state)
        beside = next(w for w in waypoints if w.phase == 'side')
        sides[mode] = float((beside.position - cube) @ v)
        assert chunk.positions.shape == (16, 7) and np.all(np.isfinite(chunk.positions))
    assert sides['left'] > 0.04 and sides['right'] < -0.04, sides


def test_reach_expert():
    results = run_episodes('reach', range(6), 10.0)
    assert all(r['success'] for r in results), results
    assert len({r['mode'] for r in results}) >= 2


def test_noisy_execution_still_mostly_succeeds():
    """Executed = expert + smooth noise (0.015 rad), while the expert re-plans from where the arm is."""
    noise = ActionNoise(0.015, clean_fraction=0.0, seed=3)
    results = run_episodes('push_cube', range(100, 106), 15.0, noise)
    assert all(r['noisy'] for r in results)
    assert sum(r['success'] for r in results) >= 5, results


def test_chunk_timing():
    timing = ChunkTiming()
    assert (timing.size, timing.dt, timing.execute, timing.period) == (16, 0.1, 8, pytest.approx(0.8))
    times = timing.times(12.3)
    assert times[0] == pytest.approx(12.4) and np.allclose(np.diff(times), 0.1)
    with pytest.raises(ValueError):
        ChunkTiming(size=8, execute=9)


def test_action_noise_is_smooth_consistent_and_per_episode():
    noise = ActionNoise(0.02, clean_fraction=0.0, tau=0.4, dt=0.1, seed=1)
    assert noise.reset()
    t = np.arange(0, 200.0, 0.1) + 5.0
    values = noise(t)
    assert values.shape == (len(t), 7)
    assert 0.015 < values.std() < 0.025 and abs(values.mean()) < 0.005
    # correlated: neighbouring steps are close (AR(1) with exp(-0.1/0.4) = 0.78)
    lag1 = np.mean([np.corrcoef(values[:-1, j], values[1:, j])[0, 1] for j in range(7)])
    assert 0.65 < lag1 < 0.9
    # a function of time: the overlap of two chunks gets the same perturbation
    again = noise(np.array([t[100], t[100] + 0.05, t[101]]))
    assert np.allclose(again[0], values[100]) and np.allclose(again[2], values[101])
    assert np.allclose(again[1], 0.5 * (values[100] + values[101]))
    # clean episodes: zeros; the fraction is about right
    mixed = ActionNoise(0.02, clean_fraction=0.3, seed=2)
    flags = [mixed.reset() for _ in range(400)]
    assert 0.6 < np.mean(flags) < 0.8
    mixed.active = False
    assert not mixed(t[:5]).any()
    assert not ActionNoise(0.0, seed=0).reset()
    with pytest.raises(ValueError):
        ActionNoise(-0.1)


def test_yaw_helpers_and_path():
    for yaw in (-2.5, -0.3, 0.0, 1.2, 3.0):
        assert hand_yaw(down_quat(yaw)) == pytest.approx(yaw, abs=1e-9)
    assert nearest_symmetric_yaw(1.9, 0.0) == pytest.approx(1.9 - np.pi)
    assert nearest_symmetric_yaw(1.2, 0.0) == pytest.approx(1.2)
    path = Path(np.zeros(3), 0.0, [Waypoint(np.array([0.1, 0, 0]), 0.0, 0.1, 'a'),
                                   Waypoint(np.array([0.1, 0.2, 0]), 0.6, 0.1, 'b')])
    assert path.arrivals() == {'a': pytest.approx(1.0), 'b': pytest.approx(3.0)}
    pos, yaw = path.sample(2.0)
    assert np.allclose(pos, [0.1, 0.1, 0]) and yaw == pytest.approx(0.3)
    assert np.allclose(path.sample(10.0)[0], [0.1, 0.2, 0])


def test_unknown_task_or_mode():
    sim = PandaSim(task='reach', render=False)
    with pytest.raises(ValueError, match='no scripted expert'):
        make_expert('stack', sim.model)
    with pytest.raises(ValueError, match='unknown modes'):
        make_expert('reach', sim.model, modes=['sideways'])
