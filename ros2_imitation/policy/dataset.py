"""Diffusion Policy's zarr replay buffer (data/<key> arrays of shape (T, ...), meta/episode_ends
cumulative int64) and the training windows cut from it, like Diffusion Policy's SequenceSampler.
A LeRobot v3.0 folder (meta/info.json) opens into the same in-memory buffer, its features mapped to
the policy's keys (ReplayBuffer.open_lerobot).

The arrays are read into memory once: per-window zarr reads of compressed chunks would dominate a
2-core training step. A 20k-frame 96x96 RGB dataset is about 550 MB.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import zarr
from torch.utils.data import Dataset

from .config import PolicyConfig


def write_replay_buffer(path: str | Path, data: dict[str, np.ndarray], episode_ends: Sequence[int],
                        overwrite: bool = False) -> Path:
    """Write arrays (T, ...) and cumulative episode ends as a zarr (format 2) replay buffer."""
    path = Path(path)
    ends = np.asarray(episode_ends, dtype=np.int64)
    _check_layout(path, {k: np.shape(v) for k, v in data.items()}, ends)
    root = zarr.open_group(str(path), mode='w' if overwrite else 'w-', zarr_format=2)
    group = root.require_group('data')
    for key, value in data.items():
        value = np.ascontiguousarray(value)
        chunks = (min(len(value), 64 if value.ndim > 2 else 4096), *value.shape[1:])
        group.create_array(key, shape=value.shape, dtype=value.dtype, chunks=chunks)[...] = value
    root.require_group('meta').create_array('episode_ends', shape=ends.shape, dtype=np.int64)[...] = ends
    return path


def write_episodes(path: str | Path, episodes: Sequence[dict[str, np.ndarray]], overwrite: bool = False) -> Path:
    """Write a list of episodes, each a dict of (T_i, ...) arrays with the same keys."""
    if not episodes:
        raise ValueError('no episodes to write')
    keys = list(episodes[0])
    data = {k: np.concatenate([np.asarray(ep[k]) for ep in episodes]) for k in keys}
    ends = np.cumsum([len(ep[keys[0]]) for ep in episodes])
    return write_replay_buffer(path, data, ends, overwrite)


def _check_layout(path: Path, shapes: dict[str, tuple], ends: np.ndarray) -> None:
    lengths = {k: s[0] if s else 0 for k, s in shapes.items()}
    if ends.ndim != 1 or len(ends) == 0:
        raise ValueError(f'{path}: episode_ends must be a non-empty 1-D array')
    if ends[0] <= 0 or (np.diff(ends) <= 0).any():
        raise ValueError(f'{path}: episode_ends must be positive and strictly increasing, got {ends[:8]}...')
    wrong = {k: n for k, n in lengths.items() if n != ends[-1]}
    if wrong:
        raise ValueError(f'{path}: arrays {wrong} do not have episode_ends[-1] = {ends[-1]} rows')


class ReplayBuffer:
    """In-memory arrays + episode boundaries."""

    feature_map: dict | None = None   # a LeRobot dataset's: policy key -> the feature it was read from

    def __init__(self, data: dict[str, np.ndarray], episode_ends: np.ndarray, path: str = '<memory>',
                 action_offset_steps: int | None = None):
        self.data, self.episode_ends, self.path = data, np.asarray(episode_ends, dtype=np.int64), path
        self.action_offset_steps = action_offset_steps
        _check_layout(Path(path), {k: v.shape for k, v in data.items()}, self.episode_ends)

    @classmethod
    def open(cls, path: str | Path, keys: Sequence[str]) -> 'ReplayBuffer':
        """A zarr replay buffer, or a LeRobot folder (it has meta/info.json; a DatasetPath carries a
        map from keys to its features)."""
        from ros2_imitation.data.lerobot_format import is_lerobot_dataset
        if is_lerobot_dataset(path):
            return cls.open_lerobot(path, keys, getattr(path, 'feature_map', None))
        path = Path(path)
        try:
            root = zarr.open_group(str(path), mode='r')
        except Exception as exc:   # zarr raises several types for "not a zarr group"
            raise FileNotFoundError(f'{path}: not a zarr replay buffer ({exc})') from None
        available = sorted(root['data'].keys()) if 'data' in root else []
        missing = [k for k in keys if k not in available]
        if missing or 'meta' not in root or 'episode_ends' not in root['meta']:
            raise KeyError(f'{path}: needs data/{missing} and meta/episode_ends; data has {available}')
        data = {k: np.asarray(root['data'][k][...]) for k in keys}
        offset = root['meta'].attrs.get('action_time_offset_steps')
        return cls(data, np.asarray(root['meta']['episode_ends'][...]), str(path),
                   None if offset is None else int(offset))

    @classmethod
    def open_lerobot(cls, path, keys: Sequence[str], feature_map: dict | None = None) -> 'ReplayBuffer':
        """A LeRobot v3.0 dataset folder, read once into memory (videos decoded with PyAV); `keys`
        are found by data.lerobot_format.resolve_features (state -> observation.state, action ->
        action, image -> its camera) unless `feature_map` names their features."""
        from ros2_imitation.data.lerobot_format import LeRobotFormatError, load_lerobot, read_info, resolve_features
        path = Path(path)
        try:
            mapping = resolve_features(read_info(path)['features'], keys, feature_map, str(path))
            data = load_lerobot(path, sorted(set(mapping.values())))
        except LeRobotFormatError as exc:
            raise FileNotFoundError(str(exc)) from None
        arrays = {key: data.arrays[feature] for key, feature in mapping.items()}
        offset = data.extra.get('action_time_offset_steps')
        buffer = cls(arrays, data.episode_ends, str(path), None if offset is None else int(offset))
        buffer.feature_map = mapping
        return buffer

    @property
    def n_episodes(self) -> int:
        return len(self.episode_ends)

    def episode_bounds(self, i: int) -> tuple[int, int]:
        return (int(self.episode_ends[i - 1]) if i else 0), int(self.episode_ends[i])


def split_episodes(n_episodes: int, val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Held-out episodes for validation (whole episodes: windows of one episode overlap)."""
    n_val = int(round(n_episodes * val_fraction)) if n_episodes > 1 else 0
    if val_fraction > 0 and n_episodes > 1:
        n_val = min(max(n_val, 1), n_episodes - 1)
    order = np.random.default_rng(seed).permutation(n_episodes)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


class WindowDataset(Dataset):
    """Windows of `horizon` steps: obs = the first n_obs_steps, actions = all of them.

    Windows start n_obs_steps - 1 steps before an episode and end n_action_steps - 1 steps after it,
    the missing steps repeating the episode's first / last sample (SequenceSampler's padding).
    """

    def __init__(self, buffer: ReplayBuffer, config: PolicyConfig, episodes: Sequence[int] | None = None):
        self.buffer, self.config = buffer, config
        episodes = range(buffer.n_episodes) if episodes is None else episodes
        pad_before, pad_after = config.n_obs_steps - 1, config.n_action_steps - 1
        rows, self.too_short = [], []
        for ep in episodes:
            start, end = buffer.episode_bounds(ep)
            length = end - start
            offsets = range(-pad_before, length - config.horizon + pad_after + 1)
            if not offsets:
                self.too_short.append(ep)
            rows.extend((start, length, offset) for offset in offsets)
        self.windows = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
        self.obs_keys = [config.state_key, *config.image_keys]

    def __len__(self) -> int:
        return len(self.windows)

    def indices(self, i: int) -> np.ndarray:
        """Buffer rows of window i (edge rows repeated where it runs past its episode)."""
        return self.batch_indices([i])[0]

    def batch_indices(self, items) -> np.ndarray:
        """(B, horizon) buffer rows of windows `items`."""
        start, length, offset = self.windows[np.asarray(items, dtype=np.int64)].T
        steps = np.clip(offset[:, None] + np.arange(self.config.horizon), 0, length[:, None] - 1)
        return start[:, None] + steps

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}

    def __getitems__(self, items) -> dict[str, torch.Tensor]:
        """A whole batch in one gather per key (DataLoader calls this with a batch's indices; pass
        collate_fn=as_batch): per-window reads and default_collate's stacking cost more than the
        training step's data share should."""
        rows = self.batch_indices(items)
        obs_rows = rows[:, :self.config.n_obs_steps]
        batch = {k: torch.from_numpy(self.buffer.data[k][obs_rows]) for k in self.obs_keys}
        batch[self.config.state_key] = batch[self.config.state_key].float()
        batch[self.config.action_key] = torch.from_numpy(
            self.buffer.data[self.config.action_key][rows].astype(np.float32))
        return batch


def as_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """collate_fn for DataLoaders over WindowDataset: __getitems__ already returns the batch."""
    return batch


def fill_shapes(config: PolicyConfig, buffer: ReplayBuffer) -> PolicyConfig:
    """Config with state/action dims and image shape taken from the data; a conflicting value set in
    the config is an error rather than a silent override."""
    found = {'state_dim': buffer.data[config.state_key].shape[1],
             'action_dim': buffer.data[config.action_key].shape[1],
             # bag2dataset's convention (the target one step ahead) when the dataset does not say
             'action_offset_steps': 1 if buffer.action_offset_steps is None else buffer.action_offset_steps}
    shapes = {tuple(buffer.data[k].shape[1:]) for k in config.image_keys}
    if len(shapes) > 1:
        raise ValueError(f'{buffer.path}: image keys {config.image_keys} have different shapes {shapes}')
    if shapes:
        found['image_shape'] = shapes.pop()
    for key in config.image_keys:
        if buffer.data[key].dtype != np.uint8:
            raise ValueError(f'{buffer.path}: data/{key} is {buffer.data[key].dtype}, expected uint8 RGB')
    conflicts = {k: (getattr(config, k), v) for k, v in found.items()
                 if getattr(config, k) is not None and tuple(np.atleast_1d(getattr(config, k))) !=
                 tuple(np.atleast_1d(v))}
    if conflicts:
        raise ValueError(f'{buffer.path}: config disagrees with the data (config, data): {conflicts}')
    return config.replace(**found)


def dataset_stats(buffer: ReplayBuffer, config: PolicyConfig) -> dict[str, dict[str, np.ndarray]]:
    from .normalize import compute_stats
    return {'state': compute_stats(buffer.data[config.state_key]),
            'action': compute_stats(buffer.data[config.action_key])}
