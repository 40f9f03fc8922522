"""Sim, chunk controller and an agent in one process: fast, deterministic episodes without ROS.

The same pieces the ROS graph runs (PandaSim, ChunkController, the expert or policy) on one
timeline: physics at its rate, the controller at its rate, the agent on the policy clock (a chunk
every `execute` steps, observations sampled every `dt`). There is no transport delay, so this is
for evaluation sweeps and studies; `ros2-imitation demo` runs the real graph.
"""
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ros2_imitation.controller import ChunkController
from ros2_imitation.experts import ChunkTiming
from ros2_imitation.robot import RobotProfile
from ros2_imitation.trajectory import Trajectory


@dataclass
class RolloutResult:
    seed: int
    success: bool
    duration: float
    final_state: dict
    frames: list = field(default_factory=list)
    history: list = field(default_factory=list)
    chunks: int = 0
    data: dict = field(default_factory=dict)   # with record: per policy step image, state, action
    rms_jerk: float = 0.0   # of the measured arm joints at the control rate (rad/s^3): smoothness


class Rollout:
    def __init__(self, task: str = 'push_cube', mode: str = 'position', control_rate: float = 500.0,
                 physics_rate: float = 500.0, camera_size=(96, 96), render: bool = True,
                 obs_horizon: int = 2, timing: ChunkTiming = ChunkTiming(), robot: str = 'panda',
                 task_features: bool = False):
        from ros2_imitation.sim import PandaSim
        self.sim = PandaSim(task=task, physics_rate=physics_rate, camera_width=camera_size[0],
                            camera_height=camera_size[1], render=render)
        self.robot = RobotProfile.load(robot)
        self.mode, self.control_rate = mode, control_rate
        self.render, self.obs_horizon, self.timing = render, obs_horizon, timing
        self.task_features = task_features
        self.control_every = max(1, round(physics_rate / control_rate))
        self.obs_every = max(1, round(timing.dt / self.sim.dt))
        self.act_every = self.obs_every * timing.execute

    def _observe(self) -> dict:
        state = self.sim.joint_positions()[:7]
        if self.task_features:
            state = np.concatenate([state, task_features(self.sim.task_state())])
        obs = {'state': state.astype(np.float32)}
        if self.render:
            obs['image'] = self.sim.render()
        return obs

    def run(self, agent, seed: int, timeout: float, record_frames: bool = False,
            record: bool = False) -> RolloutResult:
        """One episode. With `record`, each policy step keeps the observation and the action as
        bag2dataset defines it: the position the chunk active at t commands for t + dt."""
        episode = self.episode(seed, timeout, record_frames, record)
        agent.reset(seed)
        try:
            request = next(episode)
            while True:
                times, positions = agent.act(*request)
                request = episode.send((times, positions, getattr(agent, 'label', None)))
        except StopIteration as done:
            return done.value

    def episode(self, seed: int, timeout: float, record_frames: bool = False, record: bool = False):
        """One episode as a generator, so many can share one batched policy (evaluation.py): it
        yields (t, stacked observations, q, task state) when a chunk is due and is sent back
        (times, positions, label) -- label: the clean (times, positions) an agent meant, or None.
        Its return value (StopIteration.value) is the RolloutResult."""
        sim = self.sim
        sim.reset(seed)
        ctrl = ChunkController(self.robot, self.mode, self.control_rate)
        history = deque(maxlen=self.obs_horizon)
        frames, states, chunks = [], [], 0
        data = {'image': [], 'state': [], 'action': []} if record else {}
        measured = []
        active = label = None
        names = sim.joint_names
        step, n_steps = 0, int(round(timeout / sim.dt))
        state = sim.task_state()
        while step <= n_steps:
            t = sim.time
            if step % self.obs_every == 0:
                obs = self._observe()
                history.append(obs)
                state = sim.task_state()
                states.append(state)
                if record_frames and 'image' in obs:
                    frames.append(obs['image'])
                if record and active is not None:
                    for key in ('image', 'state'):
                        if key in obs:
                            data[key].append(obs[key])
                    data['action'].append(_position_at(label if label is not None else active, t + self.timing.dt))
                if state['success']:
                    break
            control = step % self.control_every == 0
            if control:
                measured.append(sim.joint_positions()[:7])
                ctrl.on_joint_state(names, sim.joint_positions(), sim.joint_velocities(), t)
            if step % self.act_every == 0:
                # before To observations exist, the first one stands in for the missing ones
                hist = [history[0]] * (self.obs_horizon - len(history)) + list(history)
                stacked = {k: np.stack([h[k] for h in hist]) for k in hist[-1]}
                times, positions, clean = yield t, stacked, sim.joint_positions(), state
                active = Trajectory.from_absolute(self.robot.arm_joints, times, positions)
                # an agent that executes perturbed actions labels them with what it meant to do
                label = Trajectory.from_absolute(self.robot.arm_joints, *clean) if clean else None
                reason = ctrl.on_chunk(active, t)
                if reason:
                    raise RuntimeError(f'agent chunk rejected at t={t:.2f}: {reason}')
                chunks += 1
            if control:
                command = ctrl.update(t)
                if command is not None:
                    (sim.set_effort if command.kind == 'effort' else sim.set_position)(command.values)
            sim.step(1)
            step += 1
        data = {k: np.asarray(v, dtype=np.float32 if k != 'image' else np.uint8) for k, v in data.items() if v}
        h = self.control_every * sim.dt
        jerk = np.diff(np.asarray(measured), n=3, axis=0) / h ** 3 if len(measured) > 3 else np.zeros((1, 7))
        return RolloutResult(seed, bool(state['success']), float(state['time']), state, frames, states,
                             chunks, data, float(np.sqrt(np.mean(jerk ** 2))))


def _position_at(traj: Trajectory, t: float) -> np.ndarray:
    """Linear interpolation of a chunk's positions at absolute time t, held at its ends."""
    times = traj.stamp + traj.times
    return np.array([np.interp(t, times, traj.positions[:, j]) for j in range(traj.positions.shape[1])])


def task_features(task_state: dict) -> np.ndarray:
    """The task's privileged state as a policy input (state-based policies, studies): object xy,
    object yaw as (cos 4a, sin 4a) -- a cube looks the same every quarter turn -- and goal xy."""
    features = []
    if 'object_position' in task_state:
        yaw = 4.0 * task_state.get('object_yaw', 0.0)
        features += [*task_state['object_position'][:2], np.cos(yaw), np.sin(yaw)]
    features += list(task_state['goal_position'][:2])
    return np.asarray(features, dtype=np.float64)


class ExpertAgent:
    """A scripted expert as a rollout agent (privileged task state in).

    With `noise` (an experts.ActionNoise) it executes perturbed chunks and keeps the clean chunk as
    `label` -- noise-injected collection: the data shows recoveries, labelled with the correction.
    """

    def __init__(self, expert, noise=None):
        self.expert, self.noise, self.label = expert, noise, None
        self.info = {}      # this episode's mode, variation, noise and worst IK error

    def reset(self, seed: int):
        self.info = dict(self.expert.reset(seed), max_ik_error=0.0)
        if self.noise is not None:
            self.noise.rng = np.random.default_rng(seed)   # the same perturbations for a seed
            self.noise.reset()
            self.info.update(self.noise.info())

    def act(self, now, obs, q, task_state):
        chunk = self.expert.plan(now, q, task_state)
        self.info['max_ik_error'] = max(self.info['max_ik_error'], chunk.ik_error)
        if self.noise is None:
            return chunk.times, chunk.positions
        self.label = (chunk.times, chunk.positions)
        return chunk.times, chunk.positions + self.noise(chunk.times)


class BatchPolicyAgent:
    """A diffusion policy driving B concurrent episodes, scheduled exactly as policy_node schedules it.

    Chunk index i applies at t_obs + (i - (To - 1) + offset) * dt (offset: the checkpoint's
    action_offset_steps); how consecutive chunks join is each slot's ChunkScheduler `continuity`.
    `latency` (s) pretends inference took that long: actions due before it are dropped, and inpaint
    freezes them, as on a robot. One predict_chunk call serves every slot whose continuation prefix
    has the same shape and weights, so B episodes cost little more than one.
    """

    def __init__(self, policy, slots: int = 1, dt: float = 0.1, continuity: str = 'inpaint',
                 latency: float = 0.0, joint_names=None):
        from ros2_imitation.chunking import ChunkScheduler
        cfg = policy.config
        names = joint_names or RobotProfile.load('panda').arm_joints
        self.policy, self.latency = policy, latency
        self.schedulers = [ChunkScheduler(names, dt, cfg.n_obs_steps - 1, cfg.action_offset_steps or 0,
                                          continuity, lead=0.0) for _ in range(slots)]
        self.seeds, self.calls = [0] * slots, [0] * slots

    def reset(self, slot: int, seed: int):
        self.seeds[slot], self.calls[slot] = seed, 0
        self.schedulers[slot].reset()

    def act(self, requests: dict) -> dict:
        """requests: slot -> (t, stacked obs, q, task state); returns slot -> (times, positions, None)."""
        cfg = self.policy.config
        keys = [cfg.state_key, *cfg.image_keys]
        groups, prefixes = {}, {}
        for slot, (now, *_rest) in requests.items():
            prefix, weights = prefixes[slot] = self.schedulers[slot].prefix(now, cfg.horizon, self.latency)
            key = None if prefix is None else (len(prefix), tuple(np.round(weights, 6)))
            groups.setdefault(key, []).append(slot)
        out = {}
        for key, slots in groups.items():
            obs = {k: np.stack([requests[s][1]['image' if k in cfg.image_keys else 'state'] for s in slots])
                   for k in keys}
            first = slots[0]
            prefix = None if key is None else np.stack([prefixes[s][0] for s in slots])
            chunks = self.policy.predict_chunk(obs, seed=self.seeds[first] * 100_003 + self.calls[first],
                                               prefix=prefix, prefix_weights=prefixes[first][1])
            for slot, chunk in zip(slots, chunks):
                now = requests[slot][0]
                traj, _ = self.schedulers[slot].schedule(chunk, now, now + self.latency)
                out[slot] = (traj.stamp + traj.times, traj.positions, None)
                self.calls[slot] += 1
        return out


class PolicyAgent:
    """A diffusion policy as the agent of one rollout: a BatchPolicyAgent of one slot."""

    def __init__(self, policy, dt: float = 0.1, continuity: str = 'replan', latency: float = 0.0,
                 joint_names=None):
        self.policy = policy
        self.batch = BatchPolicyAgent(policy, 1, dt, continuity, latency, joint_names)

    def reset(self, seed: int):
        self.batch.reset(0, seed)

    def act(self, now, obs, q, task_state):
        times, positions, _ = self.batch.act({0: (now, obs, q, task_state)})[0]
        return times, positions


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple:
    """95% confidence interval of a success rate (Wilson score: sane at 0% and 100%)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
