"""MuJoCo Panda simulation exposing what gz_ros2_control + ros_gz_bridge expose.

Topics: /clock, /joint_states, camera Image + CameraInfo (realsense2_camera names; with the wrist
camera a second realsense2_camera namespace, /wrist_camera/camera/color/...), command inputs
of an effort and a position forward_command_controller and of a joint_trajectory_controller, and a
task-state topic. Services: ~/reset (with the `seed` parameter) and ~/success. On /diagnostics, once
a second (`diagnostics_rate`), whether the physics keeps real time: the sim time it ran per wall
second, how far it fell behind schedule (a stall), and the stalls that let sim time slip
(max_catch_up; max_catch_up_effort while it takes torques).

Sim time is monotonic over the node's life; a reset starts a new episode but never moves /clock
back, so subscribers never see a time jump.
"""
import json
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ros2_imitation.control.trajectory import TrajectoryFollower, validate
from ros2_imitation.nodes.common import (
    NodeReasonLog,
    StartupError,
    check_positive,
    declare,
    publish_status,
    run_node,
    to_stamp,
)
from ros2_imitation.nodes.conversions import trajectory_from_msg
from ros2_imitation.qos import CLOCK_QOS, COMMAND_QOS, SENSOR_QOS, STATE_QOS


class SimNode(Node):
    def __init__(self):
        super().__init__('sim')
        p = {name: declare(self, name, default) for name, default in dict(
            task='push_cube', seed=0, physics_rate=500.0, real_time_factor=1.0,
            joint_state_rate=250.0, camera_rate=10.0, camera_width=96, camera_height=96,
            camera_frame='camera_color_optical_frame', task_state_rate=10.0,
            image_topic='/camera/camera/color/image_raw',
            camera_info_topic='/camera/camera/color/camera_info',
            initial_mode='position', robot='panda', effort_timeout=0.05, diagnostics_rate=1.0,
            # how far (wall s) the physics may fall behind its schedule and still catch up; further
            # behind (a stall of this process), sim time slips instead, as Gazebo's real-time factor
            # drops under load. Under torque commands (max_catch_up_effort) catching up would run
            # each torque of a controller closing its loop over ROS for longer than it was computed
            # for, and an impedance loop tuned for 5-20 ms of delay (config/robots/panda.yaml) shakes;
            # a position target held by the sim's servo comes to no harm, and keeps sim time on the wall's
            max_catch_up=0.5, max_catch_up_effort=0.004,
            # the servo's velocity feedforward is the position stream's slope over this long (s):
            # commands over DDS arrive bunched, and a one-step slope reads that as a kick (PandaSim)
            feedforward_window=0.02,
            # the hand camera: 'auto' as the task says (pick_place on; push_cube, reach off),
            # 'enabled' or 'disabled'; same size and rate as the fixed camera
            wrist_camera='auto', wrist_camera_frame='wrist_camera_color_optical_frame',
            wrist_image_topic='/wrist_camera/camera/color/image_raw',
            wrist_camera_info_topic='/wrist_camera/camera/color/camera_info').items()}
        check_positive(p, 'physics_rate', 'joint_state_rate', 'camera_rate', 'camera_width',
                       'camera_height', 'task_state_rate', 'effort_timeout', 'real_time_factor', 'diagnostics_rate',
                       'max_catch_up', 'max_catch_up_effort', 'feedforward_window',
                       allow_zero=('effort_timeout', 'real_time_factor', 'max_catch_up', 'max_catch_up_effort',
                                   'feedforward_window'))
        if p['physics_rate'] < 100.0:
            raise StartupError(f'physics_rate must be >= 100 Hz, got {p["physics_rate"]}')
        if p['initial_mode'] not in ('position', 'effort'):
            raise StartupError(f'initial_mode must be position or effort, got {p["initial_mode"]!r}')
        if p['wrist_camera'] not in ('auto', 'enabled', 'disabled'):
            raise StartupError(f'wrist_camera must be auto, enabled or disabled, got {p["wrist_camera"]!r}')
        self.p = p
        self.log = NodeReasonLog(self)
        self._lock = threading.Lock()
        self._pending = None          # ('position'|'effort'|'hold'|'gripper', array)
        self._reset_request = None    # (seed, threading.Event, result list)
        self._follower = None
        self._running = True
        self._ready = threading.Event()
        self._startup_error = None
        self.sim_time = 0.0
        self.episode = 0              # counts resets; in task_state, so listeners see episode changes
        self.seed = int(p['seed'])
        self._last_effort = None      # sim time of the last effort command
        # real-time keeping, since the last diagnostics: the furthest behind schedule (s), re-anchors
        self._behind_max, self._re_anchors = 0.0, 0
        self._diag_mark = (time.perf_counter(), 0.0)    # (wall, sim time) at the last diagnostics

        self.clock_pub = self.create_publisher(Clock, '/clock', CLOCK_QOS)
        self.joint_pub = self.create_publisher(JointState, '/joint_states', STATE_QOS)
        self.image_pub = self.create_publisher(Image, p['image_topic'], SENSOR_QOS)
        self.info_pub = self.create_publisher(CameraInfo, p['camera_info_topic'], SENSOR_QOS)
        self.state_pub = self.create_publisher(String, '~/task_state', STATE_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', COMMAND_QOS)
        self.wrist_pubs = None        # (image, info) publishers once the sim says it has the camera

        self._thread = threading.Thread(target=self._physics_loop, name='physics', daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error:
            raise StartupError(self._startup_error)
        if self.sim.wrist_camera:
            self.wrist_pubs = (self.create_publisher(Image, p['wrist_image_topic'], SENSOR_QOS),
                               self.create_publisher(CameraInfo, p['wrist_camera_info_topic'], SENSOR_QOS))

        self.create_subscription(Float64MultiArray, '/position_controller/commands',
                                 lambda m: self._forward_command('position', m), COMMAND_QOS)
        self.create_subscription(Float64MultiArray, '/effort_controller/commands',
                                 lambda m: self._forward_command('effort', m), COMMAND_QOS)
        self.create_subscription(Float64MultiArray, '/gripper_controller/commands',
                                 self._gripper_command, COMMAND_QOS)
        self.create_subscription(JointTrajectory, '/joint_trajectory_controller/joint_trajectory',
                                 self._trajectory_command, COMMAND_QOS)
        self.create_service(Trigger, '~/reset', self._reset)
        self.create_timer(1.0 / p['diagnostics_rate'], self._publish_diagnostics)
        self.create_service(Trigger, '~/success', self._success)
        self.get_logger().info(
            f'task {p["task"]}, physics {p["physics_rate"]:.0f} Hz, real-time factor '
            f'{p["real_time_factor"]}, camera {p["camera_width"]}x{p["camera_height"]} at {p["camera_rate"]} Hz'
            f'{", wrist camera on " + p["wrist_image_topic"] if self.wrist_pubs else ""}')

    # ---- command inputs (ROS callback thread) ----
    def _reject(self, what: str, reason: str):
        self.log.warn(f'rejected {what}', f'{reason}; holding')
        with self._lock:
            self._follower = None
            self._pending = ('hold', None)

    def _forward_command(self, mode: str, msg: Float64MultiArray):
        values = np.asarray(msg.data, dtype=float)
        n = len(self.sim.ARM_JOINTS)
        if values.shape != (n,):
            return self._reject(f'{mode} command', f'expected {n} values, got {values.size}')
        if not np.all(np.isfinite(values)):
            return self._reject(f'{mode} command', f'non-finite values {values.tolist()}')
        with self._lock:
            self._follower = None
            self._pending = (mode, values)

    def _gripper_command(self, msg: Float64MultiArray):
        values = np.asarray(msg.data, dtype=float)
        if values.shape != (1,) or not np.isfinite(values[0]):
            return self.log.warn('rejected gripper command', f'expected one finite width, got {list(msg.data)}')
        with self._lock:
            self.sim.set_gripper(float(values[0]))

    def _trajectory_command(self, msg: JointTrajectory):
        now = self.sim_time
        traj = trajectory_from_msg(msg)
        reason = validate(traj, self.sim.ARM_JOINTS, now)
        if reason:
            # like JTC: a rejected goal leaves the running trajectory alone
            return self.log.warn('rejected trajectory', reason)
        with self._lock:
            q = self.sim.joint_positions()[:len(self.sim.ARM_JOINTS)]
            qd = self.sim.joint_velocities()[:len(self.sim.ARM_JOINTS)]
            if self._follower is None:
                self._follower = TrajectoryFollower(self.sim.ARM_JOINTS)
            # as JTC: positions alone interpolate linearly, with velocities cubically
            self._follower.interpolation = 'cubic' if traj.velocities is not None else 'linear'
            self._follower.replace(traj.reordered(self.sim.ARM_JOINTS), now, q, qd)
            self._pending = None

    # ---- services ----
    def _reset(self, _request, response):
        seed = int(self.get_parameter('seed').value)
        done = threading.Event()
        result = []
        with self._lock:
            self._reset_request = (seed, done, result)
        if not done.wait(10.0):
            response.success, response.message = False, 'physics thread did not answer in 10 s'
            return response
        response.success = True
        response.message = json.dumps(result[0])
        self.get_logger().info(f'episode reset with seed {seed}')
        return response

    def _success(self, _request, response):
        with self._lock:
            state = self._task_state()
        response.success = bool(state['success'])
        response.message = json.dumps(state)
        return response

    def _publish_diagnostics(self):
        """Real time kept? Since the last status: the furthest the physics fell behind its wall schedule
        (a stall of its thread on a loaded machine), the stalls that let sim time slip (max_catch_up),
        and the sim seconds run per wall second. Graph tests read it to tell a starved sim from a slow
        controller (test/conftest.py, starvation)."""
        wall = time.perf_counter()
        with self._lock:
            behind, anchors, self._behind_max, self._re_anchors = self._behind_max, self._re_anchors, 0.0, 0
            sim_time = self.sim_time
        wall0, sim0 = self._diag_mark
        self._diag_mark = (wall, sim_time)
        rtf = (sim_time - sim0) / max(wall - wall0, 1e-9)
        late = behind > 0.1
        message = (f'{behind * 1e3:.0f} ms behind real time at worst ({anchors} stalls let sim time slip)'
                   if late else 'keeping real time')
        publish_status(self, self.diag_pub, DiagnosticStatus.WARN if late else DiagnosticStatus.OK,
                       'physics', message, self.p['robot'],
                       {'real_time_factor_target': self.p['real_time_factor'],
                        'real_time_factor_achieved': f'{rtf:.3f}',
                        'behind_max_ms': f'{behind * 1e3:.3f}', 're_anchors': anchors})

    # ---- physics thread: owns the MuJoCo data and the renderer's GL context ----
    def _physics_loop(self):
        p = self.p
        try:
            from ros2_imitation.sim import PandaSim
            wrist = PandaSim.WRIST_CAMERA[p['wrist_camera']]
            self.sim = PandaSim(task=p['task'], physics_rate=p['physics_rate'],
                                camera_width=p['camera_width'], camera_height=p['camera_height'],
                                wrist_camera=wrist, feedforward_window=p['feedforward_window'])
            self.sim.reset(int(p['seed']))
            if p['initial_mode'] == 'effort':
                self.sim.set_effort(np.zeros(len(self.sim.ARM_JOINTS)))
            else:
                self.sim.hold()
        except Exception as exc:  # reported by __init__ as a start-up error
            self._startup_error = f'{type(exc).__name__}: {exc}'
            self._ready.set()
            return
        self._ready.set()
        dt = self.sim.dt
        every = {key: max(1, round(p['physics_rate'] / rate)) for key, rate in (
            ('joints', p['joint_state_rate']), ('camera', p['camera_rate']),
            ('state', p['task_state_rate']))}
        info = self._camera_info()
        wrist_info = self._camera_info('wrist', p['wrist_camera_frame']) if self.sim.wrist_camera else None
        rtf = float(p['real_time_factor'])
        wall0, step = time.perf_counter(), 0
        while self._running:
            with self._lock:
                self._apply_pending()
                if self._follower is not None:
                    self.sim.set_position(self._follower.sample(self.sim_time)[0])
                self.sim.step(1)
                self.sim_time += dt
                step += 1
                stamp = to_stamp(self.sim_time)
                joints = self._joint_state(stamp) if step % every['joints'] == 0 else None
                image = self.sim.render() if step % every['camera'] == 0 else None
                wrist = self.sim.render('wrist') if image is not None and wrist_info is not None else None
                state = self._task_state() if step % every['state'] == 0 else None
            try:
                self.clock_pub.publish(Clock(clock=stamp))
                if joints is not None:
                    self.joint_pub.publish(joints)
                if image is not None:
                    self._publish_image(image, info, stamp)
                if wrist is not None and self.wrist_pubs is not None:
                    self._publish_image(wrist, wrist_info, stamp, p['wrist_camera_frame'], self.wrist_pubs)
                if state is not None:
                    self.state_pub.publish(String(data=json.dumps(state)))
            except Exception:  # the context is shutting down under us
                if self._running and rclpy.ok(context=self.context):
                    raise
                return
            if rtf > 0:
                lag = wall0 + step * dt / rtf - time.perf_counter()
                if lag > 0:
                    time.sleep(lag)
                else:
                    self._behind_max = max(self._behind_max, -lag)
                    limit = p['max_catch_up_effort'] if self.sim.mode == 'effort' else p['max_catch_up']
                    if lag < -limit:  # a stall: re-anchor, sim time slips
                        wall0 = time.perf_counter() - step * dt / rtf
                        self._re_anchors += 1

    def _apply_pending(self):
        if self._reset_request is not None:
            seed, done, result = self._reset_request
            self._reset_request = None
            self._follower = None
            self.sim.reset(seed)
            self.sim.hold()
            self.episode += 1
            self.seed = seed
            result.append(self._task_state())
            done.set()
        if self._pending is not None:
            mode, values = self._pending
            self._pending = None
            if mode == 'position':
                self.sim.set_position(values)
            elif mode == 'effort':
                self.sim.set_effort(values)
                self._last_effort = self.sim_time
            else:
                self.sim.hold()
        timeout = self.p['effort_timeout']
        if timeout > 0 and self.sim.mode == 'effort' and self._last_effort is not None and \
                self.sim_time - self._last_effort > timeout:
            # like a Franka's communication reflex: a torque stream that stops is not replayed
            self.sim.hold()
            self._last_effort = None
            self.log.warn('effort commands', f'none for {timeout * 1e3:.0f} ms: holding the arm')

    def _task_state(self) -> dict:
        return {**self.sim.task_state(), 'episode': self.episode, 'seed': self.seed}

    def _joint_state(self, stamp) -> JointState:
        msg = JointState()
        msg.header.stamp = stamp
        msg.name = list(self.sim.joint_names)
        msg.position = self.sim.joint_positions().tolist()
        msg.velocity = self.sim.joint_velocities().tolist()
        msg.effort = self.sim.joint_efforts().tolist()
        return msg

    def _camera_info(self, camera: str = 'external', frame: str = None) -> CameraInfo:
        k = self.sim.camera_intrinsics(camera)
        info = CameraInfo()
        info.header.frame_id = frame or self.p['camera_frame']
        info.width, info.height = int(k['width']), int(k['height'])
        info.distortion_model = 'plumb_bob'
        info.d = [0.0] * 5
        info.k = [k['fx'], 0.0, k['cx'], 0.0, k['fy'], k['cy'], 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [k['fx'], 0.0, k['cx'], 0.0, 0.0, k['fy'], k['cy'], 0.0, 0.0, 0.0, 1.0, 0.0]
        return info

    def _publish_image(self, rgb: np.ndarray, info: CameraInfo, stamp, frame: str = None, pubs=None):
        msg = Image()
        msg.header.stamp = stamp
        msg.header.frame_id = frame or self.p['camera_frame']
        msg.height, msg.width = rgb.shape[:2]
        msg.encoding = 'rgb8'
        msg.step = msg.width * 3
        msg.data = np.ascontiguousarray(rgb).tobytes()
        info.header.stamp = stamp
        image_pub, info_pub = pubs or (self.image_pub, self.info_pub)
        image_pub.publish(msg)
        info_pub.publish(info)

    def close(self):
        self._running = False
        self._thread.join(timeout=2.0)


def main(args=None):
    return run_node(SimNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
