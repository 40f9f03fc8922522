"""Robot profiles (config/robots/*.yaml): joint names, limits and gains, one file per arm."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ros2_imitation.paths import read_config


@dataclass(frozen=True)
class JointLimits:
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    position_margin: float
    max_step: float

    @property
    def safe_lower(self) -> np.ndarray:
        return self.lower + self.position_margin

    @property
    def safe_upper(self) -> np.ndarray:
        return self.upper - self.position_margin


@dataclass(frozen=True)
class KinematicsSpec:
    urdf: Path          # the arm's URDF (relative paths in a profile are relative to the profile)
    base_frame: str     # the frame chunks and end-effector poses are expressed in
    tip_frame: str      # the end effector (tool centre point)


@dataclass(frozen=True)
class RobotProfile:
    name: str
    arm_joints: tuple
    gripper_joints: tuple
    home: np.ndarray
    limits: JointLimits
    stiffness: np.ndarray
    damping: np.ndarray
    kinematics: KinematicsSpec | None = None

    @property
    def dof(self) -> int:
        return len(self.arm_joints)

    @classmethod
    def load(cls, name_or_path: str = 'panda') -> 'RobotProfile':
        """A profile by name (config/robots/<name>.yaml) or path. Every problem is a ValueError that
        names the file and the key: a missing key, a wrong type, a limit that is not positive."""
        path, raw = read_config('robots', name_or_path, 'robot profile')
        try:
            return cls._parse(raw, path)
        except ValueError as exc:
            raise ValueError(f'robot profile {path}: {exc}') from None

    @classmethod
    def _parse(cls, raw, path) -> 'RobotProfile':
        if not isinstance(raw, dict):
            raise ValueError('expected a mapping at the top level')

        def section(key):
            if key not in raw:
                raise ValueError(f'missing key {key!r}')
            if not isinstance(raw[key], dict):
                raise ValueError(f'{key} must be a mapping, got {raw[key]!r}')
            return raw[key]

        def names(key, required=True):
            if key not in raw and required:
                raise ValueError(f'missing key {key!r}')
            value = raw.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f'{key} must be a list of joint names, got {value!r}')
            if len(set(value)) != len(value):
                raise ValueError(f'{key} has a joint twice: {value}')
            return tuple(value)

        def number(where, body, key, default=None):
            value = body.get(key, default)
            if value is None:
                raise ValueError(f"missing key '{where}.{key}'")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ValueError(f'{where}.{key} must be a finite number, got {value!r}')
            return float(value)

        def vec(where, body, key, positive=False, non_negative=False):
            label = f'{where}.{key}' if where else key
            if key not in body:
                raise ValueError(f'missing key {label!r}')
            value = body[key]
            ok = isinstance(value, list) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            arr = np.asarray(value, dtype=float) if ok else None
            if arr is None or arr.shape != (n,) or not np.all(np.isfinite(arr)):
                raise ValueError(f'{label} must be {n} finite numbers (one per arm joint), got {value!r}')
            if positive and not np.all(arr > 0):
                raise ValueError(f'{label} must be > 0 for every joint, got {value!r}')
            if non_negative and not np.all(arr >= 0):
                raise ValueError(f'{label} must be >= 0 for every joint, got {value!r}')
            return arr

        arm = names('arm_joints')
        n = len(arm)
        if not n:
            raise ValueError('arm_joints is empty')
        gripper = names('gripper_joints', required=False)
        if set(arm) & set(gripper):
            raise ValueError(f'joints both in arm_joints and gripper_joints: {sorted(set(arm) & set(gripper))}')
        lim = section('limits')
        gains = section('gains')
        limits = JointLimits(
            lower=vec('limits', lim, 'position_lower'), upper=vec('limits', lim, 'position_upper'),
            velocity=vec('limits', lim, 'velocity', positive=True),
            effort=vec('limits', lim, 'effort', positive=True),
            position_margin=number('limits', lim, 'position_margin', 0.0),
            max_step=number('limits', lim, 'max_step'))
        if limits.position_margin < 0:
            raise ValueError(f'limits.position_margin must be >= 0, got {limits.position_margin}')
        if not limits.max_step > 0:
            raise ValueError(f'limits.max_step must be > 0, got {limits.max_step}')
        if np.any(limits.lower >= limits.upper):
            raise ValueError('limits.position_lower must be below limits.position_upper for every joint')
        if np.any(limits.safe_lower >= limits.safe_upper):
            raise ValueError('position limits leave no room inside the margin (limits.position_margin)')
        home = vec('', raw, 'home')
        name = raw.get('name', path.stem)
        if not isinstance(name, str):
            raise ValueError(f'name must be a string, got {name!r}')
        kin = raw.get('kinematics')
        if kin is not None:
            if not isinstance(kin, dict) or not all(isinstance(kin.get(k), str) and kin[k]
                                                    for k in ('urdf', 'base_frame', 'tip_frame')):
                raise ValueError(f'kinematics needs urdf, base_frame and tip_frame (strings), got {kin!r}')
            kin = KinematicsSpec(Path(path).parent / kin['urdf'], kin['base_frame'], kin['tip_frame'])
        return cls(name=name, arm_joints=arm, gripper_joints=gripper, home=home, limits=limits,
                   stiffness=vec('gains', gains, 'stiffness', non_negative=True),
                   damping=vec('gains', gains, 'damping', non_negative=True), kinematics=kin)
