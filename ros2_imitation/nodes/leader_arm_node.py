"""Leader-arm teleoperation bridge: a leader arm's JointState drives the follower through the chunk
controller, so teleoperated demonstrations are recorded exactly like expert or policy ones.

Subscribes `leader_topic` (sensor_msgs/JointState of the leader arm: a second Panda, a GELLO-style
replica, a haptic device's joint output...), maps its joints by name (`leader_joints[i]` drives
`follower_joints[i]`; each value is scale * leader + offset), and at `rate` Hz publishes a one-point
JointTrajectory chunk on `chunk_topic` (header.stamp = now + `lead`: the controller interpolates to it)
and the same chunk on `label_topic` (what the operator commanded: the action label in the bag).

Safety: it only engages when the mapped leader pose is within `engage_tolerance` (rad) of the
follower's measured pose on every joint (move the leader to match the follower first; the log says
which joint is off), and it disengages when the leader goes silent for `leader_timeout` s; the
controller then holds and rests as it does when any chunk stream stops. The controller's safety
layer (limits, step and velocity clamps) applies to every command as always.
"""
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from ros2_imitation.control.trajectory import Trajectory
from ros2_imitation.nodes.common import NodeReasonLog, StartupError, declare, now_sec, run_node
from ros2_imitation.nodes.conversions import trajectory_to_msg
from ros2_imitation.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
from ros2_imitation.robot import RobotProfile


def map_leader(names, positions, leader_joints, scale, offset):
    """Leader JointState -> follower joint values, or (None, reason)."""
    index = {n: i for i, n in enumerate(names)}
    missing = [j for j in leader_joints if j not in index]
    if missing:
        return None, f'leader state lacks {missing}'
    if len(positions) != len(names):
        return None, 'leader state has fewer positions than names'
    q = np.array([positions[index[j]] for j in leader_joints], dtype=float)
    if not np.all(np.isfinite(q)):
        return None, 'leader state has non-finite positions'
    return scale * q + offset, None


class LeaderArmNode(Node):
    def __init__(self):
        super().__init__('leader_arm')
        p = {name: declare(self, name, default) for name, default in dict(
            robot='panda', leader_topic='/leader/joint_states', leader_joints=[''], follower_joints=[''],
            scale=[1.0], offset=[0.0], rate=50.0, lead=0.05, engage_tolerance=0.15, leader_timeout=0.2,
            chunk_topic='/ros2_imitation/action_chunk', label_topic='/ros2_imitation/expert_label',
            joint_states_topic='/joint_states').items()}
        try:
            robot = RobotProfile.load(p['robot'])
        except (ValueError, FileNotFoundError) as exc:
            raise StartupError(str(exc)) from exc
        follower = [j for j in p['follower_joints'] if j] or list(robot.arm_joints)
        leader = [j for j in p['leader_joints'] if j] or list(follower)
        if len(leader) != len(follower):
            raise StartupError(f'leader_joints ({len(leader)}) and follower_joints ({len(follower)}) differ in length')
        if sorted(follower) != sorted(robot.arm_joints):
            # the chunk controller (like a JTC) takes only chunks naming every arm joint
            raise StartupError(f'follower_joints must name each of {list(robot.arm_joints)} once, got {follower}')

        def per_joint(name):
            v = np.asarray(p[name], dtype=float)
            if v.size == 1:
                v = np.full(len(follower), float(v[0]))
            if v.shape != (len(follower),) or not np.all(np.isfinite(v)):
                raise StartupError(f'{name} must be 1 or {len(follower)} finite numbers, got {p[name]}')
            return v
        self.scale, self.offset = per_joint('scale'), per_joint('offset')
        if not (p['rate'] > 0 and p['lead'] > 0 and p['engage_tolerance'] > 0 and p['leader_timeout'] > 0):
            raise StartupError('rate, lead, engage_tolerance and leader_timeout must be positive')
        self.p, self.leader_joints, self.follower_joints = p, leader, follower
        self.log = NodeReasonLog(self, period=2.0)
        self._leader = None          # (q mapped to follower joints, monotonic receive time)
        self._follower = None
        self.engaged = False
        self.chunk_pub = self.create_publisher(JointTrajectory, p['chunk_topic'], COMMAND_QOS)
        self.label_pub = self.create_publisher(JointTrajectory, p['label_topic'], COMMAND_QOS)
        self.state_pub = self.create_publisher(String, '~/state', LATCHED_QOS)
        self.create_subscription(JointState, p['leader_topic'], self._on_leader, SENSOR_QOS)
        self.create_subscription(JointState, p['joint_states_topic'], self._on_follower, SENSOR_QOS)
        self.create_timer(1.0 / p['rate'], self._tick)
        self._set_engaged(False, 'waiting for the leader')
        self.get_logger().info(f'leader {p["leader_topic"]} {leader} -> {follower} at {p["rate"]:.0f} Hz '
                               f'(engages within {p["engage_tolerance"]} rad)')

    def _on_leader(self, msg: JointState):
        q, reason = map_leader(msg.name, msg.position, self.leader_joints, self.scale, self.offset)
        if reason:
            return self.log.warn('ignored leader state', reason)
        self._leader = (q, time.monotonic())

    def _on_follower(self, msg: JointState):
        index = {n: i for i, n in enumerate(msg.name)}
        if all(j in index for j in self.follower_joints) and len(msg.position) == len(msg.name):
            self._follower = np.array([msg.position[index[j]] for j in self.follower_joints])

    def _set_engaged(self, engaged: bool, why: str):
        if engaged != self.engaged or why:
            self.state_pub.publish(String(data=f'{"engaged" if engaged else "disengaged"}: {why}'))
        if engaged != self.engaged:
            (self.get_logger().info if engaged else self.get_logger().warning)(
                f'{"engaged" if engaged else "disengaged"}: {why}')
        self.engaged = engaged

    def _tick(self):
        now = now_sec(self)
        if now == 0.0 or self._leader is None:
            return
        q, received = self._leader
        if time.monotonic() - received > self.p['leader_timeout']:
            if self.engaged:
                self._set_engaged(False, f'leader silent for more than {self.p["leader_timeout"]} s')
            return
        if not self.engaged:
            if self._follower is None:
                return self.log.warn('not engaged', 'no follower joint state yet')
            diff = np.abs(q - self._follower)
            worst = int(np.argmax(diff))
            if diff[worst] > self.p['engage_tolerance']:
                return self.log.warn('not engaged', f'move the leader to the follower pose: '
                                     f'{self.follower_joints[worst]} is {diff[worst]:.2f} rad off')
            self._set_engaged(True, 'leader matches the follower')
        msg = trajectory_to_msg(Trajectory.from_absolute(self.follower_joints, [now + self.p['lead']], q[None, :]))
        self.chunk_pub.publish(msg)
        self.label_pub.publish(msg)


def main(args=None):
    return run_node(LeaderArmNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
