"""Joint states -> the policy's proprioception, without ROS.

`ProprioTracker` takes /joint_states messages as plain values (stamp, names, positions, ...):

* maps joints by name into the configured order (arm joints then gripper joints): publishers do
  not guarantee any order, and may publish more joints than the policy uses;
* drops, with a reason, messages that lack a configured joint, have non-finite positions, or are
  malformed: the last good sample (with its own, older stamp) stays current until it is stale;
* uses the message's velocities where they are given and finite, and otherwise estimates them by
  finite differences of the source stamps, lightly low-pass filtered;
* says when the input is stale (no message for `stale_timeout` seconds of the caller's clock).

All times are seconds on the caller's clock (the node's ROS clock, so sim time works).

`gripper_width_sample` turns a sample of arm + finger joints into what a gripper policy sees
(robot.py's convention): the arm joints then ONE value, the finger-to-finger opening in metres.
"""
import math
from collections import deque
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ros2_imitation.control.gripper_spec import fingers_to_width

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = {OK: 'OK', WARN: 'WARN', ERROR: 'ERROR'}


class MappingError(ValueError):
    """A message cannot be mapped onto the configured joints; the text says why, `kind` what."""

    def __init__(self, message: str, kind: str = 'malformed'):
        super().__init__(message)
        self.kind = kind


def _names(names) -> str:
    """For a log line: at most 12 names, then how many more (a message may carry thousands)."""
    names = [str(n) for n in names]
    return str(names[:12])[:-1] + f', ... {len(names) - 12} more]' if len(names) > 12 else str(names)


class JointMapper:
    """Indices that put a message's values into the configured joint order."""

    def __init__(self, joints: Sequence[str]):
        joints = tuple(str(j) for j in joints)
        if not joints:
            raise ValueError('no joints configured')
        dupes = sorted({j for j in joints if joints.count(j) > 1})
        if dupes:
            raise ValueError(f'joints configured twice: {dupes}')
        if any(not j for j in joints):
            raise ValueError(f'empty joint name in {list(joints)}')
        self.joints = joints
        self._cache = {}

    def indices(self, names: Sequence[str]) -> np.ndarray:
        key = tuple(names)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        where = {}
        for i, name in enumerate(key):
            if name in where:
                raise MappingError(f'joint {name!r} appears twice in the message')
            where[name] = i
        missing = [j for j in self.joints if j not in where]
        if missing:
            raise MappingError(f'missing joints {missing} (message has {_names(key)})', 'missing')
        idx = np.array([where[j] for j in self.joints], dtype=int)
        if len(self._cache) > 16:   # a publisher that changes its name list all the time
            self._cache.clear()
        self._cache[key] = idx
        return idx

    def map(self, names: Sequence[str], values: Sequence[float]) -> np.ndarray:
        if len(values) != len(names):
            raise MappingError(f'{len(values)} values for {len(names)} joint names')
        return np.asarray(values, dtype=float)[self.indices(names)]


class VelocityEstimator:
    """Finite differences of positions over source stamps, low-pass filtered (time constant tau).

    `update` returns None until it has two samples, after a stamp going backwards (a replayed bag,
    a sim reset) and after a gap longer than `max_gap`: those restart the estimate.
    """

    def __init__(self, tau: float = 0.01, max_gap: float = 0.5):
        if not (tau >= 0 and math.isfinite(tau)):
            raise ValueError(f'velocity filter time constant must be >= 0, got {tau}')
        self.tau = float(tau)
        self.max_gap = float(max_gap)
        self.reset()

    def reset(self):
        self._t = None
        self._q = None
        self._v = None

    def update(self, t: float, q: np.ndarray) -> Optional[np.ndarray]:
        q = np.asarray(q, dtype=float)
        if self._t is None or t < self._t or t - self._t > self.max_gap or q.shape != self._q.shape:
            self._t, self._q, self._v = t, q.copy(), None
            return None
        dt = t - self._t
        if dt == 0.0:                       # the same sample again: nothing new to learn
            return None if self._v is None else self._v.copy()
        raw = (q - self._q) / dt
        if self._v is None or self.tau == 0.0:
            self._v = raw
        else:
            alpha = dt / (self.tau + dt)
            self._v = self._v + alpha * (raw - self._v)
        self._t, self._q = t, q.copy()
        return self._v.copy()


class RateMeter:
    """Events per second over a sliding window."""

    def __init__(self, window: float = 2.0):
        self.window = float(window)
        self._times = deque()

    def tick(self, t: float):
        self._times.append(t)
        self._trim(t)

    def _trim(self, now: float):
        while self._times and (self._times[0] < now - self.window or self._times[0] > now):
            self._times.popleft()

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], self._times[-1] - self._times[0])
        return (len(self._times) - 1) / span if span > 0 else 0.0


@dataclass
class ProprioSample:
    stamp: float                  # source header stamp (seconds)
    position: np.ndarray          # configured joint order
    velocity: np.ndarray
    effort: Optional[np.ndarray]  # None unless the source gave finite efforts for every joint
    estimated: np.ndarray         # bool per joint: velocity came from finite differences
    tag: object = None            # whatever the caller passed along (the node: the source header)


class ProprioTracker:
    def __init__(self, arm_joints: Sequence[str], gripper_joints: Sequence[str] = (),
                 stale_timeout: float = 0.25, velocity_filter_tau: float = 0.01):
        if not (stale_timeout > 0 and math.isfinite(stale_timeout)):
            raise ValueError(f'stale_timeout must be > 0 s, got {stale_timeout}')
        self.arm_joints = tuple(arm_joints)
        self.gripper_joints = tuple(gripper_joints)
        self.mapper = JointMapper(self.arm_joints + self.gripper_joints)
        self.stale_timeout = float(stale_timeout)
        self.velocity = VelocityEstimator(velocity_filter_tau, max_gap=stale_timeout)
        self.input_rate = RateMeter()
        self.latest: Optional[ProprioSample] = None
        self.last_receipt = None      # any message
        self.last_good = None         # last accepted message
        self.reason: Optional[str] = None
        self.reason_kind: Optional[str] = None   # 'missing', 'non-finite' or 'malformed'
        self.received = 0
        self.rejected = 0
        self.waiting_for_velocity = False

    @property
    def joints(self) -> tuple:
        return self.mapper.joints

    def update(self, stamp: float, now: float, names: Sequence[str], position: Sequence[float],
               velocity: Sequence[float] = (), effort: Sequence[float] = (), tag=None) -> Optional[str]:
        """Take one joint-state message received at `now`. Returns None if it was accepted (see
        `latest`), else the reason it was rejected. `tag` is kept with the sample."""
        self.received += 1
        self.last_receipt = now
        self.input_rate.tick(now)
        names = tuple(names)
        try:
            q = self.mapper.map(names, position)
            for what, values in (('velocities', velocity), ('efforts', effort)):
                if len(values) not in (0, len(names)):
                    raise MappingError(f'{len(values)} {what} for {len(names)} joint names')
        except MappingError as exc:
            return self._reject(str(exc), exc.kind)
        bad = ~np.isfinite(q)
        if bad.any():
            return self._reject('non-finite position: ' + ', '.join(
                f'{j}={q[i]}' for i, j in enumerate(self.joints) if bad[i]), 'non-finite')
        idx = self.mapper.indices(names)
        given = np.asarray(velocity, dtype=float)[idx] if len(velocity) else np.full(len(q), np.nan)
        use_given = np.isfinite(given)
        # source stamp when there is one; an unstamped publisher gets the receipt time
        t = stamp if stamp > 0 else now
        estimate = self.velocity.update(t, q)
        if not use_given.all() and estimate is None:
            self.latest = None
            self.waiting_for_velocity = True
            self.reason = None
            return None
        v = np.where(use_given, given, estimate if estimate is not None else 0.0)
        e = None
        if len(effort):
            e = np.asarray(effort, dtype=float)[idx]
            if not np.all(np.isfinite(e)):
                e = None
        self.latest = ProprioSample(stamp=stamp, position=q, velocity=v, effort=e, estimated=~use_given,
                                    tag=tag)
        self.last_good = now
        self.reason = None
        self.waiting_for_velocity = False
        return None

    def _reject(self, reason: str, kind: str) -> str:
        self.rejected += 1
        self.reason = reason
        self.reason_kind = kind
        self.waiting_for_velocity = False
        return reason

    def age(self, now: float) -> Optional[float]:
        return None if self.last_receipt is None else now - self.last_receipt

    def stale(self, now: float) -> bool:
        return self.last_receipt is None or now - self.last_receipt > self.stale_timeout

    def current(self, now: float) -> Optional[ProprioSample]:
        """The last good sample, or None when it is older than stale_timeout or there is none yet."""
        if self.latest is None or self.last_good is None or now - self.last_good > self.stale_timeout:
            return None
        return self.latest

    def status(self, now: float) -> tuple:
        """(level, message) for diagnostics."""
        if self.last_receipt is None:
            return WARN, 'no joint state received yet'
        age = now - self.last_receipt
        if age > self.stale_timeout:
            return ERROR, f'stale: no joint state for {age:.2f} s (stale_timeout {self.stale_timeout:g} s)'
        if self.reason:
            return ERROR, f'rejecting joint states: {self.reason}'
        if self.waiting_for_velocity:
            return WARN, 'waiting for a second joint state to estimate velocities'
        return OK, 'OK'


def gripper_width_sample(sample: ProprioSample, n_arm: int, spec) -> ProprioSample:
    """The arm joints of `sample` then the gripper opening (m) from its finger joints (the columns
    after the first n_arm): control/gripper_spec.fingers_to_width, the rule the controller
    and bag2dataset measure it with. Velocity: d(width)/dt likewise; effort:
    the fingers' mean. The sample was accepted whole, so the fingers are finite and fresh."""
    def column(values, scale_only=False):
        width = fingers_to_width(values[n_arm:], spec.joint_scale) if scale_only else \
            spec.width_from_fingers(values[n_arm:])
        return np.append(values[:n_arm], width)
    effort = None if sample.effort is None else np.append(sample.effort[:n_arm], np.mean(sample.effort[n_arm:]))
    return ProprioSample(stamp=sample.stamp, position=column(sample.position),
                         velocity=column(sample.velocity, scale_only=True), effort=effort,
                         estimated=np.append(sample.estimated[:n_arm], sample.estimated[n_arm:].any()),
                         tag=sample.tag)


def ee_pose_sample(sample: ProprioSample, kinematics) -> ProprioSample:
    """What an end-effector policy sees: the arm columns of `sample` (the first kinematics.dof) become
    the tip pose as control/ee_chunk.EE_COLUMNS (position in the base frame + 6D rotation), the
    columns after them (the gripper opening) are kept. Velocity: the tip's linear velocity and the
    rate of the two rotation columns (omega x column), from the Jacobian; effort: dropped."""
    from ros2_imitation.control.ee_chunk import ee_columns
    n = kinematics.dof
    q, qd = sample.position[:n], sample.velocity[:n]
    p, r = kinematics.tip_pose(q)
    twist = kinematics.tip_jacobian(q) @ qd
    omega = twist[3:]
    pose = ee_columns(p[None], r[None])[0]
    rate = np.concatenate([twist[:3], np.cross(omega, r[:, 0]), np.cross(omega, r[:, 1])])
    estimated = bool(sample.estimated[:n].any())
    return ProprioSample(stamp=sample.stamp, position=np.append(pose, sample.position[n:]),
                         velocity=np.append(rate, sample.velocity[n:]), effort=None,
                         estimated=np.append(np.full(len(pose), estimated), sample.estimated[n:]),
                         tag=sample.tag)
