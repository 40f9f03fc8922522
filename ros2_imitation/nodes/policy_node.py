"""Runs the diffusion policy on the robot's observations and publishes timestamped action chunks.

A thin adapter around runtime.PolicyRunner, which owns every online rule (due queries, history by
header.stamp, staleness, seeds, scheduling, continuity, latency, reset epochs): camera Image(s) and
/ros2_imitation/proprio become runner samples, an inference thread runs the queries, and each chunk
goes out on /ros2_imitation/action_chunk (header.stamp = when its first point applies, points `dt`
apart, overtaken actions dropped), with its end-effector path on ~/predicted_chunk (MarkerArray).
An end-effector policy (action_space ee) publishes trajectory_msgs/MultiDOFJointTrajectory on
/ros2_imitation/ee_chunk instead (the tip pose in the base frame, + the gripper opening), which the
controller turns into joints by IK.
"""
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory
from visualization_msgs.msg import MarkerArray

from ros2_imitation.nodes.common import (
    NodeReasonLog,
    StartupError,
    check_positive,
    declare,
    now_sec,
    publish_status,
    run_node,
    to_sec,
)
from ros2_imitation.control.ee_chunk import EE_COLUMNS
from ros2_imitation.nodes.conversions import ee_trajectory_to_msg, trajectory_to_msg
from ros2_imitation.nodes.markers import chunk_markers, marker_kinematics
from ros2_imitation.qos import COMMAND_QOS, SENSOR_QOS, image_qos
from ros2_imitation.robot import RobotProfile
from ros2_imitation.runtime.runner import (PolicyRunner, load_runtime_policy, policy_joint_names,
                                           policy_state_names)
from ros2_imitation.sensors.images import image_to_rgb
from ros2_imitation.sensors.proprioception import JointMapper, MappingError
from ros2_imitation.viz.chunk_path import chunk_path

CLOCK_PATIENCE_S = 5.0   # with use_sim_time, how long no /clock is normal start-up before it is reported

# Frames with more pixels are refused before they are copied or decoded (sensors.images.image_to_rgb).
MAX_IMAGE_PIXELS = 4096 * 4096


class PolicyNode(Node):
    def __init__(self):
        super().__init__('policy')
        p = {name: declare(self, name, default) for name, default in dict(
            model='', device='auto', runtime='torch', scheduler='', inference_steps=0, sigma=-1.0, noise_mode='',
            image_topics=['/camera/camera/color/image_raw'], proprio_topic='/ros2_imitation/proprio',
            chunk_topic='/ros2_imitation/action_chunk', ee_chunk_topic='/ros2_imitation/ee_chunk', robot='panda', rate=10.0, execute_steps=0,
            action_offset_steps=-1, max_obs_age=0.25, continuity='inpaint', seed=0, warmup=True,
            threads=0, max_image_pixels=MAX_IMAGE_PIXELS, image_reliability='best_effort', markers=True).items()}
        check_positive(p, 'rate', 'max_obs_age', 'max_image_pixels', 'threads', 'execute_steps',
                       'inference_steps', allow_zero=('threads', 'execute_steps', 'inference_steps'))
        self.p = p
        self.get_logger().info(f'loading the policy {p["model"] or "(the shipped one)"} ...')
        try:
            self.robot = RobotProfile.load(p['robot'])
            self.policy, self.model_path = load_runtime_policy(
                p['model'], p['device'], p['scheduler'], p['inference_steps'], p['noise_mode'], p['sigma'],
                p['threads'], runtime=p['runtime'], robot=self.robot)
            cfg = self.policy.config
            names = policy_joint_names(self.robot, cfg.action_dim, cfg.action_space)   # + the gripper's
            self.runner = PolicyRunner(   # a bad continuity is a ValueError here
                self.policy, names, 1.0 / p['rate'], execute=p['execute_steps'] or None,
                offset=p['action_offset_steps'] if p['action_offset_steps'] >= 0 else None,
                continuity=p['continuity'], max_obs_age=p['max_obs_age'], seed=p['seed'])
        except (FileNotFoundError, ValueError) as exc:
            raise StartupError(str(exc)) from None
        cfg = self.policy.config
        topics = list(p['image_topics'])
        if len(topics) != len(cfg.image_keys):
            raise StartupError(f'the policy sees cameras {list(cfg.image_keys)}: give image_topics '
                               f'one topic each, got {topics}')
        # the state: the arm joints (or the tip pose: proprioception_node's ee_state), + the gripper
        # opening named gripper.command_name for a gripper policy (proprioception_node's gripper_width)
        self.mapper = JointMapper(policy_state_names(self.robot, cfg))
        self.log = NodeReasonLog(self)
        self._reason = 'starting'
        # an end-effector policy's chunks: trajectory_msgs/MultiDOFJointTrajectory (nodes/conversions.py)
        self.ee = cfg.action_space == 'ee'
        if self.ee:
            self._ee_frames = (self.robot.kinematics.base_frame, self.robot.kinematics.tip_frame,
                               names[-1] if len(names) > len(EE_COLUMNS) else None)
            self.chunk_pub = self.create_publisher(MultiDOFJointTrajectory, p['ee_chunk_topic'], COMMAND_QOS)
        else:
            self.chunk_pub = self.create_publisher(JointTrajectory, p['chunk_topic'], COMMAND_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', COMMAND_QOS)
        for key, topic in zip(cfg.image_keys, topics):
            self.create_subscription(Image, topic, lambda m, k=key: self._on_image(k, m),
                                     image_qos(p['image_reliability']))
        self.create_subscription(JointState, p['proprio_topic'], self._on_proprio, SENSOR_QOS)
        self.create_service(Trigger, '~/reset', self._reset)
        self.create_timer(1.0, self._publish_diagnostics)
        # the predicted path in RViz: joint chunks through the URDF (an end-effector chunk is a path already)
        self.kinematics = marker_kinematics(self.robot, self.get_logger()) if p['markers'] and not self.ee else None
        self.marker_pub = self.create_publisher(MarkerArray, '~/predicted_chunk', COMMAND_QOS)
        if p['warmup']:
            self.runner.warmup()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name='inference', daemon=True)
        self._thread.start()
        self.get_logger().info(
            f'policy {self.model_path} on {self.policy.device} ({self.policy.runtime}): {cfg.inference_scheduler}-'
            f'{cfg.num_inference_steps}, noise sigma {cfg.noise_sigma} ({cfg.noise_mode}), '
            f'{p["continuity"]}, chunk of {cfg.horizon} every {self.runner.execute} x {self.runner.dt:.3f} s')

    # ---- inputs ----
    def _on_image(self, key: str, msg: Image):
        h, w = self.policy.config.image_shape[:2]
        t0 = time.perf_counter()
        try:
            rgb = image_to_rgb(msg.data, msg.encoding, msg.height, msg.width, msg.step, (w, h),
                               self.p['max_image_pixels'])
        except ValueError as exc:
            return self.log.warn(f'rejected image on {key}', str(exc))
        self.runner.add(key, to_sec(msg.header.stamp), rgb)
        self.runner.stats.stage('decode', time.perf_counter() - t0)

    def _on_proprio(self, msg: JointState):
        try:
            q = self.mapper.map(msg.name, msg.position).astype(np.float32)
        except MappingError as exc:
            return self.log.warn('rejected proprioception', str(exc))
        if not np.all(np.isfinite(q)):
            return self.log.warn('rejected proprioception', 'non-finite joint positions')
        self.runner.add(self.runner.state_key, to_sec(msg.header.stamp), q)

    def _reset(self, _request, response):
        self.runner.reset(now_sec(self))
        response.success, response.message = True, 'observation history and chunk cleared'
        return response

    # ---- inference thread ----
    def _loop(self):
        waiting = ''
        started = time.monotonic()
        while self._running:
            fresh = self.runner.wait(0.1)     # a new sample of the driving stream, or 0.1 s
            now = now_sec(self)
            if now <= 0 and not self.runner.stats.chunks and time.monotonic() - started > CLOCK_PATIENCE_S:
                # use_sim_time and no /clock since start-up: say so (throttled), or the node looks hung
                self._reason = 'use_sim_time is set and no /clock message came'
                self.log.warn('waiting for the clock', self._reason, kind='waiting for the clock')
            query = self.runner.poll(now) if now > 0 else None
            if query is None:
                # log events (a new sample that could not be used, a stream that went quiet), not polls
                if now > 0 and self.runner.waiting and (fresh or self.runner.waiting != waiting):
                    self._reason = self.runner.waiting
                    self.log.warn('waiting for observations', self._reason, kind='waiting for observations')
                waiting = self.runner.waiting
                continue
            try:
                chunk = self.runner.infer(query)
            except Exception:  # the context is shutting down under us
                if self._running and rclpy.ok(context=self.context):
                    raise
                return
            outcome = self.runner.complete(query, chunk, now_sec(self))
            if outcome.reason:
                self.log.warn('dropped chunk' if outcome.trajectory is None else 'clock jump', outcome.reason)
            if outcome.trajectory is not None and self._running:
                t0 = time.perf_counter()
                self.chunk_pub.publish(ee_trajectory_to_msg(outcome.trajectory, *self._ee_frames) if self.ee
                                       else trajectory_to_msg(outcome.trajectory))
                self.runner.stats.stage('publish', time.perf_counter() - t0)
                if self.runner.stats.chunks == 1:     # the graph is live: say it once
                    self.get_logger().info(f'first chunk sent: {len(outcome.trajectory.times)} actions, '
                                           f'latency {outcome.latency * 1e3:.0f} ms')
                if self.kinematics is not None and self.marker_pub.get_subscription_count():
                    self._publish_markers(outcome)   # only when someone looks: off the robot's hot path
            self._reason = '' if outcome.trajectory is not None else outcome.reason

    def _publish_diagnostics(self):
        cfg = self.policy.config
        values = {**self.runner.stats.summary(), 'sigma': cfg.noise_sigma, 'noise_mode': cfg.noise_mode,
                  'continuity': self.runner.continuity, 'runtime': self.policy.runtime,
                  'execute_steps': self.runner.execute, 'reason': self._reason}
        level = DiagnosticStatus.OK if not self._reason else DiagnosticStatus.WARN
        publish_status(self, self.diag_pub, level, 'diffusion policy', self._reason or 'running',
                       str(self.policy.device), values)

    def _publish_markers(self, outcome):
        k = self.kinematics
        label = f'latency {outcome.latency * 1e3:.0f} ms, {outcome.dropped} dropped'
        path = chunk_path(k, outcome.trajectory, outcome.overtaken)
        self.marker_pub.publish(chunk_markers(path, k.base_frame, self.get_clock().now().to_msg(), label))

    def close(self):
        self._running = False
        self.runner.wake()
        self._thread.join(timeout=2.0)


def main(args=None):
    return run_node(PolicyNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
