"""Scripted expert for the sim tasks: privileged task state in, action chunks out (ros2_imitation.sim.experts).

It acts through the same controller as a policy: every `execute_steps` x `chunk_dt` of sim time it
publishes a JointTrajectory chunk of `chunk_size` points (header.stamp = when the first point
applies, `lead` s ahead) on `chunk_topic`, re-planned from /joint_states and the latest
/sim/task_state. `label_topic` carries the same chunk (the action label bag2dataset prefers, as
leader_arm_node publishes what the operator commanded). ~/info (latched JSON) describes the episode:
its mode and variations, sim episode and seed.

Noise-injected collection (executing perturbed chunks, labelled with the clean plan or DART's
correction) is no longer offered: in the registered study it trained worse policies than clean
demonstrations, with either label (docs/noise_study.md, H5). sim/collection.py keeps it for that study.

Time: the chunk stamps are on the sim clock, taken from the /joint_states header stamps (the
sim's clock at each state), so the node needs no /clock subscription (500 Hz of callbacks): run it
with use_sim_time false, as config/graphs/record_sim.yaml does (`clock: node` uses the node clock).

Columns: the arm joints; an expert with a gripper (pick_place) adds the gripper opening in metres,
named by the robot profile's `gripper.command_name` (robot.py: the gripper convention), so the
controller splits it off as it does a gripper policy's.

Services (std_srvs/Trigger): ~/reset clears the plan and draws a new mode for the next
episode (it acts on the first task state that arrives after the call; the reply's message is the
episode JSON); ~/pause stops sending chunks until the next ~/reset. With auto_reset it also starts
a new episode by itself when the sim's episode counter changes.
"""
import json
import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ros2_imitation.control.trajectory import Trajectory
from ros2_imitation.nodes.common import NodeReasonLog, StartupError, declare, now_sec, run_node, to_sec
from ros2_imitation.nodes.conversions import trajectory_to_msg
from ros2_imitation.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS
from ros2_imitation.robot import RobotProfile
from ros2_imitation.runtime.chunking import ChunkTiming


class ExpertNode(Node):
    def __init__(self):
        super().__init__('expert')
        p = {name: declare(self, name, default) for name, default in dict(
            task='push_cube', seed=-1, modes='', chunk_size=16, chunk_dt=0.1, execute_steps=8, lead=0.1,
            speed=0.12, push_speed=0.08, auto_reset=True, start_active=True, state_timeout=1.0,
            clock='joint_states', robot='panda',
            chunk_topic='/ros2_imitation/action_chunk', label_topic='/ros2_imitation/expert_label',
            task_state_topic='/sim/task_state', joint_states_topic='/joint_states').items()}
        try:
            import mujoco

            from ros2_imitation.sim import experts, scene
            model = mujoco.MjModel.from_xml_string(scene.build_xml())    # kinematics only
            timing = ChunkTiming(int(p['chunk_size']), float(p['chunk_dt']), int(p['execute_steps']),
                                 float(p['lead']))
            seed = None if int(p['seed']) < 0 else int(p['seed'])
            modes = [m.strip() for m in str(p['modes']).split(',') if m.strip()] or None
            kwargs = dict(timing=timing, seed=seed, modes=modes, speed=float(p['speed']))
            if p['task'] == 'push_cube':
                kwargs['push_speed'] = float(p['push_speed'])
            self.expert = experts.make_expert(p['task'], model, **kwargs)
            self.joints = list(experts.ARM_JOINTS)
            if getattr(self.expert, 'GRIPPER', False):   # 8 columns: + the profile's gripper column
                robot = RobotProfile.load(str(p['robot']))
                if robot.gripper is None:
                    raise ValueError(f'the {p["task"]} expert commands a gripper; {robot.describe_dims()}')
                self.joints.append(robot.gripper.command_name)
        except (ValueError, FileNotFoundError) as exc:
            raise StartupError(str(exc)) from exc
        if p['clock'] not in ('joint_states', 'node'):
            raise StartupError(f"clock must be joint_states or node, got {p['clock']!r}")
        self.p = p
        self.arm = list(experts.ARM_JOINTS)
        self.log = NodeReasonLog(self)
        self._lock = threading.Lock()
        self._q = None
        self._state = None            # latest task state
        self._state_wall = 0.0        # monotonic time it arrived
        self._state_count = 0
        self._fresh_after = 0         # plan only on task states numbered above this
        self._episode = None          # the sim episode being acted on
        self._next_plan = 0.0
        self._active = bool(p['start_active'])
        self._episode_info = {}
        self.chunk_pub = self.create_publisher(JointTrajectory, p['chunk_topic'], COMMAND_QOS)
        self.label_pub = self.create_publisher(JointTrajectory, p['label_topic'], COMMAND_QOS)
        self.info_pub = self.create_publisher(String, '~/info', LATCHED_QOS)
        self.create_subscription(String, p['task_state_topic'], self._on_state, STATE_QOS)
        self.create_subscription(JointState, p['joint_states_topic'], self._on_joints, SENSOR_QOS)
        self.create_service(Trigger, '~/reset', self._reset)
        self.create_service(Trigger, '~/pause', self._pause)
        self._new_episode()
        self.get_logger().info(
            f'{p["task"]} expert, modes {list(self.expert.modes)}, chunks of {timing.size} x {timing.dt} s '
            f'every {timing.period:.2f} s')

    # ---- episodes ----
    def _new_episode(self) -> dict:
        """Caller holds the lock (or is __init__)."""
        info = dict(self.expert.reset())
        info['expert_episode'] = self.expert.episodes
        self._episode_info = info
        self._episode = None
        self._next_plan = 0.0
        self._fresh_after = self._state_count
        return info

    def _reset(self, _request, response):
        with self._lock:
            info = self._new_episode()
            self._active = True
        response.success, response.message = True, json.dumps(info)
        self.get_logger().info(f'new episode: mode {info["mode"]}')
        return response

    def _pause(self, _request, response):
        with self._lock:
            self._active = False
        response.success, response.message = True, 'paused until ~/reset'
        return response

    # ---- inputs ----
    def _on_state(self, msg: String):
        try:
            state = json.loads(msg.data)
        except ValueError:
            return self.log.warn('ignored task state', 'not JSON')
        if not isinstance(state, dict) or state.get('task', self.p['task']) != self.p['task']:
            return self.log.warn('ignored task state', f'not one of a {self.p["task"]} sim')
        with self._lock:
            self._state, self._state_wall = state, time.monotonic()
            self._state_count += 1
            episode = state.get('episode')
            if self._active and self._episode is not None and episode != self._episode:
                if self.p['auto_reset']:
                    info = self._new_episode()
                    self.get_logger().info(f'sim episode {episode} started: mode {info["mode"]}')
                else:
                    self._active = False

    def _on_joints(self, msg: JointState):
        index = {n: i for i, n in enumerate(msg.name)}
        if any(j not in index for j in self.arm) or len(msg.position) != len(msg.name):
            return self.log.warn('ignored joint state', f'needs {self.arm}')
        q = np.array([msg.position[index[j]] for j in self.arm])
        now = to_sec(msg.header.stamp) if self.p['clock'] == 'joint_states' else now_sec(self)
        with self._lock:
            self._q = q
            if not self._active or now == 0.0 or now < self._next_plan:
                return
            if self._state is None or self._state_count <= self._fresh_after:
                return       # no task state of this episode yet
            if time.monotonic() - self._state_wall > self.p['state_timeout']:
                return self.log.warn('not acting', f'task state older than {self.p["state_timeout"]} s')
            state = self._state
            if self._episode is None:
                self._episode = state.get('episode')
                self._episode_info.update(sim_episode=self._episode, seed=state.get('seed'))
                self.info_pub.publish(String(data=json.dumps(self._episode_info)))
            chunk = self.expert.plan(now, q, state)
            self._next_plan = now + self.expert.timing.period
        if chunk.ik_error > 0.005:
            self.log.warn('IK', f'best effort {chunk.ik_error * 1000:.1f} mm off in phase {chunk.phase}')
        if not self.context.ok():
            return       # shutting down
        msg = trajectory_to_msg(Trajectory.from_absolute(self.joints, chunk.times, chunk.positions))
        self.chunk_pub.publish(msg)
        self.label_pub.publish(msg)         # the label: what was executed


def main(args=None):
    return run_node(ExpertNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
