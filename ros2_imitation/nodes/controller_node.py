"""Executes timestamped action chunks on the arm at the control rate, through one safety layer.

Input: JointTrajectory chunks on /ros2_imitation/action_chunk (header.stamp = when the first point
applies) and /joint_states. Output, by `mode`: impedance torques to /effort_controller/commands,
positions to /position_controller/commands, a re-timed trajectory to a joint_trajectory_controller,
or a JointState target for an external impedance controller. With `dry_run` every command goes to
~/dry_run/<kind> instead, so a new setup can be watched before it moves. A robot with a gripper:
its width column of chunks goes out by `gripper_mode` (nodes/gripper_output.py). With
`chunk_space:=ee` the chunks are end-effector paths instead (trajectory_msgs/MultiDOFJointTrajectory on
/ros2_imitation/ee_chunk: an end-effector policy, teleop_node), turned into joints by IK inside the
profile's workspace box and tip speeds, then executed by the same rules and outputs; or, with
`mode:=cartesian_target`, kept as poses: geometry_msgs/PoseStamped equilibrium poses at the control
rate for an external Cartesian impedance controller (workspace box, tip speeds, NaN guard).
"""
import sys
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import CallbackGroup
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from ros2_imitation.control.controller import MODES, ChunkController
from ros2_imitation.control.ee_chunk import EEChunkConverter
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
from ros2_imitation.nodes.conversions import (
    ee_trajectory_from_msg,
    pose_to_msg,
    trajectory_from_msg,
    trajectory_to_msg,
)
from ros2_imitation.nodes.gripper_output import GripperOutput
from ros2_imitation.qos import CHUNK_INTAKE_QOS, COMMAND_QOS, OUTPUT_QOS, SENSOR_QOS
from ros2_imitation.robot import RobotProfile

# The interpreter's thread switch interval in this process (see ControllerNode.__init__).
GIL_SWITCH_S = 0.0005
# How long the last command may take to be acknowledged by its subscribers when the node stops.
LAST_COMMAND_ACK_S = 0.5
# A policy chunk is 16 points (~2 kB); this allows ~1600 points with velocities.
MAX_CHUNK_BYTES = 256 * 1024
LEVEL = {'tracking': DiagnosticStatus.OK, 'holding': DiagnosticStatus.OK,
         'resting': DiagnosticStatus.WARN, 'stopped': DiagnosticStatus.WARN,
         'waiting': DiagnosticStatus.ERROR}


class TakenByTheLoop(CallbackGroup):
    """The group of an entity no executor runs: its owner takes from it (the chunk subscription)."""

    def can_execute(self, entity) -> bool:
        return False

    def beginning_execution(self, entity) -> bool:
        return False

    def ending_execution(self, entity) -> None:
        pass


CHUNK_SPACES = ('joint', 'ee')


def _taken_by_the_loop(data) -> None:
    raise RuntimeError('chunks are taken by the control loop, never by an executor')


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
            target_topic='/target_joint', max_chunk_bytes=MAX_CHUNK_BYTES, max_chunk_rate=100.0,
            # the gripper ('' = the profile's gripper.output; none without a gripper): see gripper_output.py
            gripper_mode='', gripper_topic='', gripper_forward_value='width', gripper_joint='',
            gripper_deadband=0.005, gripper_goal_timeout=5.0,
            # chunks of tip poses (an end-effector policy, teleoperation) -> joints by IK (control/ee_chunk.py)
            chunk_space='joint', ee_chunk_topic='/ros2_imitation/ee_chunk',
            # mode cartesian_target: geometry_msgs/PoseStamped equilibrium poses (franka_example_controllers'
            # cartesian impedance example takes `equilibrium_pose`; cartesian_controllers `target_frame`)
            target_pose_topic='/equilibrium_pose').items()}
        if p['mode'] not in MODES:
            raise StartupError(f'mode must be one of {MODES}, got {p["mode"]!r}')
        check_positive(p, 'control_rate', 'chunk_timeout', 'hold_timeout', 'joint_state_timeout',
                       'diagnostics_rate', 'max_chunk_bytes', 'max_chunk_rate', 'gripper_deadband',
                       'gripper_goal_timeout', allow_zero=('hold_timeout', 'gripper_deadband'))
        if p['chunk_space'] not in CHUNK_SPACES:
            raise StartupError(f'chunk_space must be one of {CHUNK_SPACES}, got {p["chunk_space"]!r}')
        try:
            self.robot = RobotProfile.load(p['robot'])
            ee = EEChunkConverter.for_robot(self.robot) if p['chunk_space'] == 'ee' else None
            self.core = ChunkController(
                self.robot, p['mode'], p['control_rate'], p['interpolation'], p['chunk_timeout'],
                p['hold_timeout'], p['joint_state_timeout'], gripper_mode=p['gripper_mode'], ee=ee)
        except (ValueError, FileNotFoundError) as exc:
            raise StartupError(str(exc)) from exc
        self.p = p
        self.log = NodeReasonLog(self)
        self.gripper_out = None
        if self.core.gripper_mode != 'none':
            topic = p['gripper_topic'] or ('~/dry_run/gripper' if p['dry_run'] else '')
            self.gripper_out = GripperOutput(
                self, self.robot.gripper, self.core.gripper_mode, topic, p['gripper_forward_value'],
                p['gripper_joint'], p['gripper_deadband'], p['gripper_goal_timeout'], self.core.trajectory_lead,
                self.log)
        self._lock = threading.Lock()
        self._periods = []
        self._overruns = 0
        self._last_position = None    # the last position sent, and the largest step between two sent
        self._max_step = 0.0
        self._last_reason = None
        self._gripper_holding = None  # why the gripper held, as last logged (GripperChannel.holding)
        # chunk intake (_take_chunks): owned by the control loop, see there
        self._newest_chunk = None     # bytes of the newest chunk not decoded yet
        self._superseded = 0          # chunks a newer one replaced before they were decoded
        self._next_decode = 0.0       # wall time (perf_counter) the loop may decode the next chunk
        self._last_sequence = {}      # publisher gid -> last publication sequence number seen
        topic = {'effort': p['effort_topic'], 'position': p['position_topic'],
                 'target': p['target_topic'], 'trajectory': p['trajectory_topic'], 'pose': p['target_pose_topic']}
        if p['dry_run']:
            topic = {kind: f'~/dry_run/{kind}' for kind in topic}
        kind = {'impedance': 'effort', 'position': 'position', 'impedance_target': 'target',
                'trajectory': 'trajectory', 'cartesian_target': 'pose'}[p['mode']]
        msg_type = {'effort': Float64MultiArray, 'position': Float64MultiArray,
                    'target': JointState, 'trajectory': JointTrajectory, 'pose': PoseStamped}[kind]
        self.out_pub = self.create_publisher(msg_type, topic[kind], OUTPUT_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', COMMAND_QOS)
        self.create_subscription(JointState, p['joint_states_topic'], self._on_joint_state, SENSOR_QOS)
        # Chunks are not a callback: the control loop takes them itself (_take_chunks), raw, from a
        # subscription the executor never waits on (a callback costs the executor ~0.2 ms per message,
        # a fifth of a core at 1000 chunks/s; a take costs a few microseconds). CHUNK_INTAKE_QOS keeps
        # only the newest few: when the loop falls behind, DDS drops the older ones.
        self.ee = p['chunk_space'] == 'ee'
        chunk_type, chunk_topic = ((MultiDOFJointTrajectory, p['ee_chunk_topic']) if self.ee
                                   else (JointTrajectory, p['chunk_topic']))
        self._chunk_sub = self.create_subscription(
            chunk_type, chunk_topic, _taken_by_the_loop, CHUNK_INTAKE_QOS, raw=True,
            callback_group=TakenByTheLoop())
        self.create_service(Trigger, '~/stop', self._stop)
        self.create_service(Trigger, '~/resume', self._resume)
        self.create_service(Trigger, '~/reset', self._reset)
        self.create_timer(1.0 / p['diagnostics_rate'], self._publish_diagnostics)
        # the control thread waits for the GIL whenever it wakes: another thread holding it (callbacks,
        # diagnostics) hands it over after this long (Python's default 5 ms is 2.5 cycles at 500 Hz)
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_S))
        self._running = True
        self._thread = threading.Thread(target=self._loop, name='control', daemon=True)
        self._thread.start()
        self.get_logger().info(
            f'{p["mode"]} mode at {p["control_rate"]:.0f} Hz -> {self.out_pub.topic_name}'
            f'{" (DRY RUN)" if p["dry_run"] else ""}, robot {self.robot.name}, gripper {self.core.gripper_mode}, '
            f'{p["chunk_space"]} chunks from {chunk_topic}'
            + (f' -> {self.gripper_out.name}' if self.gripper_out else ''))

    def _on_joint_state(self, msg: JointState):
        with self._lock:
            reason = self.core.on_joint_state(msg.name, msg.position, msg.velocity, now_sec(self))
        if reason:
            self.log.warn('ignored joint state', reason)

    def _take_chunks(self, now: float):
        """In the control loop, every cycle: take what came on the chunk topic (raw bytes: the size is
        checked before anything is decoded, since rclpy turning a 20000-point chunk into Python
        objects blocks this process for half a second), keep the newest, and decode and judge it, at
        most max_chunk_rate times a second (a decode and an accept cost 0.3-1.3 ms of a 2 ms cycle;
        chunks come at 1-50 Hz from a policy, an expert or a leader arm). Chunks a newer one replaced
        before they were decoded count as superseded in /diagnostics."""
        sub = self._chunk_sub
        while True:
            try:
                with sub.handle:
                    taken = sub.handle.take_message(sub.msg_type, sub.raw)
            except Exception:  # noqa: BLE001 - the node is being destroyed
                return
            if taken is None:
                break
            data, info = taken[0], (taken[1] if len(taken) > 1 else None)
            self._superseded += self._sequence_gap(info)
            if len(data) > self.p['max_chunk_bytes']:
                with self._lock:
                    self.core.stats['chunks_rejected'] += 1
                self.log.warn('rejected chunk', f'{len(data)} bytes, more than max_chunk_bytes='
                              f'{self.p["max_chunk_bytes"]} (not read)')
                continue
            if self._newest_chunk is not None:
                self._superseded += 1
            self._newest_chunk = data
        wall = time.perf_counter()
        if self._newest_chunk is None or wall < self._next_decode:
            return
        data, self._newest_chunk = self._newest_chunk, None
        self._next_decode = wall + 1.0 / self.p['max_chunk_rate']
        try:
            if self.ee:
                kin, grip = self.robot.kinematics, self.robot.gripper
                traj, reason = ee_trajectory_from_msg(deserialize_message(data, MultiDOFJointTrajectory),
                                                      kin.base_frame, kin.tip_frame, grip.command_name if grip else None)
            else:
                traj, reason = trajectory_from_msg(deserialize_message(data, JointTrajectory)), None
        except Exception as exc:  # noqa: BLE001 - whatever the bytes were, it is not a chunk
            traj, reason = None, f'cannot deserialize it: {exc}'
        with self._lock:
            if traj is None:
                self.core.stats['chunks_rejected'] += 1
            else:
                reason = self.core.on_chunk(traj, now)
            note = self.core.ee_note if self.ee and reason is None else None
        if reason:
            self.log.warn('rejected chunk', reason)
        elif note:
            self.log.warn('end-effector chunk', note)

    def _sequence_gap(self, info) -> int:
        """Chunks of this publisher that DDS dropped before this one (its queue keeps the newest)."""
        sequence = info.get('publication_sequence_number') if info else None
        gid = info.get('publisher_gid') if info else None
        if not sequence or not gid:
            return 0
        key = bytes(gid.get('data', b'')) if isinstance(gid, dict) else bytes(gid)
        last = self._last_sequence.get(key)
        self._last_sequence[key] = sequence
        return max(0, sequence - last - 1) if last is not None and sequence > last else 0

    def _stop(self, _request, response):
        with self._lock:
            self.core.stop(now_sec(self))
        if self.gripper_out:
            self.gripper_out.hold()
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
        if self.gripper_out:
            self.gripper_out.reset()
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
            self._take_chunks(clock.now().nanoseconds * 1e-9)
            now = clock.now().nanoseconds * 1e-9     # after the chunk: a decode takes a while
            with self._lock:
                command = self.core.update(now)
                width = self.core.gripper_update(now)
                state, reason = self.core.state, self.core.reason
                gripper = self.core.gripper
                holding = gripper.holding if gripper is not None else None
                held_width = gripper.width_cmd if gripper is not None else None
            if (holding is None) != (self._gripper_holding is None):
                self._log_gripper_hold(holding, held_width)
            self._gripper_holding = holding
            if reason != self._last_reason and reason:
                self.get_logger().info(f'{state}: {reason}')
            self._last_reason = reason
            if command is not None or self.gripper_out is not None:
                try:
                    if command is not None:
                        self._publish(command, now)
                    if self.gripper_out is not None:
                        self.gripper_out.send(width)
                except Exception:  # the context is shutting down under us
                    if self._running and rclpy.ok(context=self.context):
                        raise
                    return
        self._send_last_command(clock.now().nanoseconds * 1e-9)

    def _log_gripper_hold(self, holding, width):
        """The gripper started or stopped holding for lost finger joints (GripperChannel.holding)."""
        at = 'where it is (nothing commanded yet)' if width is None else f'at {width:.4f} m'
        if holding:
            self.log.warn('gripper holding', f'{at}: {holding}', kind='gripper holding')
        else:
            self.get_logger().info(f'gripper: finger joints measured again: following the chunks (held {at})')

    def _send_last_command(self, now: float):
        """The orderly stop, after the last cycle: the arm left holding (ChunkController.shutdown)."""
        with self._lock:
            command = self.core.shutdown(now)
        if command is None or not rclpy.ok(context=self.context):
            return
        try:
            self._publish(command, now)
            # delivered before the node and its publisher go away (reliable: the readers acknowledge)
            delivered = self.out_pub.wait_for_all_acked(Duration(seconds=LAST_COMMAND_ACK_S))
        except Exception:  # noqa: BLE001 - the context went away meanwhile: nothing more can be sent
            return
        what = 'zero torque' if command.kind == 'effort' else 'hold where the arm is'
        if delivered:
            self.get_logger().info(f'stopped: sent a last {command.kind} command ({what})')
        else:
            self.get_logger().warning(f'stopped: sent a last {command.kind} command ({what}), not '
                                      f'acknowledged within {LAST_COMMAND_ACK_S} s')

    def _publish(self, command, now: float):
        if command.kind == 'trajectory':
            self.out_pub.publish(trajectory_to_msg(command.trajectory))
        elif command.kind == 'pose':
            self.out_pub.publish(pose_to_msg(command.pose, self.robot.kinematics.base_frame, now))
            return
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
                      **self._gripper_diagnostics(),
                      **{k: str(v) for k, v in core.stats.items()}}
            if core.ee is not None:
                values.update({'chunk_space': 'ee', 'ee_note': core.ee_note or '',
                               **{k: str(v) for k, v in core.ee.stats.items()}})
            level = LEVEL.get(core.state, DiagnosticStatus.WARN)
            if values.get('gripper_goal_failed') == 'true' and level == DiagnosticStatus.OK:
                level = DiagnosticStatus.WARN     # the gripper server rejected or aborted the newest goal
        periods, self._periods = np.array(self._periods), []
        if periods.size:
            values['loop_period_p50_ms'] = f'{np.percentile(periods, 50) * 1e3:.3f}'
            values['loop_period_p99_ms'] = f'{np.percentile(periods, 99) * 1e3:.3f}'
            values['loop_period_max_ms'] = f'{periods.max() * 1e3:.3f}'   # the longest stall since the last
            values['loop_rate_hz'] = f'{1.0 / periods.mean():.1f}'
        values['overruns'] = str(self._overruns)
        values['chunks_superseded'] = str(self._superseded)   # a newer one came before it was decoded
        values['max_command_step_rad'] = f'{self._max_step:.5f}'   # since start: what was really sent
        message = f'{values["state"]}{": " + values["reason"] if values["reason"] else ""}'
        publish_status(self, self.diag_pub, level, 'chunk controller', message, self.robot.name, values)

    def _gripper_diagnostics(self) -> dict:
        """Under self._lock: the gripper's width, clamps and output (sent, waited, goal results)."""
        g = self.core.gripper
        if g is None or self.gripper_out is None:
            return {'gripper_mode': self.core.gripper_mode}
        fingers = 'measured' if g.fingers_seen else 'not in the joint states (open loop)'
        if g.holding:
            fingers = f'holding: {g.holding}'
        return {'gripper_width_cmd_m': 'none' if g.width_cmd is None else f'{g.width_cmd:.4f}',
                'gripper_clamped': ', '.join(f'{k}={v}' for k, v in g.filter.counts.items()),
                'gripper_fingers': fingers,
                **{k: str(v) for k, v in g.stats.items()}, **self.gripper_out.diagnostics()}

    def close(self):
        """End the control loop between two cycles; it sends its last command (_send_last_command)."""
        self._running = False
        self._thread.join(timeout=2.0)
        if self._thread.is_alive():
            self.get_logger().warning('the control loop did not end within 2 s')


def main(args=None):
    return run_node(ControllerNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
