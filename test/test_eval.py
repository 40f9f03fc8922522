"""sim-dataset -> train -> eval through the CLI, end to end on a tiny budget."""
import json

import numpy as np
import pytest
import yaml
import zarr

from ros2_imitation import cli
from ros2_imitation.policy import load_policy
from ros2_imitation.sim.rollout import wilson_interval


def test_dataset_train_eval_pipeline(tmp_path):
    data = tmp_path / 'push.zarr'
    assert cli.main(['sim-dataset', '--episodes', '2', '--seed', '10000', '--out', str(data)]) == 0
    root = zarr.open_group(str(data), mode='r')
    assert root['data']['image'].shape[1:] == (96, 96, 3) and root['data']['action'].shape[1] == 7
    assert root['meta'].attrs['action_time_offset_steps'] == 1
    actions, states = root['data']['action'][:], root['data']['state'][:]
    # action k is the target for t_k + dt: close to where the arm is one step later
    assert np.abs(actions[:-1] - states[1:]).mean() < 0.05
    # the end-effector streams beside them: the tip moves as the joints do, inside the table's reach
    ee = root['data']['state_ee'][:]
    assert ee.shape == (len(states), 9) and root['meta'].attrs['ee_names'][0] == 'ee_x'
    assert 0.2 < ee[:, 0].min() and ee[:, 2].min() > 0.0 and np.ptp(ee[:, :3], axis=0).max() > 0.05

    config = tmp_path / 'tiny.yaml'
    config.write_text(yaml.safe_dump({'down_dims': [32, 64], 'encoder_channels': [8, 16],
                                      'num_keypoints': 8, 'num_inference_steps': 4, 'noise_sigma': 0.05,
                                      'training': {'steps': 6, 'batch_size': 8, 'checkpoint_every': 6}}))
    out = tmp_path / 'run'
    assert cli.main(['train', '--dataset', str(data), '--config', str(config), '--out', str(out)]) == 0
    policy = load_policy(out / 'policy')
    assert policy.config.action_offset_steps == 1 and policy.config.noise_sigma == 0.05

    report = tmp_path / 'eval.json'
    assert cli.main(['eval', '--model', str(out / 'policy'), '--episodes', '2', '--timeout', '1.5',
                     '--json', str(report)]) == 0
    summary = json.loads(report.read_text())
    assert summary['episodes'] == 2 and summary['seeds'] == [0, 1]
    assert 0.0 <= summary['success_rate'] <= 1.0
    low, high = summary['ci95']
    assert low <= summary['success_rate'] <= high


def test_wilson_interval():
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    low, high = wilson_interval(40, 50)
    assert 0.66 < low < 0.7 and 0.88 < high < 0.9


def test_an_end_effector_policy_trains_and_runs_through_the_ik(tmp_path):
    """action_space ee on sim-dataset's state_ee/action_ee: train, then in-process episodes whose tip
    chunks go through the controller's IK (a chunk it refused would end the episode with an error)."""
    data = tmp_path / 'push.zarr'
    assert cli.main(['sim-dataset', '--episodes', '2', '--seed', '10010', '--out', str(data)]) == 0
    config = tmp_path / 'ee.yaml'
    config.write_text(yaml.safe_dump({'action_space': 'ee', 'state_key': 'state_ee', 'action_key': 'action_ee',
                                      'down_dims': [32, 64], 'encoder_channels': [8, 16], 'num_keypoints': 8,
                                      'num_inference_steps': 4,
                                      'training': {'steps': 6, 'batch_size': 8, 'checkpoint_every': 6}}))
    out = tmp_path / 'run'
    assert cli.main(['train', '--dataset', str(data), '--config', str(config), '--out', str(out)]) == 0
    policy = load_policy(out / 'policy')
    assert policy.config.action_space == 'ee' and policy.config.action_dim == 9 and policy.config.state_dim == 9
    report = tmp_path / 'eval.json'
    assert cli.main(['eval', '--model', str(out / 'policy'), '--episodes', '2', '--timeout', '1.5',
                     '--json', str(report)]) == 0
    assert json.loads(report.read_text())['episodes'] == 2
    # on push_t, eval reports each episode's best coverage, their mean and Diffusion Policy's score
    assert cli.main(['eval', '--model', str(out / 'policy'), '--task', 'push_t', '--episodes', '2',
                     '--timeout', '1.0', '--json', str(report)]) == 0
    summary = json.loads(report.read_text())
    assert len(summary['best_coverage']) == 2 and all(0.0 <= c < 0.95 for c in summary['best_coverage'])
    assert summary['mean_max_coverage'] == pytest.approx(np.mean(summary['best_coverage']))
    assert summary['push_t_score'] == pytest.approx(np.mean(summary['best_coverage']) / 0.95, abs=1e-4)
