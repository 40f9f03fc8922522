"""Reading rosbag2 episodes for bag2dataset: the bag's streams, checked and time-ordered.

ROS-free (`rosbags`, MCAP and sqlite3). A bag that cannot be read raises BagError naming the bag and
the topic; what can be worked around (a missing sidecar, a clock mismatch) is a warning.
bag_dataset.py turns the streams into grid-aligned episodes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

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


def stamp_ns(header) -> int:
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
class Stream:
    stamps: np.ndarray            # int64 ns, sorted
    values: list | np.ndarray
    recv: np.ndarray


@dataclass
class Chunks:
    recv: np.ndarray              # int64 ns on the stamp clock, sorted
    start: np.ndarray             # int64 ns, first point time
    rel_s: list                   # per chunk (P,) float seconds
    positions: list               # per chunk (P, J)


def episode_flags(bag: Path, custom: dict | None) -> dict:
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


def read_bag(bag: Path, config: ConvertConfig, warnings: list):
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


def joint_stream(bag, topic, msgs, joint_names, warnings) -> Stream:
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
        stamps.append(stamp_ns(msg.header))
        values.append(pos[idx])
        recvs.append(recv)
    if not values:
        seen = sorted({n for k in cache for n in k})
        raise BagError(bag, topic, f'no message has finite positions for all of {list(joint_names)} '
                                   f'(names seen: {seen})')
    if lacking:
        warnings.append(f'{topic}: skipped {lacking} messages lacking arm joints or with non-finite positions')
    return sensor_stream(topic, np.array(stamps, np.int64), np.array(values), np.array(recvs, np.int64),
                          warnings)


def sensor_stream(topic, stamps, values, recv, warnings) -> Stream:
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
    return Stream(stamps[order], values, recv[order])


def clock_map(joint: Stream, warnings: list):
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


def chunk_stream(bag, topic, msgs, joint_names, to_stamp_clock, warnings) -> Chunks:
    recv_all = to_stamp_clock([r for r, _ in msgs]) if msgs else np.zeros(0, np.int64)
    out = Chunks(np.zeros(0, np.int64), np.zeros(0, np.int64), [], [])
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
        stamp = stamp_ns(msg.header)
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


def task_outcome(msgs) -> str | None:
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
