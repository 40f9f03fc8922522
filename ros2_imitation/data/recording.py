"""Episode bags, ROS-free: rosbag2 (MCAP or sqlite3) through the `rosbags` library.

`BagRecorder` is what recorder_node drives: callers hand it already serialised CDR messages with
their receive time; a writer thread owns the file, so a subscription callback never waits on the
disk. One bag per episode:

    <output_dir>/.partial/<name>/   while it is written (no metadata.yaml yet; MCAP without footer)
    <output_dir>/<name>/            after stop: metadata.yaml + <name>.mcap, moved there in one rename

so a crash, a kill or a discard never leaves a bag that looks complete: whatever sits in
`.partial/` is unfinished (`mcap recover` can salvage an MCAP one), everything else is whole.
The episode's outcome and description go to rosbag2's `custom_data` in metadata.yaml (what
`ros2 bag info` prints, and `Reader(path).metadata['custom_data']` / `read_custom_data` return).
"""
import json
import os
import queue
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

PARTIAL = '.partial'
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
INFINITE_NS = 2 ** 63 - 1          # RMW_DURATION_INFINITE
_TYPESTORE = None


def typestore():
    """The message definitions written into the bags (ROS 2 Jazzy's, identical CDR to Kilted's)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        _TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
    return _TYPESTORE


def _qos_time(ns) -> QosTime:
    ns = INFINITE_NS if ns is None else int(ns)
    if ns >= INFINITE_NS:
        return QosTime(9223372036, 854775807)      # how rosbag2 writes an infinite duration
    return QosTime(ns // 1_000_000_000, ns % 1_000_000_000)


def make_qos(history='unknown', depth=0, reliability='reliable', durability='volatile',
             deadline_ns=None, lifespan_ns=None, liveliness='automatic', liveliness_lease_ns=None,
             avoid_ros_namespace_conventions=False) -> Qos:
    """A rosbags Qos from policy names (as rclpy's enums spell them, any case) and durations in ns."""
    def enum(cls, name):
        return cls[str(name).upper()]
    return Qos(enum(QosHistory, history), int(depth), enum(QosReliability, reliability),
               enum(QosDurability, durability), _qos_time(deadline_ns), _qos_time(lifespan_ns),
               enum(QosLiveliness, liveliness), _qos_time(liveliness_lease_ns),
               bool(avoid_ros_namespace_conventions))


def custom_value(value) -> str:
    """custom_data holds strings: JSON for containers, true/false for booleans."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def next_bag_name(output_dir, prefix: str = 'episode') -> str:
    """<prefix>_NNNN, one past the highest index used in output_dir (finished or partial)."""
    out = Path(output_dir)
    pattern = re.compile(rf'^{re.escape(prefix)}_(\d+)$')
    used = [int(m.group(1)) for folder in (out, out / PARTIAL) if folder.is_dir()
            for p in folder.iterdir() if (m := pattern.match(p.name))]
    return f'{prefix}_{max(used, default=-1) + 1:04d}'


def partial_bags(output_dir) -> list:
    folder = Path(output_dir) / PARTIAL
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def read_metadata(bag) -> dict:
    """rosbag2_bagfile_information of a finished bag (custom_data values are strings)."""
    import yaml
    with open(Path(bag) / 'metadata.yaml') as f:
        return yaml.safe_load(f)['rosbag2_bagfile_information']


def read_custom_data(bag) -> dict:
    return dict(read_metadata(bag).get('custom_data') or {})


def mark_bag(bag, **custom) -> dict:
    """Add custom_data entries (e.g. outcome='success') to a finished bag's metadata.yaml.

    For bags written by `ros2 bag record`, whose outcome is only known after recording; what
    recorder_node writes at ~/stop. Replaces metadata.yaml atomically; returns the new custom_data.
    """
    import yaml
    path = Path(bag) / 'metadata.yaml'
    with open(path) as f:
        doc = yaml.safe_load(f)
    info = doc['rosbag2_bagfile_information']
    data = dict(info.get('custom_data') or {})
    data.update({str(k): custom_value(v) for k, v in custom.items()})
    info['custom_data'] = data
    tmp = path.with_suffix('.yaml.tmp')
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    tmp.replace(path)
    return data


@dataclass
class TopicInfo:
    topic: str
    msgtype: str                       # e.g. sensor_msgs/msg/JointState
    offered_qos: list = field(default_factory=list)   # rosbags Qos of each publisher
    type_hash: str | None = None       # RIHS01_... as the publisher announced it


class RecorderError(RuntimeError):
    pass


class EpisodeBag:
    """One bag, written where it cannot be mistaken for a finished one until close()."""

    def __init__(self, output_dir, name: str, storage: str = 'mcap'):
        if storage not in STORAGES:
            raise RecorderError(f'storage must be one of {sorted(STORAGES)}, got {storage!r}')
        if not name or '/' in name or name.startswith('.'):
            raise RecorderError(f'bad bag name {name!r}')
        self.output_dir = Path(output_dir)
        self.name = name
        self.final = self.output_dir / name
        self.partial = self.output_dir / PARTIAL / name
        if self.final.exists() or self.partial.exists():
            raise RecorderError(f'{self.final} already exists, not overwriting')
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.writer = Writer(self.partial, version=9, storage_plugin=STORAGES[storage])
        self.writer.open()
        self.connections = {}
        self.counts = {}

    def add_topic(self, info: TopicInfo) -> None:
        if info.topic in self.connections:
            return
        store = typestore()
        if info.msgtype not in store.types:
            raise RecorderError(f'{info.topic}: message type {info.msgtype} is not in the typestore')
        msgdef, _ = store.generate_msgdef(info.msgtype, ros_version=2)
        digest = store.hash_rihs01(info.msgtype)
        self.connections[info.topic] = self.writer.add_connection(
            info.topic, info.msgtype, msgdef=msgdef, rihs01=digest,
            offered_qos_profiles=list(info.offered_qos))
        self.counts[info.topic] = 0

    def write(self, topic: str, timestamp_ns: int, data: bytes) -> None:
        self.writer.write(self.connections[topic], int(timestamp_ns), data)
        self.counts[topic] += 1

    def close(self, custom_data: dict) -> Path:
        for key, value in custom_data.items():
            self.writer.set_custom_data(str(key), custom_value(value))
        self.writer.close()            # writes the MCAP summary and metadata.yaml
        self.partial.replace(self.final)
        self._tidy()
        return self.final

    def abort(self, delete: bool = True) -> None:
        try:
            self.writer.abort()
        finally:
            if delete:
                shutil.rmtree(self.partial, ignore_errors=True)
                self._tidy()

    def _tidy(self):
        try:
            self.partial.parent.rmdir()  # only when empty
        except OSError:
            pass


class BagRecorder:
    """Queue + writer thread around EpisodeBag: start/stop/discard, and put() that never blocks.

    Topics are declared with add_topic() (from discovery); a bag gets every declared topic at
    start, and topics declared later when they appear. put() drops messages when nothing is
    being recorded or the queue is full (counted in `dropped`, and in the bag's custom_data).
    """

    def __init__(self, output_dir, prefix: str = 'episode', storage: str = 'mcap',
                 max_queue: int = 20000, log=None):
        if storage not in STORAGES:
            raise RecorderError(f'storage must be one of {sorted(STORAGES)}, got {storage!r}')
        self.output_dir = absolute(output_dir)
        self.prefix, self.storage = prefix, storage
        self.log = log or (lambda msg: None)
        self.topics = {}
        self._queue = queue.Queue(maxsize=max(1, int(max_queue)))
        self._lock = threading.Lock()
        self._recording = None          # name of the bag being recorded
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name='bag_writer', daemon=True)
        self._thread.start()

    @property
    def recording(self) -> str | None:
        return self._recording

    def set_output_dir(self, output_dir) -> Path:
        """Where the next bags go (made absolute and created now); refused while recording."""
        folder = absolute(output_dir)
        with self._lock:
            if self._recording:
                raise RecorderError(f'recording {self._recording}: stop or discard it before changing output_dir')
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RecorderError(f'cannot use output_dir {folder}: {exc}') from None
            self.output_dir = folder
        return folder

    # ---- producer side (any thread) ----
    def add_topic(self, info: TopicInfo) -> None:
        with self._lock:
            self.topics[info.topic] = info
            if self._recording:
                self._queue.put(('add', info))

    def put(self, topic: str, timestamp_ns: int, data: bytes) -> bool:
        if self._recording is None:
            return False
        try:
            self._queue.put_nowait(('msg', topic, timestamp_ns, data))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def _command(self, *cmd, timeout: float = 30.0):
        done, result = threading.Event(), {}
        self._queue.put((*cmd, done, result))
        if not done.wait(timeout):
            raise RecorderError(f'bag writer did not finish {cmd[0]} within {timeout:.0f} s')
        if 'error' in result:
            raise RecorderError(result['error'])
        return result

    def start(self, name: str | None = None) -> Path:
        """Open a new bag (named <prefix>_NNNN unless given); returns where it will end up."""
        with self._lock:
            if self._recording:
                raise RecorderError(f'already recording {self._recording}')
            folder = self.output_dir
            name = name or next_bag_name(folder, self.prefix)
            topics = list(self.topics.values())
            self._recording = name
            self.dropped = 0
        try:
            self._command('open', folder, name, topics)
        except RecorderError:
            self._recording = None
            raise
        return folder / name

    def stop(self, custom_data: dict | None = None) -> dict:
        """Finish the bag: metadata (with custom_data) written, moved to its final place."""
        with self._lock:
            if not self._recording:
                raise RecorderError('not recording')
            self._recording = None
            dropped = self.dropped
        data = dict(custom_data or {})
        data['dropped_messages'] = dropped
        return self._command('close', data)

    def discard(self) -> dict:
        """Drop the bag being recorded; nothing of it remains on disk."""
        with self._lock:
            if not self._recording:
                raise RecorderError('not recording')
            self._recording = None
        return self._command('abort')

    def close(self) -> None:
        """Shut down: a bag still open is aborted and left in .partial/ (unfinished, never valid)."""
        with self._lock:
            open_bag, self._recording = self._recording, None
        if open_bag:
            self.log(f'shutting down while recording {open_bag}: left unfinished in {PARTIAL}/')
        self._queue.put(('quit',))
        self._thread.join(timeout=10.0)

    # ---- writer thread ----
    def _run(self):
        bag, failed = None, None
        while True:
            item = self._queue.get()
            kind = item[0]
            try:
                if kind == 'msg':
                    if bag is not None and failed is None:
                        _, topic, stamp, data = item
                        if topic in bag.connections:
                            bag.write(topic, stamp, data)
                elif kind == 'add':
                    if bag is not None and failed is None:
                        bag.add_topic(item[1])
                elif kind == 'open':
                    _, folder, name, topics, done, result = item
                    failed = None
                    try:
                        bag = EpisodeBag(folder, name, self.storage)
                        for info in topics:
                            try:
                                bag.add_topic(info)
                            except RecorderError as exc:
                                self.log(str(exc))
                        result['path'] = str(bag.final)
                    except Exception as exc:  # noqa: BLE001 - reported to the caller
                        bag = None
                        result['error'] = f'cannot open bag {name}: {type(exc).__name__}: {exc}'
                    done.set()
                elif kind == 'close':
                    _, custom, done, result = item
                    if bag is None:
                        result['error'] = failed or 'no bag open'
                    elif failed is not None:
                        bag.abort()
                        result['error'] = f'bag {bag.name} discarded after a write error: {failed}'
                    else:
                        counts = dict(bag.counts)
                        path = bag.close(custom)
                        result.update(path=str(path), message_count=sum(counts.values()),
                                      topics=counts, custom_data={k: custom_value(v) for k, v in custom.items()})
                    bag, failed = None, None
                    done.set()
                elif kind == 'abort':
                    _, done, result = item
                    if bag is not None:
                        result['path'] = str(bag.final)
                        bag.abort(delete=True)
                    bag, failed = None, None
                    done.set()
                elif kind == 'quit':
                    if bag is not None:
                        bag.abort(delete=False)
                    return
            except Exception as exc:  # noqa: BLE001 - a write error fails this bag, not the thread
                failed = f'{type(exc).__name__}: {exc}'
                self.log(f'bag writer: {failed}')
                if len(item) >= 2 and isinstance(item[-2], threading.Event):
                    item[-1]['error'] = failed
                    item[-2].set()


def absolute(folder) -> Path:
    """`folder` with ~ expanded, absolute against the current directory (the node's: where
    `ros2 launch` or bringup was started), normalised."""
    return Path(os.path.abspath(os.path.expanduser(str(folder))))


def wall_time_iso() -> str:
    return time.strftime('%Y-%m-%dT%H:%M:%S%z')
