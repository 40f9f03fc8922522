"""Teleoperation: a SpaceMouse (spacenav) or a gamepad (joy_node) drives the end effector through the
chunk controller, for recording demonstrations on a physical arm or in the sim.

Inputs: geometry_msgs/Twist on `twist_topic` (spacenav's /spacenav/twist) and sensor_msgs/Joy on
`joy_topic` (spacenav's /spacenav/joy for its buttons; joy_node's /joy with `axes_map` for a gamepad),
and the arm's /joint_states (the measured tip, by forward kinematics). control/teleop.py does the rest:
deadman, input timeout, speed caps, the target's lead over the arm, the workspace box, the gripper
toggle. Output, at `rate`: a one-point end-effector chunk (trajectory_msgs/MultiDOFJointTrajectory on
/ros2_imitation/ee_chunk) to the target, `lead` seconds ahead, which a controller with
`chunk_space:=ee` turns into joints by IK inside every limit. Nothing is sent until the arm's joint
states arrive; with the deadman released the target stays where it was and the arm holds there.
"""
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Twist
from rclpy.node import Node
from sensor_msgs.msg import JointState, Joy
from trajectory_msgs.msg import MultiDOFJointTrajectory

from ros2_imitation.control.ee_chunk import EE_COLUMNS, ee_columns
from ros2_imitation.control.kinematics import ArmKinematics, KinematicsError
from ros2_imitation.control.teleop import Teleop, TeleopSettings
from ros2_imitation.control.trajectory import Trajectory
from ros2_imitation.nodes.common import (
    NodeReasonLog,
    StartupError,
    check_positive,
    declare,
    now_sec,
    publish_status,
    run_node,
)
from ros2_imitation.nodes.conversions import ee_trajectory_to_msg
from ros2_imitation.qos import COMMAND_QOS, SENSOR_QOS
from ros2_imitation.robot import RobotProfile
from ros2_imitation.sensors.proprioception import JointMapper, MappingError


class TeleopNode(Node):
    def __init__(self):
        super().__init__('teleop')
        p = {name: declare(self, name, default) for name, default in dict(
            robot='panda', twist_topic='/spacenav/twist', joy_topic='/spacenav/joy',
            joint_states_topic='/joint_states', ee_chunk_topic='/ros2_imitation/ee_chunk', rate=50.0,
            lead=0.1, max_linear_speed=0.1, max_angular_speed=0.5, timeout=0.25, max_lead=0.05,
            deadman_button=0, gripper_button=1, joy_axes=0, axes_map=[-1], axes_scale=[1.0]).items()}
        check_positive(p, 'rate', 'lead', 'max_linear_speed', 'max_angular_speed', 'timeout', 'max_lead')
        try:
            self.robot = RobotProfile.load(p['robot'])
            self.kin = ArmKinematics.for_robot(self.robot)
            limits = self.robot.kinematics.task_limits
            if limits is None:
                raise ValueError(f'robot profile {self.robot.name!r} has no workspace (kinematics.workspace_lower/upper)')
            axes_map = tuple(int(a) for a in p['axes_map']) if list(p['axes_map']) != [-1] else ()
            scale = tuple(float(v) for v in p['axes_scale']) if len(p['axes_scale']) == 6 else (1.0,) * 6
            grip = self.robot.gripper
            self.teleop = Teleop(TeleopSettings(
                limits.workspace, min(p['max_linear_speed'], limits.max_linear_speed),
                min(p['max_angular_speed'], limits.max_angular_speed), p['timeout'], p['max_lead'],
                p['deadman_button'] if p['deadman_button'] >= 0 else None,
                p['gripper_button'] if p['gripper_button'] >= 0 and grip else None,
                p['joy_axes'] or None, axes_map, scale,
                open_width=grip.width_max if grip else 0.0, closed_width=grip.width_min if grip else 0.0))
        except (FileNotFoundError, ValueError, KinematicsError) as exc:
            raise StartupError(str(exc)) from None
        self.p = p
        self.log = NodeReasonLog(self)
        self.mapper = JointMapper(self.robot.arm_joints)
        self.q = None
        self.gripper_name = self.robot.gripper.command_name if self.robot.gripper else None
        self.pub = self.create_publisher(MultiDOFJointTrajectory, p['ee_chunk_topic'], COMMAND_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', COMMAND_QOS)
        self.create_subscription(Twist, p['twist_topic'], self._on_twist, SENSOR_QOS)
        self.create_subscription(Joy, p['joy_topic'], self._on_joy, SENSOR_QOS)
        self.create_subscription(JointState, p['joint_states_topic'], self._on_joint_state, SENSOR_QOS)
        self.create_timer(1.0 / p['rate'], self._tick)
        self.create_timer(1.0, self._diagnostics)
        self.sent = 0
        self.get_logger().info(
            f'teleop: {p["twist_topic"]} / {p["joy_topic"]} -> {p["ee_chunk_topic"]} at {p["rate"]:g} Hz, '
            f'deadman button {p["deadman_button"]}, gripper button {p["gripper_button"]}, '
            f'{self.teleop.s.max_linear_speed} m/s, {self.teleop.s.max_angular_speed} rad/s')

    def _on_twist(self, msg: Twist):
        reason = self.teleop.on_twist((msg.linear.x, msg.linear.y, msg.linear.z),
                                      (msg.angular.x, msg.angular.y, msg.angular.z), now_sec(self))
        if reason:
            self.log.warn('ignored twist', reason)

    def _on_joy(self, msg: Joy):
        reason = self.teleop.on_joy(msg.axes, msg.buttons, now_sec(self))
        if reason:
            self.log.warn('ignored joy', reason)

    def _on_joint_state(self, msg: JointState):
        try:
            q = self.mapper.map(msg.name, msg.position)
        except MappingError as exc:
            return self.log.warn('ignored joint state', str(exc))
        if np.all(np.isfinite(q)):
            self.q = q

    def _tick(self):
        if self.q is None:
            return
        now = now_sec(self)
        p_tip, r_tip = self.kin.tip_pose(self.q)
        position, rotation, width = self.teleop.update(now, p_tip, r_tip)
        columns = ee_columns(position[None], rotation[None])
        names = EE_COLUMNS
        if self.gripper_name:
            columns, names = np.append(columns, [[width]], axis=1), EE_COLUMNS + (self.gripper_name,)
        traj = Trajectory(names, now, np.array([self.p['lead']]), columns)
        self.pub.publish(ee_trajectory_to_msg(traj, self.robot.kinematics.base_frame,
                                              self.robot.kinematics.tip_frame, self.gripper_name))
        self.sent += 1

    def _diagnostics(self):
        t = self.teleop
        level = DiagnosticStatus.OK if t.reason is None else DiagnosticStatus.WARN
        message = 'moving' if t.reason is None else t.reason
        publish_status(self, self.diag_pub, level, 'teleop', message, self.robot.name, {
            'deadman': str(t.deadman), 'gripper_closed': str(t.gripper_closed), 'chunks_sent': str(self.sent),
            'inputs_rejected': str(t.stats['inputs_rejected'])})


def main(args=None):
    return run_node(TeleopNode, args)


if __name__ == '__main__':
    main()
