"""Inverse kinematics for the simulated Panda: damped least squares on the fingertip-centre site.

Solves on a private MjData, so it never disturbs a running simulation.
"""
import weakref

import mujoco
import numpy as np

from ros2_imitation.sim import scene

# Fingertip frame pointing straight down with the fingers opening along world y, as at home.
DOWN_QUAT = np.array([0.0, 1.0, 0.0, 0.0])


def down_quat(yaw: float = 0.0) -> np.ndarray:
    """Fingers pointing down, the hand turned by yaw (rad) about world z from its home heading."""
    yaw_quat = np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
    out = np.empty(4)
    mujoco.mju_mulQuat(out, yaw_quat, DOWN_QUAT)
    return out


class IKSolver:
    def __init__(self, model: mujoco.MjModel, site: str = 'tcp', margin: float = 0.05):
        self.model = model
        self.data = mujoco.MjData(model)
        self.site = model.site(site).id
        joints = [model.joint(n) for n in scene.ARM_JOINTS]
        self.qpos = np.array([int(j.qposadr[0]) for j in joints])
        self.dofs = np.array([int(j.dofadr[0]) for j in joints])
        ranges = np.array([model.jnt_range[j.id] for j in joints])
        # Kept inside the hard limits by the same margin the robot profile applies to commands.
        self.lower, self.upper = ranges[:, 0] + margin, ranges[:, 1] - margin
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def fk(self, q) -> tuple:
        """(position, quaternion wxyz) of the site for arm joints q."""
        d = self.data
        d.qpos[self.qpos] = q
        mujoco.mj_kinematics(self.model, d)
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, d.site_xmat[self.site])
        return d.site_xpos[self.site].copy(), quat

    def solve(self, target_pos, target_quat=None, q_init=None, q_rest=None, max_iters: int = 200,
              pos_tol: float = 1e-4, rot_tol: float = 1e-3, damping: float = 1e-2,
              rot_weight: float = 0.3, rest_gain: float = 0.05, max_step: float = 0.3) -> tuple:
        """Returns (q7, position error m, rotation error rad, converged)."""
        m, d = self.model, self.data
        target_pos = np.asarray(target_pos, dtype=float)
        target_quat = DOWN_QUAT if target_quat is None else np.asarray(target_quat, dtype=float)
        if target_pos.shape != (3,) or target_quat.shape != (4,):
            raise ValueError('target_pos must have 3 values and target_quat 4 (wxyz)')
        if not (np.all(np.isfinite(target_pos)) and np.all(np.isfinite(target_quat))):
            raise ValueError('IK target is not finite')
        target_quat = target_quat / np.linalg.norm(target_quat)
        q_rest = np.asarray(scene.HOME if q_rest is None else q_rest, dtype=float)
        q = np.clip(np.asarray(q_rest if q_init is None else q_init, dtype=float), self.lower, self.upper)
        quat, conj, dquat, rot_err = np.empty(4), np.empty(4), np.empty(4), np.empty(3)
        eye = np.eye(6)
        for _ in range(max_iters):
            d.qpos[self.qpos] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            pos_err = target_pos - d.site_xpos[self.site]
            mujoco.mju_mat2Quat(quat, d.site_xmat[self.site])
            mujoco.mju_negQuat(conj, quat)
            mujoco.mju_mulQuat(dquat, target_quat, conj)
            mujoco.mju_quat2Vel(rot_err, dquat, 1.0)
            ep, er = np.linalg.norm(pos_err), np.linalg.norm(rot_err)
            if ep < pos_tol and er < rot_tol:
                return q, ep, er, True
            mujoco.mj_jacSite(m, d, self._jacp, self._jacr, self.site)
            jac = np.vstack([self._jacp[:, self.dofs], rot_weight * self._jacr[:, self.dofs]])
            err = np.concatenate([pos_err, rot_weight * rot_err])
            jjt = jac @ jac.T + damping ** 2 * eye
            dq = jac.T @ np.linalg.solve(jjt, err)
            # The redundant seventh degree of freedom drifts toward the rest posture, so a given
            # Cartesian target maps to a consistent arm configuration.
            null = np.eye(7) - jac.T @ np.linalg.solve(jjt, jac)
            dq += null @ (rest_gain * (q_rest - q))
            norm = np.linalg.norm(dq)
            if norm > max_step:
                dq *= max_step / norm
            q = np.clip(q + dq, self.lower, self.upper)
        pos, quat = self.fk(q)
        mujoco.mju_negQuat(conj, quat)
        mujoco.mju_mulQuat(dquat, target_quat, conj)
        mujoco.mju_quat2Vel(rot_err, dquat, 1.0)
        ep, er = float(np.linalg.norm(target_pos - pos)), float(np.linalg.norm(rot_err))
        return q, ep, er, bool(ep < pos_tol and er < rot_tol)


_SOLVERS = weakref.WeakKeyDictionary()


def solver_for(sim_or_model) -> IKSolver:
    model = getattr(sim_or_model, 'model', sim_or_model)
    if not isinstance(model, mujoco.MjModel):
        raise TypeError(f'expected a PandaSim or an MjModel, got {type(sim_or_model).__name__}')
    solver = _SOLVERS.get(model)
    if solver is None:
        solver = _SOLVERS[model] = IKSolver(model)
    return solver


def solve_ik(sim_or_model, target_pos, target_quat=None, q_init=None, q_rest=None,
             tol: float = 1e-3, raise_on_failure: bool = False, **kwargs) -> np.ndarray:
    """Arm joints (7,) putting the fingertip centre at target_pos (world, m) with orientation
    target_quat (wxyz; default: fingers pointing down, home heading).

    q_init seeds the search (default: the rest posture, home). Joint limits minus a 0.05 rad
    margin are respected. If the target is not reached within tol (m), the best effort is
    returned, or ValueError raised when raise_on_failure.
    """
    solver = solver_for(sim_or_model)
    q, pos_err, _, _ = solver.solve(target_pos, target_quat, q_init, q_rest, **kwargs)
    if raise_on_failure and pos_err > tol:
        raise ValueError(f'IK did not reach {np.asarray(target_pos).tolist()}: {pos_err * 1000:.1f} mm off')
    return q
