"""From a predicted chunk to a timestamped one, and how consecutive chunks join. ROS-free.

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
import numpy as np

from ros2_imitation.trajectory import Trajectory, drop_overtaken

CONTINUITY = ('replan', 'ensemble', 'inpaint')


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
        return t_obs + (np.arange(horizon) - self.first + self.offset) * self.dt

    def prefix(self, t_obs: float, horizon: int, delay: float):
        """For inpaint: (prefix (K, A), weights (horizon,)) aligned with the new chunk, or (None, None).

        K covers the new chunk's indices whose times the previous chunk still covers; the ones due
        before the new chunk can arrive (t_obs + delay) are frozen (weight 1).
        """
        if self.continuity != 'inpaint' or self.previous is None:
            return None, None
        from ros2_imitation.policy.model import soft_prefix_weights
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
