"""Teleoperation: a SpaceMouse's twist or a gamepad's axes -> an end-effector target, safely (ROS-free).

Input is what ROS already publishes:
- spacenav's geometry_msgs/Twist (`/spacenav/twist`, each axis about -1..1 at full deflection) and its
  sensor_msgs/Joy (`/spacenav/joy`: the buttons);
- or joy_node's sensor_msgs/Joy from a gamepad: `axes_map` names which axis drives which of
  (vx, vy, vz, wx, wy, wz).
Velocities are full-scale fractions times the speed limits (and the norm is capped at them). They are
integrated into a target pose only while the deadman button is held and input is fresh: release it,
or let the stream stop for `timeout`, and the target stays where it is (the arm holds). The target
never runs further than `max_lead` ahead of the measured tip, and stays inside the workspace box.
A gripper button toggles open/closed on each press. Every rejected input returns its reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ros2_imitation.control.task_space import Workspace, rotation_from_vector

AXES = ('vx', 'vy', 'vz', 'wx', 'wy', 'wz')


@dataclass(frozen=True)
class TeleopSettings:
    workspace: Workspace
    max_linear_speed: float = 0.1       # m/s at full deflection
    max_angular_speed: float = 0.5      # rad/s at full deflection
    timeout: float = 0.25               # s without input: stop moving
    max_lead: float = 0.05              # m the target may run ahead of the measured tip
    deadman_button: Optional[int] = 0   # Joy button held to move (None: no deadman, e.g. in sim tests)
    gripper_button: Optional[int] = 1   # Joy button toggling the gripper
    joy_axes: Optional[int] = None      # the Joy axis count expected (None: any)
    axes_map: tuple = ()                # gamepad: (axis index or -1) per AXES entry; () = Twist input
    axes_scale: tuple = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    open_width: float = 0.08            # m, the gripper's opening when open / closed
    closed_width: float = 0.0

    def __post_init__(self):
        if not (self.max_linear_speed > 0 and self.max_angular_speed > 0 and self.timeout > 0 and self.max_lead > 0):
            raise ValueError('teleop speeds, timeout and max_lead must be > 0')
        if self.axes_map and len(self.axes_map) != len(AXES):
            raise ValueError(f'axes_map needs one axis index (or -1) per {AXES}, got {self.axes_map}')


class Teleop:
    def __init__(self, settings: TeleopSettings):
        self.s = settings
        self.velocity = np.zeros(6)          # commanded twist, m/s and rad/s, base frame
        self.last_input: Optional[float] = None
        self.deadman = settings.deadman_button is None
        self.gripper_closed = False
        self._buttons = ()
        self.target: Optional[tuple] = None  # (position (3,), rotation (3, 3))
        self.reason = 'no input yet'
        self._last_update: Optional[float] = None
        self.stats = {'inputs_rejected': 0}

    # ---- inputs ----
    def _set_velocity(self, v, now: float) -> Optional[str]:
        v = np.asarray(v, dtype=float)
        if v.shape != (6,) or not np.all(np.isfinite(v)):
            self.stats['inputs_rejected'] += 1
            return f'teleop input has non-finite values: {v.tolist()}'
        v = np.clip(v, -1.0, 1.0)
        lin, ang = v[:3] * self.s.max_linear_speed, v[3:] * self.s.max_angular_speed
        for part, cap in ((lin, self.s.max_linear_speed), (ang, self.s.max_angular_speed)):
            norm = np.linalg.norm(part)
            if norm > cap:
                part *= cap / norm
        self.velocity = np.concatenate([lin, ang])
        self.last_input = now
        return None

    def on_twist(self, linear, angular, now: float) -> Optional[str]:
        """A SpaceMouse twist (full-scale fractions); the reason it is rejected, or None."""
        if self.s.axes_map:
            self.stats['inputs_rejected'] += 1
            return 'teleop is configured for gamepad axes (axes_map), not a Twist'
        return self._set_velocity(list(linear) + list(angular), now)

    def on_joy(self, axes, buttons, now: float) -> Optional[str]:
        """A Joy message: buttons (deadman, gripper) and, with axes_map, the velocity."""
        axes, buttons = list(axes), list(buttons)
        if self.s.joy_axes is not None and len(axes) != self.s.joy_axes:
            self.stats['inputs_rejected'] += 1
            self.deadman = self.s.deadman_button is None
            return f'Joy message has {len(axes)} axes, expected {self.s.joy_axes}: ignored (deadman released)'
        needed = [b for b in (self.s.deadman_button, self.s.gripper_button) if b is not None]
        if needed and len(buttons) <= max(needed):
            self.stats['inputs_rejected'] += 1
            self.deadman = self.s.deadman_button is None
            return f'Joy message has {len(buttons)} buttons, needs button {max(needed)}: ignored (deadman released)'
        if self.s.deadman_button is not None:
            self.deadman = bool(buttons[self.s.deadman_button])
        if self.s.gripper_button is not None:
            pressed = bool(buttons[self.s.gripper_button])
            was = bool(self._buttons[self.s.gripper_button]) if len(self._buttons) > self.s.gripper_button else False
            if pressed and not was:
                self.gripper_closed = not self.gripper_closed
        self._buttons = tuple(buttons)
        if self.s.axes_map:
            if any(i >= len(axes) for i in self.s.axes_map):
                self.stats['inputs_rejected'] += 1
                return f'Joy message has {len(axes)} axes, axes_map needs {max(self.s.axes_map) + 1}'
            v = [axes[i] * k if i >= 0 else 0.0 for i, k in zip(self.s.axes_map, self.s.axes_scale)]
            return self._set_velocity(v, now)
        return None

    # ---- the cycle ----
    def update(self, now: float, tip_position, tip_rotation) -> tuple:
        """(target position, target rotation, gripper width) for this cycle, from the measured tip;
        self.reason says why the target is not moving."""
        dt = 0.0 if self._last_update is None else max(0.0, now - self._last_update)
        self._last_update = now
        p_tip, r_tip = np.asarray(tip_position, dtype=float), np.asarray(tip_rotation, dtype=float)
        if self.target is None:
            self.target = (p_tip.copy(), r_tip.copy())
        moving = False
        if not self.deadman:
            self.reason = 'deadman released: holding'
        elif self.last_input is None or now - self.last_input > self.s.timeout:
            self.reason = 'teleop input stopped: holding'
        else:
            moving, self.reason = True, None
        if moving and dt > 0:
            p, r = self.target
            p = p + self.velocity[:3] * dt
            r = rotation_from_vector(self.velocity[3:] * dt) @ r
            lead = p - p_tip
            if np.linalg.norm(lead) > self.s.max_lead:          # the arm lags: do not run away from it
                p = p_tip + lead * (self.s.max_lead / np.linalg.norm(lead))
            p, clamped = self.s.workspace.clamp(p)
            if clamped:
                self.reason = clamped
            self.target = (p, r)
        width = self.s.closed_width if self.gripper_closed else self.s.open_width
        return self.target[0].copy(), self.target[1].copy(), float(width)
