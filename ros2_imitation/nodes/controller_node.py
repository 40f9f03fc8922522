"""Executes timestamped action chunks on the arm at the control rate, through one safety layer.

Input: JointTrajectory chunks on /ros2_imitation/action_chunk (header.stamp = when the first point
applies) and /joint_states. Output, by `mode`: impedance torques to /effort_controller/commands,
positions to /position_controller/commands, a re-timed trajectory to a joint_trajectory_controller,
or a JointState target for an external impedance controller. With `dry_run` every command goes to
~/dry_run/<kind> instead, so a new setup can be watched before it moves.
"""
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ros2_imitation.control.controller import MODES, ChunkController
from ros2_imitation.nodes.common import (
    NodeReasonLog,
    StartupError,
    check_positive,
    declare,
    now_sec,
    publish_status,
    run_node,
    to_stamp,
)
from ros2_imitation.nodes.conversions import trajectory_from_msg, trajectory_to_msg
from ros2_imitation.qos import COMMAND_QOS, OUTPUT_QOS, SENSOR_QOS
from ros2_imitation.robot import RobotProfile

# A policy chunk is 16 points (~2 kB); this allows ~1600 points with velocities.
MAX_CHUNK_BYTES = 256 * 1024
LEVEL = {'tracking': DiagnosticStatus.OK, 'holding': DiagnosticStatus.OK,
         'resting': DiagnosticStatus.WARN, 'stopped': DiagnosticStatus.WARN,
         'waiting': DiagnosticStatus.ERROR}


class ControllerNode(Node):
    def __init__(self):
        super().__init__('controller')
        p = {name: declare(self, name, default) for name, default in dict(
            robot='panda', mode='impedance', control_rate=500.0, interpolation='cubic',
            chunk_timeout=0.3, hold_timeout=2.0, joint_state_timeout=0.1, dry_run=False,
            diagnostics_rate=2.0, chunk_topic='/ros2_imitation/action_chunk',
            joint_states_topic='/joint_states', effort_topic='/effort_controller/commands',
            position_topic='/position_controller/commands',
            trajectory_topic='/joint_trajectory_controller/joint_trajectory',
            target_topic='/target_joint', max_chunk_bytes=MAX_CHUNK_BYTES).items()}
        if p['mode'] not in MODES:
            raise StartupError(f'mode must be one of {MODES}, got {p["mode"]!r}')
        check_positive(p, 'control_rate', 'chunk_timeout', 'hold_timeout', 'joint_state_timeout',
                       'diagnostics_rate', 'max_chunk_bytes', allow_zero=('hold_timeout',))
        try:
            self.robot = RobotProfile.load(p['robot'])
            self.core = ChunkController(
                self.robot, p['mode'], p['control_rate'], p['interpolation'], p['chunk_timeout'],
                p['hold_timeout'], p['joint_state_timeout'])
        except (ValueError, FileNotFoundError) as exc:
            raise StartupError(str(exc)) from exc
        self.p = p
        self.log = NodeReasonLog(self)
        self._lock = threading.Lock()
        self._periods = []
        self._overruns = 0
        self._last_position = None    # the last position sent, and the largest step between two sent
        self._max_step = 0.0
        self._last_reason = None
        topic = {'effort': p['effort_topic'], 'position': p['position_topic'],
                 'target': p['target_topic'], 'trajectory': p['trajectory_topic']}
        if p['dry_run']:
            topic = {kind: f'~/dry_run/{kind}' for kind in topic}
        kind = {'impedance': 'effort', 'position': 'position', 'impedance_target': 'target',
                'trajectory': 'trajectory'}[p['mode']]
        msg_type = {'effort': Float64MultiArray, 'position': Float64MultiArray,
                    'target': JointState, 'trajectory': JointTrajectory}[kind]
        self.out_pub = self.create_publisher(msg_type, topic[kind], OUTPUT_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', COMMAND_QOS)
        self.create_subscription(JointState, p['joint_states_topic'], self._on_joint_state, SENSOR_QOS)
        # raw: the size is checked before rclpy turns the message into Python objects, which for a
        # 20000-point chunk blocks this process (and its control loop) for half a second
        self.create_subscription(JointTrajectory, p['chunk_topic'], self._on_chunk_data, COMMAND_QOS, raw=True)
        self.create_service(Trigger, '~/stop', self._stop)
        self.create_service(Trigger, '~/resume', self._resume)
        self.create_service(Trigger, '~/reset', self._reset)
        self.create_timer(1.0 / p['diagnostics_rate'], self._publish_diagnostics)
        self._running = True
        self._thread = threading.Thread(target=self._loop, name='control', daemon=True)
        self._thread.start()
        self.get_logger().info(
            f'{p["mode"]} mode at {p["control_rate"]:.0f} Hz -> {self.out_pub.topic_name}'
            f'{" (DRY RUN)" if p["dry_run"] else ""}, robot {self.robot.name}')

    def _on_joint_state(self, msg: JointState):
        with self._lock:
            reason = self.core.on_joint_state(msg.name, msg.position, msg.velocity, now_sec(self))
        if reason:
            self.log.warn('ignored joint state', reason)

    def _on_chunk_data(self, data: bytes):
        if len(data) > self.p['max_chunk_bytes']:
            reason = f'{len(data)} bytes, more than max_chunk_bytes={self.p["max_chunk_bytes"]} (not read)'
        else:
            try:
                return self._on_chunk(deserialize_message(data, JointTrajectory))
            except Exception as exc:  # noqa: BLE001 - whatever the bytes were, it is not a chunk
                reason = f'cannot deserialize it: {exc}'
        with self._lock:
            self.core.stats['chunks_rejected'] += 1
        self.log.warn('rejected chunk', reason)

    def _on_chunk(self, msg: JointTrajectory):
        traj = trajectory_from_msg(msg)
        with self._lock:
            reason = self.core.on_chunk(traj, now_sec(self))
        if reason:
            self.log.warn('rejected chunk', reason)

    def _stop(self, _request, response):
        with self._lock:
            self.core.stop(now_sec(self))
        self.get_logger().warn('stopped by service call: holding, chunks rejected until ~/resume')
        response.success, response.message = True, 'stopped'
        return response

    def _resume(self, _request, response):
        with self._lock:
            self.core.resume(now_sec(self))
            response.success = self.core.state != 'stopped'
            response.message = self.core.state
        return response

    def _reset(self, _request, response):
        with self._lock:
            self.core.reset(now_sec(self), 'reset by service call')
            response.success, response.message = self.core.q_cmd is not None, self.core.state
        return response

    def _loop(self):
        """One command per period of wall time; what to command is sampled at the node's clock.

        Pacing on the wall clock keeps the period steady (waking on /clock messages adds their
        delivery jitter); sampling at ROS time keeps chunks on the sim's or the robot's timeline.
        """
        clock = self.get_clock()
        period = 1.0 / self.p['control_rate']
        while self._running and clock.now().nanoseconds == 0:
            time.sleep(0.01)  # with use_sim_time: no /clock yet
        next_wake = time.perf_counter()
        last_wall = None
        while self._running:
            next_wake += period
            lag = next_wake - time.perf_counter()
            if lag > 0:
                time.sleep(lag)
            elif lag < -period:  # overran by a full period: skip the missed cycles, don't burst
                self._overruns += 1
                next_wake = time.perf_counter()
            wall = time.perf_counter()
            if last_wall is not None:
                self._periods.append(wall - last_wall)
            last_wall = wall
            now = clock.now().nanoseconds * 1e-9
            with self._lock:
                command = self.core.update(now)
                state, reason = self.core.state, self.core.reason
            if reason != self._last_reason and reason:
                self.get_logger().info(f'{state}: {reason}')
            self._last_reason = reason
            if command is not None:
                try:
                    self._publish(command, now)
                except Exception:  # the context is shutting down under us
                    if self._running and rclpy.ok(context=self.context):
                        raise
                    return

    def _publish(self, command, now: float):
        if command.kind == 'trajectory':
            self.out_pub.publish(trajectory_to_msg(command.trajectory))
        elif command.kind == 'target':
            msg = JointState(name=list(self.core.joints), position=command.values.tolist(),
                             velocity=command.velocity.tolist())
            msg.header.stamp = to_stamp(now)
            self.out_pub.publish(msg)
        else:
            self.out_pub.publish(Float64MultiArray(data=command.values.tolist()))
        if command.kind in ('position', 'target'):
            if self._last_position is not None:
                self._max_step = max(self._max_step, float(np.max(np.abs(command.values - self._last_position))))
            self._last_position = command.values

    def _publish_diagnostics(self):
        with self._lock:
            core = self.core
            values = {'state': core.state, 'reason': core.reason or '',
                      'tracking_error_rad': f'{core.tracking_error():.4f}',
                      'clamped': ', '.join(f'{k}={v}' for k, v in core.safety.counts.items()),
                      **{k: str(v) for k, v in core.stats.items()}}
            level = LEVEL.get(core.state, DiagnosticStatus.WARN)
        periods, self._periods = np.array(self._periods), []
        if periods.size:
            values['loop_period_p50_ms'] = f'{np.percentile(periods, 50) * 1e3:.3f}'
            values['loop_period_p99_ms'] = f'{np.percentile(periods, 99) * 1e3:.3f}'
            values['loop_rate_hz'] = f'{1.0 / periods.mean():.1f}'
        values['overruns'] = str(self._overruns)
        values['max_command_step_rad'] = f'{self._max_step:.5f}'   # since start: what was really sent
        message = f'{values["state"]}{": " + values["reason"] if values["reason"] else ""}'
        publish_status(self, self.diag_pub, level, 'chunk controller', message, self.robot.name, values)

    def close(self):
        self._running = False
        self._thread.join(timeout=1.0)


def main(args=None):
    return run_node(ControllerNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
