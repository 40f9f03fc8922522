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

from ros2_imitation.control.gripper_spec import fingers_to_width

ARM_JOINTS = tuple(f'panda_joint{i}' for i in range(1, 8))

DEFAULT_TOPICS = {
    'joint_states': '/joint_states',
    'image': '/camera/camera/color/image_raw',
    'chunk': '/ros2_imitation/action_chunk',
    'label': '/ros2_imitation/expert_label',
    'trajectory': '/joint_trajectory_controller/joint_trajectory',
    'command': '/position_controller/commands',
    'task_state': '/sim/task_state',
}
IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
MSG_TYPES = {
    'joint_states': ('sensor_msgs/msg/JointState',),
    'image': IMAGE_TYPES,
    'chunk': ('trajectory_msgs/msg/JointTrajectory',),
    'label': ('trajectory_msgs/msg/JointTrajectory',),
    'trajectory': ('trajectory_msgs/msg/JointTrajectory',),
    'command': ('std_msgs/msg/Float64MultiArray',),
    'gripper_states': ('sensor_msgs/msg/JointState',),
    'gripper_command': ('std_msgs/msg/Float64MultiArray',),
    'task_state': ('std_msgs/msg/String',),
}
# chunk / label: our recorder's chunk topics; trajectory: a commanded JointTrajectory (a JTC's input),
# same rules; command: a forward_command_controller's Float64MultiArray; next_state (= joint_states):
# the measured position one step later, for bags without any command
ACTION_SOURCES = ('auto', 'chunk', 'label', 'trajectory', 'command', 'next_state', 'joint_states')
TRAJECTORY_SOURCES = ('chunk', 'label', 'trajectory')
NEXT_STATE_SOURCES = ('next_state', 'joint_states')
RESERVED_KEYS = ('state', 'action', 'timestamp')   # dataset keys a camera may not be named
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
class GripperStream:
    """A gripper appended to state and action (last dimension).

    The state is the gripper joint's position, or, with `fingers` and `scale`/`offset` (a robot
    profile's gripper: robot.py's convention), the opening (mean(finger joints) - offset) / scale in
    metres. The action: the chunk's `column` when the action source is a trajectory one (chunk, label,
    trajectory) and the chunks carry it (interpolated as the arm's columns are), else the command
    topic's value, else the next measured state."""
    joint: str                              # its name in a sensor_msgs/JointState
    topic: str | None = None                # the JointState topic with it (None: the arm's joint_states)
    command_topic: str | None = None        # std_msgs/Float64MultiArray; None: the next measured position
    command_index: int = 0                  # which value of the command array
    fingers: tuple = ()                     # joints averaged into the state (default: joint alone)
    scale: float = 1.0                      # state = (mean(fingers) - offset) / scale
    offset: float = 0.0
    column: str | None = None               # the gripper column of the chunks (e.g. panda_gripper)

    def __post_init__(self):
        if not self.joint or not isinstance(self.joint, str):
            raise ValueError(f'gripper joint must be a joint name, got {self.joint!r}')
        if int(self.command_index) < 0:
            raise ValueError(f'gripper command index must be >= 0, got {self.command_index}')
        if not (math.isfinite(self.scale) and self.scale != 0 and math.isfinite(self.offset)):
            raise ValueError(f'gripper scale must be finite and non-zero, offset finite: {self.scale}, {self.offset}')
        if self.command_topic and self.column:
            raise ValueError('the gripper action is either a command topic or a chunk column, not both')

    @property
    def joints(self) -> tuple:
        """The JointState names read for the state."""
        return tuple(self.fingers) or (self.joint,)

    @property
    def name(self) -> str:
        """Its name in state_names: the chunk column's, else the joint's."""
        return self.column or self.joint

    def value(self, positions: np.ndarray) -> np.ndarray:
        """(T, len(joints)) joint positions -> (T,) state values (control/gripper_spec.fingers_to_width)."""
        return fingers_to_width(positions, self.scale, self.offset)

    @classmethod
    def from_profile(cls, robot: str, topic: str | None = None) -> 'GripperStream':
        """A robot profile's gripper (config/robots/): the opening from its finger joints, the action
        from the chunks' gripper.command_name column. A ValueError when the profile has none."""
        from ros2_imitation.robot import RobotProfile
        profile = RobotProfile.load(robot)
        g = profile.gripper
        if g is None:
            raise ValueError(f'robot profile {robot!r} has no gripper ({profile.describe_dims()})')
        return cls(joint=g.joints[0], topic=topic, fingers=tuple(g.joints), scale=g.joint_scale,
                   offset=g.joint_offset, column=g.command_name)


@dataclass(frozen=True)
class ConvertConfig:
    rate: float = 10.0
    image_size: tuple = (96, 96)           # (width, height) of every camera's frames
    max_age: float = 0.15                  # s, for joint_states and image samples
    action_source: str = 'auto'            # one of ACTION_SOURCES
    joint_names: tuple = ARM_JOINTS
    topics: dict = field(default_factory=lambda: dict(DEFAULT_TOPICS))   # image '' = no images
    cameras: dict | None = None            # camera name -> Image/CompressedImage topic (None: image topic)
    command_joints: tuple | None = None    # joint order of a command array (None: joint_names)
    gripper: GripperStream | None = None
    task: str | None = None                # the task in words (LeRobot tasks); None: the bag's custom_data
    robot_type: str | None = None

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
        if not self.joint_names or len(set(self.joint_names)) != len(self.joint_names):
            raise ValueError(f'joints must be distinct names, got {list(self.joint_names)}')
        for name in self.camera_topics:
            if not name or not all(c.isalnum() or c in '_-' for c in name):
                raise ValueError(f'camera name {name!r}: use letters, digits, _ or - (it becomes a dataset key)')
            if name in RESERVED_KEYS:
                raise ValueError(f'camera name {name!r} is taken by a dataset key ({", ".join(RESERVED_KEYS)})')
        if self.command_joints is not None:
            lacking = [j for j in self.joint_names if j not in self.command_joints]
            if lacking:
                raise ValueError(f'command joints {list(self.command_joints)} lack the joints {lacking}')
        if self.gripper is not None and set(self.gripper.joints + (self.gripper.name,)) & set(self.joint_names):
            raise ValueError(f'gripper joint {self.gripper.name} is also an arm joint')
        if self.action_source in ('trajectory', 'command') and not self.topics.get(self.action_source):
            raise ValueError(f'action source {self.action_source} needs its topic')

    @property
    def dt_ns(self) -> int:
        return int(round(NS / self.rate))

    @property
    def camera_topics(self) -> dict:
        """camera name -> topic; the default is one camera named 'image' on topics['image']."""
        if self.cameras is not None:
            return {k: v for k, v in self.cameras.items() if v}
        return {'image': self.topics['image']} if self.topics.get('image') else {}

    @property
    def state_names(self) -> tuple:
        """Names of the state (and action) dimensions: the arm joints, then the gripper joint."""
        return tuple(self.joint_names) + ((self.gripper.name,) if self.gripper else ())

    def describe(self) -> dict:
        """JSON-able summary for the dataset's metadata."""
        out = {'topics': {k: v for k, v in self.topics.items() if v}, 'cameras': self.camera_topics,
               'joint_names': list(self.joint_names), 'state_names': list(self.state_names),
               'action_source': self.action_source}
        if self.command_joints is not None:
            out['command_joints'] = list(self.command_joints)
        if self.gripper is not None:
            out['gripper'] = {'joint': self.gripper.joint, 'topic': self.gripper.topic,
                              'command_topic': self.gripper.command_topic,
                              'command_index': self.gripper.command_index}
            if self.gripper.fingers or self.gripper.column:
                out['gripper'].update(fingers=list(self.gripper.joints), scale=self.gripper.scale,
                                      offset=self.gripper.offset, column=self.gripper.column)
        return out


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


def stream_specs(config: ConvertConfig) -> list[tuple[str, str, bool, str]]:
    """(key, topic, required, what for) of every stream the conversion reads. Keys: joint_states,
    camera:<name>, the action source's (chunk, label, trajectory, command), gripper_states,
    gripper_command, task_state."""
    topics = config.topics
    specs = [('joint_states', topics['joint_states'], True, 'the state')]
    specs += [(f'camera:{name}', topic, True, f'camera {name}') for name, topic in config.camera_topics.items()]
    source = config.action_source
    if source == 'auto':
        specs += [(k, topics[k], False, 'the action') for k in ('chunk', 'label') if topics.get(k)]
    elif source not in NEXT_STATE_SOURCES:
        if not topics.get(source):
            raise ValueError(f'action source {source} needs its topic')
        specs.append((source, topics[source], True, f'the action ({source})'))
    gripper = config.gripper
    if gripper is not None:
        if gripper.topic and gripper.topic != topics['joint_states']:
            specs.append(('gripper_states', gripper.topic, True, f'gripper joint {gripper.joint}'))
        if gripper.command_topic:
            specs.append(('gripper_command', gripper.command_topic, True, 'the gripper action'))
    if topics.get('task_state'):
        specs.append(('task_state', topics['task_state'], False, 'the outcome'))
    return specs


def _types_for(key: str) -> tuple:
    return MSG_TYPES['image' if key.startswith('camera:') else key]


def describe_topics(present: dict) -> str:
    """'/a (sensor_msgs/msg/JointState), /b (...)': what a bag has, for error messages."""
    if not present:
        return 'no topics'
    return ', '.join(f'{t} ({", ".join(sorted({c.msgtype for c in conns}))})'
                     for t, conns in sorted(present.items()))


def read_bag(bag: Path, config: ConvertConfig, warnings: list):
    """The messages of every stream the conversion needs, as {key: [(receive ns, msg)]}, with the
    bag's custom_data, its storage and {key: topic}. A missing required topic raises BagError naming
    it and listing the topics (and types) the bag has."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    specs = stream_specs(config)
    topics = {key: topic for key, topic, _, _ in specs}
    required = {key: why for key, _, req, why in specs if req}
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
                    raise BagError(bag, topic, f'missing (required for {required[key]}); the bag has '
                                               f'{describe_topics(present)}')
                del topics[key]
                continue
            wrong = sorted({c.msgtype for c in conns} - set(_types_for(key)))
            if wrong and key == 'task_state':
                warnings.append(f'{topic}: ignored, it has type {", ".join(wrong)}, not {_types_for(key)[0]}')
                del topics[key]
            elif wrong:
                raise BagError(bag, topic, f'has message type {", ".join(wrong)}, expected '
                                           f'{" or ".join(_types_for(key))} (for {required.get(key, key)})')
        wanted: dict[str, list] = {}
        for key, topic in topics.items():
            wanted.setdefault(topic, []).append(key)
        conns = [c for t in wanted for c in present[t]]
        counts = {k: 0 for k in topics}
        raw: dict[str, list] = {k: [] for k in topics}
        custom = _custom_data(bag, warnings)
        try:
            for conn, recv, data in reader.messages(connections=conns):
                keys = wanted[conn.topic]
                last_topic = conn.topic
                try:
                    msg = reader.deserialize(data, conn.msgtype)
                except Exception as exc:
                    raise BagError(bag, conn.topic, f'cannot deserialize message {counts[keys[0]]} '
                                                    f'({type(exc).__name__}: {exc})') from None
                for key in keys:
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
    for key, why in required.items():
        if not raw.get(key):
            raise BagError(bag, topics[key], f'has no messages (required for {why})')
    if config.action_source == 'auto' and not raw.get('chunk') and not raw.get('label'):
        raise BagError(bag, config.topics.get('chunk') or None,
                       f'missing or empty, and no {config.topics.get("label")} either: give the action '
                       'source (trajectory or command with its topic, or next_state when no command was '
                       f'recorded); the bag has {describe_topics(present)}')
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


def compressed_to_rgb(data, fmt: str, size: tuple[int, int] | None) -> np.ndarray:
    """A sensor_msgs/CompressedImage payload (image_transport's `compressed`: JPEG or PNG, format like
    'rgb8; jpeg compressed bgr8', or a bare 'jpeg' / 'png') -> (H, W, 3) uint8 RGB, resized to
    size=(width, height) exactly as raw frames are (sensors.images.image_to_rgb, cv2.INTER_AREA)."""
    import cv2
    text = str(fmt).strip().lower()
    if 'compresseddepth' in text.replace(' ', '') or '16uc1' in text or '32fc1' in text:
        raise ValueError(f'compressed depth images are not supported (format {fmt!r})')
    try:
        buf = np.frombuffer(data, np.uint8)
    except (TypeError, ValueError):
        buf = np.asarray(data, dtype=np.uint8).reshape(-1)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise ValueError(f'cannot decode the compressed image (format {fmt!r}, {len(data)} bytes)')
    if img.dtype != np.uint8:
        raise ValueError(f'compressed image is {img.dtype}, expected 8-bit colour (format {fmt!r})')
    # OpenCV encodes and decodes in BGR order: what was compressed as bgr8 (image_transport converts
    # colour images to bgr8 first) comes back as BGR; only a payload declared rgb8/rgba8 stays as it is
    target = text.split('compressed', 1)[1].strip() if 'compressed' in text else ''
    rgb_order = target.startswith('rgb')
    if img.ndim == 2:
        img, encoding = np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2)), 'rgb8'
    elif img.shape[2] == 4:
        encoding = 'rgba8' if rgb_order else 'bgra8'
    elif img.shape[2] == 3:
        encoding = 'rgb8' if rgb_order else 'bgr8'
    else:
        raise ValueError(f'compressed image has {img.shape[2]} channels (format {fmt!r})')
    from ros2_imitation.sensors.images import image_to_rgb
    img = np.ascontiguousarray(img)
    h, w, c = img.shape
    return image_to_rgb(img.reshape(-1), encoding, h, w, w * c, size)


def frame_to_rgb(msg, size) -> np.ndarray:
    """sensor_msgs/Image or sensor_msgs/CompressedImage -> (H, W, 3) uint8 RGB of size (width, height)."""
    if hasattr(msg, 'format') and not hasattr(msg, 'encoding'):
        return compressed_to_rgb(msg.data, msg.format, size)
    from ros2_imitation.sensors.images import image_to_rgb
    return image_to_rgb(msg.data, msg.encoding, int(msg.height), int(msg.width), int(msg.step), size)


def image_stream(bag, topic, msgs, size, warnings) -> Stream:
    frames, stamps, recv = [], [], []
    for r, msg in msgs:
        try:
            frames.append(frame_to_rgb(msg, size))
        except ValueError as exc:
            raise BagError(bag, topic, str(exc)) from None
        stamps.append(stamp_ns(msg.header))
        recv.append(r)
    return sensor_stream(topic, np.array(stamps, np.int64), np.stack(frames), np.array(recv, np.int64), warnings)


def command_stream(bag, topic, msgs, joint_names, command_joints, to_stamp_clock, warnings) -> Stream:
    """A forward_command_controller input (std_msgs/Float64MultiArray, no header: timed by its receive
    time on the stamp clock): values in command_joints order -> (N, len(joint_names)) in joint order."""
    command_joints = tuple(command_joints)
    cols = np.array([command_joints.index(j) for j in joint_names])
    stamps, values = [], []
    skipped: dict[str, int] = {}
    for r, msg in msgs:
        data = np.asarray(msg.data, dtype=float)
        if data.size != len(command_joints):
            reason = f'have {data.size} values, not {len(command_joints)} ({", ".join(command_joints)})'
        elif not np.all(np.isfinite(data[cols])):
            reason = 'have non-finite values'
        else:
            stamps.append(r)
            values.append(data[cols])
            continue
        skipped[reason] = skipped.get(reason, 0) + 1
    for reason, n in skipped.items():
        warnings.append(f'{topic}: skipped {n} commands that {reason}')
    if not values:
        raise BagError(bag, topic, f'no usable command ({", ".join(skipped) or "no messages"}); the '
                                   f'command joints are {list(command_joints)}')
    recv = np.array(stamps, np.int64)
    mapped = to_stamp_clock(recv)
    order = np.argsort(mapped, kind='stable')
    return Stream(mapped[order], np.array(values)[order], recv[order])


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
