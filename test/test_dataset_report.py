"""dataset-report: report + figures, constant dimensions, and a determinism number that separates
deterministic demonstrations from noisy / multimodal ones."""
import json

import numpy as np
import pytest

from ros2_imitation import cli
from ros2_imitation.data.dataset_report import action_determinism


def reach_demos(noise=0.0, bimodal=False, episodes=10, length=50, seed=0):
    """Straight-line reaches to one goal from starts spread over a 2-D family of poses (like
    demonstrations from varied initial conditions); action = absolute joint target one step ahead."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(7, 2)) * 0.3
    home = np.linspace(-0.5, 0.5, 7)
    goal = home + np.array([0.2, -0.3, 0.1, 0.4, 0.0, -0.2, 0.3])
    side = basis[:, 0] / np.linalg.norm(basis[:, 0])
    states, actions, ends = [], [], []
    for _ in range(episodes):
        s = home + basis @ rng.uniform(-1, 1, 2)
        for _ in range(length):
            g = goal - s
            d = 0.02 * g / max(np.linalg.norm(g), 0.02)
            if bimodal:   # go around an obstacle on the left or on the right
                d = d + 0.02 * rng.choice([-1.0, 1.0]) * side
            d = d + noise * rng.normal(size=7)
            states.append(s)
            actions.append(s + d)
            s = s + d
        ends.append(len(states))
    return np.array(states, np.float32), np.array(actions, np.float32), np.array(ends)


def episode_ids(ends):
    return np.repeat(np.arange(len(ends)), np.diff(np.concatenate([[0], ends])))


def test_determinism_separates_deterministic_from_noisy_and_multimodal():
    ratios = {}
    for name, kwargs in {'deterministic': {}, 'noisy': {'noise': 0.01}, 'bimodal': {'bimodal': True}}.items():
        s, a, ends = reach_demos(**kwargs)
        ratios[name] = action_determinism(s, a, episode_ids(ends))['ratio']
    assert ratios['deterministic'] < 0.3, ratios
    assert ratios['noisy'] > 2 * ratios['deterministic'] and ratios['bimodal'] > 2 * ratios['deterministic'], ratios
    s, a, ends = reach_demos(noise=0.2)   # actions that ignore the state entirely read ~1
    assert 0.8 < action_determinism(s, a, episode_ids(ends))['ratio'] < 1.2


def test_report_writes_figures_and_flags_constant_dimension(tmp_path, capsys):
    from ros2_imitation.policy.dataset import write_replay_buffer
    s, a, ends = reach_demos(episodes=4, length=20)
    s[:, 6] = 0.785                                   # a locked joint
    a[:, 6] = 0.785
    image = np.zeros((len(s), 12, 16, 3), np.uint8)
    image[..., 0] = np.arange(len(s))[:, None, None] % 256
    path = write_replay_buffer(tmp_path / 'demo.zarr', {'state': s, 'action': a, 'image': image}, ends)
    out = tmp_path / 'report'
    assert cli.main(['dataset-report', str(path), '--out', str(out)]) == 0
    assert 'constant dimensions: state [6], action [6]' in capsys.readouterr().out
    for name in ('report.md', 'report.json', 'actions.png', 'frames.png', 'determinism.png'):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / 'report.json').read_text())
    assert summary['episodes'] == 4 and summary['steps'] == 80 and summary['outcome_unknown'] == 4
    assert summary['constant_dims'] == {'state': [6], 'action': [6]}
    assert np.isfinite(summary['determinism']['ratio'])
    md = (out / 'report.md').read_text()
    assert '**CONSTANT**' in md and 'ratio =' in md and '![determinism](determinism.png)' in md


def test_report_rejects_a_non_dataset(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError):
        from ros2_imitation.data.dataset_report import report
        report(tmp_path / 'empty')
