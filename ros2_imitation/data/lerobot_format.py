"""LeRobotDataset v3.0 folders, written and read without the lerobot package (pyarrow + PyAV).

The layout follows LeRobot's own writer (lerobot/datasets/lerobot_dataset.py, utils.py,
video_utils.py, compute_stats.py; codebase_version "v3.0"):

    meta/info.json                          codebase_version, fps, features (dtype, shape, names, video
                                            info), totals, chunks_size, file size limits, path templates
    meta/stats.json                         per feature: min, max, mean, std, count, q01 q10 q50 q90 q99
                                            (images: per channel in [0, 1], shape (3, 1, 1))
    meta/tasks.parquet                      task_index, indexed by the task text (a pandas index)
    meta/episodes/chunk-000/file-000.parquet   one row per episode: tasks, length, data/ and videos/
                                            chunk and file indices, dataset_from/to_index, each video's
                                            from/to_timestamp in its file, stats/<feature>/<stat>
    data/chunk-000/file-000.parquet         one row per frame: observation.state, action, timestamp
                                            (s from the episode start), frame_index, episode_index,
                                            index (over the dataset), task_index
    videos/observation.images.<cam>/chunk-000/file-000.mp4
                                            every episode's frames back to back; frame i of a file is
                                            shown at i / fps, an episode starts at its from_timestamp

A file grows until its size limit (data 100 MB, video 200 MB), then the next file-NNN starts;
chunks_size (1000) files make a chunk-NNN. Our own conversion metadata (source bags, outcomes, the
topic map) goes to meta/ros2_imitation.json, which LeRobot ignores.

Reading decodes every video once, in order, into the in-memory arrays that training uses; nothing is
fetched from a hub. ROS-free and torch-free.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

CODEBASE_VERSION = 'v3.0'
DEFAULT_CHUNK_SIZE = 1000               # files per chunk folder
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200
CHUNK_FILE_PATTERN = 'chunk-{chunk_index:03d}/file-{file_index:03d}'
INFO_PATH = 'meta/info.json'
STATS_PATH = 'meta/stats.json'
TASKS_PATH = 'meta/tasks.parquet'
EPISODES_DIR = 'meta/episodes'
EPISODES_PATH = EPISODES_DIR + '/' + CHUNK_FILE_PATTERN + '.parquet'
DATA_PATH = 'data/' + CHUNK_FILE_PATTERN + '.parquet'
VIDEO_PATH = 'videos/{video_key}/' + CHUNK_FILE_PATTERN + '.mp4'
EXTRA_PATH = 'meta/ros2_imitation.json'
STATE, ACTION, IMAGES = 'observation.state', 'action', 'observation.images.'
DEFAULT_FEATURES = {
    'timestamp': {'dtype': 'float32', 'shape': [1], 'names': None},
    'frame_index': {'dtype': 'int64', 'shape': [1], 'names': None},
    'episode_index': {'dtype': 'int64', 'shape': [1], 'names': None},
    'index': {'dtype': 'int64', 'shape': [1], 'names': None},
    'task_index': {'dtype': 'int64', 'shape': [1], 'names': None},
}
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
# LeRobot's encoder settings (video_utils.encode_video_frames / _get_codec_options): GOP 2, CRF 30,
# yuv420p; libsvtav1 (AV1, LeRobot's default) at preset 12, or h264 (libx264) for older decoders
VIDEO_CODECS = ('libsvtav1', 'h264')
DEFAULT_VCODEC = 'libsvtav1'


class LeRobotFormatError(ValueError):
    """A folder that is not a readable LeRobot v3.0 dataset; the message names the file."""


# ------------------------------------------------------------------------------------------ statistics

def _quantile_keys() -> list[str]:
    return [f'q{int(round(q * 100)):02d}' for q in QUANTILES]


def vector_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """min/max/mean/std/count and quantiles per dimension of (N, D) (or (N,) -> shape (1,)), as
    LeRobot's compute_episode_stats gives them."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(len(x), -1)
    out = {'min': flat.min(axis=0), 'max': flat.max(axis=0), 'mean': flat.mean(axis=0),
           'std': flat.std(axis=0), 'count': np.array([len(x)], np.int64)}
    for key, q in zip(_quantile_keys(), QUANTILES):
        out[key] = np.quantile(flat, q, axis=0)
    return out


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel stats of (N, H, W, 3) uint8 frames in [0, 1], shape (3, 1, 1), over a sample of frames
    like LeRobot's (about 100 evenly spaced frames per episode, large frames subsampled)."""
    n = len(frames)
    count = max(min(100, n), min(int(n ** 0.75), 10_000)) if n else 0
    idx = np.round(np.linspace(0, n - 1, count)).astype(int)
    sample = frames[idx]
    h, w = sample.shape[1:3]
    if max(h, w) >= 300:
        step = int(w / 150) if w > h else int(h / 150)
        sample = sample[:, ::step, ::step]
    pixels = sample.reshape(-1, 3).astype(np.float64) / 255.0
    out = {'min': pixels.min(axis=0), 'max': pixels.max(axis=0), 'mean': pixels.mean(axis=0),
           'std': pixels.std(axis=0)}
    for key, q in zip(_quantile_keys(), QUANTILES):
        out[key] = np.quantile(pixels, q, axis=0)
    out = {k: v.reshape(3, 1, 1) for k, v in out.items()}
    out['count'] = np.array([len(idx)], np.int64)
    return out


def aggregate_stats(per_episode: list[dict]) -> dict:
    """Dataset stats from episode stats: LeRobot's aggregate_feature_stats (count-weighted mean and
    pooled variance, min of mins, max of maxes, count-weighted quantiles)."""
    out = {}
    for key in per_episode[0]:
        items = [s[key] for s in per_episode]
        counts = np.array([s['count'][0] for s in items], np.float64)
        total = counts.sum()
        shape = (-1,) + (1,) * items[0]['mean'].ndim
        w = counts.reshape(shape)
        means = np.stack([s['mean'] for s in items])
        mean = (means * w).sum(axis=0) / total
        var = ((np.stack([s['std'] for s in items]) ** 2 + (means - mean) ** 2) * w).sum(axis=0) / total
        agg = {'min': np.min(np.stack([s['min'] for s in items]), axis=0),
               'max': np.max(np.stack([s['max'] for s in items]), axis=0),
               'mean': mean, 'std': np.sqrt(var), 'count': np.array([int(total)], np.int64)}
        for q in _quantile_keys():
            agg[q] = (np.stack([s[q] for s in items]) * w).sum(axis=0) / total
        out[key] = agg
    return out


def _jsonable_stats(stats: dict) -> dict:
    return {feature: {k: np.asarray(v).tolist() for k, v in values.items()} for feature, values in stats.items()}


# ---------------------------------------------------------------------------------------------- writing

def _pandas_metadata(value_columns: list[tuple[str, str]], index_field: str) -> bytes:
    """The schema metadata pandas writes, so pandas.read_parquet restores the string index
    (LeRobot reads tasks.parquet with pandas and looks tasks up by that index)."""
    import pyarrow as pa
    columns = [{'name': name, 'field_name': name, 'pandas_type': kind, 'numpy_type': kind, 'metadata': None}
               for name, kind in value_columns]
    columns.append({'name': None, 'field_name': index_field, 'pandas_type': 'unicode',
                    'numpy_type': 'object', 'metadata': None})
    return json.dumps({'index_columns': [index_field],
                       'column_indexes': [{'name': None, 'field_name': None, 'pandas_type': 'unicode',
                                           'numpy_type': 'object', 'metadata': {'encoding': 'UTF-8'}}],
                       'columns': columns, 'attributes': {},
                       'creator': {'library': 'pyarrow', 'version': pa.__version__},
                       'pandas_version': '2.2.3'}).encode()


def _advance(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    """LeRobot's update_chunk_file_indices."""
    return (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)


def _fixed_list(values: np.ndarray, dim: int):
    """(T, dim) float32 -> the fixed_size_list<element: float>[dim] column HF datasets writes."""
    import pyarrow as pa
    flat = pa.array(np.ascontiguousarray(values, np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, type=pa.list_(pa.field('element', pa.float32()), dim))


def _hf_metadata(state_dim: int, action_dim: int) -> dict:
    """The `huggingface` schema metadata of LeRobot's data files (the features of the columns)."""
    def vector(n):
        return {'feature': {'dtype': 'float32', '_type': 'Value'}, 'length': n, '_type': 'List'}
    features = {STATE: vector(state_dim), ACTION: vector(action_dim)}
    features.update({k: {'dtype': v['dtype'], '_type': 'Value'} for k, v in DEFAULT_FEATURES.items()})
    return {b'huggingface': json.dumps({'info': {'features': features}}).encode()}


class _RollingParquet:
    """data/chunk-*/file-*.parquet: episodes appended to one file until it reaches its size limit."""

    def __init__(self, root: Path, limit_mb: float, chunks_size: int):
        self.root, self.limit, self.chunks_size = root, limit_mb * 1024 ** 2, chunks_size
        self.chunk = self.file = 0
        self.writer, self.bytes, self.rows_before = None, 0, 0

    def write(self, table) -> tuple[int, int]:
        import pyarrow.parquet as pq
        if self.writer is not None and self.bytes + table.nbytes >= self.limit:
            self.writer.close()
            self.writer, self.bytes = None, 0
            self.chunk, self.file = _advance(self.chunk, self.file, self.chunks_size)
        if self.writer is None:
            path = self.root / DATA_PATH.format(chunk_index=self.chunk, file_index=self.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(path, schema=table.schema, compression='snappy', use_dictionary=True)
        self.writer.write_table(table)
        self.bytes += table.nbytes
        return self.chunk, self.file

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _RollingVideo:
    """videos/<key>/chunk-*/file-*.mp4 of one camera: one encoder, episodes back to back (frame i of
    a file at pts i / fps), a new file once the current one passes its size limit."""

    def __init__(self, root: Path, key: str, fps: int, width: int, height: int, vcodec: str, crf: int,
                 gop: int, limit_mb: float, chunks_size: int):
        self.root, self.key, self.fps, self.size = root, key, fps, (width, height)
        self.vcodec, self.crf, self.gop = vcodec, crf, gop
        self.limit, self.chunks_size = limit_mb * 1024 ** 2, chunks_size
        self.chunk = self.file = 0
        self.container = self.stream = None
        self.frames = self.bytes = 0
        self.paths: list[Path] = []

    def _open(self):
        import av
        os.environ.setdefault('SVT_LOG', '1')   # SVT-AV1 prints its banner to stderr unless told: errors only
        path = self.root / VIDEO_PATH.format(video_key=self.key, chunk_index=self.chunk, file_index=self.file)
        path.parent.mkdir(parents=True, exist_ok=True)
        options = {'g': str(self.gop), 'crf': str(self.crf)}
        if self.vcodec == 'libsvtav1':
            options['preset'] = '12'
        self.container = av.open(str(path), 'w')
        self.stream = self.container.add_stream(self.vcodec, rate=Fraction(self.fps), options=options)
        self.stream.pix_fmt = 'yuv420p'
        self.stream.width, self.stream.height = self.size
        self.stream.time_base = Fraction(1, self.fps)
        self.frames = self.bytes = 0
        self.paths.append(path)

    def _mux(self, packets):
        for packet in packets:
            self.bytes += packet.size
            self.container.mux(packet)

    def _finish(self):
        if self.container is not None:
            self._mux(self.stream.encode())
            self.container.close()
            self.container = self.stream = None

    def add_episode(self, frames: np.ndarray) -> dict:
        import av
        if self.container is not None and self.bytes >= self.limit:
            self._finish()
            self.chunk, self.file = _advance(self.chunk, self.file, self.chunks_size)
        if self.container is None:
            self._open()
        start = self.frames
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format='rgb24')
            vf.pts = self.frames
            self.frames += 1
            self._mux(self.stream.encode(vf))
        return {f'videos/{self.key}/chunk_index': self.chunk, f'videos/{self.key}/file_index': self.file,
                f'videos/{self.key}/from_timestamp': start / self.fps,
                f'videos/{self.key}/to_timestamp': self.frames / self.fps}

    def close(self):
        self._finish()


def video_info(path: Path) -> dict:
    """The `info` block LeRobot puts under a video feature (video_utils.get_video_info)."""
    import av
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {'video.height': stream.height, 'video.width': stream.width,
                'video.codec': stream.codec_context.codec.canonical_name if stream.codec_context else stream.name,
                'video.pix_fmt': stream.pix_fmt, 'video.is_depth_map': False,
                'video.fps': int(stream.base_rate) if stream.base_rate else None, 'video.channels': 3,
                'has_audio': bool(container.streams.audio)}


@dataclass
class LeRobotEpisode:
    """What write_lerobot needs of an episode."""
    state: np.ndarray                 # (T, S) float32
    action: np.ndarray                # (T, A) float32
    images: dict                      # camera name -> (T, H, W, 3) uint8 RGB
    task: str


def write_lerobot(out, episodes: Sequence, *, fps: int, state_names: Sequence[str],
                  action_names: Sequence[str], robot_type: str | None = None, vcodec: str = DEFAULT_VCODEC,
                  crf: int = 30, gop: int = 2, extra: dict | None = None, overwrite: bool = False,
                  chunks_size: int = DEFAULT_CHUNK_SIZE, data_files_size_in_mb: float = DEFAULT_DATA_FILE_SIZE_IN_MB,
                  video_files_size_in_mb: float = DEFAULT_VIDEO_FILE_SIZE_IN_MB) -> Path:
    """Write episodes (objects with state, action, images and task, like LeRobotEpisode) as a LeRobot
    v3.0 dataset folder. It is built beside `out` and moved there at the end, so `out` is either
    complete or absent. Cameras become video features observation.images.<name>."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    out = Path(out)
    if not episodes:
        raise ValueError('no episodes to write')
    if int(fps) != fps or fps <= 0:
        raise ValueError(f'LeRobot datasets have an integer fps; got a rate of {fps} Hz (use --rate 10, 15, 30 ...)')
    fps = int(fps)
    if vcodec not in VIDEO_CODECS:
        raise ValueError(f'video codec must be one of {VIDEO_CODECS}, got {vcodec!r}')
    if out.exists() and not overwrite:
        raise FileExistsError(f'{out} exists')
    cameras = list(episodes[0].images)
    shapes = {name: tuple(episodes[0].images[name].shape[1:]) for name in cameras}
    for i, ep in enumerate(episodes):
        got = {name: tuple(img.shape[1:]) for name, img in ep.images.items()}
        if got != shapes:
            raise ValueError(f'episode {i}: cameras {got} differ from episode 0 {shapes}')
        if len(ep.state) != len(ep.action) or any(len(img) != len(ep.state) for img in ep.images.values()):
            raise ValueError(f'episode {i}: state, action and frames differ in length')
    for name, (h, w, c) in shapes.items():
        if c != 3 or h % 2 or w % 2:
            raise ValueError(f'camera {name}: {w}x{h}x{c} frames; yuv420p video needs RGB with even width '
                             'and height (choose --image-size accordingly)')
    state_dim, action_dim = episodes[0].state.shape[1], episodes[0].action.shape[1]
    if len(state_names) != state_dim or len(action_names) != action_dim:
        raise ValueError(f'{len(state_names)} state names for {state_dim} dimensions, '
                         f'{len(action_names)} action names for {action_dim}')

    tmp = out.with_name(f'.{out.name}.partial-{os.getpid()}')
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tasks: list[str] = []
        for ep in episodes:
            if ep.task not in tasks:
                tasks.append(ep.task)
        data = _RollingParquet(tmp, data_files_size_in_mb, chunks_size)
        videos = {name: _RollingVideo(tmp, IMAGES + name, fps, shapes[name][1], shapes[name][0], vcodec, crf, gop,
                                      video_files_size_in_mb, chunks_size)
                  for name in cameras}
        rows, index = [], 0
        all_stats = []
        for e, ep in enumerate(episodes):
            n = len(ep.state)
            task_index = tasks.index(ep.task)
            columns = {
                STATE: _fixed_list(ep.state, state_dim),
                ACTION: _fixed_list(ep.action, action_dim),
                'timestamp': pa.array((np.arange(n) / fps).astype(np.float32)),
                'frame_index': pa.array(np.arange(n, dtype=np.int64)),
                'episode_index': pa.array(np.full(n, e, np.int64)),
                'index': pa.array(np.arange(index, index + n, dtype=np.int64)),
                'task_index': pa.array(np.full(n, task_index, np.int64)),
            }
            chunk, file = data.write(pa.table(columns).replace_schema_metadata(_hf_metadata(state_dim, action_dim)))
            row = {'episode_index': e, 'tasks': [ep.task], 'length': n,
                   'data/chunk_index': chunk, 'data/file_index': file,
                   'dataset_from_index': index, 'dataset_to_index': index + n}
            for name in cameras:
                row.update(videos[name].add_episode(ep.images[name]))
            stats = {STATE: vector_stats(ep.state), ACTION: vector_stats(ep.action)}
            stats.update({IMAGES + name: image_stats(ep.images[name]) for name in cameras})
            stats.update({'timestamp': vector_stats(np.arange(n) / fps),
                          'frame_index': vector_stats(np.arange(n)),
                          'episode_index': vector_stats(np.full(n, e)),
                          'index': vector_stats(np.arange(index, index + n)),
                          'task_index': vector_stats(np.full(n, task_index))})
            all_stats.append(stats)
            for feature, values in stats.items():
                for key, value in values.items():
                    row[f'stats/{feature}/{key}'] = np.asarray(value).tolist()
            row['meta/episodes/chunk_index'], row['meta/episodes/file_index'] = 0, 0
            rows.append(row)
            index += n
        data.close()
        for video in videos.values():
            video.close()

        episodes_table = pa.Table.from_pylist(rows)
        path = tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(episodes_table, path, compression='snappy')

        tasks_table = pa.table({'task_index': pa.array(np.arange(len(tasks), dtype=np.int64)),
                                '__index_level_0__': pa.array(tasks, pa.string())})
        tasks_table = tasks_table.replace_schema_metadata(
            {b'pandas': _pandas_metadata([('task_index', 'int64')], '__index_level_0__')})
        pq.write_table(tasks_table, tmp / TASKS_PATH)

        features = {
            STATE: {'dtype': 'float32', 'shape': [state_dim], 'names': list(state_names)},
            ACTION: {'dtype': 'float32', 'shape': [action_dim], 'names': list(action_names)},
        }
        for name in cameras:
            h, w, c = shapes[name]
            features[IMAGES + name] = {'dtype': 'video', 'shape': [h, w, c],
                                       'names': ['height', 'width', 'channels'],
                                       'info': video_info(videos[name].paths[0])}
        features.update(json.loads(json.dumps(DEFAULT_FEATURES)))
        info = {
            'codebase_version': CODEBASE_VERSION, 'robot_type': robot_type,
            'total_episodes': len(episodes), 'total_frames': index, 'total_tasks': len(tasks),
            'chunks_size': chunks_size, 'data_files_size_in_mb': data_files_size_in_mb,
            'video_files_size_in_mb': video_files_size_in_mb, 'fps': fps,
            'splits': {'train': f'0:{len(episodes)}'},
            'data_path': DATA_PATH, 'video_path': VIDEO_PATH if cameras else None,
            'features': features,
        }
        (tmp / INFO_PATH).write_text(json.dumps(info, indent=4, ensure_ascii=False))
        (tmp / STATS_PATH).write_text(json.dumps(_jsonable_stats(aggregate_stats(all_stats)), indent=4))
        if extra is not None:
            (tmp / EXTRA_PATH).write_text(json.dumps(extra, indent=1, default=str))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ---------------------------------------------------------------------------------------------- reading

def is_lerobot_dataset(path) -> bool:
    """A LeRobot dataset folder: it has meta/info.json."""
    return (Path(path) / INFO_PATH).is_file()


def read_info(path) -> dict:
    path = Path(path)
    try:
        info = json.loads((path / INFO_PATH).read_text())
    except (OSError, ValueError) as exc:
        raise LeRobotFormatError(f'{path / INFO_PATH}: cannot read ({exc})') from None
    if not isinstance(info, dict) or not isinstance(info.get('features'), dict):
        raise LeRobotFormatError(f'{path / INFO_PATH}: no features')
    version = str(info.get('codebase_version', ''))
    if not version.startswith('v3.'):
        raise LeRobotFormatError(
            f'{path}: LeRobot dataset {version or "without codebase_version"}; this reader handles v3.x '
            '(convert older ones with lerobot\'s convert_dataset_v21_to_v30)')
    for key in ('fps', 'data_path'):
        if key not in info:
            raise LeRobotFormatError(f'{path / INFO_PATH}: lacks {key}')
    return info


def read_extra(path) -> dict:
    """meta/ros2_imitation.json of our own exports ({} for other datasets)."""
    p = Path(path) / EXTRA_PATH
    try:
        return json.loads(p.read_text()) if p.is_file() else {}
    except ValueError:
        return {}


def feature_names(feature: dict) -> list[str] | None:
    """A feature's dimension names: a list, or LeRobot's older {'motors': [...]} form."""
    names = feature.get('names')
    if isinstance(names, dict):
        names = next(iter(names.values()), None)
    return [str(n) for n in names] if isinstance(names, (list, tuple)) else None


def read_episodes(path) -> list[dict]:
    """meta/episodes/*/*.parquet rows without the stats columns, sorted by episode_index."""
    import pyarrow.parquet as pq
    path = Path(path)
    files = sorted((path / EPISODES_DIR).glob('*/*.parquet'))
    if not files:
        raise LeRobotFormatError(f'{path / EPISODES_DIR}: no episode metadata files')
    rows = []
    for f in files:
        table = pq.read_table(f)
        table = table.select([c for c in table.column_names if not c.startswith('stats/')])
        rows.extend(table.to_pylist())
    return sorted(rows, key=lambda r: r['episode_index'])


def _column_array(column, feature: dict, where: str) -> np.ndarray:
    """A parquet column -> (N, *shape) array (shape (1,) features stay (N, 1))."""
    import pyarrow as pa
    column = column.combine_chunks() if hasattr(column, 'combine_chunks') else column
    shape = tuple(feature.get('shape') or (1,))
    if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type) or \
            pa.types.is_large_list(column.type):
        values = column.flatten()
        while pa.types.is_fixed_size_list(values.type) or pa.types.is_list(values.type):
            values = values.flatten()
        arr = values.to_numpy(zero_copy_only=False)
    else:
        arr = column.to_numpy(zero_copy_only=False)
    try:
        return arr.reshape((len(column), *shape))
    except ValueError:
        raise LeRobotFormatError(f'{where}: {len(arr)} values do not make {len(column)} rows of shape '
                                 f'{shape}') from None


def _decode_image_column(column, where: str) -> np.ndarray:
    """dtype 'image' features: PNG/JPEG bytes in a struct {bytes, path} column -> (N, H, W, 3) uint8."""
    import cv2
    frames = []
    for i, item in enumerate(column.to_pylist()):
        data = item.get('bytes') if isinstance(item, dict) else item
        img = cv2.imdecode(np.frombuffer(data or b'', np.uint8), cv2.IMREAD_COLOR) if data else None
        if img is None:
            raise LeRobotFormatError(f'{where}: row {i} is not a decodable image')
        frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return np.stack(frames)


def decode_video_frames(path: Path, wanted: dict[int, list[int]], out: np.ndarray, fps: int) -> None:
    """Decode `path` once, front to back; frame i of the file (at i / fps) goes to out[rows] for rows in
    wanted[i]. Raises if a wanted frame is not in the file."""
    import av
    remaining = dict(wanted)
    last = max(wanted) if wanted else -1
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = 'AUTO'
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            i = int(round(float(frame.pts * frame.time_base) * fps))
            rows = remaining.pop(i, None)
            if rows is not None:
                out[rows] = frame.to_ndarray(format='rgb24')
            if i >= last and not remaining:
                break
    if remaining:
        missing = sorted(remaining)
        raise LeRobotFormatError(f'{path}: has no frame at {missing[0] / fps:.4f} s '
                                 f'({len(missing)} frames missing)')


@dataclass
class LeRobotData:
    path: Path
    info: dict
    arrays: dict                  # feature -> (N, ...) array (videos decoded to uint8 RGB)
    episode_index: np.ndarray     # (E,) episode_index of each episode, in row order
    episode_ends: np.ndarray      # (E,) cumulative ends
    timestamps: np.ndarray        # (N,) s from each episode's start
    episodes: list                # episode metadata rows, row order
    extra: dict                   # meta/ros2_imitation.json ({} if absent)

    @property
    def fps(self) -> int:
        return int(self.info['fps'])


def load_lerobot(path, features: Sequence[str]) -> LeRobotData:
    """Read the given features of a LeRobot v3.0 folder into memory: vectors as (N, D) arrays, videos
    decoded once with PyAV to (N, H, W, 3) uint8 RGB. Rows in dataset order (`index`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = Path(path)
    info = read_info(path)
    all_features = info['features']
    missing = [f for f in features if f not in all_features]
    if missing:
        raise LeRobotFormatError(f'{path}: no features {missing}; it has {sorted(all_features)}')
    files = sorted((path / 'data').glob('*/*.parquet'))
    if not files:
        raise LeRobotFormatError(f'{path}/data: no parquet files')
    visual = {f for f in features if all_features[f].get('dtype') == 'video'}
    columns = [f for f in features if f not in visual]
    base = ['index', 'episode_index', 'timestamp']
    tables = []
    for f in files:
        try:
            names = pq.read_schema(f).names
        except Exception as exc:
            raise LeRobotFormatError(f'{f}: not a parquet file ({exc})') from None
        lacking = [c for c in base + columns if c not in names]
        if lacking:
            raise LeRobotFormatError(f'{f}: lacks columns {lacking}; has {names}')
        tables.append(pq.read_table(f, columns=list(dict.fromkeys(base + columns))))
    table = pa.concat_tables(tables)
    order = np.argsort(table.column('index').to_numpy(), kind='stable')
    table = table.take(pa.array(order))
    ep_col = table.column('episode_index').to_numpy()
    if len(ep_col) == 0:
        raise LeRobotFormatError(f'{path}: no frames')
    change = np.flatnonzero(np.diff(ep_col)) + 1
    ends = np.concatenate([change, [len(ep_col)]]).astype(np.int64)
    ep_ids = ep_col[np.concatenate([[0], change])]
    if len(np.unique(ep_ids)) != len(ep_ids):
        raise LeRobotFormatError(f'{path}: the frames of an episode are not contiguous in index order')
    timestamps = table.column('timestamp').to_numpy().astype(np.float64)
    meta = {r['episode_index']: r for r in read_episodes(path)}
    lacking = [int(e) for e in ep_ids if int(e) not in meta]
    if lacking:
        raise LeRobotFormatError(f'{path}/{EPISODES_DIR}: no metadata for episodes {lacking[:10]}')
    episodes = [meta[int(e)] for e in ep_ids]
    arrays = {}
    for f in columns:
        where = f'{path}: feature {f}'
        if all_features[f].get('dtype') == 'image':
            arrays[f] = _decode_image_column(table.column(f), where)
        else:
            arrays[f] = _column_array(table.column(f), all_features[f], where)
    fps = int(info['fps'])
    starts = np.concatenate([[0], ends[:-1]])
    for f in sorted(visual):
        h, w = all_features[f]['shape'][:2]
        out = np.empty((len(ep_col), h, w, 3), np.uint8)
        per_file: dict[Path, dict[int, list[int]]] = {}
        for ep, s, t in zip(episodes, starts, ends):
            try:
                file = path / info['video_path'].format(video_key=f, chunk_index=ep[f'videos/{f}/chunk_index'],
                                                        file_index=ep[f'videos/{f}/file_index'])
                offset = float(ep[f'videos/{f}/from_timestamp'])
            except (KeyError, TypeError, AttributeError):
                raise LeRobotFormatError(f'{path}: episode {ep["episode_index"]} has no video entries for {f}') \
                    from None
            wanted = per_file.setdefault(file, {})
            for row in range(s, t):
                wanted.setdefault(int(round((offset + timestamps[row]) * fps)), []).append(row)
        for file, wanted in per_file.items():
            if not file.is_file():
                raise LeRobotFormatError(f'{file}: missing (video of {f})')
            got = None
            try:
                decode_video_frames(file, wanted, out, fps)
            except LeRobotFormatError:
                raise
            except Exception as exc:
                got = exc
            if got is not None:
                raise LeRobotFormatError(f'{file}: cannot decode ({type(got).__name__}: {got})')
        if (out.shape[1], out.shape[2]) != (h, w):
            raise LeRobotFormatError(f'{path}: {f} decodes to another size than {w}x{h}')
        arrays[f] = out
    return LeRobotData(path, info, arrays, ep_ids.astype(np.int64), ends, timestamps, episodes, read_extra(path))


# ------------------------------------------------------------------------- features -> the policy's keys

class DatasetPath(os.PathLike):
    """A dataset path with a mapping from the policy's keys to a LeRobot dataset's features, for
    train(): it passes through as a path (str(), os.fspath()) and ReplayBuffer.open reads the map."""

    def __init__(self, path, feature_map: dict | None = None):
        self.path = Path(path)
        self.feature_map = dict(feature_map or {})

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f'DatasetPath({str(self.path)!r}, {self.feature_map!r})'


def parse_feature_map(items) -> dict:
    """['image=observation.images.top', 'state=observation.state'] -> {policy key: feature}."""
    out = {}
    for item in items or []:
        for part in str(item).split(','):
            key, sep, feature = part.partition('=')
            if not part.strip():
                continue
            if not sep or not key.strip() or not feature.strip():
                raise ValueError(f'feature map entries are POLICY_KEY=FEATURE, got {part!r}')
            out[key.strip()] = feature.strip()
    return out


def resolve_features(features: dict, keys: Sequence[str], feature_map: dict | None = None,
                     where: str = 'dataset') -> dict:
    """{policy key: LeRobot feature} for each of `keys`.

    An explicit map entry wins; otherwise a key finds, in this order, the feature of the same name,
    observation.images.<key>, observation.<key> (so state -> observation.state, action -> action,
    image -> observation.images.image or observation.image). Image keys left over then take the
    dataset's cameras left over when there is exactly one of each (a one-camera dataset fits a
    one-camera policy whatever its camera is called)."""
    feature_map = dict(feature_map or {})
    unknown = {k: v for k, v in feature_map.items() if v not in features}
    if unknown:
        raise KeyError(f'{where}: feature map {unknown}: no such features; it has {sorted(features)}')
    out = {}
    for key in keys:
        if key in feature_map:
            out[key] = feature_map[key]
            continue
        for candidate in (key, IMAGES + key, 'observation.' + key):
            if candidate in features:
                out[key] = candidate
                break
    cameras = [f for f, ft in features.items() if ft.get('dtype') in ('video', 'image')]
    free_cameras = [c for c in cameras if c not in out.values()]
    unresolved = [k for k in keys if k not in out]
    image_like = [k for k in unresolved if k not in ('state', 'action')]
    if len(image_like) == 1 and len(free_cameras) == 1:
        out[image_like[0]] = free_cameras[0]
    unresolved = [k for k in keys if k not in out]
    if unresolved:
        raise KeyError(f'{where}: no feature for {unresolved}; it has {sorted(features)} (cameras: '
                       f'{cameras}); map them, e.g. train --map {unresolved[0]}=<feature>')
    return out


class VideoFrames:
    """Row -> one decoded frame of a video feature, decoded on demand (seek to the nearest key frame,
    decode forward): for looking at a few frames of a large dataset without decoding it all."""

    def __init__(self, data: LeRobotData, key: str):
        self.data, self.key = data, key
        self.starts = np.concatenate([[0], data.episode_ends[:-1]])
        self.shape = (int(data.episode_ends[-1]), *data.info['features'][key]['shape'][:2], 3)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, row) -> np.ndarray:
        import av
        row = int(row)
        e = int(np.searchsorted(self.data.episode_ends, row, side='right'))
        ep, info = self.data.episodes[e], self.data.info
        file = self.data.path / info['video_path'].format(
            video_key=self.key, chunk_index=ep[f'videos/{self.key}/chunk_index'],
            file_index=ep[f'videos/{self.key}/file_index'])
        t = float(ep[f'videos/{self.key}/from_timestamp']) + float(self.data.timestamps[row])
        tolerance = 0.5 / self.data.fps
        with av.open(str(file)) as container:
            stream = container.streams.video[0]
            container.seek(max(0, int(t / stream.time_base) - 1), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                ft = float(frame.pts * frame.time_base)
                if abs(ft - t) < tolerance:
                    return frame.to_ndarray(format='rgb24')
                if ft > t + tolerance:
                    break
        raise LeRobotFormatError(f'{file}: no frame at {t:.4f} s')


def open_for_report(path) -> dict:
    """What dataset-report needs from a LeRobot folder: state and action (by resolve_features), rows'
    episodes, the first camera's frames on demand, and attributes like a zarr's meta."""
    path = Path(path)
    info = read_info(path)
    features = info['features']
    mapping = resolve_features(features, ['state', 'action'], None, str(path))
    data = load_lerobot(path, [mapping['state'], mapping['action']])
    cameras = [f for f, ft in features.items() if ft.get('dtype') == 'video']
    camera = IMAGES + 'image' if IMAGES + 'image' in cameras else (cameras[0] if cameras else None)
    extra = data.extra
    attrs = {k: v for k, v in extra.items() if not k.startswith('episode_')}
    fps = int(info['fps'])
    attrs.update({'rate': fps, 'dt': 1.0 / fps,
                  'joint_names': feature_names(features[mapping['action']]) or attrs.get('joint_names'),
                  'lerobot': {'codebase_version': info.get('codebase_version'), 'robot_type': info.get('robot_type'),
                              'total_tasks': info.get('total_tasks'), 'cameras': cameras,
                              'features': {'state': mapping['state'], 'action': mapping['action']},
                              'tasks': sorted({t for ep in data.episodes for t in (ep.get('tasks') or [])})}})
    n = len(data.episode_ends)
    codes = {}
    for key in ('episode_outcome', 'episode_noisy'):
        values = extra.get(key)
        codes[key] = (np.asarray(values, np.int8) if isinstance(values, list) and len(values) == n
                      and list(data.episode_index) == list(range(n)) else np.full(n, -1, np.int8))
    return {'state': data.arrays[mapping['state']], 'action': data.arrays[mapping['action']],
            'ends': data.episode_ends, 'image': VideoFrames(data, camera) if camera else None,
            'attrs': attrs, **codes}
