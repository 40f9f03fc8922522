"""Mode `cartesian_target`: end-effector chunks become an equilibrium pose per control cycle, for an
external Cartesian impedance controller (Franka's Cartesian impedance examples, cartesian_controllers),
without IK (ROS-free).

PoseFollower samples the chunk by time: position linearly, rotation by slerp between neighbouring
points. A new chunk starts from the pose commanded now (no jump), as TrajectoryFollower does for joints.
PoseFilter is the safety layer of this mode, every cycle: a non-finite pose holds the last safe one,
the position is clamped into the workspace box, and the step from the last commanded pose is capped
at the tip's maximum linear and angular speed times the period. What it changed is counted for
/diagnostics.
"""
from __future__ import annotations

from collections import Counter
from typing import Optional

import numpy as np

from ros2_imitation.control.task_space import (
    TaskSpaceLimits,
    rotation_from_6d,
    rotation_from_vector,
    rotation_vector,
)


def slerp(r0: np.ndarray, r1: np.ndarray, a: float) -> np.ndarray:
    """The rotation a of the way from r0 to r1 (0 <= a <= 1), along the shortest arc."""
    return rotation_from_vector(a * rotation_vector(r1 @ r0.T)) @ r0


class PoseFollower:
    def __init__(self):
        self.times: Optional[np.ndarray] = None
        self.positions = self.rotations = None

    @property
    def end_time(self) -> Optional[float]:
        return None if self.times is None else float(self.times[-1])

    def hold(self, position, rotation, now: float) -> None:
        self.times = np.array([now])
        self.positions = np.asarray(position, dtype=float)[None].copy()
        self.rotations = np.asarray(rotation, dtype=float)[None].copy()

    def replace(self, abs_times, columns, now: float, current) -> None:
        """A chunk of EE_COLUMNS rows at absolute times, from the `current` (position, rotation)
        commanded now; points at or before now are dropped. A ValueError for rotations that are none."""
        rotations = rotation_from_6d(np.asarray(columns, dtype=float)[:, 3:9])
        positions = np.asarray(columns, dtype=float)[:, :3]
        later = np.asarray(abs_times, dtype=float) > now
        if not later.any():
            later[-1] = True
        self.times = np.concatenate([[now], np.asarray(abs_times, dtype=float)[later]])
        self.positions = np.concatenate([np.asarray(current[0], dtype=float)[None], positions[later]])
        self.rotations = np.concatenate([np.asarray(current[1], dtype=float)[None], rotations[later]])

    def sample(self, t: float) -> tuple:
        """(position, rotation) at t: the first point before, the last after."""
        i = int(np.searchsorted(self.times, t, side='right')) - 1
        if i < 0:
            return self.positions[0].copy(), self.rotations[0].copy()
        if i >= len(self.times) - 1:
            return self.positions[-1].copy(), self.rotations[-1].copy()
        a = (t - self.times[i]) / (self.times[i + 1] - self.times[i])
        p = self.positions[i] + a * (self.positions[i + 1] - self.positions[i])
        return p, slerp(self.rotations[i], self.rotations[i + 1], a)


class PoseFilter:
    def __init__(self, limits: TaskSpaceLimits, dt: float):
        self.limits, self.dt = limits, float(dt)
        self.counts = Counter()

    def pose(self, target: tuple, last: Optional[tuple]) -> tuple:
        """The safe (position, rotation) to command this cycle, from the target and the last command."""
        p, r = (np.asarray(v, dtype=float) for v in target)
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(r))):
            self.counts['nonfinite'] += 1
            if last is None:
                raise ValueError('no safe pose to hold: the first target is not finite')
            return last[0].copy(), last[1].copy()
        p, clamped = self.limits.workspace.clamp(p)
        if clamped:
            self.counts['workspace'] += 1
        if last is None:
            return p, r
        step = p - last[0]
        cap = self.limits.max_linear_speed * self.dt
        if np.linalg.norm(step) > cap:
            self.counts['linear_speed'] += 1
            p = last[0] + step * (cap / np.linalg.norm(step))
        turn = rotation_vector(r @ last[1].T)
        cap = self.limits.max_angular_speed * self.dt
        if np.linalg.norm(turn) > cap:
            self.counts['angular_speed'] += 1
            r = rotation_from_vector(turn * (cap / np.linalg.norm(turn))) @ last[1]
        return p, r
