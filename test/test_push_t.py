"""The push_t task (sim/push_t.py): Push-T's coverage on the table, the seeded start, the block at rest."""
import numpy as np
import pytest
from conftest import two_camera_policy

from ros2_imitation.sim.env import PandaSim
from ros2_imitation.sim.push_t import AREA, BAR, STEM, UNIT, PushT, coverage, push_t_score, t_points

TARGET = PushT.TARGET


def test_the_grid_measures_the_t_area():
    assert len(t_points()) * 1e-6 == pytest.approx(AREA, rel=1e-3)
    assert AREA == pytest.approx(7 * UNIT ** 2)
    assert (BAR[1] - BAR[0], STEM[3] - STEM[2]) == (pytest.approx(4 * UNIT), pytest.approx(3 * UNIT))


def test_coverage_is_one_on_target_and_falls_with_offset_and_turn():
    assert coverage(TARGET, TARGET) == pytest.approx(1.0)
    shifts = [coverage((TARGET[0] + d, TARGET[1], TARGET[2]), TARGET) for d in (0.002, 0.01, 0.03, 0.2)]
    assert shifts[0] > 0.9 and shifts == sorted(shifts, reverse=True) and shifts[-1] == 0.0
    # a small turn about the T's own origin; a half turn covers only where bar and stem cross
    assert 0.8 < coverage((*TARGET[:2], TARGET[2] + 0.05), TARGET) < 0.97
    assert coverage((*TARGET[:2], TARGET[2] + np.pi), TARGET) < 0.3
    # symmetric: the overlap of A on B has the same area as B on A (both Ts have the same area)
    a, b = (0.5, 0.0, 0.3), (0.51, 0.01, 0.5)
    assert coverage(a, b) == pytest.approx(coverage(b, a), abs=0.005)


def test_the_push_t_score_is_diffusion_policys_capped_best_reward():
    # gym-pusht's reward is coverage / 0.95 capped at 1; Diffusion Policy averages each episode's best
    assert push_t_score([0.95, 1.0, 0.475]) == pytest.approx((1 + 1 + 0.5) / 3)
    assert push_t_score([0.0]) == 0.0 and np.isnan(push_t_score([]))


def test_episodes_start_off_target_from_their_seed_and_the_block_rests_flat():
    sim = PandaSim('push_t', render=False)
    starts = []
    for seed in range(8):
        sim.reset(seed)
        state = sim.task_state()
        assert state['coverage'] < PushT.MAX_START_COVERAGE and not state['success'] and state['flat']
        starts.append((*state['object_position'][:2], state['object_yaw']))
    assert len({tuple(np.round(s, 4)) for s in starts}) == 8       # each seed its own start
    sim.reset(3)
    first = sim.task_state()['object_position']
    sim.step(500)                                                   # 1 s: the block does not move
    assert np.allclose(sim.task_state()['object_position'], first, atol=1e-3)
    sim.reset(3)
    assert sim.task_state()['object_position'] == first             # the seed decides the start
    sim.task.place_block(sim.data, TARGET)
    sim.step(50)
    state = sim.task_state()
    assert state['success'] and state['coverage'] > 0.99


@pytest.mark.parametrize('style', ['phased', 'reactive'])
def test_the_scripted_expert_pushes_the_t_home_from_both_ends(style):
    """The expert, in either style, solves seeds it was not tuned on (coverage >= 0.95 within the
    task's timeout), push by push, and draws both modes (the end of the bar its turning pushes prefer)."""
    from ros2_imitation.sim.experts import make_expert
    from ros2_imitation.sim.rollout import ExpertAgent, Rollout
    rollout = Rollout(task='push_t', render=False, control_rate=100.0)
    expert = make_expert('push_t', rollout.sim.model, style=style)
    assert expert.info()['style'] == style
    agent = ExpertAgent(expert)
    modes, results = set(), []
    for seed in (20001, 20002, 20003):
        result = rollout.run(agent, seed, rollout.sim.task.timeout)
        results.append((seed, result.success, result.final_state['coverage'], expert.pushes))
        assert result.best_coverage == max(h['coverage'] for h in result.history)
        assert result.best_coverage >= result.final_state['coverage']
        modes.add(expert.mode)
        assert expert.pushes >= 2
    assert sum(ok for _, ok, _, _ in results) >= 2, results
    assert all(cover > 0.85 for _, _, cover, _ in results), results


def test_the_reactive_expert_decides_from_what_it_sees_now():
    """Its chunk is a function of the arm's joints and the block's pose (and the episode's mode and
    variations): an expert that has run the episode so far and a fresh one with the same episode seed
    plan the same chunk at every probe. The phased expert remembers which push it is on, so at some
    probe the two differ: what a policy seeing only the present cannot imitate."""
    from ros2_imitation.sim.experts import make_expert
    from ros2_imitation.sim.rollout import ExpertAgent, Rollout
    seed, probes = 20002, (3.0, 6.0, 9.0, 12.0, 15.0)
    same = {}
    for style in ('phased', 'reactive'):
        rollout = Rollout(task='push_t', render=False, control_rate=100.0)
        agent = ExpertAgent(make_expert('push_t', rollout.sim.model, style=style))
        fresh = make_expert('push_t', rollout.sim.model, style=style)
        episode = rollout.episode(seed, 16.0)
        agent.reset(seed)
        request, agreed = next(episode), []
        try:
            while True:
                now, obs, q, state = request
                if probes[len(agreed)] <= now:
                    fresh.reset(seed)          # the same mode and variations, nothing else
                    ours, theirs = agent.expert.plan(now, q, state), fresh.plan(now, q, state)
                    agreed.append(bool(np.allclose(ours.positions, theirs.positions, atol=1e-9)))
                    if len(agreed) == len(probes):
                        break
                request = episode.send(agent.act(*request))
        except StopIteration:
            pass
        same[style] = agreed
    assert same['reactive'] == [True] * len(probes), same
    assert not all(same['phased']), same


def test_the_expert_plans_pushes_that_reduce_the_error_and_land_beside_the_block():
    from ros2_imitation.sim.experts_push_t import PushTExpert
    from ros2_imitation.sim.push_t import inside_t, to_frame
    sim = PandaSim(task='push_t', render=False)
    expert = PushTExpert(sim.model, seed=0)
    for seed in range(5):
        sim.reset(seed)
        state = sim.task_state()
        expert.reset(seed)
        offset, dyaw, pose = expert.errors(state)
        start, end, heading, u = expert._plan_push(state, np.array([0.3, 0.0, 0.4]), 0.0)
        assert not expert._overlaps(start[:2], u, pose)                   # comes down clear of the block
        front = np.linspace(start[:2], end[:2], 50) + expert.FACE * u       # the fingers' leading face
        assert inside_t(to_frame(front, pose)).any()                          # pushes into it
        assert abs(np.linalg.norm(u) - 1) < 1e-9 and start[2] == end[2] < 0.03


def test_the_hand_camera_can_join_push_t_data_and_its_policies(tmp_path):
    """push_t renders only the fixed camera by default; `sim-dataset --wrist-camera enabled` records the
    hand camera beside it, and evaluation turns it on for a policy with a `wrist_image` input. The
    dataset says which expert style recorded it (--expert-style)."""
    import zarr

    from ros2_imitation import cli
    from ros2_imitation.sim.evaluation import evaluate
    out = tmp_path / 'wrist.zarr'
    assert cli.main(['sim-dataset', '--task', 'push_t', '--episodes', '1', '--timeout', '0.5', '--keep-failures',
                     '--wrist-camera', 'enabled', '--expert-style', 'reactive', '--out', str(out)]) == 0
    assert zarr.open_group(str(out), mode='r')['meta'].attrs['expert_style'] == 'reactive'
    # a style the task's expert does not have: one line naming the valid ones, nothing written
    assert cli.main(['sim-dataset', '--task', 'push_cube', '--episodes', '1', '--expert-style', 'reactive',
                     '--out', str(tmp_path / 'no.zarr')]) == 2
    assert not (tmp_path / 'no.zarr').exists()
    data = zarr.open_group(str(out), mode='r')['data']
    assert data['wrist_image'].shape == data['image'].shape and data['image'].shape[0] > 0
    assert not np.array_equal(data['wrist_image'][0], data['image'][0])

    seen = []
    policy = two_camera_policy(7, seen)
    evaluate(policy, [0], task='push_t', timeout=0.3, batch=1, control_rate=100.0)
    assert seen, 'the policy was not queried'
    # its own frames, not the fixed camera's twice (what a policy gets when the hand camera is off)
    assert all(not np.array_equal(obs['wrist_image'], obs['image']) for obs in seen)
