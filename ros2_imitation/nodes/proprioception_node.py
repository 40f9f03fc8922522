"""Proprioception node: /joint_states in any order -> the policy's JointState at a fixed rate.

Joints are mapped by name into the configured order (arm then gripper joints, default from the
robot profile). With `gripper_width` (a gripper policy's graph sets it) the finger joints become
ONE value named the profile's gripper.command_name: the finger-to-finger opening in metres (robot.py:
the gripper convention); a missing, stale or NaN finger joint drops the message as an arm joint does.
With `ee_state` (an end-effector policy's graph) the arm joints become the tip pose by forward
kinematics (control/ee_chunk.EE_COLUMNS: position in the base frame + 6D rotation).
 velocities are estimated when the source has none; stale, non-finite or
incomplete input is reported (log, throttled, and /diagnostics) and never published as if fine.
The published message keeps the source's header (stamp and frame), not the publish time.
The logic is in ros2_imitation.sensors.proprioception (ROS-free).
"""
import math

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import JointState

from ros2_imitation.nodes.common import StartupError, declare, publish_status, run_node, to_sec
from ros2_imitation.nodes.throttle import ReasonLog
from ros2_imitation.qos import SENSOR_QOS, STATE_QOS
from ros2_imitation.robot import RobotProfile
from ros2_imitation.sensors.proprioception import (
    ERROR,
    LEVEL_NAMES,
    ProprioTracker,
    RateMeter,
    ee_pose_sample,
    gripper_width_sample,
)

LEVEL_BYTES = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN, 2: DiagnosticStatus.ERROR}


class ProprioceptionNode(Node):
    def __init__(self):
        super().__init__('proprioception')
        robot = declare(self, 'robot', 'panda')
        try:
            profile = RobotProfile.load(robot)
        except (FileNotFoundError, ValueError) as exc:
            raise StartupError(f'robot {robot!r}: {exc}')
        arm = self._names('arm_joints', profile.arm_joints)
        gripper = self._names('gripper_joints', profile.gripper_joints)
        self.width_spec = None
        if declare(self, 'gripper_width', False):
            if profile.gripper is None:
                raise StartupError(f'gripper_width needs a robot with a gripper; {profile.describe_dims()}')
            if not gripper:
                raise StartupError('gripper_width needs the finger joints (gripper_joints is empty)')
            self.width_spec = profile.gripper
        p = self.p = {name: self._number(name, default) for name, default in dict(
            rate=50.0, stale_timeout=0.25, velocity_filter_tau=0.01, diagnostics_rate=1.0,
            log_throttle=2.0).items()}
        for name in ('rate', 'stale_timeout', 'diagnostics_rate'):
            if p[name] <= 0:
                raise StartupError(f'{name} must be > 0, got {p[name]}')
        self.input_topic = declare(self, 'input_topic', '/joint_states')
        self.output_topic = declare(self, 'output_topic', '/ros2_imitation/proprio')
        self.hardware_id = profile.name
        if not arm:
            raise StartupError('arm_joints is empty')
        try:
            self.tracker = ProprioTracker(arm, gripper, p['stale_timeout'], p['velocity_filter_tau'])
        except ValueError as exc:
            raise StartupError(str(exc))
        self.names = list(self.tracker.joints) if self.width_spec is None else \
            list(arm) + [self.width_spec.command_name]
        self.kinematics = None
        if declare(self, 'ee_state', False):     # an end-effector policy's graph sets it
            from ros2_imitation.control.ee_chunk import EE_COLUMNS
            from ros2_imitation.control.kinematics import ArmKinematics, KinematicsError
            if list(arm) != list(profile.arm_joints):
                raise StartupError('ee_state needs the profile\'s arm joints in its order (arm_joints)')
            try:
                self.kinematics = ArmKinematics.for_robot(profile)
            except KinematicsError as exc:
                raise StartupError(f'ee_state: {exc}')
            self.names = list(EE_COLUMNS) + self.names[len(arm):]
        self.log_gate = ReasonLog(p['log_throttle'])
        self.out_rate = RateMeter()
        self.published = 0

        self.pub = self.create_publisher(JointState, self.output_topic, STATE_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', STATE_QOS)
        self.create_subscription(JointState, self.input_topic, self._on_joint_state, SENSOR_QOS)
        self.create_timer(1.0 / p['rate'], self._tick)
        # diagnostics on the steady clock: they must keep coming while sim time waits or stops
        self.create_timer(1.0 / p['diagnostics_rate'], self._diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f'{self.input_topic} -> {self.output_topic} at {p["rate"]:g} Hz, joints {self.names}, '
            f'stale after {p["stale_timeout"]:g} s')

    # ---- parameters ----
    def _names(self, name, default) -> tuple:
        descriptor = ParameterDescriptor(type=ParameterType.PARAMETER_STRING_ARRAY)
        try:
            value = self.declare_parameter(name, list(default), descriptor).value
        except Exception as exc:
            raise StartupError(f'parameter {name} must be a list of joint names: {exc}')
        return tuple(str(v) for v in (value or []) if str(v))   # [] and [''] both mean none

    def _number(self, name, default) -> float:
        value = self.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=True)).value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise StartupError(f'parameter {name} must be a number, got {value!r}')
        return float(value)

    # ---- input ----
    def _now(self):
        """Node-clock seconds, or None while sim time has no /clock yet."""
        ns = self.get_clock().now().nanoseconds
        return ns * 1e-9 if ns else None

    def _on_joint_state(self, msg: JointState):
        now = self._now()
        if now is None:
            return
        reason = self.tracker.update(to_sec(msg.header.stamp), now, msg.name, msg.position,
                                     msg.velocity, msg.effort, tag=msg.header)
        if reason is not None:
            self._report(f'dropping joint state: {reason}', now, self.tracker.reason_kind)

    def _report(self, reason, now, kind=None):
        line = self.log_gate.should_log(reason, now, kind)
        if line:
            self.get_logger().warning(line)

    # ---- output ----
    def _tick(self):
        now = self._now()
        if now is None:
            return
        sample = self.tracker.current(now)
        if sample is None:
            level, message = self.tracker.status(now)
            if level == ERROR:   # not the WARNs of start-up (no message yet, one message so far)
                self._report(f'not publishing proprioception: {message}', now, 'not publishing')
            return
        if self.width_spec is not None:
            sample = gripper_width_sample(sample, len(self.tracker.arm_joints), self.width_spec)
        if self.kinematics is not None:
            sample = ee_pose_sample(sample, self.kinematics)
        msg = JointState()
        msg.header = sample.tag          # the source's stamp and frame, not the publish time
        msg.name = self.names
        msg.position = sample.position.tolist()
        msg.velocity = sample.velocity.tolist()
        if sample.effort is not None:
            msg.effort = sample.effort.tolist()
        self.pub.publish(msg)
        self.published += 1
        self.out_rate.tick(now)

    def _diagnostics(self):
        now = self._now()
        if now is None:
            level, message, age = 1, 'use_sim_time is set and no /clock yet', None
        else:
            level, message = self.tracker.status(now)
            age = self.tracker.age(now)
        t = self.tracker
        values = {
            'age_of_last_joint_state': 'none' if age is None else f'{age:.3f}',
            'input_rate': f'{t.input_rate.rate(now):.1f}' if now is not None else '0.0',
            'publish_rate': f'{self.out_rate.rate(now):.1f}' if now is not None else '0.0',
            'target_rate': f'{self.p["rate"]:g}',
            'stale_timeout': f'{t.stale_timeout:g}',
            'received': str(t.received),
            'rejected': str(t.rejected),
            'published': str(self.published),
            'last_rejection': t.reason or '',
            'level': LEVEL_NAMES[level],
        }
        publish_status(self, self.diag_pub, LEVEL_BYTES[level], 'joint states', message, self.hardware_id, values)


def proprioception() -> ProprioceptionNode:  # start-up errors read "[proprioception] cannot start"
    return ProprioceptionNode()


def main(args=None):
    return run_node(proprioception, args)


if __name__ == '__main__':
    raise SystemExit(main())
