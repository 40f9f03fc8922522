"""Chunk timing: when a chunk's actions apply, when the next chunk is due, and how consecutive chunks
join. ROS-free, numpy only; the one home of these rules for the policy runner, the experts, the
rollouts and the nodes.

Chunk index i applies at t_obs + (i - first + offset) * dt (first = To - 1 is the newest
observation's index, offset = the dataset's action_time_offset_steps). Indices before `first`, and
actions already overtaken by inference latency, are dropped (Diffusion Policy's real-robot rule).

Continuity between a chunk and the one before it:
  replan    the new chunk replaces the old; the controller's follower joins them without a jump
  ensemble  temporal ensembling (ACT): where chunks overlap, the executed action is a weighted
            mean of every prediction made for that time, w_i = exp(-k i) with i = 0 the oldest
  inpaint   real-time chunking for DDPM: the new chunk is denoised with its first actions held to
            the still-executing tail of the previous one (hard for those that run during the
            inference delay, then a decaying soft mask), so it continues what the arm is doing
"""
import math
from dataclasses import dataclass

import numpy as np

from ros2_imitation.control.trajectory import Trajectory, drop_overtaken

CONTINUITY = ('replan', 'ensemble', 'inpaint')


def chunk_times(t0: float, n: int, dt: float, offset: float = 0.0) -> np.ndarray:
    """Absolute times of a chunk's n actions: action i applies at t0 + (i + offset) * dt."""
    return t0 + (np.arange(n) + offset) * dt


def soft_prefix_weights(horizon: int, prefix_len: int, frozen: int) -> np.ndarray:
    """Real-time-chunking guidance weights (Black et al. 2025): 1 for the `frozen` actions that will
    run during the inference delay, then an exponential decay over the rest of the overlap with the
    previous chunk, 0 beyond it."""
    if not 0 <= frozen <= prefix_len <= horizon:
        raise ValueError(f'need 0 <= frozen ({frozen}) <= prefix_len ({prefix_len}) <= horizon ({horizon})')
    w = np.zeros(horizon, dtype=np.float32)
    w[:frozen] = 1.0
    for i in range(frozen, prefix_len):
        c = (prefix_len - i) / (prefix_len - frozen + 1)
        w[i] = c * math.expm1(c) / math.expm1(1.0)
    return w


class QueryClock:
    """The policy clock: a query is due at the first observation at or after the last query's
    observation time + `period` (execute x dt); the first query is due at once, and so is one
    whose observation is older than the last query's (the clock went back: a new timeline)."""

    def __init__(self, period: float):
        self.period = float(period)
        self.next = None

    def due(self, t_obs: float) -> bool:
        return self.next is None or t_obs >= self.next - 1e-6 or t_obs < self.next - self.period - 1e-6

    def done(self, t_obs: float) -> None:
        self.next = t_obs + self.period

    def reset(self) -> None:
        self.next = None


@dataclass(frozen=True)
class ChunkTiming:
    """A planner's clock (the scripted experts): `size` actions `dt` apart, a new chunk every
    `execute` actions, the first action `lead` seconds after the plan is made."""
    size: int = 16
    dt: float = 0.1
    execute: int = 8
    lead: float = 0.1

    def __post_init__(self):
        if self.size < 2 or not 1 <= self.execute <= self.size:
            raise ValueError(f'need size >= 2 and 1 <= execute <= size, got {self.size}, {self.execute}')
        if not (self.dt > 0 and self.lead >= 0):
            raise ValueError(f'need dt > 0 and lead >= 0, got {self.dt}, {self.lead}')

    @property
    def period(self) -> float:
        """Seconds between chunks."""
        return self.execute * self.dt

    def times(self, now: float) -> np.ndarray:
        """Absolute times of a chunk planned at `now`."""
        return chunk_times(now + self.lead, self.size, self.dt)


class ChunkScheduler:
    def __init__(self, joint_names, dt: float, first: int, offset: int = 1, continuity: str = 'inpaint',
                 lead: float = 0.02, ensemble_k: float = 0.01):
        if continuity not in CONTINUITY:
            raise ValueError(f'continuity must be one of {CONTINUITY}, got {continuity!r}')
        self.joint_names = tuple(joint_names)
        self.dt, self.first, self.offset = float(dt), int(first), int(offset)
        self.continuity, self.lead, self.ensemble_k = continuity, float(lead), float(ensemble_k)
        self.reset()

    def reset(self):
        self.previous = None      # (absolute times (N,), positions (N, A)) of the last chunk sent
        self._ensemble = []       # [(times, positions, t_made)] still covering the future

    def times(self, t_obs: float, horizon: int) -> np.ndarray:
        return chunk_times(t_obs, horizon, self.dt, self.offset - self.first)

    def prefix(self, t_obs: float, horizon: int, delay: float):
        """For inpaint: (prefix (K, A), weights (horizon,)) aligned with the new chunk, or (None, None).

        K covers the new chunk's indices whose times the previous chunk still covers; the ones due
        before the new chunk can arrive (t_obs + delay) are frozen (weight 1).
        """
        if self.continuity != 'inpaint' or self.previous is None:
            return None, None
        prev_t, prev_q = self.previous
        t_new = self.times(t_obs, horizon)
        k = int(np.searchsorted(t_new, prev_t[-1], side='right'))
        if k == 0:
            return None, None
        prefix = np.stack([np.interp(t_new[:k], prev_t, prev_q[:, j]) for j in range(prev_q.shape[1])], 1)
        frozen = min(k, int(np.searchsorted(t_new, t_obs + delay, side='right')))
        return prefix.astype(np.float32), soft_prefix_weights(horizon, k, frozen)[:k]

    def schedule(self, chunk: np.ndarray, t_obs: float, now: float) -> tuple:
        """(Trajectory or None when everything is overtaken, number of actions dropped)."""
        times = self.times(t_obs, len(chunk))[self.first:]
        positions = np.asarray(chunk, dtype=float)[self.first:]
        if self.continuity == 'ensemble':
            positions = self._ensembled(times, positions, t_obs)
        k = drop_overtaken(times, now, self.lead)
        dropped = k + self.first
        if k >= len(times):
            return None, dropped
        times, positions = times[k:], positions[k:]
        self.previous = (times, positions)
        return Trajectory.from_absolute(self.joint_names, times, positions), dropped

    def _ensembled(self, times, positions, t_obs):
        self._ensemble = [(t, q, made) for t, q, made in self._ensemble if t[-1] >= times[0]]
        self._ensemble.append((times, positions, t_obs))
        total = np.zeros_like(positions)
        weight = np.zeros((len(times), 1))
        oldest = self._ensemble[0][2]
        for t, q, made in self._ensemble:
            covered = (times >= t[0] - 1e-9) & (times <= t[-1] + 1e-9)
            w = np.exp(-self.ensemble_k * round((made - oldest) / self.dt))
            interp = np.stack([np.interp(times, t, q[:, j]) for j in range(q.shape[1])], 1)
            total[covered] += w * interp[covered]
            weight[covered] += w
        return total / weight
