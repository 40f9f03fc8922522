"""Timed action chunks: validation by the joint_trajectory_controller rules, sampling, re-timing.

ROS-free on purpose: the controller node, the MuJoCo JTC emulation and the policy node all use
these functions, and the tests run without rclpy. Times are float seconds on the node's clock.
"""
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

# Jazzy's JTC compares last-point velocities against float epsilon, not zero.
_FLOAT_EPS = float(np.finfo(np.float32).eps)
# builtin_interfaces Time/Duration carry int32 seconds.
_MAX_SEC = float(2 ** 31 - 1)


def _as_rows(values):
    """(N, J) float array, or a tuple of 1-D rows when a malformed message makes them ragged."""
    try:
        arr = np.asarray(values, dtype=float)
    except ValueError:
        return tuple(np.asarray(row, dtype=float).reshape(-1) for row in values)
    return arr if arr.ndim == 2 else tuple(np.atleast_1d(row) for row in arr)


@dataclass(frozen=True, eq=False)
class Trajectory:
    """One JointTrajectory message: stamp == 0.0 means "start when received", as in the JTC.

    Built from a message it may be malformed (ragged rows); validate() says so, and everything
    else here assumes a trajectory that validate() accepted.
    """
    joint_names: tuple
    stamp: float
    times: np.ndarray
    positions: np.ndarray
    velocities: Optional[np.ndarray] = None

    @classmethod
    def from_arrays(cls, joint_names, stamp, times, positions, velocities=None) -> 'Trajectory':
        """Per-point sequences as in the message; velocities that are empty at every point -> None."""
        vel = None
        if velocities is not None:
            rows = [np.asarray(v, dtype=float).reshape(-1) for v in velocities]
            if any(r.size for r in rows):
                vel = _as_rows(rows)
        return cls(tuple(joint_names), float(stamp), np.asarray(times, dtype=float).reshape(-1),
                   _as_rows(positions) if len(positions) else np.zeros((0, len(joint_names))), vel)

    @classmethod
    def from_absolute(cls, joint_names, abs_times, positions, velocities=None) -> 'Trajectory':
        """Stamp = time of the first point, so header.stamp is when the first action applies."""
        abs_times = np.asarray(abs_times, dtype=float).reshape(-1)
        if abs_times.size == 0 or abs_times[0] == 0.0:
            # A stamp of exactly 0 would read as "start now" (e.g. sim time before the first /clock).
            raise ValueError('from_absolute needs at least one point and a non-zero first time')
        return cls.from_arrays(joint_names, abs_times[0], abs_times - abs_times[0], positions, velocities)

    def start_time(self, now: float) -> float:
        return now if self.stamp == 0.0 else self.stamp

    def absolute_times(self, now: float) -> np.ndarray:
        return self.start_time(now) + self.times

    def reordered(self, target_joint_names: Sequence[str], fill=None) -> 'Trajectory':
        """Columns in target order; joints absent from the message hold `fill` (per target joint)."""
        target = tuple(target_joint_names)
        index = {name: i for i, name in enumerate(self.joint_names)}
        missing = [name for name in target if name not in index]
        if missing and fill is None:
            raise ValueError(f'trajectory lacks joints {missing}')
        n = len(self.times)
        pos = np.empty((n, len(target)))
        vel = None if self.velocities is None else np.zeros((n, len(target)))
        for j, name in enumerate(target):
            if name in index:
                pos[:, j] = self.positions[:, index[name]]
                if vel is not None:
                    vel[:, j] = self.velocities[:, index[name]]
            else:
                pos[:, j] = np.asarray(fill, dtype=float)[j]
        return Trajectory(target, self.stamp, self.times.copy(), pos, vel)


def short(names, n: int = 8) -> str:
    """A list for a log line: at most n items, then how many more (a message may hold thousands)."""
    names = list(names)
    return str(names[:n])[:-1] + f', ... {len(names) - n} more]' if len(names) > n else str(names)


def _field_problem(rows, n_pts: int, n_j: int, field: str, max_abs: float) -> Optional[str]:
    if len(rows) != n_pts:
        return f'{len(rows)} {field} rows for {n_pts} points'
    if isinstance(rows, np.ndarray):
        if rows.shape[1] != n_j:
            return f'points have {rows.shape[1]} {field} for {n_j} joints'
    else:
        for i, row in enumerate(rows):
            if len(row) != n_j:
                return f'point {i} has {len(row)} {field} for {n_j} joints (give all or none)'
        rows = np.asarray(rows)
    if not np.all(np.isfinite(rows)):
        return f'non-finite {field}'
    if np.any(np.abs(rows) > max_abs):
        return f'{field} beyond +-{max_abs:g}'
    return None


def validate(traj: Trajectory, controller_joints: Sequence[str], now: float, *,
             allow_partial: bool = False, allow_nonzero_end_velocity: bool = False,
             max_points: int = 10000, max_abs_value: float = 1e6) -> Optional[str]:
    """Why a joint_trajectory_controller (Jazzy defaults) would reject `traj`, or None to accept.

    Stricter than the JTC in a few sane ways: duplicate names, non-finite values, values beyond
    max_abs_value (keeps interpolation from overflowing), negative times, more than max_points,
    and velocities given at some points but not others.
    """
    names, controller = list(traj.joint_names), set(controller_joints)
    if not names:
        return 'empty joint_names'
    unknown = [n for n in names if n not in controller]
    if unknown:
        return f'unknown joints {short(unknown)} (controller has {sorted(controller)})'
    if len(set(names)) != len(names):
        return f'duplicate joint names in {short(names)}'
    missing = [n for n in controller_joints if n not in names]
    if missing and not allow_partial:
        return f'missing controller joints {missing}'
    n_pts, n_j = len(traj.times), len(names)
    if n_pts == 0:
        return 'trajectory has no points'
    if n_pts > max_points:
        return f'{n_pts} points exceed the limit of {max_points}'
    if not 0.0 <= traj.stamp < _MAX_SEC:
        return f'header.stamp {traj.stamp} is not a valid ROS time'
    times = np.asarray(traj.times, dtype=float)
    if not np.all((times >= 0.0) & (times < _MAX_SEC)):   # NaN fails both
        return f'time_from_start must be finite, >= 0 and < 2^31 s, got {times[0]} .. {times[-1]}'
    # Compared in whole nanoseconds, as rclcpp::Duration does: a float gap below 1 ns is no gap.
    bad = np.flatnonzero(np.diff(np.round(times * 1e9)) <= 0)
    if bad.size:
        i = int(bad[0])
        return f'time_from_start not strictly increasing at points {i}, {i + 1}: {times[i]} >= {times[i + 1]}'
    for field in ('positions', 'velocities'):
        rows = getattr(traj, field)
        problem = None if rows is None else _field_problem(rows, n_pts, n_j, field, max_abs_value)
        if problem:
            return problem
    if traj.stamp != 0.0 and traj.stamp + times[-1] < now:
        return f'trajectory ends in the past ({traj.stamp + times[-1]:.6f} < now {now:.6f})'
    if traj.velocities is not None and not allow_nonzero_end_velocity:
        last = np.asarray(traj.velocities[-1])
        if np.any(np.abs(last) > _FLOAT_EPS):
            return f'non-zero velocity at the last point {last.tolist()}'
    return None


def finite_difference_velocities(times: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Central differences inside, forward at the first point, zero at the last (a stop)."""
    vel = np.zeros_like(positions)
    if len(times) >= 2:
        vel[0] = (positions[1] - positions[0]) / (times[1] - times[0])
        vel[1:-1] = (positions[2:] - positions[:-2]) / (times[2:] - times[:-2])[:, None]
    return vel


class TrajectoryFollower:
    """Samples the active chunk at controller rate; replacing it never jumps the command.

    The first knot is always the command at the moment of replace(), so position (and, for
    cubic, velocity) stays continuous across chunks. Knots are kept relative to that moment:
    at ROS epoch times (~1.7e9 s) a float only resolves ~0.2 us.
    """

    def __init__(self, joint_names: Sequence[str], interpolation: str = 'linear',
                 min_segment: float = 1e-3):
        if interpolation not in ('linear', 'cubic'):
            raise ValueError(f"interpolation must be 'linear' or 'cubic', not {interpolation!r}")
        self.joint_names = tuple(joint_names)
        self.interpolation = interpolation
        # Points closer than this to `now` are dropped: a near-zero first segment is a jump.
        self.min_segment = max(float(min_segment), 1e-6)
        self.clear()

    def clear(self) -> None:
        # (origin, knot times relative to origin, (K-1, 4, J) polynomial per segment, final
        # position), swapped in one assignment so a sampling thread never sees a half update.
        self._plan = None

    @property
    def idle(self) -> bool:
        return self._plan is None

    @property
    def end_time(self) -> Optional[float]:
        return None if self._plan is None else self._plan[0] + float(self._plan[1][-1])

    def hold(self, position, now: float) -> None:
        """Stay at `position` (zero velocity) from `now` on, e.g. when the chunk stream stops."""
        q = np.asarray(position, dtype=float)
        if q.shape != (len(self.joint_names),) or not np.all(np.isfinite(q)):
            raise ValueError(f'hold position must be {len(self.joint_names)} finite values')
        self._set(now, np.zeros(1), q[None, :], None)

    def replace(self, traj: Trajectory, now: float, current_position=None, current_velocity=None) -> None:
        """Switch to a validated trajectory; current_* are used only when the follower is idle."""
        if self.idle:
            if current_position is None:
                raise ValueError('an idle follower needs current_position to start from')
            q0 = np.asarray(current_position, dtype=float)
            v0 = np.zeros_like(q0) if current_velocity is None else np.asarray(current_velocity, float)
        else:
            q0, v0 = self.sample(now)
        if q0.shape != (len(self.joint_names),) or v0.shape != q0.shape or \
                not (np.all(np.isfinite(q0)) and np.all(np.isfinite(v0))):
            raise ValueError(f'start state must be {len(self.joint_names)} finite values')
        traj = traj.reordered(self.joint_names, fill=q0)
        if not (np.all(np.isfinite(traj.positions)) and np.all(np.isfinite(traj.times))):
            raise ValueError('replace() needs a trajectory that validate() accepted')
        rel = (traj.start_time(now) - now) + traj.times
        vel = None
        if self.interpolation == 'cubic':
            vel = traj.velocities if traj.velocities is not None else \
                finite_difference_velocities(rel, traj.positions)
        keep = rel > self.min_segment
        if not keep.any():   # all at or before now: still reach the final point, over min_segment
            keep[-1] = True
            rel = rel.copy()
            rel[-1] = self.min_segment
        t = np.concatenate([[0.0], rel[keep]])
        p = np.vstack([q0, traj.positions[keep]])
        v = None if vel is None else np.vstack([v0, vel[keep]])
        distinct = np.concatenate([[True], np.diff(t) > 0])   # float ties at huge times
        self._set(now, t[distinct], p[distinct], None if v is None else v[distinct])

    def _set(self, origin, t, p, v) -> None:
        h = np.diff(t)[:, None]
        coef = np.zeros((len(t) - 1, 4, p.shape[1]))
        coef[:, 0] = p[:-1]
        if v is None:
            coef[:, 1] = (p[1:] - p[:-1]) / h
        else:   # cubic Hermite segment in power form, so sampling is one Horner evaluation
            dp = p[1:] - p[:-1]
            coef[:, 1] = v[:-1]
            coef[:, 2] = (3 * dp - h * (2 * v[:-1] + v[1:])) / h ** 2
            coef[:, 3] = (h * (v[:-1] + v[1:]) - 2 * dp) / h ** 3
        self._plan = (float(origin), t, coef, p[-1].copy())

    def sample(self, t: float):
        """(q_d, qd_d) at time t, or None when idle. Before the first knot it reads the first."""
        plan = self._plan
        if plan is None:
            return None
        origin, knots, coef, end = plan
        s = t - origin
        if not math.isfinite(s):
            raise ValueError(f'cannot sample at t={t}')
        if s >= knots[-1] or not len(coef):
            # past the end, or a hold (one knot, no segment) sampled before it was set: the clock
            # went back (a sim restarted, a bag looped); the held pose is the answer either way
            return end.copy(), np.zeros_like(end)
        k = max(int(np.searchsorted(knots, s, side='right')) - 1, 0)
        tau = max(s - knots[k], 0.0)
        c = coef[k]
        q = c[0] + tau * (c[1] + tau * (c[2] + tau * c[3]))
        qd = c[1] + tau * (2 * c[2] + tau * 3 * c[3])
        return q, qd

    def active(self, t: float) -> bool:
        return self.time_remaining(t) > 0.0

    def time_remaining(self, t: float) -> float:
        end = self.end_time
        return 0.0 if end is None else max(end - t, 0.0)


def retime_for_jtc(traj: Trajectory, now: float, min_lead: float = 0.05,
                   estimate_velocities: bool = False) -> Trajectory:
    """A copy a Jazzy JTC accepts on arrival: stamp = now + min_lead, only points after it.

    min_lead covers transport delay: a JTC that receives points already behind its clock
    starts mid-trajectory and jumps. Times are rounded to the nanoseconds a message carries.
    The last velocity is zeroed because allow_nonzero_velocity_at_trajectory_end is false by
    default. With estimate_velocities the JTC gets finite-difference velocities, hence cubic
    interpolation.
    """
    stamp = now + min_lead
    ns = np.round(((traj.start_time(now) - stamp) + traj.times) * 1e9)
    # ahead of the stamp, and still strictly increasing once rounded to whole nanoseconds
    keep = (ns > 0) & (ns > np.maximum.accumulate(np.concatenate([[0.0], ns[:-1]])))
    if keep.any():
        times, pos = ns[keep] * 1e-9, traj.positions[keep]
    else:   # everything is overdue: go to the final pose
        times, pos = np.array([max(min_lead, 1e-3)]), traj.positions[-1:]
    vel = None
    if traj.velocities is not None and keep.any():
        vel = traj.velocities[keep].copy()
    elif estimate_velocities:
        vel = finite_difference_velocities(times, pos)
    if vel is not None:
        vel[-1] = 0.0
    return Trajectory(traj.joint_names, stamp, times, pos.copy(), vel)


def drop_overtaken(times, now: float, latency: float = 0.0) -> int:
    """Index of the first action still ahead of now + latency; keep actions[k:].

    Equals len(times) when the whole chunk is overtaken. `times` must be sorted.
    """
    return int(np.searchsorted(np.asarray(times, dtype=float), now + latency, side='right'))
