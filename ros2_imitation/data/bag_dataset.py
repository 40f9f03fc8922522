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
    NS,
    BagError,
    ConvertConfig,
    Stream,
    chunk_stream,
    clock_map,
    episode_flags,
    find_bags,
    joint_stream,
    read_bag,
    sensor_stream,
    stamp_ns,
    task_outcome,
)
from ros2_imitation.sensors.images import image_to_rgb


@dataclass
class Episode:
    bag: str
    state: np.ndarray                  # (T, J) float32
    action: np.ndarray                 # (T, J) float32
    timestamp: np.ndarray              # (T,) float64, grid time t_k in seconds (header.stamp clock)
    image: np.ndarray | None           # (T, H, W, 3) uint8 RGB
    info: dict                         # outcome, noisy, action_source, cuts, warnings, ...

    def __len__(self) -> int:
        return len(self.state)


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

    joint = joint_stream(bag, topics['joint_states'], raw['joint_states'], config.joint_names, warnings)
    to_stamp_clock, clock = clock_map(joint, warnings)

    image = None
    if topics.get('image'):
        frames, stamps, recv = [], [], []
        for r, msg in raw['image']:
            try:
                frames.append(image_to_rgb(msg.data, msg.encoding, int(msg.height), int(msg.width),
                                           int(msg.step), config.image_size))
            except ValueError as exc:
                raise BagError(bag, topics['image'], str(exc)) from None
            stamps.append(stamp_ns(msg.header))
            recv.append(r)
        image = sensor_stream(topics['image'], np.array(stamps, np.int64), np.stack(frames),
                               np.array(recv, np.int64), warnings)

    source = config.action_source
    if source == 'auto':
        source = 'label' if raw.get('label') else 'chunk'
        if not raw.get(source):
            raise BagError(bag, topics.get('chunk'), 'missing or empty, and no expert_label either '
                                                     '(use --action-source joint_states for demos without chunks)')
    chunks = None
    if source in ('chunk', 'label'):
        chunks = chunk_stream(bag, topics[source], raw[source], config.joint_names, to_stamp_clock, warnings)

    dt = config.dt_ns
    max_age = int(round(config.max_age * NS))
    t_start = max(joint.stamps[0], image.stamps[0] if image else joint.stamps[0],
                  chunks.recv[0] if chunks else joint.stamps[0])
    t_end = min(joint.stamps[-1], image.stamps[-1] if image else joint.stamps[-1])
    if source == 'joint_states':
        t_end = min(t_end, joint.stamps[-1] - dt)
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
    i_idx = sample(image, grid, topics['image']) if image else None
    if source == 'joint_states':
        a_idx = sample(joint, grid + dt, topics['joint_states'] + ' (action at t+dt)')
    else:
        c_idx = latest_at_or_before(chunks.recv, grid)
        for k in np.flatnonzero(c_idx < 0):
            if reasons[k] is None:
                reasons[k] = (topics[source], 'no chunk received yet')

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

    state = joint.values[j_idx[ks]]
    if source == 'joint_states':
        action = joint.values[a_idx[ks]]
    else:
        action = np.empty_like(state)
        for row, k in enumerate(ks):
            c = int(c_idx[k])
            s = (int(grid[k]) + dt - int(chunks.start[c])) / NS
            action[row] = interpolate_chunk(chunks.rel_s[c], chunks.positions[c], s)
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
                   image=image.values[i_idx[ks]] if image else None, info=info)


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


def write_dataset(out, result: ConvertResult, config: ConvertConfig, overwrite: bool = False) -> Path:
    """data/{image,state,action,timestamp}, meta/{episode_ends,episode_outcome,episode_noisy} and
    meta attributes describing the conversion. Uses the policy package's replay-buffer writer."""
    import zarr

    from ros2_imitation.policy.dataset import write_episodes
    episodes = result.episodes
    if not episodes:
        raise ValueError('no episodes to write')
    arrays = []
    for ep in episodes:
        item = {'state': ep.state, 'action': ep.action, 'timestamp': ep.timestamp}
        if ep.image is not None:
            item['image'] = ep.image
        arrays.append(item)
    path = write_episodes(out, arrays, overwrite=overwrite)
    root = zarr.open_group(str(path), mode='r+', zarr_format=2)
    meta = root['meta']
    outcome = np.array([_code(ep.info['outcome'], {'success': 1, 'failure': 0}) for ep in episodes], np.int8)
    noisy = np.array([_code(ep.info['noisy'], {True: 1, False: 0}) for ep in episodes], np.int8)
    meta.create_array('episode_outcome', shape=outcome.shape, dtype=np.int8)[...] = outcome
    meta.create_array('episode_noisy', shape=noisy.shape, dtype=np.int8)[...] = noisy
    w, h = config.image_size
    attrs = {
        'format': FORMAT,
        'rate': config.rate, 'dt': config.dt_ns / NS, 'max_age': config.max_age,
        'image_size': [w, h] if config.topics.get('image') else None,
        'image_preprocessing': 'RGB, cv2.resize INTER_AREA to image_size (width, height), no crop',
        'joint_names': list(config.joint_names),
        'topics': {k: v for k, v in config.topics.items() if v},
        'action_source': config.action_source,
        'state_definition': 'arm joint positions (rad) of the latest /joint_states with stamp <= t_k',
        'action_definition': ('absolute arm joint position target for t_k + dt: the latest chunk received '
                              'by t_k, interpolated linearly (chunk/label); or the measured position at '
                              't_k + dt (joint_states)'),
        # action[k] is the arm position for t_k + action_time_offset_steps * dt (t_k = time of obs k)
        'action_time_offset_steps': 1,
        'episode_outcome_codes': {'1': 'success', '0': 'failure', '-1': 'unknown'},
        'episode_noisy_codes': {'1': 'noise-injected', '0': 'clean', '-1': 'unknown'},
        'source_bags': [ep.bag for ep in episodes],
        'episodes': [_jsonable(ep.info) for ep in episodes],
        'failed_bags': [{'bag': b, 'error': e} for b, e in result.failures],
        'skipped_bags': [{'bag': b, 'reason': r} for b, r in result.skipped],
    }
    meta.attrs.update(attrs)
    return path


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, 'item') else str(o)))

