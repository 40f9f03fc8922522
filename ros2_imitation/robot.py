"""Robot profiles (config/robots/*.yaml): joint names, limits and gains, one file per arm.

The gripper convention (the whole project): a policy for an arm with a gripper acts on, and sees,
the arm joints followed by ONE gripper value, the finger-to-finger opening in metres (Franka Hand
0..0.08, Robotiq 2F-85 0..0.085). Its chunks on the wire carry joint_names = the arm joints + the
profile's `gripper.command_name` (a name of its own, e.g. `panda_gripper`: the column is a width, not
the position of any one joint). Drivers that take a joint position get `GripperSpec.to_joint(width)`.
A profile without a `gripper:` section is an arm without a gripper.
"""
import math
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


GRIPPER_OUTPUTS = ('forward', 'trajectory', 'action')


@dataclass(frozen=True)
class GripperSpec:
    """A parallel gripper, commanded by its finger-to-finger opening (width, metres)."""
    model: str            # e.g. franka_hand, robotiq_2f_85 (for people and logs)
    joints: tuple         # its joints in /joint_states that follow joint = offset + scale * width
    command_name: str     # the gripper column's name in chunks (JointTrajectory joint_names)
    width_min: float      # m
    width_max: float      # m
    max_speed: float      # m/s: the commanded width changes at most this fast
    force: float          # N: the grasp force asked of an action server (GripperCommand max_effort)
    max_force: float      # N: what the hardware allows (force <= max_force)
    joint_scale: float    # the drivers' position unit: joint = joint_offset + joint_scale * width
    joint_offset: float
    output: str           # the default gripper output of the controller (GRIPPER_OUTPUTS)

    def to_joint(self, width):
        return self.joint_offset + self.joint_scale * width

    def to_width(self, joint):
        return (joint - self.joint_offset) / self.joint_scale


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
    # finger joints of a profile that names them without a `gripper:` section (older profiles)
    extra_gripper_joints: tuple = ()

    @property
    def dof(self) -> int:
        return len(self.arm_joints)

    @property
    def gripper_joints(self) -> tuple:
        """The finger joints read from /joint_states (the gripper's, or an older profile's list)."""
        return self.gripper.joints if self.gripper else self.extra_gripper_joints

    @property
    def action_dim(self) -> int:
        """What a policy for this robot acts on and sees: the arm joints, plus 1 with a gripper."""
        return self.dof + (1 if self.gripper else 0)

    def describe_dims(self) -> str:
        return (f'robot {self.name} has {self.dof} arm joints and '
                + (f'a gripper ({self.gripper.model})' if self.gripper else 'no gripper'))

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
        gripper = _gripper(raw.get('gripper'), arm)
        extra = names('gripper_joints', required=False)
        if gripper and extra:
            raise ValueError('gripper_joints and a gripper section: name the finger joints in gripper.joints only')
        if set(arm) & set(extra):
            raise ValueError(f'joints both in arm_joints and gripper_joints: {sorted(set(arm) & set(extra))}')
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
        return cls(name=name, arm_joints=arm, home=home, limits=limits,
                   stiffness=vec('gains', gains, 'stiffness', non_negative=True),
                   damping=vec('gains', gains, 'damping', non_negative=True), kinematics=kin,
                   gripper=gripper, extra_gripper_joints=extra)


def _gripper(body, arm) -> GripperSpec | None:
    """The `gripper:` section, checked; None when there is none (an arm without a gripper)."""
    if body is None:
        return None
    if not isinstance(body, dict):
        raise ValueError(f'gripper must be a mapping, got {body!r}')

    def number(key, default=None, positive=False):
        value = body.get(key, default)
        if value is None:
            raise ValueError(f"missing key 'gripper.{key}'")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f'gripper.{key} must be a finite number, got {value!r}')
        if positive and not value > 0:
            raise ValueError(f'gripper.{key} must be > 0, got {value!r}')
        return float(value)

    def text(key, default=None):
        value = body.get(key, default)
        if not isinstance(value, str) or not value:
            raise ValueError(f"gripper.{key} must be a non-empty string, got {value!r}" if key in body
                             else f"missing key 'gripper.{key}'")
        return value

    joints = body.get('joints')
    if not isinstance(joints, list) or not joints or not all(isinstance(j, str) and j for j in joints):
        raise ValueError(f'gripper.joints must be a non-empty list of joint names, got {joints!r}')
    if len(set(joints)) != len(joints) or set(joints) & set(arm):
        raise ValueError(f'gripper.joints must be distinct and not arm joints, got {joints!r}')
    width = body.get('width')
    if not (isinstance(width, list) and len(width) == 2 and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) for w in width)):
        raise ValueError(f'gripper.width must be [min, max] in metres, got {width!r}')
    if not 0 <= width[0] < width[1]:
        raise ValueError(f'gripper.width must have 0 <= min < max, got {width!r}')
    name = text('command_name')
    if name in arm or name in joints[1:]:
        raise ValueError(f'gripper.command_name {name!r} is an arm joint or another finger joint')
    output = text('output', 'forward')
    if output not in GRIPPER_OUTPUTS:
        raise ValueError(f'gripper.output must be one of {GRIPPER_OUTPUTS}, got {output!r}')
    scale = number('joint_scale', 1.0)
    if scale == 0:
        raise ValueError('gripper.joint_scale must not be 0')
    spec = GripperSpec(model=text('model', 'parallel_gripper'), joints=tuple(joints), command_name=name,
                       width_min=float(width[0]), width_max=float(width[1]),
                       max_speed=number('max_speed', positive=True), force=number('force', positive=True),
                       max_force=number('max_force', positive=True), joint_scale=scale,
                       joint_offset=number('joint_offset', 0.0), output=output)
    if spec.force > spec.max_force:
        raise ValueError(f'gripper.force {spec.force} exceeds gripper.max_force {spec.max_force}')
    return spec
