"""Robot profiles (config/robots/*.yaml): joint names, limits, gains and the gripper, one file per arm.

The gripper convention (the whole project): a policy for an arm with a gripper acts on, and sees, the
arm joints then ONE gripper value, the finger-to-finger opening in metres (Franka Hand 0..0.08,
Robotiq 2F-85 0..0.085). Its chunks carry joint_names = the arm joints + `gripper.command_name` (a name
of its own, e.g. `panda_gripper`: that column is a width, not any joint's position); drivers that take
a joint position get `GripperSpec.to_joint(width)`. A profile without `gripper:` has no gripper.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ros2_imitation.control.gripper_spec import GripperSpec, parse_gripper
from ros2_imitation.control.task_space import TaskSpaceLimits
from ros2_imitation.paths import config_value, config_vector, read_config

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
    task_limits: TaskSpaceLimits | None = None   # end-effector commands: workspace box, tip speeds


@dataclass(frozen=True)
class RobotProfile:
    name: str
    arm_joints: tuple
    home: np.ndarray
    limits: JointLimits
    stiffness: np.ndarray
    damping: np.ndarray
    kinematics: KinematicsSpec | None = None
    gripper: GripperSpec | None = None
    extra_gripper_joints: tuple = ()   # an older profile's `gripper_joints`, without `gripper:`

    @property
    def dof(self) -> int:
        return len(self.arm_joints)

    @property
    def gripper_joints(self) -> tuple:   # the finger joints read from /joint_states
        return self.gripper.joints if self.gripper else self.extra_gripper_joints

    @property
    def action_dim(self) -> int:
        """What a policy for this robot acts on and sees: the arm joints, plus 1 with a gripper."""
        return self.dof + (1 if self.gripper else 0)

    def describe_dims(self) -> str:
        return f'robot {self.name} has {self.dof} arm joints and ' + (
            f'a gripper ({self.gripper.model})' if self.gripper else 'no gripper')

    @classmethod
    def load(cls, name_or_path: str = 'panda') -> 'RobotProfile':
        """A profile by name (config/robots/<name>.yaml) or path. Every problem is a ValueError that
        names the file and the key: a missing key, a wrong type, a limit that is not positive."""
        path, raw = read_config('robots', name_or_path, 'robot profile')
        try:
            return _parse(raw, path)
        except ValueError as exc:
            raise ValueError(f'robot profile {path}: {exc}') from None


def _parse(raw, path) -> RobotProfile:
    if not isinstance(raw, dict):
        raise ValueError('expected a mapping at the top level')
    arm = config_value(raw, '', 'arm_joints', kind=list)
    n = len(arm)
    if not n:
        raise ValueError('arm_joints is empty')
    extra = config_value(raw, '', 'gripper_joints', [], kind=list)
    if set(arm) & set(extra):
        raise ValueError(f'joints both in arm_joints and gripper_joints: {sorted(set(arm) & set(extra))}')
    lim, gains = config_value(raw, '', 'limits'), config_value(raw, '', 'gains')
    limits = JointLimits(*(config_vector(lim, 'limits', k, n, s) for k, s in (
        ('position_lower', None), ('position_upper', None), ('velocity', '>'), ('effort', '>'))),
        position_margin=config_value(lim, 'limits', 'position_margin', 0.0, float),
        max_step=config_value(lim, 'limits', 'max_step', kind=float))
    if limits.position_margin < 0:
        raise ValueError(f'limits.position_margin must be >= 0, got {limits.position_margin}')
    if not limits.max_step > 0:
        raise ValueError(f'limits.max_step must be > 0, got {limits.max_step}')
    if np.any(limits.lower >= limits.upper):
        raise ValueError('limits.position_lower must be below limits.position_upper for every joint')
    if np.any(limits.safe_lower >= limits.safe_upper):
        raise ValueError('position limits leave no room inside the margin (limits.position_margin)')
    kin = raw.get('kinematics')
    if kin is not None:
        if not isinstance(kin, dict) or not all(isinstance(kin.get(k), str) and kin[k]
                                                for k in ('urdf', 'base_frame', 'tip_frame')):
            raise ValueError(f'kinematics needs urdf, base_frame and tip_frame (strings), got {kin!r}')
        limits_keys = ('workspace_lower', 'workspace_upper', 'max_linear_speed', 'max_angular_speed')
        task = TaskSpaceLimits.parse(kin) if any(k in kin for k in limits_keys) else None
        unknown = sorted(set(kin) - {'urdf', 'base_frame', 'tip_frame', *limits_keys})
        if unknown:
            raise ValueError(f'kinematics has unknown keys {unknown}')
        kin = KinematicsSpec(Path(path).parent / kin['urdf'], kin['base_frame'], kin['tip_frame'], task)
    gripper = None if raw.get('gripper') is None else parse_gripper(config_value(raw, '', 'gripper'), arm)
    if gripper and extra:
        raise ValueError('gripper_joints and a gripper section: name the finger joints in gripper.joints only')
    return RobotProfile(name=config_value(raw, '', 'name', path.stem, str), arm_joints=arm, home=config_vector(raw, '', 'home', n),
                        limits=limits, stiffness=config_vector(gains, 'gains', 'stiffness', n, '>='),
                        damping=config_vector(gains, 'gains', 'damping', n, '>='), kinematics=kin,
                        gripper=gripper, extra_gripper_joints=extra)
