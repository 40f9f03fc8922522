"""Robot profiles (config/robots/*.yaml): joint names, limits and gains, one file per arm."""
from dataclasses import dataclass

import numpy as np
import yaml

from ros2_imitation.paths import resolve


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
class RobotProfile:
    name: str
    arm_joints: tuple
    gripper_joints: tuple
    home: np.ndarray
    limits: JointLimits
    stiffness: np.ndarray
    damping: np.ndarray

    @property
    def dof(self) -> int:
        return len(self.arm_joints)

    @classmethod
    def load(cls, name_or_path: str = 'panda') -> 'RobotProfile':
        path = resolve('robots', name_or_path)
        with open(path) as f:
            raw = yaml.safe_load(f)
        try:
            arm = tuple(raw['arm_joints'])
            n = len(arm)

            def vec(section, key):
                value = np.asarray(raw[section][key], dtype=float)
                if value.shape != (n,) or not np.all(np.isfinite(value)):
                    raise ValueError(f'{section}.{key} must be {n} finite numbers, got {raw[section][key]!r}')
                return value

            limits = JointLimits(
                lower=vec('limits', 'position_lower'), upper=vec('limits', 'position_upper'),
                velocity=vec('limits', 'velocity'), effort=vec('limits', 'effort'),
                position_margin=float(raw['limits'].get('position_margin', 0.0)),
                max_step=float(raw['limits']['max_step']))
            home = np.asarray(raw['home'], dtype=float)
            if home.shape != (n,):
                raise ValueError(f'home must have {n} values')
            if np.any(limits.safe_lower >= limits.safe_upper):
                raise ValueError('position limits leave no room inside the margin')
            return cls(name=str(raw.get('name', path.stem)), arm_joints=arm,
                       gripper_joints=tuple(raw.get('gripper_joints', ())), home=home,
                       limits=limits, stiffness=vec('gains', 'stiffness'), damping=vec('gains', 'damping'))
        except (KeyError, TypeError) as exc:
            raise ValueError(f'robot profile {path}: missing or malformed key {exc}') from exc
        except ValueError as exc:
            raise ValueError(f'robot profile {path}: {exc}') from exc
