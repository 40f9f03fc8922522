"""Batched closed-loop evaluation, privileged task features and noise-injected collection."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import two_camera_policy
from ros2_imitation.policy import DiffusionPolicy, PolicyConfig
from ros2_imitation.sim.evaluation import evaluate
from ros2_imitation.sim.experts import make_expert
from ros2_imitation.sim.rollout import ExpertAgent, Rollout, task_features

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def state_policy():
    import torch
    torch.manual_seed(0)
    config = PolicyConfig(image_keys=(), down_dims=(16, 32), state_dim=13, action_dim=7,
                          num_inference_steps=2, noise_sigma=0.1)
    policy = DiffusionPolicy(config)
    stats = {'state': {'min': -np.ones(13, np.float32), 'max': np.ones(13, np.float32)},
             'action': {'min': np.full(7, -0.5, np.float32), 'max': np.full(7, 0.5, np.float32)}}
    policy.set_stats(stats)
    return policy


def test_task_features_carry_object_and_goal():
    rollout = Rollout(render=False, task_features=True)
    rollout.sim.reset(3)
    state = rollout.sim.task_state()
    features = task_features(state)
    assert features.shape == (6,)
    np.testing.assert_allclose(features[:2], state['object_position'][:2])
    np.testing.assert_allclose(features[-2:], state['goal_position'][:2])
    assert rollout._observe()['state'].shape == (13,)


def test_task_features_keep_the_t_blocks_heading():
    """push_t's T is symmetric only under a full turn: its yaw enters as (cos a, sin a), so two
    poses a quarter turn apart stay apart (a cube's (cos 4a, sin 4a) would merge them)."""
    rollout = Rollout(task='push_t', render=False, task_features=True)
    rollout.sim.reset(5)
    state = rollout.sim.task_state()
    features = task_features(state)
    yaw = state['object_yaw']
    np.testing.assert_allclose(features[2:4], [np.cos(yaw), np.sin(yaw)], atol=1e-6)
    turned = task_features(dict(state, object_yaw=yaw + np.pi / 2))
    assert np.linalg.norm(turned[2:4] - features[2:4]) > 1.0
    cube = task_features({k: v for k, v in state.items() if k != 'yaw_symmetry'})
    np.testing.assert_allclose(cube[2:4], [np.cos(4 * yaw), np.sin(4 * yaw)], atol=1e-6)


def test_batched_evaluation_runs_every_seed_once_and_is_deterministic(state_policy):
    # 5 episodes through 2 slots: slots refill as episodes end
    first = evaluate(state_policy, range(5), timeout=1.0, batch=2, control_rate=100.0)
    again = evaluate(state_policy, range(5), timeout=1.0, batch=2, control_rate=100.0)
    assert first['seeds'] == [0, 1, 2, 3, 4] and first['batch'] == 2 and first['episodes'] == 5
    assert all(r.chunks >= 2 for r in first['results'])
    for a, b in zip(first['results'], again['results']):
        assert a.final_state == b.final_state
    # the arm moved: chunks were executed, not ignored
    assert any(np.abs(np.subtract(r.final_state['joint_positions'][:7],
                                  first['results'][0].history[0]['joint_positions'][:7])).max() > 1e-3
               for r in first['results'])


def test_batch_of_one_is_the_single_episode_path(state_policy):
    from ros2_imitation.sim.rollout import PolicyAgent
    single = evaluate(state_policy, [7], timeout=1.0, batch=1, control_rate=100.0)['results'][0]
    rollout = Rollout(render=False, task_features=True, control_rate=100.0)
    direct = rollout.run(PolicyAgent(state_policy, continuity='inpaint'), 7, 1.0)
    assert single.final_state == direct.final_state


class _Offset:
    """A constant perturbation in place of ActionNoise: executed = intended + 0.03 rad."""
    rng = None
    active, dof = True, 7

    def reset(self):
        return True

    def __call__(self, times):
        return np.full((len(times), 7), 0.03)

    def info(self):
        return {'noisy': True, 'action_noise': 0.03}


def test_noise_injected_collection_labels_the_intended_action():
    rollout = Rollout(render=False, control_rate=100.0)
    expert = make_expert('push_cube', rollout.sim.model)
    clean = rollout.run(ExpertAgent(expert), 10000, 3.0, record=True).data
    noisy = rollout.run(ExpertAgent(expert, _Offset()), 10000, 3.0, record=True).data
    # the arm follows what was executed; the label is what the expert meant
    lag_clean = (clean['state'][5:] - clean['action'][4:-1]).mean()
    lag_noisy = (noisy['state'][5:] - noisy['action'][4:-1]).mean()
    assert abs(lag_clean) < 0.01 and 0.02 < lag_noisy < 0.04


def test_dart_labels_are_the_experts_plan_from_the_perturbed_state():
    """labels='dart' (sim/collection.py): the same perturbed execution, but each step is labelled with
    the expert's plan from where the arm is, so the label sits as near the arm as a clean one does."""
    rollout = Rollout(render=False, control_rate=100.0)
    expert = make_expert('push_cube', rollout.sim.model)
    clean = rollout.run(ExpertAgent(expert), 10000, 3.0, record=True).data
    plan = rollout.run(ExpertAgent(expert, _Offset()), 10000, 3.0, record=True).data
    dart_agent = ExpertAgent(expert, _Offset(), labels='dart')
    dart = rollout.run(dart_agent, 10000, 3.0, record=True).data
    assert dart_agent.info['labels'] == 'dart' and len(dart['action']) == len(plan['action'])
    # what ran is the same perturbed execution: the arm is where it was with plan labels
    assert np.abs(dart['state'] - plan['state']).max() < 0.02
    gap, gap_plan, gap_clean = (np.linalg.norm(d['action'][5:] - d['state'][5:], axis=1).mean()
                                for d in (dart, plan, clean))
    # measured: 0.062 rad (dart), 0.105 (plan), 0.076 (clean) over these 3 s
    assert gap < 0.7 * gap_plan and gap < 1.1 * gap_clean, (gap, gap_plan, gap_clean)
    with pytest.raises(ValueError, match="labels='corrective' not in"):
        ExpertAgent(expert, _Offset(), labels='corrective')


def test_noise_study_pipeline(tmp_path):
    """The registered grid's pipeline on a tiny budget: datasets (clean and DART-labelled noisy),
    trainings, paired evaluations (DDIM and DDPM) and the analysis with its McNemar rows."""
    sys.path.insert(0, str(ROOT / 'bench'))
    import noise_study
    assert noise_study.main(['--quick', '--steps', '4', '--episodes', '2', '--seeds', '1', '--no-write',
                             '--work', str(tmp_path)]) == 0
    evals = sorted(p.name for p in (tmp_path / 'evals').glob('*.json'))
    # the registered arm replica + train_only under both samplers, sigma 0, and the DART arm
    assert evals == sorted(f'push_cube4_{name}.json' for name in (
        'gauss0.1_seed0_ddim10_replica', 'gauss0.1_seed0_ddim10_train_only', 'gauss0.1_seed0_ddpm100_replica',
        'gauss0.1_seed0_ddpm100_train_only', 'sigma0_seed0_ddim10_off', 'dart_sigma0_seed0_ddim10_off')), evals
    row = json.loads((tmp_path / 'evals' / 'push_cube4_gauss0.1_seed0_ddpm100_replica.json').read_text())
    assert (row['scheduler'], row['continuity'], row['noise_mode'], row['episodes']) == ('ddpm', 'replan', 'replica', 2)
    dart = json.loads((tmp_path / 'data' / 'push_cube4_dart.json').read_text())
    assert (dart['labels'], dart['noise'], dart['demos']) == ('dart', 0.03, 4)
    # a unit whose evaluations are kept is done: a rerun without the trained models trains nothing
    import shutil
    shutil.rmtree(tmp_path / 'runs')
    assert noise_study.main(['--quick', '--steps', '4', '--episodes', '2', '--seeds', '1', '--no-write',
                             '--work', str(tmp_path)]) == 0
    assert not (tmp_path / 'runs').exists()


def test_an_end_effector_pilot_learns_from_the_same_demonstrations(tmp_path):
    """noise_pilot --action-space ee: the demonstrations carry state_ee/action_ee beside the joints
    (the tip pose, then the task's features), the policy trains on them, and its evaluation feeds it
    the tip pose + features it learnt from (a joint state of another width would not run)."""
    sys.path.insert(0, str(ROOT / 'bench'))
    import noise_pilot
    import zarr
    summary = noise_pilot.pilot('push_cube', 2, steps=4, every=4, episodes=2, work=tmp_path, store=None,
                                action_space='ee')
    assert summary['action_space'] == 'ee' and [r['step'] for r in summary['curve']] == [4]
    data = zarr.open_group(str(tmp_path / 'push_cube2' / 'data.zarr'), mode='r')['data']
    # 9 tip-pose columns, then push_cube's 6 task features, the same values as in the joint state
    assert data['state_ee'].shape[1] == 15 and data['state'].shape[1] == 13 and data['action_ee'].shape[1] == 9
    assert np.allclose(data['state_ee'][:, 9:], data['state'][:, 7:])
    config = json.loads((tmp_path / 'push_cube2_ee' / 'run' / 'policy' / 'config.json').read_text())['config']
    assert (config['action_space'], config['state_key'], config['state_dim']) == ('ee', 'state_ee', 15)


def test_noise_study_statistics():
    """McNemar's exact p, Holm and the seed-level t interval against hand-computed values."""
    sys.path.insert(0, str(ROOT / 'bench'))
    from study_common import holm, paired_exact, t_interval
    # 8 discordant pairs, 1 against 7: p = 2 * (1 + 8) / 256
    a = [True] * 7 + [False] + [True] * 5
    b = [False] * 7 + [True] + [True] * 5
    assert paired_exact(a, b) == (7, 1, pytest.approx(18 / 256))
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    mean, low, high = t_interval([0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2) and high - mean == pytest.approx(4.303 * 0.1 / 3 ** 0.5)


def test_each_camera_of_a_two_camera_policy_gets_its_own_frames():
    """In-process evaluation feeds a pick_place policy the fixed camera as `image` and the wrist
    camera as `wrist_image`, as policy_node maps image_topics to image_keys (a regression: every
    image input once got the fixed camera)."""
    import torch

    from ros2_imitation.runtime.runner import policy_joint_names
    from ros2_imitation.sim.rollout import BatchPolicyAgent
    torch.manual_seed(0)
    seen = []
    policy = two_camera_policy(8, seen)
    rollout = Rollout(task='pick_place')
    episode = rollout.episode(3, 1.0)
    agent = BatchPolicyAgent(policy, 1, joint_names=policy_joint_names(rollout.robot, 8))
    agent.reset(0, 3)
    t, obs, q, state = next(episode)
    agent.act({0: (t, obs, q, state)})
    assert seen, 'the policy was not queried'
    newest = {k: v[0, -1] for k, v in seen[0].items()}
    assert np.array_equal(newest['image'], obs['image'])
    assert np.array_equal(newest['wrist_image'], obs['wrist_image'])
    assert not np.array_equal(obs['image'], obs['wrist_image'])
    np.testing.assert_allclose(newest['state'], obs['state'], rtol=1e-6)


class _NaNAgent:
    """Holds the arm where it starts, and every other query sends a chunk with a NaN in it."""

    def reset(self, seed):
        self.calls = 0

    def act(self, now, obs, q, task_state):
        self.calls += 1
        times = now + 0.1 * np.arange(1, 9)
        positions = np.tile(np.asarray(q[:7], dtype=float), (8, 1))
        if self.calls % 2 == 0:
            positions[3, 2] = np.nan
        return times, positions, None


def test_a_refused_chunk_is_counted_with_its_reason_unless_strict():
    """A learned policy's bad chunk is refused by the controller and counted, as on the robot; the
    episode goes on. A scripted expert (strict, the default) must never send one."""
    agent = _NaNAgent()
    result = Rollout(render=False, control_rate=100.0, strict=False).run(agent, 3, 2.0)
    assert result.duration >= 1.9 and len(result.rejected) == agent.calls // 2 >= 5
    assert result.chunks == agent.calls - len(result.rejected)
    assert all('finite' in reason or 'NaN' in reason for _, reason in result.rejected), result.rejected[0]
    with pytest.raises(RuntimeError, match='agent chunk rejected'):
        Rollout(render=False, control_rate=100.0).run(_NaNAgent(), 3, 2.0)
