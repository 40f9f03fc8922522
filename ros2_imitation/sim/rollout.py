"""Sim, chunk controller and an agent in one process: fast, deterministic episodes without ROS.

The same pieces the ROS graph runs (PandaSim, ChunkController, the expert or policy) on one
timeline: physics at its rate, the controller at its rate, observations every `dt`, each handed to
the agent, which answers a chunk when its clock says one is due (a policy through
runtime.PolicyRunner, as policy_node runs it). There is no transport delay, so this is for
evaluation sweeps and studies; `ros2-imitation demo` runs the real graph.

Actions: a chunk's columns are the 7 arm joint positions (rad), and for a task with a gripper
action (tasks.Task.gripper_action, e.g. pick_place) an 8th: the gripper opening in metres
(0 closed .. 0.08 open). The arm columns go through the ChunkController; the gripper column is
followed by a GripperFollower at the same control ticks (see there). The observation's `state` of
such a task is the 7 arm joints followed by the measured opening; with the wrist camera on, the
observation has `wrist_image` next to `image`.
"""
from dataclasses import dataclass, field

import numpy as np

from ros2_imitation.control.controller import ChunkController
from ros2_imitation.control.ee_chunk import EE_COLUMNS, EEChunkConverter, ee_columns
from ros2_imitation.control.kinematics import ArmKinematics
from ros2_imitation.control.trajectory import Trajectory
from ros2_imitation.robot import RobotProfile
from ros2_imitation.runtime.chunking import ChunkTiming, QueryClock
from ros2_imitation.runtime.runner import PolicyRunner


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
    rejected: list = field(default_factory=list)   # (t, reason) of each chunk the controller refused

    @property
    def best_coverage(self) -> float | None:
        """push_t: the episode's highest coverage of the target (None for a task without coverage)."""
        covers = [h['coverage'] for h in self.history if 'coverage' in h]
        return max(covers) if covers else None


class GripperFollower:
    """The gripper column of a chunk, followed the way the joints are (control.TrajectoryFollower,
    linear): a new chunk starts from the width commanded now and runs through its points after now,
    the last one held. The command then moves toward that at most RATE (m/s), the Franka Hand's
    top speed (0.05 m/s per finger, 0.1 m/s of opening; franka_gripper's move() takes up to 0.1),
    and is clamped to 0 .. MAX_WIDTH."""
    MAX_WIDTH = 0.08
    RATE = 0.1

    def __init__(self, width: float, rate: float = RATE):
        self.width = float(np.clip(width, 0.0, self.MAX_WIDTH))   # the last command
        self.rate = float(rate)
        self._plan = None           # (knot times, widths)
        self._t = None

    def replace(self, times, widths, now: float) -> None:
        times, widths = np.asarray(times, dtype=float), np.asarray(widths, dtype=float)
        if times.shape != widths.shape or not (np.all(np.isfinite(times)) and np.all(np.isfinite(widths))):
            raise ValueError('gripper widths must be finite, one per chunk time')
        start = self.target(now)
        later = times > now
        if not later.any():
            later[-1] = True
            times = times.copy()
            times[-1] = now
        self._plan = (np.concatenate([[now], times[later]]), np.concatenate([[start], widths[later]]))

    def target(self, t: float) -> float:
        if self._plan is None:
            return self.width
        return float(np.interp(t, *self._plan))

    def update(self, t: float) -> float:
        """The width to command at t (rate-limited since the last update, clamped)."""
        goal = float(np.clip(self.target(t), 0.0, self.MAX_WIDTH))
        step = np.inf if self._t is None else self.rate * max(t - self._t, 0.0)
        self.width = float(np.clip(goal, self.width - step, self.width + step))
        self._t = t
        return self.width


class Rollout:
    """Episodes of the sim with the chunk controller in process. A chunk the controller refuses (a
    reason from ChunkController.on_chunk) ends the episode with a RuntimeError when `strict` (a scripted
    expert must never send one); otherwise (a learned policy, as on the robot) it is counted in the
    result's `rejected` with its reason, and the controller goes on with what it had."""

    def __init__(self, task: str = 'push_cube', mode: str = 'position', control_rate: float = 500.0,
                 physics_rate: float = 500.0, camera_size=(96, 96), render: bool = True,
                 timing: ChunkTiming = ChunkTiming(), robot: str = 'panda',
                 task_features: bool = False, wrist_camera: bool | None = None,
                 action_space: str = 'joint', ee_state: bool = False, strict: bool = True):
        self.strict = strict
        from ros2_imitation.sim import PandaSim
        self.sim = PandaSim(task=task, physics_rate=physics_rate, camera_width=camera_size[0],
                            camera_height=camera_size[1], render=render, wrist_camera=wrist_camera)
        self.gripper = bool(self.sim.task.gripper_action)
        self.robot = RobotProfile.load(robot)
        self.mode, self.control_rate = mode, control_rate
        self.render, self.timing = render, timing
        self.task_features = task_features
        self.control_every = max(1, round(physics_rate / control_rate))
        self.obs_every = max(1, round(timing.dt / self.sim.dt))
        # an end-effector agent: its chunks' arm columns are tip poses (EE_COLUMNS), turned into
        # joints by the controller's IK as controller_node does with chunk_space ee; ee_state: it
        # sees the tip pose too (proprioception_node's ee_state)
        self.ee = EEChunkConverter.for_robot(self.robot) if action_space == 'ee' else None
        self.tip_kinematics = ArmKinematics.for_robot(self.robot) if ee_state else None
        self.arm_columns = EE_COLUMNS if self.ee is not None else self.robot.arm_joints

    def _observe(self) -> dict:
        state = self.sim.joint_positions()[:7]
        if self.tip_kinematics is not None:
            p, r = self.tip_kinematics.tip_pose(state)
            state = ee_columns(p[None], r[None])[0]
        if self.gripper:
            state = np.append(state, self.sim.gripper_width())
        if self.task_features:
            state = np.concatenate([state, task_features(self.sim.task_state())])
        obs = {'state': state.astype(np.float32)}
        if self.render:
            obs['image'] = self.sim.render()
            if self.sim.wrist_camera:
                obs['wrist_image'] = self.sim.render('wrist')
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
                request = episode.send(agent.act(*request))
        except StopIteration as done:
            return done.value

    def episode(self, seed: int, timeout: float, record_frames: bool = False, record: bool = False):
        """One episode as a generator, so many can share one batched policy (evaluation.py): at
        each observation it yields (t, observation, q, task state) and is sent back None (no new
        chunk) or (times, positions, label) -- label: the clean (times, positions) the data is
        labelled with from now on (sim/collection.py), or None; times and positions None: a new
        label only. With `record`, the step's action is read after the answer: from the label when
        there is one, else from the chunk that was active when the step was observed.
        Its return value (StopIteration.value) is the RolloutResult."""
        sim = self.sim
        sim.reset(seed)
        ctrl = ChunkController(self.robot, self.mode, self.control_rate, ee=self.ee)
        frames, states, chunks, rejected = [], [], 0, []
        data = {'image': [], 'wrist_image': [], 'state': [], 'action': []} if record else {}
        measured = []
        active = label = None
        gripper = GripperFollower(sim.task.gripper_width) if self.gripper else None
        grip_active = grip_label = None      # (times, widths) of the chunk's gripper column
        names = sim.joint_names
        step, n_steps = 0, int(round(timeout / sim.dt))
        state = sim.task_state()
        while step <= n_steps:
            t = sim.time
            observed = step % self.obs_every == 0
            if observed:
                obs = self._observe()
                state = sim.task_state()
                states.append(state)
                if record_frames and 'image' in obs:   # the wrist camera beside the fixed one, if any
                    frames.append(np.hstack([obs['image'], obs['wrist_image']]) if 'wrist_image' in obs
                                  else obs['image'])
                recorded = (active, grip_active) if record and active is not None else None
                if state['success'] and recorded is None:
                    break
            control = step % self.control_every == 0
            if control:
                measured.append(sim.joint_positions()[:7])
                ctrl.on_joint_state(names, sim.joint_positions(), sim.joint_velocities(), t)
            answer = (yield t, obs, sim.joint_positions(), state) if observed and not state['success'] else None
            if answer is not None:
                times, positions, clean = answer
                if clean:       # an agent that executes perturbed actions labels them with a clean plan
                    clean_arm, clean_widths = _split(clean[1], gripper is not None, len(self.arm_columns))
                    label = Trajectory.from_absolute(self.arm_columns, clean[0], clean_arm)
                    grip_label = None if clean_widths is None else (np.asarray(clean[0], float), clean_widths)
                elif positions is not None:
                    label = grip_label = None
                if positions is not None:
                    arm, widths = _split(positions, gripper is not None, len(self.arm_columns))
                    chunk = Trajectory.from_absolute(self.arm_columns, times, arm)
                    reason = ctrl.on_chunk(chunk, t)
                    if reason and self.strict:
                        raise RuntimeError(f'agent chunk rejected at t={t:.2f}: {reason}')
                    if reason:
                        rejected.append((round(t, 3), reason))
                        widths = None            # the gripper goes on with its last plan too
                    else:
                        active = chunk
                        chunks += 1
                    if widths is not None:
                        gripper.replace(times, widths, t)
                        grip_active = (np.asarray(times, float), widths)
            if observed and recorded is not None:
                for key in ('image', 'wrist_image', 'state'):
                    if key in obs:
                        data[key].append(obs[key])
                chunk, grip = (label, grip_label) if label is not None else recorded
                action = _position_at(chunk, t + self.timing.dt)
                if grip is not None:
                    action = np.append(action, np.interp(t + self.timing.dt, *grip))
                data['action'].append(action)
                if state['success']:
                    break
            if control:
                command = ctrl.update(t)
                if command is not None:
                    (sim.set_effort if command.kind == 'effort' else sim.set_position)(command.values)
                if gripper is not None:
                    sim.set_gripper(gripper.update(t))
            sim.step(1)
            step += 1
        data = {k: np.asarray(v, dtype=np.uint8 if k in ('image', 'wrist_image') else np.float32)
                for k, v in data.items() if v}
        h = self.control_every * sim.dt
        jerk = np.diff(np.asarray(measured), n=3, axis=0) / h ** 3 if len(measured) > 3 else np.zeros((1, 7))
        return RolloutResult(seed, bool(state['success']), float(state['time']), state, frames, states,
                             chunks, data, float(np.sqrt(np.mean(jerk ** 2))), rejected)


def _split(positions, gripper: bool, n_arm: int = 7) -> tuple:
    """(arm columns, gripper column or None) of a chunk: n_arm arm columns (7 joints, or the tip pose's
    9 for an end-effector agent), then the gripper's when the task has one; n_arm columns alone are
    passed on untouched."""
    positions = np.asarray(positions)
    if positions.ndim != 2 or positions.shape[1] not in (n_arm, n_arm + 1):
        raise ValueError(f'a chunk has {n_arm} arm columns and optionally a gripper one, got shape {positions.shape}')
    if positions.shape[1] == n_arm:
        return positions, None
    if not gripper:
        raise ValueError(f'a {n_arm + 1}-column chunk (arm + gripper) for a task without a gripper action')
    return positions[:, :n_arm], np.asarray(positions[:, n_arm], dtype=float)


def _position_at(traj: Trajectory, t: float) -> np.ndarray:
    """Linear interpolation of a chunk's positions at absolute time t, held at its ends."""
    times = traj.stamp + traj.times
    return np.array([np.interp(t, times, traj.positions[:, j]) for j in range(traj.positions.shape[1])])


def task_features(task_state: dict) -> np.ndarray:
    """The task's privileged state as a policy input (state-based policies, studies): object xy,
    object yaw as (cos ka, sin ka) with k the object's symmetry (`yaw_symmetry`: a cube, the default,
    looks the same every quarter turn, k = 4; push_t's T only after a full one, k = 1), and goal xy."""
    features = []
    if 'object_position' in task_state:
        yaw = task_state.get('yaw_symmetry', 4) * task_state.get('object_yaw', 0.0)
        features += [*task_state['object_position'][:2], np.cos(yaw), np.sin(yaw)]
    features += list(task_state['goal_position'][:2])
    return np.asarray(features, dtype=np.float64)


class ExpertAgent:
    """A scripted expert as a rollout agent (privileged task state in), on its own planning clock.

    With `noise` (an experts.ActionNoise) it executes perturbed chunks and labels the data with a
    clean one (sim/collection.py: `labels` plan, the chunk it meant, or dart, its correction from each
    state) -- noise-injected collection: the data shows recoveries, labelled with the correction.
    """

    def __init__(self, expert, noise=None, labels: str = 'plan'):
        from ros2_imitation.sim.collection import NoisyCollection
        self.expert, self.noise = expert, noise
        self.collection = NoisyCollection(expert, noise, labels)
        self.clock = QueryClock(expert.timing.period)
        self.info = {}      # this episode's mode, variation, noise and worst IK error

    def reset(self, seed: int):
        self.clock.reset()
        self.info = dict(self.collection.reset(seed), max_ik_error=0.0)

    def act(self, now, obs, q, task_state):
        due = self.clock.due(now)
        if due:
            self.clock.done(now)
        executed, label = self.collection.step(now, q, task_state, due)
        if executed is None and label is None:
            return None
        self.info.update(self.expert.progress())      # e.g. pick_place's slips, as they happen
        self.info['max_ik_error'] = max(self.info['max_ik_error'], self.collection.last.ik_error)
        times, positions = executed if executed is not None else (None, None)
        return times, positions, None if label is None else (label.times, label.positions)


def rollout_observation(obs: dict, stream: str, image: bool):
    """A Rollout observation's entry for the policy input `stream`: the entry of that name (a
    two-camera policy's 'image' and 'wrist_image'), else the fixed camera for an image input and the
    state for the state input (a policy whose keys are named otherwise)."""
    if stream in obs:
        return obs[stream]
    return obs['image' if image else 'state']


class BatchPolicyAgent:
    """A diffusion policy driving B concurrent episodes, one runtime.PolicyRunner each: the rules
    policy_node runs by (due queries, history by stamp, seeds, scheduling, continuity, latency).

    `latency` (s) pretends inference took that long: actions due before it are dropped, and inpaint
    freezes them, as on a robot. One predict_chunk call serves every due slot whose continuation
    prefix has the same shape and weights, so B episodes cost little more than one.
    """

    def __init__(self, policy, slots: int = 1, dt: float = 0.1, continuity: str = 'inpaint',
                 latency: float = 0.0, joint_names=None, execute: int | None = None):
        names = joint_names or RobotProfile.load('panda').arm_joints
        self.policy, self.latency = policy, float(latency)
        self.images = set(policy.config.image_keys)
        self.runners = [PolicyRunner(policy, names, dt, execute=execute, continuity=continuity, lead=0.0,
                                     latency=self.latency) for _ in range(slots)]

    def reset(self, slot: int, seed: int):
        self.runners[slot].reset(seed=seed)

    def act(self, requests: dict) -> dict:
        """requests: slot -> (t, obs, q, task state), the observation made at t; returns
        slot -> (times, positions, None) where a chunk was due, else None."""
        queries, groups = {}, {}
        for slot, (now, obs, *_rest) in requests.items():
            runner = self.runners[slot]
            for stream in runner.streams:
                runner.add(stream, now, rollout_observation(obs, stream, stream in self.images))
            query = runner.poll(now)
            if query is None:
                continue
            queries[slot] = query
            key = None if query.prefix is None else (len(query.prefix), tuple(np.round(query.weights, 6)))
            groups.setdefault(key, []).append(slot)
        out = dict.fromkeys(requests)
        for key, slots in groups.items():
            first = queries[slots[0]]
            obs = {k: np.stack([queries[s].obs[k] for s in slots]) for k in first.obs}
            prefix = None if key is None else np.stack([queries[s].prefix for s in slots])
            chunks = self.policy.predict_chunk(obs, seed=first.seed, prefix=prefix, prefix_weights=first.weights)
            for slot, chunk in zip(slots, chunks):
                traj = self.runners[slot].complete(queries[slot], chunk, queries[slot].t_obs + self.latency).trajectory
                out[slot] = None if traj is None else (traj.stamp + traj.times, traj.positions, None)
        return out


class PolicyAgent:
    """A diffusion policy as the agent of one rollout: a BatchPolicyAgent of one slot."""

    def __init__(self, policy, dt: float = 0.1, continuity: str = 'replan', latency: float = 0.0,
                 joint_names=None, execute: int | None = None):
        self.policy = policy
        self.batch = BatchPolicyAgent(policy, 1, dt, continuity, latency, joint_names, execute)

    def reset(self, seed: int):
        self.batch.reset(0, seed)

    def act(self, now, obs, q, task_state):
        return self.batch.act({0: (now, obs, q, task_state)})[0]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple:
    """95% confidence interval of a success rate (Wilson score: sane at 0% and 100%)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
