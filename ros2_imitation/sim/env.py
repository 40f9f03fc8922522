"""PandaSim: a Franka Panda on a table in MuJoCo, with the command interfaces gz_ros2_control
offers (effort, position), a fixed RGB camera and, for tasks that want it, a camera on the hand.
No ROS here; sim_node wraps it.
"""
import collections
import os

os.environ.setdefault('MUJOCO_GL', 'egl')   # headless rendering; must precede the mujoco import

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from ros2_imitation.sim import scene  # noqa: E402
from ros2_imitation.sim.tasks import make_task  # noqa: E402


def _vector(name: str, values, n: int) -> np.ndarray:
    try:
        v = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f'{name}: expected {n} numbers, got {values!r}') from None
    if v.shape != (n,):
        raise ValueError(f'{name}: expected {n} values, got {v.size}')
    if not np.all(np.isfinite(v)):
        raise ValueError(f'{name}: non-finite values {v.tolist()}')
    return v


def _make_renderer(model, height: int, width: int) -> mujoco.Renderer:
    # mujoco fixes its GL backend when first imported. If something imported it before this
    # module set MUJOCO_GL, it picked GLFW, which aborts the process without an X display.
    if not (os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')):
        try:
            from mujoco.glfw import GLContext as GlfwContext
            from mujoco.rendering.classic import gl_context
            if gl_context.GLContext is GlfwContext:
                from mujoco.egl import GLContext as EglContext
                gl_context.GLContext = EglContext
        except ImportError:
            pass
    return mujoco.Renderer(model, height, width)


class PandaSim:
    ARM_JOINTS = scene.ARM_JOINTS
    GRIPPER_JOINTS = scene.GRIPPER_JOINTS
    HOME = np.array(scene.HOME)
    LOWER = np.array(scene.ARM_LOWER)
    UPPER = np.array(scene.ARM_UPPER)
    EFFORT_LIMIT = np.array(scene.EFFORT_LIMIT)
    VELOCITY_LIMIT = np.array([2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61])
    # Position servo gains. Stiff enough that contact with a 0.1 kg cube barely deflects it,
    # and near critically damped for the arm's inertia across the workspace.
    KP = np.array([3000.0, 3000.0, 3000.0, 3000.0, 600.0, 600.0, 300.0])
    KV = np.array([120.0, 120.0, 100.0, 100.0, 12.0, 12.0, 6.0])
    # a command stream older than this no longer drives the velocity feedforward
    FEEDFORWARD_HOLD = 0.02
    RESET_NOISE = 0.02          # rad, std of the seeded perturbation of the home pose

    CAMERAS = ('external', 'wrist')
    # the wrist_camera setting of sim_node and sim-dataset: auto is the task's default
    WRIST_CAMERA = {'auto': None, 'enabled': True, 'disabled': False}

    def __init__(self, task: str = 'push_cube', physics_rate: float = 500.0,
                 camera_width: int = 96, camera_height: int = 96, render: bool = True,
                 wrist_camera: bool | None = None, feedforward_window: float = 0.0):
        """wrist_camera: the hand camera (scene.WRIST_CAMERA) in the scene, same image size as the
        fixed one; None: as the task says (pick_place yes, push_cube and reach no).
        feedforward_window (s): the servo's velocity feedforward is the position stream's slope over
        this long. 0: over the last command, exact for a caller that commands on schedule (the
        in-process rollout). A stream over DDS (sim_node) needs a window: a commander whose clock or
        executor bunches commands (a held value, then a jump one step later) reads as velocity spikes
        over one step, and the feedforward turns them into kicks of the arm."""
        if not 0.0 <= float(feedforward_window) <= 1.0:
            raise ValueError(f'feedforward_window must be in [0, 1] s, got {feedforward_window}')
        self.feedforward_window = float(feedforward_window)
        self.task = make_task(task)
        if int(camera_width) < 1 or int(camera_height) < 1:
            raise ValueError(f'camera size must be positive, got {camera_width}x{camera_height}')
        self.width, self.height = int(camera_width), int(camera_height)
        self.wrist_camera = bool(self.task.wrist_camera if wrist_camera is None else wrist_camera)
        self.model = mujoco.MjModel.from_xml_string(
            scene.build_xml(float(physics_rate), self.task.xml(), self.width, self.height,
                            wrist_camera=self.wrist_camera, grip=self.task.grip))
        self.data = mujoco.MjData(self.model)
        self.task.bind(self.model)
        m = self.model
        self.joint_names = self.ARM_JOINTS + self.GRIPPER_JOINTS
        joints = [m.joint(n) for n in self.joint_names]
        self._qpos = np.array([int(j.qposadr[0]) for j in joints])
        self._qvel = np.array([int(j.dofadr[0]) for j in joints])
        self._act = np.array([m.actuator(n).id for n in self.joint_names])
        self._arm_act = self._act[:7]
        self._tcp = m.site('tcp').id
        self._camera = m.camera(scene.CAMERA['name']).id
        self._cameras = {'external': self._camera}
        if self.wrist_camera:
            self._cameras['wrist'] = m.camera(scene.WRIST_CAMERA['name']).id
        self._render_enabled = bool(render)
        self._renderer = None
        self._mode = None
        self._target = self.HOME.copy()    # commanded position
        self._ref = self.HOME.copy()       # velocity-limited reference the servo tracks
        self._v_ff = np.zeros(7)           # velocity of the command stream, fed forward
        self._target_time = None
        self._stream = collections.deque()  # (time, target) of the commands of the last feedforward_window
        self.reset(0)

    # ---- time ----
    @property
    def dt(self) -> float:
        return float(self.model.opt.timestep)

    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def mode(self) -> str:
        """'position' or 'effort': the interface the last arm command used."""
        return self._mode

    def reset(self, seed: int) -> None:
        rng = np.random.default_rng(int(seed))
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        noise = np.clip(rng.normal(0.0, self.RESET_NOISE, 7), -2.5 * self.RESET_NOISE, 2.5 * self.RESET_NOISE)
        d.qpos[self._qpos[:7]] = np.clip(self.HOME + noise, self.LOWER, self.UPPER)
        d.qpos[self._qpos[7:]] = self.task.gripper_width / 2
        self.task.randomize(m, d, rng)
        mujoco.mj_forward(m, d)
        self._mode = None
        self.hold()
        self.set_gripper(self.task.gripper_width)

    def step(self, n: int = 1) -> None:
        n = int(n)
        if n < 0:
            raise ValueError(f'step count must be >= 0, got {n}')
        m, d = self.model, self.data
        while n > 0 and self._mode == 'position' and (
                not np.array_equal(self._ref, self._target) or self._v_ff.any()):
            # The reference moves toward the target at the joint velocity limits, so a large
            # position step gives a fast, bounded motion instead of a torque-saturated lunge.
            limit = self.VELOCITY_LIMIT * m.opt.timestep
            step = np.clip(self._target - self._ref, -limit, limit)
            self._ref = self._ref + step
            if self._target_time is not None and self.time - self._target_time > self.FEEDFORWARD_HOLD:
                self._v_ff[:] = 0.0   # the command stream stopped: hold, do not coast
            # Velocity feedforward: the servo's damping then brakes only the tracking error, so a
            # streamed trajectory is followed without the kv/kp lag (as gz_ros2_control's is).
            v = np.where(np.abs(step) >= limit, step / m.opt.timestep, self._v_ff)
            d.ctrl[self._arm_act] = self._ref + self.KV / self.KP * v
            mujoco.mj_step(m, d)
            n -= 1
        if n > 0:
            mujoco.mj_step(m, d, n)

    # ---- state ----
    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._qpos].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._qvel].copy()

    def joint_efforts(self) -> np.ndarray:
        """Actuator effort (N m, N) on top of gravity compensation, as the effort interface takes it."""
        return self.data.actuator_force[self._act].copy()

    def ee_position(self) -> np.ndarray:
        """Fingertip centre (franka_description's panda_hand_tcp) in the world/base frame."""
        return self.data.site_xpos[self._tcp].copy()

    def gripper_width(self) -> float:
        """Measured finger-to-finger opening (m)."""
        return float(self.data.qpos[self._qpos[7:]].sum())

    def ee_pose(self) -> tuple:
        """(position, quaternion wxyz) of the fingertip-centre frame (z out of the fingers)."""
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, self.data.site_xmat[self._tcp])
        return self.ee_position(), quat

    def task_state(self) -> dict:
        state = self.task.state(self.model, self.data, self.ee_position())
        state['time'] = round(self.time, 6)
        state['joint_positions'] = [round(float(x), 6) for x in self.joint_positions()]
        return state

    def success(self) -> bool:
        return self.task.success(self.model, self.data, self.ee_position())

    def forward(self) -> None:
        """Recompute derived quantities after editing data directly (tests, scripted set-ups)."""
        mujoco.mj_forward(self.model, self.data)

    # ---- commands ----
    def _switch(self, mode: str) -> None:
        if mode == self._mode:
            return
        m, ids = self.model, self._arm_act
        if mode == 'effort':
            m.actuator_gainprm[ids, 0] = 1.0
            m.actuator_biasprm[ids, :3] = 0.0
        else:
            m.actuator_gainprm[ids, 0] = self.KP
            m.actuator_biasprm[ids, 0] = 0.0
            m.actuator_biasprm[ids, 1] = -self.KP
            m.actuator_biasprm[ids, 2] = -self.KV
            self._ref = self.joint_positions()[:7]
            self.data.ctrl[ids] = self._ref
        self._mode = mode

    def set_effort(self, tau) -> None:
        """Joint torques (N m) added to gravity compensation, clipped to the effort limits."""
        tau = np.clip(_vector('effort command', tau, 7), -self.EFFORT_LIMIT, self.EFFORT_LIMIT)
        self._switch('effort')
        self.data.ctrl[self._arm_act] = tau

    def set_position(self, q) -> None:
        """Joint position target (rad), clipped to the joint limits; a stiff servo tracks it."""
        q = np.clip(_vector('position command', q, 7), self.LOWER, self.UPPER)
        self._switch('position')
        gap = None if self._target_time is None else self.time - self._target_time
        if gap is None or gap > self.FEEDFORWARD_HOLD:
            self._v_ff = np.zeros(7)
            self._stream.clear()
        elif gap > 0.0:  # two commands within one step keep the last estimate
            self._stream.append((self._target_time, self._target))
            while len(self._stream) > 1 and self.time - self._stream[1][0] >= self.feedforward_window:
                self._stream.popleft()
            t_old, q_old = self._stream[0]
            self._v_ff = np.clip((q - q_old) / (self.time - t_old), -self.VELOCITY_LIMIT, self.VELOCITY_LIMIT)
        self._target, self._target_time = q, self.time

    def hold(self) -> None:
        """Position servo at the current joint positions."""
        self._switch('position')
        self._ref = self.joint_positions()[:7]
        self._target = self._ref.copy()
        self._v_ff, self._target_time = np.zeros(7), None
        self._stream.clear()
        self.data.ctrl[self._arm_act] = self._ref

    def set_gripper(self, width: float) -> None:
        """Finger-to-finger opening (m), 0 (closed) .. 0.08, position controlled."""
        w = _vector('gripper width', width, 1)[0]
        self.data.ctrl[self._act[7:]] = np.clip(w / 2, 0.0, scene.FINGER_MAX)

    # ---- camera ----
    def _camera_id(self, camera: str) -> int:
        try:
            return self._cameras[camera]
        except KeyError:
            raise ValueError(f'no camera {camera!r} in this sim; cameras: {sorted(self._cameras)}') from None

    def render(self, camera: str = 'external') -> np.ndarray:
        """(H, W, 3) uint8 RGB from the external camera, or the hand camera ('wrist')."""
        camera_id = self._camera_id(camera)
        if not self._render_enabled:
            raise RuntimeError('PandaSim was created with render=False')
        if self._renderer is None:
            # Created on first use so the GL context belongs to the thread that renders.
            self._renderer = _make_renderer(self.model, self.height, self.width)
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
            flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
        self._renderer.update_scene(self.data, camera=camera_id)
        return self._renderer.render()

    def camera_intrinsics(self, camera: str = 'external') -> dict:
        """Pinhole intrinsics (pixels, centres of pixels at integer coordinates) for a CameraInfo."""
        fovy = np.deg2rad(self.model.cam_fovy[self._camera_id(camera)])
        f = 0.5 * self.height / np.tan(fovy / 2)
        return dict(fx=float(f), fy=float(f), cx=(self.width - 1) / 2, cy=(self.height - 1) / 2,
                    width=self.width, height=self.height)

    def camera_pose(self, camera: str = 'external') -> dict:
        """Optical-frame pose (x right, y down, z forward) in the world: position and quaternion xyzw."""
        cam = self._camera_id(camera)
        rot = self.data.cam_xmat[cam].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, rot.reshape(-1))
        return dict(position=self.data.cam_xpos[cam].tolist(),
                    quaternion_xyzw=[*quat[1:].tolist(), float(quat[0])])

    def project(self, point, camera: str = 'external') -> np.ndarray:
        """Pixel (u, v) of a world point, with camera_intrinsics(): for checks and overlays."""
        cam = self._camera_id(camera)
        rot = self.data.cam_xmat[cam].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
        p = rot.T @ (np.asarray(point, dtype=float) - self.data.cam_xpos[cam])
        k = self.camera_intrinsics(camera)
        return np.array([k['fx'] * p[0] / p[2] + k['cx'], k['fy'] * p[1] / p[2] + k['cy']])

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
