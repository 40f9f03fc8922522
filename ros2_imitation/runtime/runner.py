"""PolicyRunner: every online rule of running a chunk policy, ROS-free.

policy_node and the in-process rollouts (sim/rollout.py, sim/evaluation.py) both drive it, so the
robot and the evaluation follow one set of rules:

- intake: samples per stream with their capture stamps (runtime.observation.ObservationBuffer);
- when a query is due: on the policy clock, once the newest sample of the driving stream (the
  first camera, or the state for a state-only policy) reaches the next query time;
- the observation: the history on the policy-rate grid by stamp; a missing or stale stream is a
  rejection with a reason, never a shifted observation;
- the seed of each query: seed * 100003 + the query count, so injected noise is fresh per query
  yet reproducible per episode;
- scheduling: chunk index i applies at t_obs + (i - (To - 1) + offset) * dt; actions overtaken by
  the inference latency are dropped; consecutive chunks join by `continuity` (runtime.chunking);
- the latency estimate (an exponential average of t_done - t_obs) that inpainting freezes by, with
  clock jumps kept out of it;
- reset epochs: a chunk computed for an episode that has since been reset is discarded.

Thread-safe: a node adds samples from its executor thread while its inference thread polls,
infers and completes.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ros2_imitation.runtime.chunking import ChunkScheduler, QueryClock
from ros2_imitation.runtime.observation import ObservationBuffer, ObservationError

SEED_STRIDE = 100_003
RECENT = 200              # timing samples kept per name
LATENCY_GAIN = 0.2          # weight of the newest latency in the running estimate


@dataclass
class Query:
    """One due policy call: the observation history and what scheduling its answer needs."""
    obs: dict
    t_obs: float
    prefix: np.ndarray | None
    weights: np.ndarray | None
    epoch: int
    seed: int


@dataclass
class Outcome:
    """What became of a query's chunk. trajectory None: discarded (`reason` says why).
    `overtaken`: (times, positions) of the predicted actions dropped for latency, for displays."""
    trajectory: object = None
    dropped: int = 0
    latency: float = 0.0
    reason: str = ''
    overtaken: tuple | None = None


class RunnerStats:
    """Counts and the newest RECENT timing samples per name, safe across threads (the inference
    thread records while a node's diagnostics timer summarises). Names: latency (t_done - t_obs),
    inference (the policy call), and the stages of observation -> chunk: wait (observation stamp to
    the query), decode (image message to array, in the node), preprocess, encode, denoise (in the
    policy), schedule, publish (in the node)."""

    def __init__(self):
        self.chunks = 0
        self.rejected = 0           # queries that found no usable observation
        self.dropped = 0            # actions overtaken by latency (the history part excluded)
        self._samples = {}
        self._lock = threading.Lock()

    def stage(self, name: str, seconds: float) -> None:
        with self._lock:
            self._samples.setdefault(name, deque(maxlen=RECENT)).append(seconds)

    def recent(self, name: str) -> list:
        with self._lock:
            return list(self._samples.get(name, ()))

    @property
    def latency(self) -> list:
        return self.recent('latency')

    def summary(self) -> dict:
        """Counts and the recent latency (obs stamp -> chunk ready), inference and stage figures, in ms."""
        with self._lock:
            samples = {k: np.array(v) for k, v in self._samples.items() if v}
        values = {'chunks': self.chunks, 'rejected_observations': self.rejected, 'dropped_actions': self.dropped}
        lat = samples.pop('latency', None)
        if lat is not None:
            values.update(latency_p50_ms=round(float(np.percentile(lat, 50)) * 1e3, 1),
                          latency_p99_ms=round(float(np.percentile(lat, 99)) * 1e3, 1),
                          latency_last_ms=round(float(lat[-1]) * 1e3, 1))
        inf = samples.pop('inference', None)
        if inf is not None:
            values['inference_ms'] = round(float(np.median(inf)) * 1e3, 1)
        for name, seconds in samples.items():
            values[f'{name}_ms'] = round(float(np.median(seconds)) * 1e3, 2)
        return values


class PolicyRunner:
    def __init__(self, policy, joint_names, dt: float, *, execute: int | None = None,
                 offset: int | None = None, continuity: str = 'inpaint', max_obs_age: float = 0.25,
                 seed: int = 0, lead: float = 0.02, latency: float = 0.1):
        cfg = policy.config
        self.policy, self.dt = policy, float(dt)
        self.execute = int(execute or cfg.n_action_steps)
        self.offset = cfg.action_offset if offset is None else int(offset)
        self.max_obs_age, self.seed = float(max_obs_age), int(seed)
        self.state_key = cfg.state_key
        self.streams = (*cfg.image_keys, cfg.state_key)
        self.driver = cfg.image_keys[0] if cfg.image_keys else cfg.state_key
        self.horizon = cfg.horizon
        self.buffer = ObservationBuffer(self.streams, self.dt, cfg.n_obs_steps, self.max_obs_age)
        self.scheduler = ChunkScheduler(joint_names, self.dt, cfg.n_obs_steps - 1, self.offset,
                                        continuity, lead=lead)
        self.clock = QueryClock(self.execute * self.dt)
        self.latency_estimate = float(latency)
        self.stats = RunnerStats()
        self.waiting = 'starting'   # why no query is made now ('' while queries flow)
        self.epoch = 0
        self.calls = 0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._fresh = False         # a driving-stream sample arrived since the last wait()

    @property
    def continuity(self) -> str:
        return self.scheduler.continuity

    # ---- intake ----
    def add(self, stream: str, stamp: float, value) -> None:
        with self._lock:
            self.buffer.add(stream, stamp, value)
            if stream == self.driver:
                self._fresh = True
                self._arrived.notify_all()

    def wait(self, timeout: float) -> bool:
        """Block until a new sample of the driving stream (True) or `timeout` s (False): a query can
        only become due when one arrives, so a threaded caller need not poll."""
        with self._arrived:
            if not self._fresh:
                self._arrived.wait(timeout)
            fresh, self._fresh = self._fresh, False
            return fresh

    def wake(self) -> None:
        """Release a wait() now (stopping)."""
        with self._arrived:
            self._arrived.notify_all()

    def warmup(self, calls: int = 2) -> None:
        """Run the policy on a blank observation so the first real query is not the slow one."""
        obs = blank_observation(self.policy.config)
        for _ in range(calls):
            self.policy.predict_chunk(obs, seed=0)

    def reset(self, now: float = -np.inf, seed: int | None = None) -> None:
        """A new episode: forget the history (and samples captured before `now` still in flight),
        the previous chunk and the clock; a query in flight belongs to the old epoch."""
        with self._lock:
            self.buffer.clear(since=now)
            self.scheduler.reset()
            self.clock.reset()
            self.epoch += 1
            if seed is not None:
                self.seed, self.calls = int(seed), 0

    # ---- querying ----
    def poll(self, now: float) -> Query | None:
        """The query due at `now`, or None (then `waiting` says why, or is '' between queries)."""
        with self._lock:
            t_obs = self.buffer.latest_stamp(self.driver)
            if t_obs is None:
                self.waiting = f'no {self.driver} yet'
                return None
            if not self.clock.due(t_obs):
                stale = now - t_obs > self.max_obs_age
                # the stream stopped between two queries: say so rather than seem to be running
                self.waiting = f'newest {self.driver} is {now - t_obs:.2f} s old' if stale else ''
                return None
            try:
                if now - t_obs > self.max_obs_age:
                    raise ObservationError(f'newest {self.driver} is {now - t_obs:.2f} s old')
                obs = self.buffer.history(t_obs)
            except ObservationError as exc:
                self.waiting = str(exc)
                self.stats.rejected += 1
                return None
            prefix, weights = self.scheduler.prefix(t_obs, self.horizon, self.latency_estimate)
            query = Query(obs, t_obs, prefix, weights, self.epoch, self.seed * SEED_STRIDE + self.calls)
            self.calls += 1
            self.stats.stage('wait', now - t_obs)
            self.waiting = ''
            return query

    def infer(self, query: Query) -> np.ndarray:
        """The policy's chunk for one query (batched callers call predict_chunk themselves)."""
        t0 = time.perf_counter()
        chunk = self.policy.predict_chunk(query.obs, seed=query.seed, prefix=query.prefix,
                                          prefix_weights=query.weights)
        self.stats.stage('inference', time.perf_counter() - t0)
        for name, seconds in getattr(self.policy, 'last_timing', {}).items():
            self.stats.stage(name, seconds)
        return chunk

    def complete(self, query: Query, chunk: np.ndarray, now: float) -> Outcome:
        """Schedule a query's chunk, available at `now`: the timestamped trajectory to send."""
        t0 = time.perf_counter()
        with self._lock:
            if query.epoch != self.epoch:
                return Outcome(reason='reset during inference: the chunk belongs to the last episode')
            traj, dropped = self.scheduler.schedule(chunk, query.t_obs, now)
            self.clock.done(query.t_obs)
            latency = now - query.t_obs
            first = self.scheduler.first
            times = self.scheduler.times(query.t_obs, len(chunk))
            out = Outcome(traj, dropped - first, latency,
                          overtaken=(times[first:dropped], np.asarray(chunk)[first:dropped]))
            if 0.0 <= latency <= self.horizon * self.dt:
                self.latency_estimate += LATENCY_GAIN * (latency - self.latency_estimate)
                self.stats.stage('latency', latency)
            else:
                # not a latency but the clock jumping (a bogus /clock, a clock reset): one such
                # value must not poison the estimate that inpainting and the statistics rely on
                out.reason = f'clock jump: observation at {query.t_obs:.3f} s, clock now {now:.3f} s'
            self.stats.dropped += out.dropped
            if traj is None:
                overtaken = f'whole chunk overtaken: latency {latency * 1e3:.0f} ms'
                out.reason = f'{out.reason}; {overtaken}' if out.reason else overtaken
            else:
                self.stats.chunks += 1
            self.stats.stage('schedule', time.perf_counter() - t0)
            return out

    def step(self, now: float, available: float | None = None) -> Outcome | None:
        """poll + infer + complete in one go (single-threaded callers); `available`: when the chunk
        counts as ready (default: the clock after inference is `now`, i.e. no delay)."""
        query = self.poll(now)
        if query is None:
            return None
        chunk = self.infer(query)
        return self.complete(query, chunk, now if available is None else available)


def blank_observation(config) -> dict:
    """An all-zero observation history of the shapes `config` (a PolicyConfig) expects."""
    obs = {config.state_key: np.zeros((config.n_obs_steps, config.state_dim), np.float32)}
    for key in config.image_keys:
        obs[key] = np.zeros((config.n_obs_steps, *config.image_shape), np.uint8)
    return obs


def chunk_time_ms(policy, repeats: int = 20) -> float:
    """Median wall time of one predict_chunk call at batch 1 (after one warm-up call), in ms."""
    obs = blank_observation(policy.config)
    policy.predict_chunk(obs, seed=0)
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        policy.predict_chunk(obs, seed=i)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def check_policy_fits(action_dim: int, state_dim: int, robot, action_space: str = 'joint') -> None:
    """A ValueError naming both sides unless the policy fits the robot (a RobotProfile).

    joint: it acts on and sees the arm joints (a gripper, if any, is then left where it is), or the
    arm joints plus the gripper width when the robot has a gripper (robot.py: the gripper convention).
    ee: it acts on the tip pose (control/ee_chunk.EE_COLUMNS, 9 values) plus the gripper width when
    both have one, on a robot whose profile has kinematics; it sees that pose (+ gripper) or the joints."""
    dof, has_gripper = robot.dof, robot.gripper is not None
    if action_space == 'ee':
        from ros2_imitation.control.ee_chunk import EE_COLUMNS
        n = len(EE_COLUMNS)
        grip = action_dim == n + 1
        fits = (robot.kinematics is not None and (action_dim == n or (has_gripper and grip))
                and state_dim in ((n + 1, dof + 1) if grip else (n, dof)))
        if fits:
            return
        raise ValueError(f'the end-effector policy acts on {action_dim} values (pose: {n}, + gripper: {n + 1}) '
                         f'and sees {state_dim}; {robot.describe_dims()}'
                         + ('' if robot.kinematics is not None else '; the profile has no kinematics for the IK'))
    fits = action_dim == state_dim and (action_dim == dof or (has_gripper and action_dim == dof + 1))
    if fits:
        return

    def what(n):
        return (f'{n} values ({dof} joints + gripper)' if n == dof + 1 else
                f'{n} values ({dof} joints)' if n == dof else f'{n} values')
    raise ValueError(f'the policy acts on {what(action_dim)} and sees {what(state_dim)}; '
                     f'{robot.describe_dims()}')


def policy_joint_names(robot, action_dim: int, action_space: str = 'joint') -> tuple:
    """The names of a chunk's columns: the arm joints (or the tip pose's EE_COLUMNS for an
    end-effector policy), then the gripper's command_name."""
    if action_space == 'ee':
        from ros2_imitation.control.ee_chunk import EE_COLUMNS
        return EE_COLUMNS + ((robot.gripper.command_name,) if action_dim == len(EE_COLUMNS) + 1 else ())
    return robot.arm_joints + ((robot.gripper.command_name,) if action_dim == robot.dof + 1 else ())


def policy_state_names(robot, config) -> tuple:
    """The names of the state a policy sees, as proprioception_node publishes them: the tip pose
    (ee_state) for a policy trained on state_ee, or an end-effector policy whose state is that size,
    else the arm joints; + the gripper. (A study's state policy has the task's features after these.)"""
    from ros2_imitation.control.ee_chunk import EE_COLUMNS
    from ros2_imitation.data.ee_streams import EE_KEYS
    if config.state_key == EE_KEYS['state'] or \
            (config.action_space == 'ee' and config.state_dim in (len(EE_COLUMNS), len(EE_COLUMNS) + 1)):
        return policy_joint_names(robot, config.state_dim, 'ee')
    return policy_joint_names(robot, config.state_dim)


def model_path(model: str) -> str:
    """A policy_node `model` parameter -> the checkpoint folder: '' -> the shipped push_cube; the name
    of a shipped model (models/<name>, e.g. pick_place) that is not a path here -> its installed
    folder; anything else -> as given (load_policy names it if it is not a checkpoint)."""
    from ros2_imitation.paths import share_dir
    shipped = share_dir() / 'models'
    if not model:
        return str(shipped / 'push_cube')
    if '/' not in model and not Path(model).exists() and (shipped / model / 'config.json').is_file():
        return str(shipped / model)
    return model


def load_runtime_policy(model: str = '', device: str = 'auto', scheduler: str = '', inference_steps: int = 0,
                        noise_mode: str = '', sigma: float = -1.0, threads: int = 0, arm_dof: int | None = None,
                        robot_name: str = '?', runtime: str = 'torch', robot=None):
    """(policy, model path) for running on a robot: the checkpoint (model_path: a folder, or the name
    of a shipped model; default the shipped push_cube)
    with the run-time overrides ('' / 0 / -1 keep the checkpoint's value), checked against the
    arm. runtime: the inference backend (policy.runtimes: torch, compile, half, onnxruntime, openvino
    or auto, the fastest here; torch whenever another cannot run, with the reason logged). robot: the
    RobotProfile to check the policy against (check_policy_fits; arm_dof: an arm without a gripper,
    for callers without a profile). Every problem is a ValueError naming the model."""
    import torch

    from ros2_imitation.policy import CheckpointError, load_policy
    path = model_path(model)
    if threads > 0:  # next to the sim on a small CPU, fewer threads contend less
        torch.set_num_threads(int(threads))
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        policy = load_policy(path, device=device, inference_scheduler=scheduler or None,
                             num_inference_steps=inference_steps or None, noise_mode=noise_mode or None,
                             runtime=runtime or 'torch',
                             # a robot's policy predicts one observation at a time: an ONNX export with
                             # the batch fixed to 1 runs fastest (docs/benchmarks.md, runtimes)
                             runtime_options={'dynamic_batch': False} if runtime in ('onnxruntime', 'openvino', 'auto')
                             else None)
        if sigma >= 0:
            policy.config = policy.config.replace(noise_sigma=float(sigma))
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        raise ValueError(f'cannot load policy {path}: {exc}') from exc
    cfg = policy.config
    if robot is not None:
        try:
            check_policy_fits(cfg.action_dim, cfg.state_dim, robot, cfg.action_space)
        except ValueError as exc:
            raise ValueError(f'policy {path}: {exc}') from None
    elif arm_dof is not None and (cfg.action_dim != arm_dof or cfg.state_dim != arm_dof):
        raise ValueError(f'the policy acts on {cfg.action_dim} and sees {cfg.state_dim} joint values; '
                         f'robot {robot_name} has {arm_dof} arm joints')
    return policy, path
