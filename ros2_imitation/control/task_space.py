"""End-effector poses as a policy and the controller hold them (ROS-free, numpy only).

A pose is a position (m) in the robot's base frame and a rotation. Policies use the continuous 6D
rotation (the first two columns of the rotation matrix, as Diffusion Policy does: no wrap-around,
no double cover); `rotation_from_6d` turns any 6 numbers back into a rotation by Gram-Schmidt, and
`rotation_problem` is the guard every incoming rotation passes: finite, unit columns, orthogonal,
right-handed. `Workspace` is the box the end effector may be commanded in: a target outside is
clamped onto it and reported, never chased.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

ORTHONORMAL_TOLERANCE = 1e-3


def rotation_to_6d(rotation) -> np.ndarray:
    """(..., 3, 3) -> (..., 6): the first two columns, column after column."""
    r = np.asarray(rotation, dtype=float)
    return np.concatenate([r[..., :, 0], r[..., :, 1]], axis=-1)


def rotation_from_6d(six) -> np.ndarray:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt (Zhou et al. 2019). A ValueError for a zero, parallel
    or non-finite pair of columns: no rotation can be made of it."""
    v = np.asarray(six, dtype=float)
    a, b = v[..., :3], v[..., 3:6]
    if not np.all(np.isfinite(v)):
        raise ValueError(f'6D rotation has non-finite values: {v.tolist()}')
    na = np.linalg.norm(a, axis=-1, keepdims=True)
    if np.any(na < 1e-9):
        raise ValueError('6D rotation: the first column is zero')
    x = a / na
    b = b - np.sum(x * b, axis=-1, keepdims=True) * x
    nb = np.linalg.norm(b, axis=-1, keepdims=True)
    if np.any(nb < 1e-9):
        raise ValueError('6D rotation: the columns are parallel (or the second is zero)')
    y = b / nb
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1)


def rotation_problem(rotation, tolerance: float = ORTHONORMAL_TOLERANCE) -> Optional[str]:
    """Why `rotation` (3, 3) is no rotation matrix, or None: NaN/inf, a zero matrix, columns not unit
    or not orthogonal (R^T R != I within tolerance), a reflection (det < 0)."""
    r = np.asarray(rotation, dtype=float)
    if r.shape != (3, 3):
        return f'rotation must be 3x3, got shape {r.shape}'
    if not np.all(np.isfinite(r)):
        return 'rotation has non-finite values'
    if not np.any(r):
        return 'rotation is all zeros'
    deviation = float(np.max(np.abs(r.T @ r - np.eye(3))))
    if deviation > tolerance:
        return f'rotation is not orthonormal (|R^T R - I| = {deviation:.3g} > {tolerance})'
    if np.linalg.det(r) < 0:
        return 'rotation is a reflection (det < 0)'
    return None


def quaternion_to_rotation(q) -> np.ndarray:
    """(x, y, z, w) as geometry_msgs/Quaternion -> (3, 3). A ValueError for a zero or non-finite one;
    a non-unit quaternion (beyond 1e-3) is refused too, not normalised: it names a bad message."""
    x, y, z, w = (float(v) for v in q)
    n = np.sqrt(x * x + y * y + z * z + w * w)
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError(f'quaternion {list(q)} is zero or not finite')
    if abs(n - 1.0) > ORTHONORMAL_TOLERANCE:
        raise ValueError(f'quaternion {list(q)} is not unit (norm {n:.4f})')
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def rotation_to_quaternion(r) -> np.ndarray:
    """(3, 3) -> (x, y, z, w) with w >= 0."""
    r = np.asarray(r, dtype=float)
    w = np.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = np.copysign(np.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    q = np.array([x, y, z, w])
    return q / np.linalg.norm(q)


def rotation_vector(r) -> np.ndarray:
    """The rotation vector (axis x angle, rad) of a rotation matrix (3, 3): the log map (pinocchio's log3)."""
    import pinocchio as pin
    return np.asarray(pin.log3(np.asarray(r, dtype=float)), dtype=float)


def rotation_from_vector(v) -> np.ndarray:
    """A rotation vector (rad) -> (3, 3): the exponential map (pinocchio's exp3)."""
    import pinocchio as pin
    return np.asarray(pin.exp3(np.asarray(v, dtype=float).reshape(3)), dtype=float)


@dataclass(frozen=True)
class Workspace:
    """An axis-aligned box (m) in the base frame that end-effector targets are clamped to."""
    lower: tuple
    upper: tuple

    def __post_init__(self):
        lo, hi = np.asarray(self.lower, dtype=float), np.asarray(self.upper, dtype=float)
        if lo.shape != (3,) or hi.shape != (3,) or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError(f'workspace lower and upper must be 3 finite numbers each, got {self.lower}, {self.upper}')
        if not np.all(lo < hi):
            raise ValueError(f'workspace lower {lo.tolist()} must be below upper {hi.tolist()} on every axis')

    def clamp(self, position) -> tuple:
        """(the position inside the box, a reason naming the axes clamped or None)."""
        p = np.asarray(position, dtype=float)
        out = np.clip(p, self.lower, self.upper)
        moved = [axis for axis, a, b in zip('xyz', p, out) if a != b]
        if not moved:
            return out, None
        return out, (f'end-effector target {np.round(p, 3).tolist()} outside the workspace on '
                     f'{"".join(moved)}: clamped to {np.round(out, 3).tolist()}')


@dataclass(frozen=True)
class TaskSpaceLimits:
    """What end-effector commands are held to (a robot profile's kinematics section): the workspace
    box, the tip's maximum linear and angular speed."""
    workspace: Workspace
    max_linear_speed: float = 0.25     # m/s of the tip
    max_angular_speed: float = 1.0     # rad/s of the tip

    def __post_init__(self):
        if not (self.max_linear_speed > 0 and self.max_angular_speed > 0):
            raise ValueError('task-space max_linear_speed and max_angular_speed must be > 0')

    @classmethod
    def parse(cls, section: dict) -> 'TaskSpaceLimits':
        """From a profile's `kinematics:` keys workspace_lower, workspace_upper (m, 3 each),
        max_linear_speed (m/s), max_angular_speed (rad/s); a ValueError names the key."""
        try:
            box = Workspace(tuple(float(v) for v in section['workspace_lower']),
                            tuple(float(v) for v in section['workspace_upper']))
        except KeyError as exc:
            raise ValueError(f'kinematics.{exc.args[0]} is missing (the box end-effector targets are held in)') from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f'kinematics.workspace_lower/upper: {exc}') from None
        speeds = {}
        for key, default in (('max_linear_speed', 0.25), ('max_angular_speed', 1.0)):
            value = section.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f'kinematics.{key} must be a number, got {value!r}')
            speeds[key] = float(value)
        return cls(box, **speeds)
