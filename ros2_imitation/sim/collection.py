"""Noise-injected collection (ROS-free): what a scripted expert executes and what it is labelled with,
the rule of the in-process agent (rollout.ExpertAgent) that the noise study's benches use (H5). The
product no longer records this way: expert_node executes and labels the clean chunk.

The expert plans a chunk when its clock says one is due; with noise (an experts.ActionNoise) it
executes that chunk plus the noise. The label -- what the dataset's `action` is read from -- is:

- `plan`: the clean chunk the noisy one came from, until the next plan. Between plans the arm drifts
  off it by the noise, which the policy cannot observe (docs/noise_study.md, H5).
- `dart`: at every step (each call), the expert's plan from the state the arm is actually in: the
  correction from that state (DART, Laskey et al. 2017). What runs is unchanged: the noisy chunk.

Without noise (or in an episode the noise leaves clean) both are the executed chunk itself.
"""
from __future__ import annotations

import numpy as np

LABELS = ('plan', 'dart')


class NoisyCollection:
    def __init__(self, expert, noise=None, labels: str = 'plan'):
        if labels not in LABELS:
            raise ValueError(f'labels={labels!r} not in {LABELS}')
        self.expert, self.noise, self.labels = expert, noise, labels
        self.last = None        # the expert's newest Chunk (its phase, IK error)

    @property
    def noisy(self) -> bool:
        """This episode executes perturbed chunks."""
        return self.noise is not None and self.noise.active

    def reset(self, seed: int | None = None) -> dict:
        """New episode: the expert's mode and variations, the noise draw (seeded by `seed` when given);
        returns them for the episode's metadata."""
        info = dict(self.expert.reset(seed))
        if self.noise is not None:
            if seed is not None:
                self.noise.rng = np.random.default_rng(seed)   # the same perturbations for a seed
            self.noise.reset()
            info.update(self.noise.info())
        info['labels'] = self.labels if self.noisy else 'executed'
        return info

    def step(self, now: float, q, state: dict, due: bool):
        """(executed, label) at time `now` for joint positions q and the task state: executed, the
        (times, positions) to send when a chunk is `due` (else None); label, the clean Chunk the data
        is labelled with from now on (None: keep the last one; always None when not noisy)."""
        if due:
            chunk = self.last = self.expert.plan(now, q, state)
            if not self.noisy:
                return (chunk.times, chunk.positions), None
            executed = np.array(chunk.positions, dtype=float)
            executed[:, :self.noise.dof] += self.noise(chunk.times)   # the arm only: the gripper goes clean
            return (chunk.times, executed), chunk
        if self.noisy and self.labels == 'dart':
            self.last = self.expert.plan(now, q, state)
            return None, self.last
        return None, None
