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


class Rollout:
    def __init__(self, task: str = 'push_cube', mode: str = 'impedance', control_rate: float = 500.0,
                 physics_rate: float = 500.0, camera_size=(96, 96), render: bool = True,
                 obs_horizon: int = 2, timing: ChunkTiming = ChunkTiming(), robot: str = 'panda'):
        from ros2_imitation.sim import PandaSim
        self.sim = PandaSim(task=task, physics_rate=physics_rate, camera_width=camera_size[0],
                            camera_height=camera_size[1], render=render)
        self.robot = RobotProfile.load(robot)
        self.mode, self.control_rate = mode, control_rate
        self.render, self.obs_horizon, self.timing = render, obs_horizon, timing
        self.control_every = max(1, round(physics_rate / control_rate))
        self.obs_every = max(1, round(timing.dt / self.sim.dt))
        self.act_every = self.obs_every * timing.execute

    def _observe(self) -> dict:
        obs = {'state': self.sim.joint_positions()[:7].astype(np.float32)}
        if self.render:
            obs['image'] = self.sim.render()
        return obs

    def run(self, agent, seed: int, timeout: float, record_frames: bool = False) -> RolloutResult:
        sim = self.sim
        sim.reset(seed)
        agent.reset(seed)
        ctrl = ChunkController(self.robot, self.mode, self.control_rate)
        history = deque(maxlen=self.obs_horizon)
        frames, states, chunks = [], [], 0
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
                if state['success']:
                    break
            control = step % self.control_every == 0
            if control:
                ctrl.on_joint_state(names, sim.joint_positions(), sim.joint_velocities(), t)
            if step % self.act_every == 0:
                # before To observations exist, the first one stands in for the missing ones
                hist = [history[0]] * (self.obs_horizon - len(history)) + list(history)
                stacked = {k: np.stack([h[k] for h in hist]) for k in hist[-1]}
                times, positions = agent.act(t, stacked, sim.joint_positions(), state)
                reason = ctrl.on_chunk(Trajectory.from_absolute(self.robot.arm_joints, times, positions), t)
                if reason:
                    raise RuntimeError(f'agent chunk rejected at t={t:.2f}: {reason}')
                chunks += 1
            if control:
                command = ctrl.update(t)
                if command is not None:
                    (sim.set_effort if command.kind == 'effort' else sim.set_position)(command.values)
            sim.step(1)
            step += 1
        return RolloutResult(seed, bool(state['success']), float(state['time']), state, frames, states, chunks)


class ExpertAgent:
    """A scripted expert as a rollout agent (privileged task state in)."""

    def __init__(self, expert):
        self.expert = expert

    def reset(self, seed: int):
        self.expert.reset(seed)

    def act(self, now, obs, q, task_state):
        chunk = self.expert.plan(now, q, task_state)
        return chunk.times, chunk.positions
