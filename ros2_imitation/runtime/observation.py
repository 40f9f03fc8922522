"""Observation history on the policy-rate grid, by header.stamp (as Diffusion Policy's real env).

Streams (a camera, proprioception) arrive at their own rates with capture stamps. For the grid
times t_obs - (To-1-j) dt, j = 0..To-1, each stream contributes its latest sample stamped at or
before that time, and no older than `max_age`. Anything missing or stale is a rejection with a
reason, never a silently shifted observation.
"""
from collections import deque

import numpy as np


class ObservationError(ValueError):
    """The observation cannot be built now; the message says which stream and why."""


class ObservationBuffer:
    def __init__(self, streams, dt: float, n_obs: int, max_age: float, keep: float = 3.0):
        self.streams = tuple(streams)
        self.dt, self.n_obs, self.max_age = float(dt), int(n_obs), float(max_age)
        self._keep = float(keep)
        self._data = {s: deque() for s in self.streams}
        self._floor = -np.inf

    def add(self, stream: str, stamp: float, value: np.ndarray) -> None:
        if stamp < self._floor:
            return  # captured before the last clear (a reset): in flight, not part of this episode
        buf = self._data[stream]
        if buf and stamp <= buf[-1][0]:
            if stamp < buf[-1][0] - self._keep:   # the clock went back (a sim reset): start over
                buf.clear()
            else:
                return  # a duplicate or out-of-order sample adds nothing
        buf.append((float(stamp), value))
        while buf and buf[0][0] < stamp - self._keep:
            buf.popleft()

    def clear(self, since: float = -np.inf) -> None:
        """Forget everything, and ignore samples stamped before `since` that are still in flight."""
        self._floor = since
        for buf in self._data.values():
            buf.clear()

    def latest_stamp(self, stream: str) -> float | None:
        buf = self._data[stream]
        return buf[-1][0] if buf else None

    def history(self, t_obs: float) -> dict:
        """{stream: (To, ...) array} for the grid ending at t_obs, or ObservationError."""
        grid = t_obs - (self.n_obs - 1 - np.arange(self.n_obs)) * self.dt
        out = {}
        for stream in self.streams:
            buf = self._data[stream]
            if not buf:
                raise ObservationError(f'no {stream} received yet')
            stamps = np.fromiter((s for s, _ in buf), float, len(buf))
            idx = np.searchsorted(stamps, grid + 1e-9, side='right') - 1
            if idx[0] < 0:
                # history shorter than the window (start-up): the oldest sample stands in, as
                # training windows are padded at episode starts
                if grid[-1] < stamps[0]:
                    raise ObservationError(f'{stream}: nothing stamped at or before {t_obs:.3f}')
                idx = np.maximum(idx, 0)
            age = grid[-1] - stamps[idx[-1]]
            if age > self.max_age:
                raise ObservationError(f'{stream} is stale: newest sample {age * 1e3:.0f} ms older than '
                                       f'the observation time (max {self.max_age * 1e3:.0f} ms)')
            out[stream] = np.stack([buf[i][1] for i in idx])
        return out
