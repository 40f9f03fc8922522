"""Runs the diffusion policy on the robot's observations and publishes timestamped action chunks.

Camera Image(s) and /ros2_imitation/proprio (sensor-data QoS) fill an observation history; on the
policy clock (every `execute_steps` actions) an inference thread builds the observation on the
policy-rate grid by header.stamp, predicts a chunk (test-time noise injection as configured), and
publishes it on /ros2_imitation/action_chunk: header.stamp = when its first point applies, points
`dt` apart, actions already overtaken by the inference latency dropped.
"""
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ros2_imitation.chunking import CONTINUITY, ChunkScheduler
from ros2_imitation.images import image_to_rgb
from ros2_imitation.nodes.common import (COMMAND_QOS, SENSOR_QOS, NodeReasonLog, StartupError,
                                         check_positive, declare, image_qos, now_sec, publish_status, run_node,
                                         to_sec)
from ros2_imitation.nodes.conversions import trajectory_to_msg
from ros2_imitation.observation import ObservationBuffer, ObservationError
from ros2_imitation.paths import share_dir
from ros2_imitation.proprioception import JointMapper, MappingError
from ros2_imitation.robot import RobotProfile

STATE = 'state'
# Frames with more pixels than this are rejected before they are copied or decoded: a misconfigured
# or hostile publisher must not make the policy spend its CPU and memory on resizing them.
MAX_IMAGE_PIXELS = 4096 * 4096


class PolicyNode(Node):
    def __init__(self):
        super().__init__('policy')
        p = {name: declare(self, name, default) for name, default in dict(
            model='', device='auto', scheduler='', inference_steps=0, sigma=-1.0, noise_mode='',
            image_topics=['/camera/camera/color/image_raw'], proprio_topic='/ros2_imitation/proprio',
            chunk_topic='/ros2_imitation/action_chunk', robot='panda', rate=10.0, execute_steps=0,
            action_offset_steps=-1, max_obs_age=0.25, continuity='inpaint', seed=0, warmup=True,
            threads=0, max_image_pixels=MAX_IMAGE_PIXELS, image_reliability='best_effort').items()}
        if p['continuity'] not in CONTINUITY:
            raise StartupError(f'continuity must be one of {CONTINUITY}, got {p["continuity"]!r}')
        check_positive(p, 'rate', 'max_obs_age', 'max_image_pixels', 'threads', 'execute_steps',
                       'inference_steps', allow_zero=('threads', 'execute_steps', 'inference_steps'))
        self.p = p
        try:
            self.robot = RobotProfile.load(p['robot'])
        except (FileNotFoundError, ValueError) as exc:
            raise StartupError(str(exc)) from None
        self.policy = self._load(p)
        cfg = self.policy.config
        self.mapper = JointMapper(self.robot.arm_joints)
        if cfg.action_dim != self.robot.dof or cfg.state_dim != self.robot.dof:
            raise StartupError(f'the policy acts on {cfg.action_dim} and sees {cfg.state_dim} joint values; '
                               f'robot {self.robot.name} has {self.robot.dof} arm joints')
        topics = list(p['image_topics'])
        if len(topics) != len(cfg.image_keys):
            raise StartupError(f'the policy sees cameras {list(cfg.image_keys)}: give image_topics '
                               f'one topic each, got {topics}')
        self.dt = 1.0 / p['rate']
        self.execute = p['execute_steps'] or cfg.n_action_steps
        offset = p['action_offset_steps'] if p['action_offset_steps'] >= 0 else cfg.action_offset_steps
        self.buffer = ObservationBuffer([*cfg.image_keys, STATE], self.dt, cfg.n_obs_steps, p['max_obs_age'])
        self.scheduler = ChunkScheduler(self.robot.arm_joints, self.dt, cfg.n_obs_steps - 1, offset,
                                        p['continuity'])
        self.log = NodeReasonLog(self)
        self._lock = threading.Lock()
        self._stats = {'latency': [], 'inference': [], 'dropped': 0, 'chunks': 0, 'rejected': 0}
        self._reason = 'starting'
        self._next_query = None
        self._latency_estimate = 0.1
        self._calls = 0
        self._epoch = 0               # bumped by ~/reset: a chunk from an older epoch is stale
        self.chunk_pub = self.create_publisher(JointTrajectory, p['chunk_topic'], COMMAND_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', COMMAND_QOS)
        for key, topic in zip(cfg.image_keys, topics):
            self.create_subscription(Image, topic, lambda m, k=key: self._on_image(k, m),
                                     image_qos(p['image_reliability']))
        self.create_subscription(JointState, p['proprio_topic'], self._on_proprio, SENSOR_QOS)
        self.create_service(Trigger, '~/reset', self._reset)
        self.create_timer(1.0, self._publish_diagnostics)
        if p['warmup']:
            self._warmup()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name='inference', daemon=True)
        self._thread.start()
        self.get_logger().info(
            f'policy {self.model_path} on {self.policy.device}: {cfg.inference_scheduler}-'
            f'{cfg.num_inference_steps}, noise sigma {cfg.noise_sigma} ({cfg.noise_mode}), '
            f'{p["continuity"]}, chunk of {cfg.horizon} every {self.execute} x {self.dt:.3f} s')

    def _load(self, p):
        import torch
        from ros2_imitation.policy import CheckpointError, load_policy
        self.model_path = p['model'] or str(share_dir() / 'models' / 'push_cube')
        if p['threads'] > 0:  # next to the sim on a small CPU, fewer threads contend less
            torch.set_num_threads(int(p['threads']))
        device = p['device']
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        try:
            policy = load_policy(self.model_path, device=device,
                                 inference_scheduler=p['scheduler'] or None,
                                 num_inference_steps=p['inference_steps'] or None,
                                 noise_mode=p['noise_mode'] or None)
            if p['sigma'] >= 0:
                policy.config = policy.config.replace(noise_sigma=float(p['sigma']))
        except (CheckpointError, FileNotFoundError, ValueError) as exc:
            raise StartupError(f'cannot load policy {self.model_path}: {exc}') from exc
        return policy

    def _warmup(self):
        cfg = self.policy.config
        obs = {STATE: np.zeros((cfg.n_obs_steps, cfg.state_dim), np.float32)}
        for key in cfg.image_keys:
            obs[key] = np.zeros((cfg.n_obs_steps, *cfg.image_shape), np.uint8)
        for _ in range(2):
            self.policy.predict_chunk(obs, seed=0)

    # ---- inputs ----
    def _on_image(self, key: str, msg: Image):
        h, w = self.policy.config.image_shape[:2]
        pixels = int(msg.width) * int(msg.height)
        if pixels > self.p['max_image_pixels'] or len(msg.data) > 4 * self.p['max_image_pixels']:
            return self.log.warn(f'rejected image on {key}', f'{msg.width}x{msg.height} with {len(msg.data)} '
                                 f'bytes is larger than max_image_pixels={self.p["max_image_pixels"]}')
        try:
            rgb = image_to_rgb(bytes(msg.data), msg.encoding, msg.height, msg.width, msg.step, (w, h))
        except ValueError as exc:
            return self.log.warn(f'rejected image on {key}', str(exc))
        with self._lock:
            self.buffer.add(key, to_sec(msg.header.stamp), rgb)

    def _on_proprio(self, msg: JointState):
        try:
            q = self.mapper.map(msg.name, msg.position).astype(np.float32)
        except MappingError as exc:
            return self.log.warn('rejected proprioception', str(exc))
        if not np.all(np.isfinite(q)):
            return self.log.warn('rejected proprioception', 'non-finite joint positions')
        with self._lock:
            self.buffer.add(STATE, to_sec(msg.header.stamp), q)

    def _reset(self, _request, response):
        with self._lock:
            self.buffer.clear(since=now_sec(self))
            self.scheduler.reset()
            self._next_query = None
            self._epoch += 1
        response.success, response.message = True, 'observation history and chunk cleared'
        return response

    # ---- inference thread ----
    def _loop(self):
        cfg = self.policy.config
        newest = cfg.image_keys[0] if cfg.image_keys else STATE
        while self._running:
            now = now_sec(self)
            with self._lock:
                t_obs = self.buffer.latest_stamp(newest)
                due = self._next_query is None or (t_obs is not None and t_obs >= self._next_query - 1e-6)
                obs = None
                if now > 0 and t_obs is not None and due:
                    try:
                        if now - t_obs > self.p['max_obs_age']:
                            raise ObservationError(f'newest {newest} is {now - t_obs:.2f} s old')
                        obs = self.buffer.history(t_obs)
                    except ObservationError as exc:
                        self._reason = str(exc)
                        self._stats['rejected'] += 1
                        self.log.warn('waiting for observations', str(exc), kind='waiting for observations')
                    prefix, weights = self.scheduler.prefix(t_obs, cfg.horizon, self._latency_estimate)
                elif now > 0 and (t_obs is None or now - t_obs > self.p['max_obs_age']):
                    # the stream stopped between two queries: say so (log and /diagnostics) instead
                    # of reporting 'running' while no chunk comes
                    self._reason = (f'no {newest} yet' if t_obs is None else
                                    f'newest {newest} is {now - t_obs:.2f} s old')
                    self.log.warn('waiting for observations', self._reason, kind='waiting for observations')
                epoch = self._epoch
            if obs is None:
                time.sleep(0.005)
                continue
            try:
                self._infer(obs, t_obs, prefix, weights, epoch)
            except Exception:  # the context is shutting down under us
                if self._running and rclpy.ok(context=self.context):
                    raise
                return

    def _infer(self, obs, t_obs, prefix, weights, epoch):
        t0 = time.perf_counter()
        chunk = self.policy.predict_chunk(obs, seed=self.p['seed'] * 100_003 + self._calls,
                                          prefix=prefix, prefix_weights=weights)
        self._calls += 1
        inference = time.perf_counter() - t0
        now = now_sec(self)
        with self._lock:
            if epoch != self._epoch:  # reset during inference: this chunk belongs to the last episode
                return
            traj, dropped = self.scheduler.schedule(chunk, t_obs, now)
            self._next_query = t_obs + self.execute * self.dt
        latency = now - t_obs
        if 0.0 <= latency <= self.policy.config.horizon * self.dt:
            self._latency_estimate = 0.8 * self._latency_estimate + 0.2 * latency
            self._stats['latency'].append(latency)
        else:
            # not a latency but the clock jumping (a bogus /clock, a clock reset): one such value
            # must not poison the estimate that inpainting and the statistics rely on
            self.log.warn('clock jump', f'observation at {t_obs:.3f} s, clock now {now:.3f} s')
        self._stats['inference'].append(inference)
        self._stats['dropped'] += dropped - (self.policy.config.n_obs_steps - 1)
        if traj is None:
            self._reason = f'whole chunk overtaken: latency {latency * 1e3:.0f} ms'
            return self.log.warn('dropped chunk', self._reason)
        self.chunk_pub.publish(trajectory_to_msg(traj))
        self._stats['chunks'] += 1
        self._reason = ''

    def _publish_diagnostics(self):
        stats = self._stats
        lat, inf = np.array(stats['latency'][-200:]), np.array(stats['inference'][-200:])
        stats['latency'], stats['inference'] = stats['latency'][-200:], stats['inference'][-200:]
        cfg = self.policy.config
        values = {'chunks': stats['chunks'], 'rejected_observations': stats['rejected'],
                  'dropped_actions': stats['dropped'], 'sigma': cfg.noise_sigma, 'noise_mode': cfg.noise_mode,
                  'continuity': self.p['continuity'], 'reason': self._reason}
        if lat.size:
            values.update(latency_p50_ms=round(float(np.percentile(lat, 50)) * 1e3, 1),
                          latency_p99_ms=round(float(np.percentile(lat, 99)) * 1e3, 1),
                          inference_ms=round(float(np.median(inf)) * 1e3, 1),
                          latency_last_ms=round(float(lat[-1]) * 1e3, 1))
        level = DiagnosticStatus.OK if not self._reason else DiagnosticStatus.WARN
        publish_status(self, self.diag_pub, level, 'diffusion policy', self._reason or 'running',
                       str(self.policy.device), values)

    def close(self):
        self._running = False
        self._thread.join(timeout=2.0)


def main(args=None):
    return run_node(PolicyNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
