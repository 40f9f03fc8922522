"""The one safety layer between any policy output and the arm, plus a generic staleness watchdog.

Every output mode (position, effort/impedance, velocity, JTC passthrough) goes through
SafetyFilter, so a NaN from a policy with bad normalization stats, or an absurd step, never
reaches the robot. Whatever comes in, what goes out is finite and inside the limits.
ROS-free so it is tested without rclpy.
"""
import math
from collections import Counter
from typing import Optional, Sequence

import numpy as np

from ros2_imitation.control.gripper_spec import GripperSpec
from ros2_imitation.robot import JointLimits


class SafetyFilter:
    """Clamps commands to the robot profile's limits and counts what it had to change.

    After each call, `events` lists what was clamped in that call ('nonfinite', 'position',
    'step', 'velocity', 'effort') and `reason` describes it for a log line (None when nothing
    was); `counts` accumulates them for /diagnostics.
    """

    def __init__(self, limits: JointLimits, dt: float, joint_names: Optional[Sequence[str]] = None):
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f'dt must be a positive period in seconds, got {dt}')
        self.limits = limits
        self.dt = float(dt)
        n = len(limits.lower)
        self.joint_names = tuple(joint_names) if joint_names else tuple(f'joint{i}' for i in range(n))
        # Both caps apply: the velocity limit at this rate, and the profile's absolute step.
        self.max_step = np.minimum(limits.velocity * self.dt, limits.max_step)
        self.counts = Counter()
        self.events: tuple = ()
        self.reason: Optional[str] = None

    def _vector(self, x) -> np.ndarray:
        x = np.array(x, dtype=float).reshape(-1)
        if x.shape != self.limits.lower.shape:
            raise ValueError(f'expected {self.limits.lower.size} values, got {x.size}')
        return x

    def _note(self, found: dict) -> None:
        """found: kind -> boolean mask of joints affected in this call."""
        hits = {kind: np.flatnonzero(mask) for kind, mask in found.items() if np.any(mask)}
        self.events = tuple(hits)
        self.counts.update(hits.keys())
        self.reason = '; '.join(
            f"{kind} clamped on {', '.join(self.joint_names[i] for i in idx)}"
            for kind, idx in hits.items()) or None

    def position(self, q_target, q_prev_cmd) -> np.ndarray:
        """Next position command: finite, inside the limits, at most max_step from q_prev_cmd.

        Non-finite targets hold the previous command. A previous command that sits inside the
        margin (e.g. the arm started there) may stay or move inward, but is not yanked into the
        safe range in one cycle: that would be a step far beyond max_step.
        """
        lim = self.limits
        target, prev = self._vector(q_target), self._vector(q_prev_cmd)
        bad_prev = ~np.isfinite(prev)
        # No sane previous command: fall back to the nearest safe value (counts as non-finite).
        prev = np.where(bad_prev, np.clip(np.nan_to_num(prev, nan=0.0), lim.safe_lower, lim.safe_upper), prev)
        prev = np.clip(prev, lim.lower, lim.upper)
        nonfinite = ~np.isfinite(target) | bad_prev
        target = np.where(np.isfinite(target), target, prev)
        lo, hi = np.minimum(lim.safe_lower, prev), np.maximum(lim.safe_upper, prev)
        bounded = np.clip(target, lo, hi)
        delta = bounded - prev
        # Where no step clamp is needed take `bounded` itself: prev + delta may round past a limit.
        cmd = np.where(np.abs(delta) <= self.max_step, bounded, prev + np.sign(delta) * self.max_step)
        self._note({'nonfinite': nonfinite, 'position': bounded != target, 'step': cmd != bounded})
        return cmd

    def velocity(self, qd) -> np.ndarray:
        """Velocity command within +-velocity limit; non-finite entries become 0."""
        qd = self._vector(qd)
        nonfinite = ~np.isfinite(qd)
        qd[nonfinite] = 0.0
        out = np.clip(qd, -self.limits.velocity, self.limits.velocity)
        self._note({'nonfinite': nonfinite, 'velocity': out != qd})
        return out

    def effort(self, tau) -> np.ndarray:
        """Torque command within +-effort limit; non-finite entries become 0 (no torque)."""
        tau = self._vector(tau)
        nonfinite = ~np.isfinite(tau)
        tau[nonfinite] = 0.0
        out = np.clip(tau, -self.limits.effort, self.limits.effort)
        self._note({'nonfinite': nonfinite, 'effort': out != tau})
        return out

    def impedance(self, q_d, qd_d, q, qd, stiffness, damping) -> np.ndarray:
        """Joint impedance tau = K (q_d - q) + D (qd_d - qd), then effort().

        Feed q_d from position() first: the torque law itself does not keep q_d in the limits.
        """
        k, d = self._gains(stiffness), self._gains(damping)
        with np.errstate(over='ignore', invalid='ignore'):
            tau = k * (self._vector(q_d) - self._vector(q)) + d * (self._vector(qd_d) - self._vector(qd))
        return self.effort(tau)

    def damping_only(self, qd, damping) -> np.ndarray:
        """tau = -D qd: the watchdog's hold-with-damping state (brakes motion, no target)."""
        with np.errstate(over='ignore', invalid='ignore'):
            tau = -self._gains(damping) * self._vector(qd)
        return self.effort(tau)

    def _gains(self, gains) -> np.ndarray:
        g = self._vector(gains)
        # Negative or NaN gains would turn the controller into an energy source.
        if not np.all(g >= 0) or not np.all(np.isfinite(g)):
            raise ValueError(f'gains must be finite and >= 0, got {g.tolist()}')
        return g

    def reset_counts(self) -> None:
        self.counts.clear()


class GripperFilter:
    """The gripper's width command (metres, robot.py's convention): finite, inside the profile's
    width range, and at most max_speed * dt from the previous command, whatever the chunk said.

    Like SafetyFilter, `events` / `reason` describe the last call ('nonfinite', 'range', 'rate')
    and `counts` accumulates them for /diagnostics.
    """

    def __init__(self, spec: GripperSpec, dt: float):
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f'dt must be a positive period in seconds, got {dt}')
        self.spec = spec
        self.lower, self.upper = spec.width_min, spec.width_max
        self.max_step = spec.max_speed * dt
        self.counts = Counter()
        self.events: tuple = ()
        self.reason: Optional[str] = None

    def width(self, target: float, previous: Optional[float]) -> Optional[float]:
        """The next width command. A non-finite target holds the previous command (and with no
        previous one there is nothing to command: None). A previous command outside the range
        (a measured width a little past it) is taken at the nearest limit."""
        events = []
        target = float(target)
        prev = None if previous is None or not math.isfinite(previous) else \
            min(max(float(previous), self.lower), self.upper)
        if not math.isfinite(target):
            events.append('nonfinite')
            target = prev
        if target is not None:
            bounded = min(max(target, self.lower), self.upper)
            if bounded != target:
                events.append('range')
            target = bounded
            if prev is not None and abs(target - prev) > self.max_step:
                events.append('rate')
                target = prev + math.copysign(self.max_step, target - prev)
        self.events = tuple(events)
        self.counts.update(events)
        self.reason = f"gripper {', '.join(events)} clamped" if events else None
        return target


class Watchdog:
    """Says when something fed periodically (chunks, joint states, images) has gone stale.

    Times are seconds on one clock of the caller's choosing. A clock that jumps back by more
    than the timeout (a sim reset) counts as stale until the next feed.
    """

    def __init__(self, timeout_s: float):
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f'timeout_s must be positive, got {timeout_s}')
        self.timeout_s = float(timeout_s)
        self.last: Optional[float] = None

    def feed(self, t: float) -> None:
        if math.isfinite(t):
            self.last = float(t)

    def reset(self) -> None:
        self.last = None

    def age(self, t: float) -> float:
        """Seconds since the last feed; inf when never fed."""
        return math.inf if self.last is None else t - self.last

    def expired(self, t: float) -> bool:
        age = self.age(t)
        return not (-self.timeout_s <= age <= self.timeout_s)
