"""A robot profile's gripper (config/robots/*.yaml, `gripper:`), read by robot.py; the convention
(one width value in metres after the arm joints) is described there."""
from dataclasses import dataclass

import numpy as np

from ros2_imitation.paths import config_value, config_vector

GRIPPER_OUTPUTS = ('forward', 'trajectory', 'action')


def fingers_to_width(positions, scale: float = 1.0, offset: float = 0.0):
    """Finger joint positions (..., n_fingers) -> the opening (...,) in metres: (mean - offset) / scale.
    The one rule for what a gripper policy sees; the controller, the proprioception node and
    bag2dataset all measure the width with it."""
    return (np.mean(np.asarray(positions, dtype=float), axis=-1) - offset) / scale


@dataclass(frozen=True)
class GripperSpec:
    """A parallel gripper commanded by its opening (m); drivers take joint = joint_offset + joint_scale
    * width (Franka: each finger moves width/2; Robotiq: the knuckle angle). joints: those of
    /joint_states that follow that mapping; force (N): GripperCommand's max_effort; max_speed (m/s);
    output: the controller's default gripper output (GRIPPER_OUTPUTS)."""
    model: str
    joints: tuple
    command_name: str
    width_min: float
    width_max: float
    max_speed: float
    force: float
    max_force: float
    joint_scale: float
    joint_offset: float
    output: str

    def to_joint(self, width):
        return self.joint_offset + self.joint_scale * width

    def to_width(self, joint):
        return (joint - self.joint_offset) / self.joint_scale

    def width_from_fingers(self, positions):
        """Positions of self.joints (..., n_fingers) -> the opening (...,) in metres."""
        return fingers_to_width(positions, self.joint_scale, self.joint_offset)


def parse_gripper(g: dict, arm) -> GripperSpec:
    """A profile's `gripper:` section, checked (a ValueError names the field)."""
    joints = config_value(g, 'gripper', 'joints', kind=list)
    if not joints or set(joints) & set(arm):
        raise ValueError(f'gripper.joints must be finger joints (not arm joints), got {list(joints)!r}')
    width = config_vector(g, 'gripper', 'width', 2)
    if not 0 <= width[0] < width[1]:
        raise ValueError(f'gripper.width must be [min, max] with 0 <= min < max (m), got {width.tolist()}')
    spec = GripperSpec(
        config_value(g, 'gripper', 'model', 'parallel_gripper', str), joints, config_value(g, 'gripper', 'command_name', kind=str),
        float(width[0]), float(width[1]), *(config_value(g, 'gripper', k, d, float) for k, d in (
            ('max_speed', None), ('force', None), ('max_force', None), ('joint_scale', 1.0), ('joint_offset', 0.0))),
        config_value(g, 'gripper', 'output', 'forward', str))
    for key in ('max_speed', 'force', 'max_force'):
        if not getattr(spec, key) > 0:
            raise ValueError(f'gripper.{key} must be > 0, got {getattr(spec, key)}')
    if spec.joint_scale == 0:
        raise ValueError('gripper.joint_scale must not be 0')
    if spec.command_name in arm or spec.command_name in joints[1:]:
        raise ValueError(f'gripper.command_name {spec.command_name!r} is an arm joint or another finger joint')
    if spec.force > spec.max_force:
        raise ValueError(f'gripper.force {spec.force} exceeds gripper.max_force {spec.max_force}')
    if spec.output not in GRIPPER_OUTPUTS:
        raise ValueError(f'gripper.output must be one of {GRIPPER_OUTPUTS}, got {spec.output!r}')
    return spec
