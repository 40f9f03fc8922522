"""Arm kinematics from the robot's URDF through pinocchio (the field's standard library): forward
kinematics of the end effector and of every link, and the tip Jacobian, in the profile's base
frame (control/ik.py solves on it). ROS-free.

Joints of the URDF that are not arm joints (fingers) are locked at their neutral value, so the
model's configuration is exactly the arm joints in the profile's order.
"""
from __future__ import annotations

import numpy as np


class KinematicsError(ValueError):
    """The URDF or the frames do not fit the robot profile; the message names the file."""


class ArmKinematics:
    def __init__(self, urdf, joint_names, base_frame: str, tip_frame: str):
        import pinocchio as pin
        self._pin = pin
        try:
            full = pin.buildModelFromUrdf(str(urdf))
        except (RuntimeError, ValueError) as exc:
            raise KinematicsError(f'{urdf}: cannot build a model: {exc}') from None
        names = list(full.names)[1:]
        missing = [j for j in joint_names if j not in names]
        if missing:
            raise KinematicsError(f'{urdf}: no joints {missing} (the URDF has {names})')
        lock = [full.getJointId(n) for n in names if n not in joint_names]
        self.model = pin.buildReducedModel(full, lock, pin.neutral(full)) if lock else full
        self.data = self.model.createData()
        for frame in (base_frame, tip_frame):
            if not self.model.existFrame(frame):
                raise KinematicsError(f'{urdf}: no frame {frame!r}')
        self.base, self.tip = self.model.getFrameId(base_frame), self.model.getFrameId(tip_frame)
        self.base_frame, self.tip_frame = base_frame, tip_frame
        # configuration index of each profile joint (the reduced model may order them differently)
        self._index = [self.model.joints[self.model.getJointId(j)].idx_q for j in joint_names]
        self._v_index = [self.model.joints[self.model.getJointId(j)].idx_v for j in joint_names]
        self.dof = len(joint_names)
        self.joint_names = tuple(joint_names)

    @classmethod
    def for_robot(cls, robot) -> 'ArmKinematics':
        """From a RobotProfile's `kinematics` section; KinematicsError if it has none."""
        if robot.kinematics is None:
            raise KinematicsError(f'robot profile {robot.name!r} has no kinematics section (urdf, frames)')
        k = robot.kinematics
        return cls(k.urdf, robot.arm_joints, k.base_frame, k.tip_frame)

    def _config(self, q) -> np.ndarray:
        q = np.asarray(q, dtype=float)
        if q.shape != (self.dof,) or not np.all(np.isfinite(q)):
            raise ValueError(f'expected {self.dof} finite joint positions, got {q}')
        config = self._pin.neutral(self.model)
        config[self._index] = q
        return config

    def _update(self, q) -> None:
        self._pin.framesForwardKinematics(self.model, self.data, self._config(q))

    def _in_base(self, placement):
        return self.data.oMf[self.base].actInv(placement)

    def _tip(self) -> tuple[np.ndarray, np.ndarray]:
        pose = self._in_base(self.data.oMf[self.tip])
        return pose.translation.copy(), pose.rotation.copy()

    def tip_pose(self, q) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), rotation (3, 3)) of the tip frame in the base frame."""
        self._update(q)
        return self._tip()

    def tip_pose_and_jacobian(self, q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """tip_pose(q) and tip_jacobian(q) from one forward-kinematics pass (the IK's inner loop)."""
        pin = self._pin
        pin.computeJointJacobians(self.model, self.data, self._config(q))   # includes the forward kinematics
        pin.updateFramePlacements(self.model, self.data)
        world = pin.getFrameJacobian(self.model, self.data, self.tip, pin.LOCAL_WORLD_ALIGNED)
        r_base = self.data.oMf[self.base].rotation.T
        jac = np.empty((6, self.dof))
        jac[:3] = r_base @ world[:3, self._v_index]
        jac[3:] = r_base @ world[3:, self._v_index]
        return (*self._tip(), jac)

    def tip_jacobian(self, q) -> np.ndarray:
        """(6, dof): the tip's linear then angular velocity in the base frame's axes, at the tip, per
        joint velocity (profile order)."""
        return self.tip_pose_and_jacobian(q)[2]

    def rotation_error(self, rotation, target) -> np.ndarray:
        """(3,) the rotation vector taking `rotation` to `target`, in the base frame's axes."""
        from ros2_imitation.control.task_space import rotation_vector
        return rotation_vector(np.asarray(target) @ np.asarray(rotation).T)

    def tip_path(self, positions) -> np.ndarray:
        """(N, 3) tip positions in the base frame for (N, dof) joint positions."""
        return np.array([self.tip_pose(q)[0] for q in np.asarray(positions, dtype=float)]).reshape(-1, 3)

    def link_origins(self, q) -> np.ndarray:
        """(J + 1, 3): the origin of every joint of the arm, then the tip, in the base frame (a skeleton)."""
        self._update(q)
        base_inv = self.data.oMf[self.base].inverse()
        points = [(base_inv * self.data.oMi[j]).translation for j in range(1, self.model.njoints)]
        points.append(self._in_base(self.data.oMf[self.tip]).translation)
        return np.array(points)
