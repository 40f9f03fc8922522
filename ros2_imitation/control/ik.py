"""Inverse kinematics for end-effector targets: damped least squares on the URDF's tip Jacobian
(control/kinematics.py, pinocchio), inside the joint limits, the null space pulled toward home.

One `solve` is what the controller does per target: start from the joints it has (the measured or
last commanded ones), iterate dq = J^T (J J^T + lambda^2 I)^-1 e + (I - J^+ J) k (home - q), with
each step bounded and q clamped to the limits, until the error is under tolerance or the
iterations run out. A target outside the workspace box is clamped onto it first. Near a singularity
the damping keeps the step finite; a target it cannot reach (outside the arm's reach, against a
limit) ends unconverged: the result says so and carries the best joints found, which stay inside
the limits; the caller decides (the controller holds the last converged command). Nothing here is
chased: the iteration count and the step size are bounded. ROS-free.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ros2_imitation.control.task_space import Workspace, rotation_problem


@dataclass
class IKResult:
    q: np.ndarray                     # joints (profile order), always inside the limits
    converged: bool
    position_error: float             # m, at the end
    rotation_error: float             # rad, at the end
    iterations: int
    reason: Optional[str] = None      # why it did not converge, or what was clamped

    def describe(self) -> str:
        state = 'converged' if self.converged else 'did not converge'
        return (f'IK {state} in {self.iterations} iterations (position error {self.position_error * 1000:.1f} mm, '
                f'rotation error {np.degrees(self.rotation_error):.2f} deg)' + (f': {self.reason}' if self.reason else ''))


@dataclass(frozen=True)
class IKSettings:
    damping: float = 0.05             # lambda of the damped least squares (m / rad)
    nullspace_gain: float = 0.2       # pull toward home per iteration, in the null space
    max_iterations: int = 60
    max_step: float = 0.2             # rad per iteration, per joint
    position_tolerance: float = 1e-4  # m
    rotation_tolerance: float = 1e-3  # rad
    limit_margin: float = 0.0         # rad kept inside the position limits

    def __post_init__(self):
        for key in ('damping', 'max_step', 'position_tolerance', 'rotation_tolerance'):
            if not getattr(self, key) > 0:
                raise ValueError(f'IK {key} must be > 0, got {getattr(self, key)}')
        if self.nullspace_gain < 0 or self.limit_margin < 0 or self.max_iterations < 1:
            raise ValueError('IK nullspace_gain and limit_margin must be >= 0, max_iterations >= 1')


class DifferentialIK:
    """Joints for an end-effector pose on one arm (an ArmKinematics and the profile's limits)."""

    def __init__(self, kinematics, lower, upper, home, settings: IKSettings = IKSettings(),
                 workspace: Optional[Workspace] = None):
        self.kin = kinematics
        self.settings = settings
        self.lower = np.asarray(lower, dtype=float) + settings.limit_margin
        self.upper = np.asarray(upper, dtype=float) - settings.limit_margin
        self.home = np.clip(np.asarray(home, dtype=float), self.lower, self.upper)
        self.workspace = workspace
        if not (self.lower.shape == self.upper.shape == self.home.shape == (kinematics.dof,)):
            raise ValueError(f'IK: limits and home must have {kinematics.dof} values')
        if not np.all(self.lower < self.upper):
            raise ValueError('IK: every lower limit (plus the margin) must be below its upper limit')

    @classmethod
    def for_robot(cls, robot, kinematics=None, settings: IKSettings = IKSettings(), workspace=None):
        from ros2_imitation.control.kinematics import ArmKinematics
        kin = kinematics or ArmKinematics.for_robot(robot)
        return cls(kin, robot.limits.safe_lower, robot.limits.safe_upper, robot.home, settings, workspace)

    def solve(self, position, rotation, q_start) -> IKResult:
        """Joints putting the tip at `position` (base frame, m) with `rotation` (3, 3), from q_start.
        A ValueError for a target that is no pose (NaN, a non-rotation): it is never solved for."""
        s = self.settings
        position = np.asarray(position, dtype=float)
        if position.shape != (3,) or not np.all(np.isfinite(position)):
            raise ValueError(f'end-effector position must be 3 finite numbers, got {position.tolist()}')
        problem = rotation_problem(rotation)
        if problem:
            raise ValueError(f'end-effector target: {problem}')
        rotation = np.asarray(rotation, dtype=float)
        clamped = None
        if self.workspace is not None:
            position, clamped = self.workspace.clamp(position)
        q = np.clip(np.asarray(q_start, dtype=float), self.lower, self.upper)
        eye = np.eye(self.kin.dof)
        best, best_cost = q.copy(), np.inf
        for iteration in range(1, s.max_iterations + 1):
            p, r, jac = self.kin.tip_pose_and_jacobian(q)
            error = np.concatenate([position - p, self.kin.rotation_error(r, rotation)])
            e_pos, e_rot = float(np.linalg.norm(error[:3])), float(np.linalg.norm(error[3:]))
            cost = e_pos + 0.1 * e_rot
            if cost < best_cost:
                best, best_cost, best_errors = q.copy(), cost, (e_pos, e_rot)
            if e_pos < s.position_tolerance and e_rot < s.rotation_tolerance:
                return IKResult(q, True, e_pos, e_rot, iteration, clamped)
            # one SVD serves both: the damped least-squares step, and the exact null space (the
            # directions the tip does not move along) for the pull toward home
            u, sv, vt = np.linalg.svd(jac, full_matrices=False)
            dq = vt.T @ ((sv / (sv ** 2 + s.damping ** 2)) * (u.T @ error))
            rows = vt[sv > 1e-6 * max(sv[0], 1e-12)]
            dq += (eye - rows.T @ rows) @ (s.nullspace_gain * (self.home - q))
            dq = np.clip(dq, -s.max_step, s.max_step)
            q = np.clip(q + dq, self.lower, self.upper)
        e_pos, e_rot = best_errors
        reason = 'target unreachable, or at a joint limit or a singularity'
        return IKResult(best, False, e_pos, e_rot, s.max_iterations,
                        f'{clamped}; {reason}' if clamped else reason)
