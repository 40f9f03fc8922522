"""End-effector chunks -> joint chunks, through the IK and the task-space safety rules (ROS-free).

An end-effector chunk is a Trajectory whose columns are EE_COLUMNS: the tip position (m) in the
robot's base frame and its rotation as 6D (task_space.rotation_to_6d), plus the gripper column when
the robot has one. The node builds it from a trajectory_msgs/MultiDOFJointTrajectory (quaternions
are checked there); a policy with `action_space: ee` predicts those 9 (+1) numbers per step.

EEChunkConverter.convert applies, in this order, to every waypoint:
1. a rotation must be one: Gram-Schmidt of the 6D columns, refused when they are zero, parallel or
   not finite (the whole chunk is rejected: no part of a garbage chunk is executed);
2. the workspace box (task_space.Workspace): a position outside is clamped onto it and reported;
3. the maximum linear and angular speed: a waypoint that would need more is given more time (the
   chunk is slowed down, never sped up), measured from the tip's commanded pose for the first one;
4. IK (control/ik.py) from the previous waypoint's joints, inside the joint limits; a waypoint the IK
   cannot reach ends the chunk there (the reachable prefix runs, the reason is reported); when the
   first one is unreachable the chunk is rejected and the controller keeps holding.
The joint chunk then goes through the controller's joint rules (SafetyFilter: limits, step, speed)
like any other: nothing here can command past them.
"""
from __future__ import annotations

import numpy as np

from ros2_imitation.control.ik import DifferentialIK
from ros2_imitation.control.task_space import TaskSpaceLimits, rotation_from_6d, rotation_to_6d  # noqa: F401
from ros2_imitation.control.trajectory import Trajectory

EE_COLUMNS = ('ee_x', 'ee_y', 'ee_z', 'ee_r0', 'ee_r1', 'ee_r2', 'ee_r3', 'ee_r4', 'ee_r5')


def ee_columns(positions, rotations) -> np.ndarray:
    """(N, 3) positions and (N, 3, 3) rotations -> (N, 9) chunk columns."""
    return np.concatenate([np.asarray(positions, dtype=float), rotation_to_6d(rotations)], axis=-1)


class EEChunkConverter:
    def __init__(self, ik: DifferentialIK, limits: TaskSpaceLimits):
        self.ik, self.limits = ik, limits
        self.stats = {'ee_clamped': 0, 'ee_slowed': 0, 'ee_truncated': 0}

    @classmethod
    def for_robot(cls, robot) -> 'EEChunkConverter':
        """From a robot profile's kinematics section (its URDF, workspace box and tip speeds); a
        ValueError naming what is missing."""
        kin = robot.kinematics
        if kin is None or kin.task_limits is None:
            raise ValueError(f'end-effector chunks need the robot profile {robot.name!r} to have a kinematics '
                             'section with urdf, frames, workspace_lower/upper and the tip speeds')
        return cls(DifferentialIK.for_robot(robot), kin.task_limits)

    def convert(self, traj: Trajectory, q_start, now: float) -> tuple:
        """(the arm's joint Trajectory, or None when rejected; a list of reasons: what was clamped,
        slowed or cut, or why it was rejected). `traj` has exactly EE_COLUMNS, already validated
        (finite, times increasing); q_start: the joints the chunk starts from (commanded or measured),
        at `now` (the first waypoint's speed is measured from there)."""
        data = traj.reordered(EE_COLUMNS).positions
        try:
            rotations = rotation_from_6d(data[:, 3:9])
        except ValueError as exc:
            return None, [f'end-effector chunk rejected: {exc}']
        reasons = []
        positions = data[:, :3].copy()
        for i, p in enumerate(positions):
            positions[i], why = self.limits.workspace.clamp(p)
            if why:
                self.stats['ee_clamped'] += 1
                if len(reasons) < 3:
                    reasons.append(f'point {i}: {why}')
        q = np.asarray(q_start, dtype=float)
        p_prev, r_prev = self.ik.kin.tip_pose(q)
        times = np.asarray(traj.times, dtype=float).copy()
        t_prev = max(0.0, now - traj.start_time(now))    # the chunk's own clock: now
        slowed = 0
        joints = []
        for i in range(len(times)):
            need = max(np.linalg.norm(positions[i] - p_prev) / self.limits.max_linear_speed,
                       np.linalg.norm(self.ik.kin.rotation_error(r_prev, rotations[i])) / self.limits.max_angular_speed)
            if times[i] - t_prev < need:       # later points keep their spacing: the rest is delayed
                times[i:] += t_prev + need - times[i]
                slowed += 1
            result = self.ik.solve(positions[i], rotations[i], q)
            if not result.converged:
                self.stats['ee_truncated'] += 1
                if i == 0:
                    return None, reasons + [f'end-effector chunk rejected: point 0: {result.describe()}']
                reasons.append(f'end-effector chunk cut at point {i} of {len(times)}: {result.describe()}')
                times = times[:i]
                break
            q = result.q
            joints.append(q)
            p_prev, r_prev, t_prev = positions[i], rotations[i], times[i]
        if slowed:
            self.stats['ee_slowed'] += 1
            reasons.append(f'{slowed} points slowed to the task-space speed limits '
                           f'({self.limits.max_linear_speed} m/s, {self.limits.max_angular_speed} rad/s)')
        arm = Trajectory(self.ik.kin.joint_names, traj.stamp, times[:len(joints)], np.array(joints))
        return arm, reasons
