"""The controller node's gripper output: the safe width of each cycle (ChunkController.gripper_update)
as a message, by `gripper_mode` (control/gripper.py decides what and when; docs/safety.md):

  forward     std_msgs/Float64MultiArray [value] every cycle on /gripper_controller/commands: the
              width itself (gripper_forward_value=width: the MuJoCo sim) or the finger joint's
              position (=joint: a forward_command_controller on the finger joint, Franka width/2)
  trajectory  trajectory_msgs/JointTrajectory to a gripper joint_trajectory_controller
              (/gripper_controller/joint_trajectory), one point in joint units, timed at max speed
  action      control_msgs/action/GripperCommand goals (position in joint units, max_effort = the
              profile's force) to /gripper_controller/gripper_cmd (gripper_action_controller; the
              Robotiq driver) or franka_gripper's ~/gripper_action; deadband, one goal at a time;
              rejected and aborted goals are logged with the reason and reported in /diagnostics
"""
import threading
import time

from rclpy.duration import Duration
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ros2_imitation.control.gripper import SendGate
from ros2_imitation.nodes.common import StartupError
from ros2_imitation.qos import OUTPUT_QOS

TOPICS = {'forward': '/gripper_controller/commands', 'trajectory': '/gripper_controller/joint_trajectory',
          'action': '/gripper_controller/gripper_cmd'}
STATUS = {4: 'succeeded', 5: 'canceled', 6: 'aborted'}   # action_msgs/GoalStatus


def gripper_command_type():
    """control_msgs/action/GripperCommand, or a StartupError saying where to get it."""
    try:
        from control_msgs.action import GripperCommand
    except ImportError as exc:
        raise StartupError(
            f'gripper_mode action needs the control_msgs package (control_msgs/action/GripperCommand), '
            f'which is not installed ({exc}): install ros-<distro>-control-msgs, or without a ROS '
            f'install build it with `python tools/control_msgs/build.py` and put build/control_msgs/<venv>/python '
            f'on PYTHONPATH; or choose gripper_mode forward, trajectory or none') from None
    return GripperCommand


class GripperOutput:
    def __init__(self, node, spec, mode: str, topic: str, forward_value: str, joint: str,
                 deadband: float, goal_timeout: float, lead: float, log):
        if forward_value not in ('width', 'joint'):
            raise StartupError(f'gripper_forward_value must be width or joint, got {forward_value!r}')
        self.node, self.spec, self.mode, self.log = node, spec, mode, log
        self.forward_value, self.joint, self.lead = forward_value, joint or spec.joints[0], lead
        self.goal_timeout = goal_timeout
        self.topic = topic or TOPICS[mode]
        self.gate = SendGate(deadband, one_at_a_time=mode == 'action')
        self._lock = threading.Lock()          # the gate: the control loop offers, callbacks finish
        self._sent_at = None
        self.results = {'goals_succeeded': 0, 'goals_rejected': 0, 'goals_aborted': 0, 'goals_canceled': 0,
                        'goals_timed_out': 0, 'server_absent': 0}
        self.last_failure, self.failing = '', False   # the last failure; whether the newest goal failed
        if mode == 'action':
            from rclpy.action import ActionClient
            self.action_type = gripper_command_type()
            self.client = ActionClient(node, self.action_type, self.topic)
        else:
            self.pub = node.create_publisher(Float64MultiArray if mode == 'forward' else JointTrajectory,
                                             self.topic, OUTPUT_QOS)

    @property
    def name(self) -> str:
        return self.topic

    def hold(self):
        """Stop: the next width goes whatever the deadband (a trajectory or goal in flight ends here)."""
        with self._lock:
            self.gate.force()

    def reset(self):
        with self._lock:
            self.gate.reset()

    def send(self, width):
        """From the control loop, every cycle: the safe width, or None (nothing to command)."""
        if self.mode == 'forward':
            if width is not None:
                value = width if self.forward_value == 'width' else self.spec.to_joint(width)
                self.pub.publish(Float64MultiArray(data=[float(value)]))
            return
        with self._lock:
            if self.mode == 'action' and self.gate.in_flight and self._sent_at is not None and \
                    time.monotonic() - self._sent_at > self.goal_timeout:
                self._failed('goals_timed_out', f'no result within {self.goal_timeout:g} s')
            if self.mode == 'action' and width is not None and not self.client.server_is_ready():
                self.results['server_absent'] += 1
                self.gate.reset()
                return self.log.warn('gripper', f'no GripperCommand server on {self.topic}: width not sent',
                                     kind='server_absent')
            before = self.gate.sent
            width = self.gate.offer(width)
        if width is None:
            return
        if self.mode == 'trajectory':
            msg = JointTrajectory(joint_names=[self.joint])
            seconds = max(self.lead, abs(width - (width if before is None else before)) / self.spec.max_speed)
            msg.points = [JointTrajectoryPoint(positions=[float(self.spec.to_joint(width))],
                                               time_from_start=Duration(seconds=seconds).to_msg())]
            self.pub.publish(msg)
        else:
            goal = self.action_type.Goal()
            goal.command.position = float(self.spec.to_joint(width))
            goal.command.max_effort = float(self.spec.force)
            self._sent_at = time.monotonic()
            self.client.send_goal_async(goal).add_done_callback(self._on_goal_response)

    # ---- action results (executor thread) ----
    def _on_goal_response(self, future):
        handle = future.result() if future.exception() is None else None
        if handle is None or not handle.accepted:
            why = f'{future.exception()}' if handle is None else 'the server rejected it'
            with self._lock:
                self._failed('goals_rejected', f'goal rejected: {why}')
            return
        handle.get_result_async().add_done_callback(self._on_result)

    def _on_result(self, future):
        with self._lock:
            if future.exception() is not None:
                return self._failed('goals_aborted', f'no result: {future.exception()}')
            response = future.result()
            status = STATUS.get(response.status, f'status {response.status}')
            if status == 'succeeded':
                self.results['goals_succeeded'] += 1
                self.failing = False
                self.gate.done()
                return
            r = response.result
            self._failed(f'goals_{status}' if f'goals_{status}' in self.results else 'goals_aborted',
                         f'goal {status} (position {r.position:.4f}, effort {r.effort:.1f}, stalled {r.stalled}, '
                         f'reached_goal {r.reached_goal})')

    def _failed(self, key, reason):
        self.results[key] += 1
        self.last_failure, self.failing = reason, True
        self.gate.done()
        self.log.warn('gripper', reason, kind=key)

    def diagnostics(self) -> dict:
        with self._lock:
            values = {'gripper_mode': self.mode, 'gripper_output': self.topic, **{
                k: str(v) for k, v in {**self.gate.stats, **self.results}.items()}}
            if self.last_failure:
                values['gripper_last_failure'] = self.last_failure
                values['gripper_goal_failed'] = str(self.failing).lower()
        return values
