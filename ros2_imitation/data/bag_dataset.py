"""rosbag2 episodes -> Diffusion Policy's zarr replay buffer (`ros2-imitation bag2dataset`).

ROS-free: bags are read with `rosbags` (MCAP and sqlite3), one bag per episode.

Resampling (all times int64 nanoseconds, so grid ties are exact):
  * grid t_k = t_start + k * dt, dt = 1 / rate, over the span where every required stream exists:
    t_start = max(first joint_states stamp, first image stamp, first chunk's receive time),
    t_k <= min(last joint_states stamp, last image stamp)  (and t_k + dt <= last joint_states stamp
    with --action-source joint_states).
  * sensor streams (joint_states, image) are aligned on header.stamp: the latest sample with
    stamp <= t_k, valid only if t_k - stamp <= max_age.
  * state[k] = arm joint positions (mapped by name) of that joint_states sample.
  * image[k] = that image, converted to RGB and resized with cv2.INTER_AREA (no crop).
  * action[k] (chunk / label) = the position that the latest chunk *received* (bag receive time) at or
    before t_k commands for time t_k + dt: the chunk's points apply at header.stamp + time_from_start
    (stamp 0 = "from receipt", as in the JTC), linear interpolation between points, the first point
    before the chunk starts, the last point after it ends (the controller holds it).
  * action[k] (joint_states) = the measured arm position at t_k + dt, sampled like the state, so
    action[k] == state[k + 1] whenever both exist.
  * a gripper (--gripper-joint, or a robot profile's: --gripper-profile / topic map `gripper: {profile:
    panda}`) is the last dimension of both: its state is the joint's position, or the profile's
    finger-to-finger opening in metres, (mean(finger joints) - joint_offset) / joint_scale; its action
    is the chunks' gripper column (gripper.command_name, e.g. panda_gripper) resampled exactly as the
    arm's columns, else the gripper command in force at t_k + dt, else the measured value at t_k + dt.
  * a grid step where a sensor sample is older than max_age (or no chunk has arrived yet) is invalid:
    leading invalid steps are skipped and the episode ENDS at the first invalid step after that (no
    time jumps inside an episode). What was cut is reported and stored in the episode's meta.

When header stamps and receive times are on different clocks (a recorder on wall time, stamps on sim
time: median |receive - stamp| of /joint_states over 1 s), chunk receive times are mapped onto the stamp
clock through the joint_states received just before them.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ros2_imitation.data.bag_reading import (
    FORMAT,
    NEXT_STATE_SOURCES,
    NS,
    TRAJECTORY_SOURCES,
    BagError,
    ConvertConfig,
    Stream,
    chunk_stream,
    clock_map,
    command_stream,
    episode_flags,
    find_bags,
    image_stream,
    joint_stream,
    read_bag,
    task_outcome,
)
from ros2_imitation.data.ee_streams import ee_names, ee_streams


@dataclass
class Episode:
    bag: str
    state: np.ndarray                  # (T, J) float32: arm joints, then the gripper if any
    action: np.ndarray                 # (T, J) float32
    timestamp: np.ndarray              # (T,) float64, grid time t_k in seconds (header.stamp clock)
    images: dict                       # camera name -> (T, H, W, 3) uint8 RGB
    info: dict                         # outcome, noisy, action_source, cuts, warnings, ...

    def __len__(self) -> int:
        return len(self.state)

    @property
    def image(self) -> np.ndarray | None:
        """The camera named 'image' (the default single camera), else the first one, else None."""
        if 'image' in self.images:
            return self.images['image']
        return next(iter(self.images.values()), None)


# --------------------------------------------------------------------------------------------- helpers

def parse_image_size(text: str) -> tuple[int, int]:
    """'96x96' / '128x96' (WIDTHxHEIGHT) -> (width, height)."""
    try:
        w, h = (int(v) for v in str(text).lower().split('x'))
    except ValueError:
        raise ValueError(f'image size must be WIDTHxHEIGHT like 96x96, got {text!r}') from None
    if w <= 0 or h <= 0:
        raise ValueError(f'image size must be positive, got {text!r}')
    return w, h


def latest_at_or_before(stamps: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the last sorted stamp <= t (-1 where none)."""
    return np.searchsorted(stamps, t, side='right') - 1


def interpolate_chunk(rel_s: np.ndarray, positions: np.ndarray, s: float) -> np.ndarray:
    """Position at s seconds after the chunk's start: linear between points, the first point before
    the chunk, the last point after it."""
    if s <= rel_s[0]:
        return positions[0].copy()
    if s >= rel_s[-1]:
        return positions[-1].copy()
    i = int(np.searchsorted(rel_s, s, side='right')) - 1
    w = (s - rel_s[i]) / (rel_s[i + 1] - rel_s[i])
    return positions[i] + w * (positions[i + 1] - positions[i])


def convert_bag(bag, config: ConvertConfig = ConvertConfig()) -> Episode:
    """One bag -> one Episode. Raises BagError naming the bag (and topic) on any problem."""
    bag = Path(bag)
    warnings: list[str] = []
    raw, custom, storage, topics = read_bag(bag, config, warnings)
    flags = episode_flags(bag, custom)
    if flags['outcome'] is None and raw.get('task_state'):
        flags['outcome'] = task_outcome(raw['task_state'])
        flags['outcome_source'] = 'task_state' if flags['outcome'] else None

    arm = tuple(config.joint_names)
    gripper = config.gripper
    gripper_in_joints = gripper is not None and 'gripper_states' not in topics
    names = arm + (gripper.joints if gripper_in_joints else ())
    joint = joint_stream(bag, topics['joint_states'], raw['joint_states'], names, warnings)
    grip = (joint_stream(bag, topics['gripper_states'], raw['gripper_states'], gripper.joints, warnings)
            if gripper is not None and not gripper_in_joints else None)
    to_stamp_clock, clock = clock_map(joint, warnings)
    cameras = {name: image_stream(bag, topics[f'camera:{name}'], raw[f'camera:{name}'], config.image_size,
                                  warnings)
               for name in config.camera_topics}

    source = config.action_source
    if source == 'auto':
        source = 'label' if raw.get('label') else 'chunk'
        if not raw.get(source):
            raise BagError(bag, config.topics.get('chunk'), 'missing or empty, and no expert_label either')
    chunks = command = None
    # a robot profile's gripper: its action is the chunks' gripper column, resampled as the arm's
    gripper_column = gripper is not None and gripper.column is not None and source in TRAJECTORY_SOURCES
    if source in TRAJECTORY_SOURCES:
        columns = arm + ((gripper.column,) if gripper_column else ())
        chunks = chunk_stream(bag, topics[source], raw[source], columns, to_stamp_clock, warnings)
    elif source == 'command':
        command = command_stream(bag, topics['command'], raw['command'], arm, config.command_joints or arm,
                                 to_stamp_clock, warnings)
    gripper_command = None
    if gripper is not None and gripper.command_topic:
        index = int(gripper.command_index)
        gripper_command = _gripper_commands(bag, topics['gripper_command'], raw['gripper_command'], index,
                                            to_stamp_clock, warnings)
    next_state = source in NEXT_STATE_SOURCES
    # otherwise the next measured gripper position
    gripper_next = gripper is not None and gripper_command is None and not gripper_column

    dt = config.dt_ns
    max_age = int(round(config.max_age * NS))
    sensors = [joint, *([grip] if grip is not None else []), *cameras.values()]
    t_start = max(int(s.stamps[0]) for s in sensors)
    if chunks is not None:
        t_start = max(t_start, int(chunks.recv[0]))
    t_end = min(int(s.stamps[-1]) for s in sensors)
    if next_state or (gripper_next and grip is None):
        t_end = min(t_end, int(joint.stamps[-1]) - dt)
    if gripper_next and grip is not None:
        t_end = min(t_end, int(grip.stamps[-1]) - dt)
    if t_end < t_start:
        raise BagError(bag, None, f'the streams never overlap: from {t_start / NS:.3f} s to {t_end / NS:.3f} s')
    grid = t_start + dt * np.arange((t_end - t_start) // dt + 1, dtype=np.int64)

    # validity of every grid step, with the first reason per step
    reasons: list = [None] * len(grid)

    def sample(stream: Stream, times, topic):
        idx = latest_at_or_before(stream.stamps, times)
        age = times - stream.stamps[np.maximum(idx, 0)]
        bad = (idx < 0) | (age > max_age)
        for k in np.flatnonzero(bad):
            if reasons[k] is None:
                reasons[k] = (topic, 'no sample' if idx[k] < 0 else f'latest sample {age[k] / NS:.3f} s old')
        return np.maximum(idx, 0)

    j_idx = sample(joint, grid, topics['joint_states'])
    g_idx = sample(grip, grid, topics['gripper_states']) if grip is not None else None
    cam_idx = {name: sample(stream, grid, topics[f'camera:{name}']) for name, stream in cameras.items()}
    if next_state or (gripper_next and grip is None):
        a_idx = sample(joint, grid + dt, topics['joint_states'] + ' (action at t+dt)')
    if gripper_next and grip is not None:
        ga_idx = sample(grip, grid + dt, topics['gripper_states'] + ' (gripper action at t+dt)')
    if chunks is not None:
        c_idx = latest_at_or_before(chunks.recv, grid)
        for k in np.flatnonzero(c_idx < 0):
            if reasons[k] is None:
                reasons[k] = (topics[source], 'no chunk received yet')
    if command is not None:
        m_idx = latest_at_or_before(command.stamps, grid + dt)   # the command in force at t_k + dt
        for k in np.flatnonzero(m_idx < 0):
            if reasons[k] is None:
                reasons[k] = (topics['command'], 'no command received yet')

    valid = np.array([r is None for r in reasons], dtype=bool)
    if not valid.any():
        topic, why = reasons[0]
        raise BagError(bag, topic, f'no valid grid step (first step: {why}; max-age {config.max_age} s)')
    first = int(np.argmax(valid))
    invalid_after = np.flatnonzero(~valid[first:])
    stop = first + int(invalid_after[0]) if len(invalid_after) else len(grid)
    end_reason = None
    if stop < len(grid):
        topic, why = reasons[stop]
        end_reason = f'{topic}: {why} at t={(grid[stop] - t_start) / NS:.3f} s (max-age {config.max_age} s)'
        warnings.append(f'episode ends early, {len(grid) - stop} of {len(grid)} steps cut: {end_reason}')
    if first:
        topic, why = reasons[0]
        warnings.append(f'skipped {first} leading steps: {topic}: {why}')
    ks = np.arange(first, stop)

    n_arm = len(arm)
    state = joint.values[j_idx[ks]][:, :n_arm]
    if next_state:
        action = joint.values[a_idx[ks]][:, :n_arm]
    elif command is not None:
        action = command.values[m_idx[ks]]
    else:
        action = np.empty((len(ks), len(columns)))
        for row, k in enumerate(ks):
            c = int(c_idx[k])
            s = (int(grid[k]) + dt - int(chunks.start[c])) / NS
            action[row] = interpolate_chunk(chunks.rel_s[c], chunks.positions[c], s)
    if gripper is not None:
        fingers = joint.values[j_idx[ks]][:, n_arm:] if grip is None else grip.values[g_idx[ks]]
        state = np.concatenate([state, gripper.value(fingers)[:, None]], axis=1)
        if gripper_column:                # the chunk's column, interpolated with the arm's above
            g_action, action = action[:, n_arm], action[:, :n_arm]
        elif gripper_command is not None:   # the command in force at t_k + dt; before the first, it holds
            gc = latest_at_or_before(gripper_command.stamps, grid[ks] + dt)
            g_action = np.where(gc >= 0, gripper_command.values[np.maximum(gc, 0)], state[:, -1])
        elif grip is not None:
            g_action = gripper.value(grip.values[ga_idx[ks]])
        else:
            g_action = gripper.value(joint.values[a_idx[ks]][:, n_arm:])
        action = np.concatenate([action, g_action[:, None]], axis=1)
    info = {
        'bag': str(bag), 'name': bag.name, 'storage': storage,
        'outcome': flags['outcome'], 'outcome_source': flags['outcome_source'], 'noisy': flags['noisy'],
        'action_source': source, 'clock': clock, 'length': int(len(ks)),
        't_start': int(grid[first]) / NS, 't_end': int(grid[stop - 1]) / NS,
        'grid_steps': int(len(grid)), 'leading_steps_skipped': first, 'steps_cut': int(len(grid) - stop),
        'end_reason': end_reason, 'warnings': warnings, 'custom_data': flags['custom_data'],
        'message_counts': {k: len(v) for k, v in raw.items()},
    }
    return Episode(bag=str(bag), state=state.astype(np.float32), action=action.astype(np.float32),
                   timestamp=grid[ks].astype(np.float64) / NS,
                   images={name: cameras[name].values[idx[ks]] for name, idx in cam_idx.items()}, info=info)


def _gripper_commands(bag, topic, msgs, index, to_stamp_clock, warnings) -> Stream:
    """Value `index` of each Float64MultiArray gripper command, timed by its receive time."""
    stamps, values, short = [], [], 0
    for r, msg in msgs:
        data = np.asarray(msg.data, dtype=float)
        if data.size <= index or not np.isfinite(data[index]):
            short += 1
            continue
        stamps.append(r)
        values.append(data[index])
    if short:
        warnings.append(f'{topic}: skipped {short} gripper commands without a finite value {index}')
    if not values:
        raise BagError(bag, topic, f'no gripper command has a finite value at index {index}')
    recv = np.array(stamps, np.int64)
    mapped = to_stamp_clock(recv)
    order = np.argsort(mapped, kind='stable')
    return Stream(mapped[order], np.array(values)[order], recv[order])


@dataclass
class ConvertResult:
    episodes: list
    failures: list                 # (bag, message)
    skipped: list                  # (bag, reason), e.g. --only-success


def convert_bags(paths: Sequence, config: ConvertConfig = ConvertConfig(), only_success: bool = False,
                 progress: bool = True) -> ConvertResult:
    """Convert every bag; a bag that fails is reported and the others still convert."""
    from tqdm import tqdm
    result = ConvertResult([], [], [])
    bags = find_bags(paths)
    bar = tqdm(bags, desc='bag2dataset', unit='bag', disable=not progress, file=sys.stderr)
    for bag in bar:
        try:
            episode = convert_bag(bag, config)
        except BagError as exc:
            result.failures.append((str(bag), str(exc)))
            if progress:
                bar.write(f'FAILED {exc}', file=sys.stderr)
            continue
        except Exception as exc:   # an unforeseen problem in one bag must not lose the batch
            result.failures.append((str(bag), f'{bag}: {type(exc).__name__}: {exc}'))
            if progress:
                bar.write(f'FAILED {bag}: {type(exc).__name__}: {exc}', file=sys.stderr)
            continue
        if only_success and episode.info['outcome'] != 'success':
            result.skipped.append((str(bag), f'outcome {episode.info["outcome"] or "unknown"}'))
            continue
        if len(episode) < 2:
            result.skipped.append((str(bag), f'only {len(episode)} valid step'))
            continue
        result.episodes.append(episode)
    return result


# ------------------------------------------------------------------------------------------- writing

def _code(value, mapping) -> int:
    return mapping.get(value, -1)


_GRIPPER_STATE = {False: ', then the gripper joint position',
                  True: ', then the gripper opening (m): (mean(finger joints) - offset) / scale'}
_GRIPPER_ACTION = {False: '; then the gripper: its command in force at t_k + dt, else its measured position '
                          'at t_k + dt',
                   True: "; then the gripper opening (m): the chunk's gripper column, resampled as the arm's "
                         '(else the measured opening at t_k + dt)'}


def dataset_meta(result: ConvertResult, config: ConvertConfig) -> dict:
    """What the conversion did, the same for every output format (zarr meta attributes, LeRobot
    meta/ros2_imitation.json)."""
    episodes = result.episodes
    w, h = config.image_size
    described = config.describe()
    return {
        'format': FORMAT,
        'rate': config.rate, 'dt': config.dt_ns / NS, 'max_age': config.max_age,
        'image_size': [w, h] if config.camera_topics else None,
        'image_preprocessing': 'RGB, cv2.resize INTER_AREA to image_size (width, height), no crop',
        'joint_names': list(config.state_names),
        'arm_joint_names': list(config.joint_names),
        'topics': described['topics'], 'cameras': described['cameras'],
        'gripper': described.get('gripper'), 'command_joints': described.get('command_joints'),
        'action_source': config.action_source,
        'state_definition': 'arm joint positions (rad) of the latest /joint_states with stamp <= t_k'
                            + (_GRIPPER_STATE[bool(config.gripper.column)] if config.gripper else ''),
        'action_definition': ('absolute arm joint position target for t_k + dt: the latest chunk received '
                              'by t_k, interpolated linearly (chunk/label/trajectory); the command in force '
                              'at t_k + dt (command); or the measured position at t_k + dt (next_state)'
                              + (_GRIPPER_ACTION[bool(config.gripper.column)] if config.gripper else '')),
        # action[k] is the arm position for t_k + action_time_offset_steps * dt (t_k = time of obs k)
        'action_time_offset_steps': 1,
        'episode_outcome_codes': {'1': 'success', '0': 'failure', '-1': 'unknown'},
        'episode_noisy_codes': {'1': 'noise-injected', '0': 'clean', '-1': 'unknown'},
        'source_bags': [ep.bag for ep in episodes],
        'episodes': [_jsonable(ep.info) for ep in episodes],
        'failed_bags': [{'bag': b, 'error': e} for b, e in result.failures],
        'skipped_bags': [{'bag': b, 'reason': r} for b, r in result.skipped],
    }


def episode_codes(episodes) -> tuple[np.ndarray, np.ndarray]:
    """Per episode: outcome (1 success, 0 failure, -1 unknown) and noisy (1, 0, -1), int8."""
    outcome = np.array([_code(ep.info['outcome'], {'success': 1, 'failure': 0}) for ep in episodes], np.int8)
    noisy = np.array([_code(ep.info['noisy'], {True: 1, False: 0}) for ep in episodes], np.int8)
    return outcome, noisy


def write_dataset(out, result: ConvertResult, config: ConvertConfig, overwrite: bool = False,
                  ee_robot=None) -> Path:
    """data/{state,action,timestamp,<camera>...}, meta/{episode_ends,episode_outcome,episode_noisy} and
    meta attributes describing the conversion. Uses the policy package's replay-buffer writer.
    ee_robot (a RobotProfile with kinematics): also data/{state_ee,action_ee} (data/ee_streams.py)."""
    import zarr

    from ros2_imitation.policy.dataset import write_episodes
    episodes = result.episodes
    if not episodes:
        raise ValueError('no episodes to write')
    arrays = []
    kinematics = None
    if ee_robot is not None:
        from ros2_imitation.control.kinematics import ArmKinematics
        kinematics = ArmKinematics.for_robot(ee_robot)
    for ep in episodes:
        item = {'state': ep.state, 'action': ep.action, 'timestamp': ep.timestamp}
        if kinematics is not None:
            item.update(ee_streams(item, ee_robot, kinematics))
        item.update(ep.images)
        arrays.append(item)
    path = write_episodes(out, arrays, overwrite=overwrite)
    root = zarr.open_group(str(path), mode='r+', zarr_format=2)
    meta = root['meta']
    outcome, noisy = episode_codes(episodes)
    meta.create_array('episode_outcome', shape=outcome.shape, dtype=np.int8)[...] = outcome
    meta.create_array('episode_noisy', shape=noisy.shape, dtype=np.int8)[...] = noisy
    meta.attrs.update(dataset_meta(result, config))
    if ee_robot is not None:
        meta.attrs.update({'ee_names': ee_names(ee_robot, config.gripper is not None),
                           'ee_frames': [ee_robot.kinematics.base_frame, ee_robot.kinematics.tip_frame]})
    return path


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, 'item') else str(o)))



def episode_task(episode: Episode, config: ConvertConfig) -> str:
    """The task in words: --task / the topic map's task, else the bag's custom_data task, else 'task'."""
    task = config.task or episode.info.get('custom_data', {}).get('task')
    return str(task).strip() if task and str(task).strip() else 'task'


def write_lerobot_dataset(out, result: ConvertResult, config: ConvertConfig, overwrite: bool = False,
                          vcodec: str | None = None) -> Path:
    """The converted episodes as a LeRobot v3.0 folder (data.lerobot_format): observation.state and
    action (config.state_names), one video feature observation.images.<camera> per camera with the
    same frames the zarr gets, fps = rate; what the conversion did goes to meta/ros2_imitation.json."""
    from ros2_imitation.data.lerobot_format import DEFAULT_VCODEC, LeRobotEpisode, write_lerobot
    episodes = result.episodes
    if not episodes:
        raise ValueError('no episodes to write')
    if int(config.rate) != config.rate:
        raise ValueError(f'LeRobot datasets have an integer fps; the rate is {config.rate:g} Hz')
    outcome, noisy = episode_codes(episodes)
    extra = dataset_meta(result, config)
    extra.update({'episode_outcome': outcome.tolist(), 'episode_noisy': noisy.tolist(),
                  'episode_t_start': [float(ep.timestamp[0]) for ep in episodes]})
    items = [LeRobotEpisode(ep.state, ep.action, ep.images, episode_task(ep, config)) for ep in episodes]
    return write_lerobot(out, items, fps=int(config.rate), state_names=config.state_names,
                         action_names=config.state_names, robot_type=config.robot_type,
                         vcodec=vcodec or DEFAULT_VCODEC, extra=extra, overwrite=overwrite)
