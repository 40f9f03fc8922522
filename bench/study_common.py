"""What the noise study's scripts share (docs/noise_study.md): the control rate and timeouts, the
scripted demonstrations, the one policy recipe the pilot and every grid model train with, and the
paired statistics the analysis registers (McNemar's exact test, seed-level t intervals, Holm).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / 'results' / 'noise_study'   # committed: evals/, trains/, pilots/
CONTROL_RATE = 100.0        # Hz in the study's rollouts: the experts succeed as at 500 Hz, 3x cheaper
TASKS = ('push_cube', 'pick_place', 'push_t')
TIMEOUT = {'push_cube': 15.0}   # the earlier study's limit (docs/noise_study.md, deviation 2); others: the task's own
DEMO_SEEDS = 10000          # scripted demonstrations; noise-injected ones from 20000
PILOT_SEEDS = 100000        # the pilot's evaluation seeds, never used again
TRAIN = {'batch_size': 64, 'lr': 3e-4, 'val_fraction': 0.0}   # the pilot's and the grid's optimiser


def study_config(sigma: float = 0.0, distribution: str = 'gaussian', seed: int = 0, action_space: str = 'joint'):
    """The state policy of the pilot and of every grid model: the shipped U-Net at 64-128-256,
    horizon 16, 8 actions per chunk, DDIM-10; noise_mode is chosen at evaluation (load_policy).
    action_space ee: it sees and commands the tip pose (the dataset's state_ee/action_ee) instead of
    the arm joints, the task's features after it as before."""
    from ros2_imitation.data.ee_streams import EE_KEYS
    from ros2_imitation.policy import PolicyConfig
    keys = {'state_key': EE_KEYS['state'], 'action_key': EE_KEYS['action']} if action_space == 'ee' else {}
    return PolicyConfig(image_keys=(), down_dims=(64, 128, 256), horizon=16, n_action_steps=8,
                        noise_sigma=sigma, noise_distribution=distribution,
                        noise_mode='replica' if sigma > 0 else 'off', seed=seed, action_space=action_space, **keys)


# ---- data ----------------------------------------------------------------------------------------
def expert_demos(task: str, count: int, first_seed: int, noise: float | None = None,
                 timeout: float | None = None, label: str = '', labels: str = 'plan',
                 style: str | None = None) -> tuple[list, int]:
    """(`count` successful scripted demonstrations, state only, the tries it took), from `first_seed`
    on, at the study's control rate; `noise`: the expert's actions perturbed by smooth noise of that
    std (rad), labelled as `labels` says (sim/collection.py: plan or dart); style: the expert's
    (default its first, sim/expert_base.ScriptedExpert.STYLES)."""
    from tqdm import tqdm

    from ros2_imitation.sim.experts import ActionNoise, make_expert
    from ros2_imitation.sim.rollout import ExpertAgent, Rollout
    from ros2_imitation.sim.tasks import episode_timeout
    rollout = Rollout(task=task, render=False, task_features=True, control_rate=CONTROL_RATE)
    agent = ExpertAgent(make_expert(task, rollout.sim.model, style=style), ActionNoise(std=noise) if noise else None, labels)
    episodes, seed = [], first_seed
    with tqdm(total=count, desc=f'{label or task} demos', unit='demo') as bar:
        while len(episodes) < count:
            result = rollout.run(agent, seed, episode_timeout(task, timeout), record=True)
            seed += 1
            if result.success:
                episodes.append({k: v for k, v in result.data.items() if k != 'image'})
                bar.update(1)
    return episodes, seed - first_seed


def make_dataset(path: Path, task: str, demos: int, first_seed: int = DEMO_SEEDS,
                 noise: float | None = None, labels: str = 'plan', style: str | None = None) -> dict:
    """`demos` successful scripted demonstrations at `path` (kept: a second call reads it back);
    returns the expert's own figures, also kept beside it as <path>.json."""
    from ros2_imitation.policy.dataset import write_episodes
    meta = Path(path).with_suffix('.json')
    if Path(path).exists() and meta.exists():
        return json.loads(meta.read_text())
    episodes, tries = expert_demos(task, demos, first_seed, noise, TIMEOUT.get(task), labels=labels, style=style)
    write_episodes(path, with_ee_streams(episodes), overwrite=True)
    info = {'demos': demos, 'expert_tries': tries, 'expert_success': demos / tries,
            'frames': int(sum(len(e['action']) for e in episodes)), 'first_seed': first_seed,
            'noise': noise, 'labels': labels if noise else None, 'style': style}
    meta.write_text(json.dumps(info))
    return info


def with_ee_streams(episodes: list) -> list:
    """The episodes with state_ee/action_ee beside their joint streams (data/ee_streams.py: the tip pose
    by forward kinematics, the task's features and the gripper after it), so that the same
    demonstrations train a joint or an end-effector policy. The URDF is read once."""
    from ros2_imitation.control.kinematics import ArmKinematics
    from ros2_imitation.data.ee_streams import ee_streams
    from ros2_imitation.robot import RobotProfile
    robot = RobotProfile.load('panda')
    kinematics = ArmKinematics.for_robot(robot)
    return [{**e, **ee_streams(e, robot, kinematics)} for e in episodes]


# ---- statistics ------------------------------------------------------------------------------------
# Student t quantiles by degrees of freedom (1-10), two-sided 95 % and one-sided 80 % (power)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)
T80 = (1.376, 1.061, 0.978, 0.941, 0.920, 0.906, 0.896, 0.889, 0.883, 0.879)


def _t(table, df: int) -> float:
    return table[df - 1] if df <= len(table) else (1.96 if table is T975 else 0.842)


def paired_exact(a: list, b: list) -> tuple:
    """(pairs where a > b, pairs where b > a, two-sided exact binomial p), ties dropped: McNemar's
    exact test on paired successes (True > False), the sign test on paired numbers."""
    wins_a = sum(x > y for x, y in zip(a, b))
    wins_b = sum(y > x for x, y in zip(a, b))
    n, k = wins_a + wins_b, min(wins_a, wins_b)
    p = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
    return wins_a, wins_b, p


def t_interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the 95 % t interval of the mean over a few values (training seeds);
    one value gives an interval of nan."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float('nan'), float('nan')
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = _t(T975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [1.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def detectable_effect(discordant: float, pairs: int, seed_sd: float, seeds: int) -> tuple[float, float]:
    """The smallest success difference detected with 80 % power at alpha 0.05: from McNemar's
    discordant share over `pairs` paired episodes, and from the seed-level SD of the paired
    difference over `seeds` training seeds (a paired t test)."""
    from_pairs = 2.8 * math.sqrt(discordant / pairs) if pairs else float('nan')
    from_seeds = ((_t(T975, seeds - 1) + _t(T80, seeds - 1)) * seed_sd / math.sqrt(seeds)
                  if seeds > 1 else float('nan'))
    return from_pairs, from_seeds
