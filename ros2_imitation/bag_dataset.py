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
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ros2_imitation.images import image_to_rgb

ARM_JOINTS = tuple(f'panda_joint{i}' for i in range(1, 8))

DEFAULT_TOPICS = {
    'joint_states': '/joint_states',
    'image': '/camera/camera/color/image_raw',
    'chunk': '/ros2_imitation/action_chunk',
    'label': '/ros2_imitation/expert_label',
    'task_state': '/sim/task_state',
}
MSG_TYPES = {
    'joint_states': 'sensor_msgs/msg/JointState',
    'image': 'sensor_msgs/msg/Image',
    'chunk': 'trajectory_msgs/msg/JointTrajectory',
    'label': 'trajectory_msgs/msg/JointTrajectory',
    'task_state': 'std_msgs/msg/String',
}
ACTION_SOURCES = ('auto', 'chunk', 'label', 'joint_states')
# encoding -> (channels, cv2 conversion code name to RGB or None)
SIDECARS = ('episode.json', 'episode.yaml')   # inside the bag folder; also <bag>.json next to it
FORMAT = 'ros2_imitation.bag2dataset/1'
CLOCK_MISMATCH_NS = 1_000_000_000
NS = 1_000_000_000


class BagError(Exception):
    """A bag that cannot be converted; the message names the bag and, where known, the topic."""

    def __init__(self, bag, topic: str | None, reason: str):
        self.bag, self.topic, self.reason = str(bag), topic, reason
        super().__init__(f'{bag}: topic {topic}: {reason}' if topic else f'{bag}: {reason}')


@dataclass(frozen=True)
class ConvertConfig:
    rate: float = 10.0
    image_size: tuple = (96, 96)           # (width, height) of data/image
    max_age: float = 0.15                  # s, for joint_states and image samples
    action_source: str = 'auto'            # auto | chunk | label | joint_states
    joint_names: tuple = ARM_JOINTS
    topics: dict = field(default_factory=lambda: dict(DEFAULT_TOPICS))   # image '' = no images

    def __post_init__(self):
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f'rate must be > 0, got {self.rate}')
        if not self.max_age > 0:
            raise ValueError(f'max-age must be > 0, got {self.max_age}')
        if self.action_source not in ACTION_SOURCES:
            raise ValueError(f'action source must be one of {ACTION_SOURCES}, got {self.action_source!r}')
        w, h = self.image_size
        if int(w) <= 0 or int(h) <= 0:
            raise ValueError(f'image size must be positive, got {self.image_size}')

    @property
    def dt_ns(self) -> int:
        return int(round(NS / self.rate))


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


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * NS + int(header.stamp.nanosec)


def _duration_ns(d) -> int:
    return int(d.sec) * NS + int(d.nanosec)


def _truthy(value) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('true', '1', 'yes', 'on'):
        return True
    if text in ('false', '0', 'no', 'off'):
        return False
    return None


def _outcome(value) -> str | None:
    text = str(value).strip().lower()
    if text in ('success', 'succeeded', 'successful', 'true', '1'):
        return 'success'
    if text in ('failure', 'failed', 'fail', 'false', '0'):
        return 'failure'
    return None


def find_bags(paths: Iterable) -> list[Path]:
    """Bag folders: a path is a bag (folder with metadata.yaml or a storage file, or the storage file
    itself), or a folder whose sub-folders are bags (sorted)."""
    out = []
    for p in map(Path, paths):
        if p.is_file() and p.suffix in ('.mcap', '.db3'):
            p = p.parent if (p.parent / 'metadata.yaml').exists() else p
            out.append(p)
        elif p.is_dir() and not _looks_like_bag(p):
            subs = sorted(d for d in p.iterdir() if d.is_dir() and _looks_like_bag(d))
            out.extend(subs if subs else [p])   # an empty/odd folder fails later with a clear error
        else:
            out.append(p)
    return out


def _looks_like_bag(d: Path) -> bool:
    return (d / 'metadata.yaml').exists() or any(d.glob('*.mcap')) or any(d.glob('*.db3'))


# ------------------------------------------------------------------------------------------- reading

@dataclass
class _Stream:
    stamps: np.ndarray            # int64 ns, sorted
    values: list | np.ndarray
    recv: np.ndarray


@dataclass
class _Chunks:
    recv: np.ndarray              # int64 ns on the stamp clock, sorted
    start: np.ndarray             # int64 ns, first point time
    rel_s: list                   # per chunk (P,) float seconds
    positions: list               # per chunk (P, J)


def _episode_flags(bag: Path, custom: dict | None) -> dict:
    """outcome / noisy from metadata.yaml custom_data, else a sidecar file; missing -> None."""
    custom = {str(k): v for k, v in (custom or {}).items()}
    sources = [('custom_data', custom)]
    for sidecar in [bag / name for name in SIDECARS] + [bag.with_name(bag.name + '.json')]:
        if sidecar.is_file():
            try:
                text = sidecar.read_text()
                if sidecar.suffix == '.json':
                    data = json.loads(text)
                else:
                    import yaml
                    data = yaml.safe_load(text)
                if isinstance(data, dict):
                    sources.append((f'sidecar {sidecar.name}', data))
            except Exception as exc:   # a broken sidecar is not worth losing the episode
                custom.setdefault('_sidecar_error', f'{sidecar}: {exc}')
    flags = {'outcome': None, 'outcome_source': None, 'noisy': None, 'custom_data': custom}
    for name, data in sources:
        if flags['outcome'] is None:
            for key in ('outcome', 'success'):
                if key in data and _outcome(data[key]) is not None:
                    flags['outcome'], flags['outcome_source'] = _outcome(data[key]), name
                    break
        if flags['noisy'] is None and 'noisy' in data:
            flags['noisy'] = _truthy(data['noisy'])
    return flags


def _custom_data(bag: Path, warnings: list) -> dict:
    """metadata.yaml rosbag2_bagfile_information.custom_data (rosbag2 >= Iron, rosbags Writer)."""
    import yaml
    try:
        info = yaml.safe_load((bag / 'metadata.yaml').read_text()).get('rosbag2_bagfile_information', {})
        return dict(info.get('custom_data') or {})
    except Exception as exc:
        warnings.append(f'metadata.yaml custom_data unreadable: {exc}')
        return {}


def _read_bag(bag: Path, config: ConvertConfig, warnings: list):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    topics = {k: v for k, v in config.topics.items() if v}
    required = ['joint_states'] + (['image'] if topics.get('image') else [])
    used = {'auto': ['chunk', 'label'], 'chunk': ['chunk'], 'label': ['label'], 'joint_states': []}
    if config.action_source in ('chunk', 'label'):
        required.append(config.action_source)
    optional = used[config.action_source] + ['task_state']
    topics = {k: v for k, v in topics.items() if k in required or k in optional}
    if not bag.exists():
        raise BagError(bag, None, 'does not exist')
    if bag.is_dir() and not (bag / 'metadata.yaml').exists():
        raise BagError(bag, None, 'no metadata.yaml: not a rosbag2 folder, or the recording was not '
                                  'closed cleanly (try `ros2 bag reindex`)')
    last_topic = None
    try:
        reader = AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY))
        reader.open()
    except Exception as exc:
        raise BagError(bag, None, f'cannot open the storage ({type(exc).__name__}: {exc}): corrupt, or '
                                  'truncated by a recording that was not closed cleanly') from None
    try:
        present = {}
        for conn in reader.connections:
            present.setdefault(conn.topic, []).append(conn)
        for key in list(topics):
            topic = topics[key]
            conns = present.get(topic, [])
            if not conns:
                if key in required:
                    raise BagError(bag, topic, f'missing (required for {key}); the bag has '
                                               f'{sorted(present) or "no topics"}')
                continue
            wrong = sorted({c.msgtype for c in conns} - {MSG_TYPES[key]})
            if wrong and key == 'task_state':
                warnings.append(f'{topic}: ignored, it has type {", ".join(wrong)}, not {MSG_TYPES[key]}')
                del topics[key]
            elif wrong:
                raise BagError(bag, topic, f'has message type {", ".join(wrong)}, expected {MSG_TYPES[key]}')
        wanted = {topics[k]: k for k in topics if topics[k] in present}
        conns = [c for t in wanted for c in present[t]]
        counts = {k: 0 for k in wanted.values()}
        raw: dict[str, list] = {k: [] for k in wanted.values()}
        custom = _custom_data(bag, warnings)
        try:
            for conn, recv, data in reader.messages(connections=conns):
                key = wanted[conn.topic]
                last_topic = conn.topic
                try:
                    msg = reader.deserialize(data, conn.msgtype)
                except Exception as exc:
                    raise BagError(bag, conn.topic, f'cannot deserialize message {counts[key]} '
                                                    f'({type(exc).__name__}: {exc})') from None
                counts[key] += 1
                raw[key].append((int(recv), msg))
        except BagError:
            raise
        except Exception as exc:
            where = f' (after {sum(counts.values())} good messages, last on {last_topic})' if last_topic else ''
            raise BagError(bag, last_topic, f'corrupt or truncated storage{where}: '
                                            f'{type(exc).__name__}: {exc}') from None
    finally:
        try:
            reader.close()
        except Exception:
            pass
    for key in required:
        if not raw.get(key):
            raise BagError(bag, topics[key], f'has no messages (required for {key})')
    storage = 'mcap' if any(bag.glob('*.mcap')) or bag.suffix == '.mcap' else 'sqlite3'
    return raw, custom, storage, topics


def _joint_stream(bag, topic, msgs, joint_names, warnings) -> _Stream:
    cache: dict[tuple, np.ndarray | None] = {}
    stamps, values, recvs = [], [], []
    lacking = 0
    for recv, msg in msgs:
        names = tuple(msg.name)
        if names not in cache:
            index = {n: i for i, n in enumerate(names)}
            cache[names] = np.array([index[n] for n in joint_names]) \
                if all(n in index for n in joint_names) else None
        idx = cache[names]
        pos = np.asarray(msg.position, dtype=float)
        if idx is None or pos.size < len(names) or not np.all(np.isfinite(pos[idx])):
            lacking += 1
            continue
        stamps.append(_stamp_ns(msg.header))
        values.append(pos[idx])
        recvs.append(recv)
    if not values:
        seen = sorted({n for k in cache for n in k})
        raise BagError(bag, topic, f'no message has finite positions for all of {list(joint_names)} '
                                   f'(names seen: {seen})')
    if lacking:
        warnings.append(f'{topic}: skipped {lacking} messages lacking arm joints or with non-finite positions')
    return _sensor_stream(topic, np.array(stamps, np.int64), np.array(values), np.array(recvs, np.int64),
                          warnings)


def _sensor_stream(topic, stamps, values, recv, warnings) -> _Stream:
    zero = stamps == 0
    if zero.all():
        warnings.append(f'{topic}: header.stamp is always 0, aligning on receive times')
        stamps = recv.copy()
    elif zero.any():
        warnings.append(f'{topic}: dropped {int(zero.sum())} messages with header.stamp 0')
        keep = ~zero
        stamps, recv = stamps[keep], recv[keep]
        values = values[keep] if isinstance(values, np.ndarray) else [v for v, k in zip(values, keep) if k]
    order = np.argsort(stamps, kind='stable')
    values = values[order] if isinstance(values, np.ndarray) else [values[i] for i in order]
    return _Stream(stamps[order], values, recv[order])


def _clock_map(joint: _Stream, warnings: list):
    """Receive time -> header.stamp clock. Identity unless the two clocks clearly differ."""
    by_recv = np.argsort(joint.recv, kind='stable')
    recv, stamps = joint.recv[by_recv], joint.stamps[by_recv]
    offset = recv - stamps
    if np.median(np.abs(offset)) <= CLOCK_MISMATCH_NS:
        return (lambda r: np.asarray(r, np.int64)), 'receive_time'
    warnings.append(f'receive times and header stamps differ by {np.median(offset) / NS:.3f} s (median): '
                    'chunk receive times mapped through /joint_states')

    def mapping(r):
        r = np.asarray(r, np.int64)
        i = np.clip(np.searchsorted(recv, r, side='right') - 1, 0, len(recv) - 1)
        return r - offset[i]
    return mapping, 'mapped_via_joint_states'


def _chunks(bag, topic, msgs, joint_names, to_stamp_clock, warnings) -> _Chunks:
    recv_all = to_stamp_clock([r for r, _ in msgs]) if msgs else np.zeros(0, np.int64)
    out = _Chunks(np.zeros(0, np.int64), np.zeros(0, np.int64), [], [])
    recv, start = [], []
    skipped: dict[str, int] = {}
    for (_, msg), r in zip(msgs, recv_all):
        index = {n: i for i, n in enumerate(msg.joint_names)}
        reason = None
        if not all(n in index for n in joint_names):
            reason = 'lacks arm joints'
        elif not msg.points:
            reason = 'has no points'
        else:
            cols = [index[n] for n in joint_names]
            try:
                pos = np.array([np.asarray(p.positions, dtype=float)[cols] for p in msg.points])
            except IndexError:
                pos, reason = None, 'has points shorter than joint_names'
            if reason is None:
                rel = np.array([_duration_ns(p.time_from_start) for p in msg.points], np.int64)
                if not np.all(np.isfinite(pos)):
                    reason = 'has non-finite positions'
                elif np.any(np.diff(rel) <= 0):
                    reason = 'has time_from_start not strictly increasing'
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        stamp = _stamp_ns(msg.header)
        recv.append(int(r))
        start.append(int(r) if stamp == 0 else stamp)   # stamp 0: start on receipt (JTC rule)
        out.rel_s.append(rel / NS)
        out.positions.append(pos)
    for reason, n in skipped.items():
        warnings.append(f'{topic}: skipped {n} chunks that {reason} (a controller rejects those)')
    if not recv:
        raise BagError(bag, topic, f'no usable chunk ({", ".join(skipped) or "no messages"})')
    out.recv, out.start = np.array(recv, np.int64), np.array(start, np.int64)
    if np.any(np.diff(out.recv) < 0):
        order = np.argsort(out.recv, kind='stable')
        out.recv, out.start = out.recv[order], out.start[order]
        out.rel_s = [out.rel_s[i] for i in order]
        out.positions = [out.positions[i] for i in order]
    return out


def _task_outcome(msgs) -> str | None:
    """'success' if any /sim/task_state reported success, 'failure' if some parsed and none did."""
    seen = False
    for _, msg in msgs:
        try:
            state = json.loads(msg.data)
        except (ValueError, TypeError):
            continue
        if isinstance(state, dict) and 'success' in state:
            seen = True
            if state['success'] is True:
                return 'success'
    return 'failure' if seen else None


# ---------------------------------------------------------------------------------------- converting

def convert_bag(bag, config: ConvertConfig = ConvertConfig()) -> Episode:
    """One bag -> one Episode. Raises BagError naming the bag (and topic) on any problem."""
    bag = Path(bag)
    warnings: list[str] = []
    raw, custom, storage, topics = _read_bag(bag, config, warnings)
    flags = _episode_flags(bag, custom)
    if flags['outcome'] is None and raw.get('task_state'):
        flags['outcome'] = _task_outcome(raw['task_state'])
        flags['outcome_source'] = 'task_state' if flags['outcome'] else None

    joint = _joint_stream(bag, topics['joint_states'], raw['joint_states'], config.joint_names, warnings)
    to_stamp_clock, clock = _clock_map(joint, warnings)

    image = None
    if topics.get('image'):
        frames, stamps, recv = [], [], []
        for r, msg in raw['image']:
            try:
                frames.append(image_to_rgb(msg.data, msg.encoding, int(msg.height), int(msg.width),
                                           int(msg.step), config.image_size))
            except ValueError as exc:
                raise BagError(bag, topics['image'], str(exc)) from None
            stamps.append(_stamp_ns(msg.header))
            recv.append(r)
        image = _sensor_stream(topics['image'], np.array(stamps, np.int64), np.stack(frames),
                               np.array(recv, np.int64), warnings)

    source = config.action_source
    if source == 'auto':
        source = 'label' if raw.get('label') else 'chunk'
        if not raw.get(source):
            raise BagError(bag, topics.get('chunk'), 'missing or empty, and no expert_label either '
                                                     '(use --action-source joint_states for demos without chunks)')
    chunks = None
    if source in ('chunk', 'label'):
        chunks = _chunks(bag, topics[source], raw[source], config.joint_names, to_stamp_clock, warnings)

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

    def sample(stream: _Stream, times, topic):
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

