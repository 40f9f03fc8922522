"""PolicyConfig: everything needed to rebuild a policy, serialisable to a plain dict / JSON / YAML."""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

NOISE_MODES = ('replica', 'train_only', 'off')
# gaussian: N(0, sigma^2); uniform_paper: U[0, sigma) per dimension, exactly as the noise-injection
# paper's code (pfrommerd/diffusion_policy_pt) adds it -- not zero-mean, spread 0.29 sigma
NOISE_DISTRIBUTIONS = ('gaussian', 'uniform_paper')
ACTION_SPACES = ('joint', 'ee')
EE_ACTION_DIMS = (9, 10)     # position + 6D rotation [+ gripper]
# bag2dataset's convention: dataset action k is the target one step ahead of observation k.
DEFAULT_ACTION_OFFSET_STEPS = 1
SCHEDULERS = ('ddpm', 'ddim')
PREDICTION_TYPES = ('epsilon', 'sample', 'v_prediction')


_BAD = object()


def _convert(value, kind):
    """value as `kind` (int, float, bool, str, or a tuple spec (element type, length or None)), or _BAD."""
    if isinstance(kind, tuple):
        element, length = kind
        if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
            return _BAD
        items = [_convert(v, element) for v in value]
        return _BAD if any(v is _BAD for v in items) else tuple(items)
    if kind is bool:
        return value if isinstance(value, bool) else _BAD
    if kind is int:
        return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else _BAD
    if kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok else _BAD
    return value if isinstance(value, kind) else _BAD


def _describe(kind) -> str:
    if isinstance(kind, tuple):
        element, length = kind
        plural = {bool: 'booleans', int: 'integers', float: 'numbers', str: 'strings'}[element]
        return f'a list of {length} {plural}' if length else f'a list of {plural}'
    return {bool: 'true/false', int: 'an integer', float: 'a finite number', str: 'a string'}[kind]


@dataclass
class PolicyConfig:
    # Dataset keys (zarr `data/<key>`). An empty image_keys gives a state-only policy.
    image_keys: tuple[str, ...] = ('image',)
    state_key: str = 'state'
    action_key: str = 'action'
    # What the actions are: `joint` (arm joint positions, then the gripper opening) or `ee` (the tip
    # pose as control/ee_chunk.EE_COLUMNS: position in the base frame + 6D rotation, then the gripper;
    # datasets hold it as action_ee / state_ee). The controller turns `ee` chunks into joints by IK.
    action_space: str = 'joint'

    # Horizons, Diffusion Policy's To / Tp / Ta. Chunk index n_obs_steps - 1 is aligned with the
    # newest observation; the executed actions are chunk[n_obs_steps - 1 : n_obs_steps - 1 + n_action_steps].
    n_obs_steps: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    # Dataset action k is the target for t_k + action_offset_steps * dt (bag2dataset writes 1 in
    # meta/action_time_offset_steps); None = take it from the dataset. Travels with the checkpoint
    # so the node schedules chunk index i at t_obs + (i - n_obs_steps + 1 + offset) * dt.
    action_offset_steps: int | None = None

    # Data shapes; None means "take it from the dataset" (train() fills them in).
    image_shape: tuple[int, int, int] | None = None   # (H, W, 3), shared by every camera
    state_dim: int | None = None
    action_dim: int | None = None

    # Image encoder: ResNet-style, GroupNorm, spatial-softmax keypoints (bounded in [-1, 1]).
    crop_shape: tuple[int, int] | None = None   # random crop in training, centre crop at inference
    encoder_channels: tuple[int, ...] = (16, 32, 64)
    encoder_blocks: int = 1                     # residual blocks per stage
    num_keypoints: int = 32
    encoder_weights: str | None = None          # local safetensors file loaded before training
    freeze_encoder: bool = False

    # Conditional 1-D U-Net.
    down_dims: tuple[int, ...] = (64, 128, 256)
    kernel_size: int = 5
    n_groups: int = 8
    diffusion_step_embed_dim: int = 64

    # Diffusion.
    num_train_timesteps: int = 100
    beta_schedule: str = 'squaredcos_cap_v2'
    prediction_type: str = 'epsilon'
    clip_sample: bool = True
    inference_scheduler: str = 'ddim'
    num_inference_steps: int = 10

    # Test-time noise injection on the normalized conditioning (state history + keypoints).
    noise_sigma: float = 0.0
    noise_mode: str = 'replica'
    noise_distribution: str = 'gaussian'

    seed: int = 0

    def __post_init__(self):
        self._check_types()
        # JSON/YAML give lists; tuples keep equality and hashing predictable.
        for name in ('image_keys', 'encoder_channels', 'down_dims', 'image_shape', 'crop_shape'):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, tuple(value))
        self.validate()

    def _check_types(self) -> None:
        """Each field of its declared type (ints as ints, lists of ints...), with a message naming
        the field: a config file saying `horizon: sixteen` is an error, not a crash further on."""
        problems = []
        for f in fields(self):
            kind, optional = _FIELD_TYPES[f.name]
            value = getattr(self, f.name)
            if value is None and optional:
                continue
            converted = _convert(value, kind)
            if converted is _BAD:
                problems.append(f'{f.name} must be {_describe(kind)}{" or null" if optional else ""}, '
                                f'got {value!r}')
            else:
                setattr(self, f.name, converted)
        if problems:
            raise ValueError('invalid PolicyConfig: ' + '; '.join(problems))

    def validate(self) -> None:
        problems = []
        if not 1 <= self.n_obs_steps <= self.horizon:
            problems.append(f'n_obs_steps={self.n_obs_steps} must be in [1, horizon={self.horizon}]')
        if not 1 <= self.n_action_steps <= self.horizon - self.n_obs_steps + 1:
            problems.append(f'n_action_steps={self.n_action_steps} must be in '
                            f'[1, horizon - n_obs_steps + 1 = {self.horizon - self.n_obs_steps + 1}]')
        if self.horizon % (2 ** (len(self.down_dims) - 1)):
            problems.append(f'horizon={self.horizon} must be divisible by 2**(len(down_dims)-1)')
        if any(d % self.n_groups for d in self.down_dims):
            problems.append(f'down_dims {self.down_dims} must be multiples of n_groups={self.n_groups}')
        if any(c % 8 for c in self.encoder_channels):
            problems.append(f'encoder_channels {self.encoder_channels} must be multiples of 8')
        if self.action_offset_steps is not None and self.action_offset_steps < 0:
            problems.append(f'action_offset_steps={self.action_offset_steps} must be >= 0')
        if self.action_space not in ACTION_SPACES:
            problems.append(f'action_space={self.action_space!r} not in {ACTION_SPACES}')
        elif self.action_space == 'ee' and self.action_dim is not None and self.action_dim not in EE_ACTION_DIMS:
            problems.append(f'action_space ee acts on position + 6D rotation [+ gripper]: action_dim must be '
                            f'in {EE_ACTION_DIMS}, got {self.action_dim}')
        if self.noise_mode not in NOISE_MODES:
            problems.append(f'noise_mode={self.noise_mode!r} not in {NOISE_MODES}')
        if self.noise_distribution not in NOISE_DISTRIBUTIONS:
            problems.append(f'noise_distribution={self.noise_distribution!r} not in {NOISE_DISTRIBUTIONS}')
        if not self.noise_sigma >= 0:
            problems.append(f'noise_sigma={self.noise_sigma} must be >= 0')
        if self.inference_scheduler not in SCHEDULERS:
            problems.append(f'inference_scheduler={self.inference_scheduler!r} not in {SCHEDULERS}')
        if not 1 <= self.num_inference_steps <= self.num_train_timesteps:
            problems.append(f'num_inference_steps={self.num_inference_steps} must be in '
                            f'[1, num_train_timesteps={self.num_train_timesteps}]')
        if self.prediction_type not in PREDICTION_TYPES:
            problems.append(f'prediction_type={self.prediction_type!r} not in {PREDICTION_TYPES}')
        if self.image_shape is not None and (len(self.image_shape) != 3 or self.image_shape[2] != 3):
            problems.append(f'image_shape={self.image_shape} must be (H, W, 3)')
        if self.crop_shape is not None and self.image_shape is not None and (
                self.crop_shape[0] > self.image_shape[0] or self.crop_shape[1] > self.image_shape[1]):
            problems.append(f'crop_shape={self.crop_shape} larger than image_shape={self.image_shape}')
        if len(set(self.image_keys)) != len(self.image_keys) or self.state_key in self.image_keys:
            problems.append(f'image_keys {self.image_keys} and state_key {self.state_key!r} must be distinct')
        if problems:
            raise ValueError('invalid PolicyConfig: ' + '; '.join(problems))

    @property
    def action_offset(self) -> int:
        """action_offset_steps, or the dataset convention when the checkpoint does not say."""
        return DEFAULT_ACTION_OFFSET_STEPS if self.action_offset_steps is None else self.action_offset_steps

    @property
    def noise_at_train(self) -> bool:
        return self.noise_sigma > 0 and self.noise_mode in ('replica', 'train_only')

    @property
    def noise_at_test(self) -> bool:
        return self.noise_sigma > 0 and self.noise_mode == 'replica'

    def to_dict(self) -> dict[str, Any]:
        # Lists, not tuples: the dict goes straight into JSON / yaml.safe_dump.
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> 'PolicyConfig':
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'unknown PolicyConfig fields {unknown}; known: {sorted(known)}')
        return cls(**data)

    def replace(self, **changes) -> 'PolicyConfig':
        return dataclasses.replace(self, **changes)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        if path.suffix in ('.yaml', '.yml'):
            import yaml
            path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> 'PolicyConfig':
        """From a .json file (a checkpoint's config) or a policy YAML (see load_policy_file)."""
        path = Path(path)
        if path.suffix in ('.yaml', '.yml'):
            return load_policy_file(path)[0]
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (TypeError, ValueError) as exc:
            raise ValueError(f'{path}: {exc}') from None


def load_policy_file(name_or_path: str | Path, overrides: dict | None = None) -> tuple[PolicyConfig, dict]:
    """(PolicyConfig, training arguments) from config/policies/<name>.yaml or a YAML path: the policy
    fields at the top level (or under `policy:`), an optional `training:` section of train()
    arguments, `overrides` applied to the fields. Errors name the file."""
    from ros2_imitation.paths import read_config
    path, raw = read_config('policies', str(name_or_path), 'policy config')
    training = raw.pop('training', None) or {}
    if not isinstance(training, dict):
        raise ValueError(f'policy config {path}: training must be a mapping, got {training!r}')
    fields_ = raw['policy'] if isinstance(raw.get('policy'), dict) else raw
    fields_.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return PolicyConfig.from_dict(fields_), training
    except (TypeError, ValueError) as exc:
        raise ValueError(f'policy config {path}: {exc}') from None


# field -> (type, may be None); checked by PolicyConfig._check_types
_FIELD_TYPES = {
    'image_keys': ((str, None), False), 'state_key': (str, False), 'action_key': (str, False),
    'action_space': (str, False),
    'n_obs_steps': (int, False), 'horizon': (int, False), 'n_action_steps': (int, False),
    'action_offset_steps': (int, True), 'image_shape': ((int, 3), True), 'state_dim': (int, True),
    'action_dim': (int, True), 'crop_shape': ((int, 2), True), 'encoder_channels': ((int, None), False),
    'encoder_blocks': (int, False), 'num_keypoints': (int, False), 'encoder_weights': (str, True),
    'freeze_encoder': (bool, False), 'down_dims': ((int, None), False), 'kernel_size': (int, False),
    'n_groups': (int, False), 'diffusion_step_embed_dim': (int, False), 'num_train_timesteps': (int, False),
    'beta_schedule': (str, False), 'prediction_type': (str, False), 'clip_sample': (bool, False),
    'inference_scheduler': (str, False), 'num_inference_steps': (int, False), 'noise_sigma': (float, False),
    'noise_mode': (str, False), 'noise_distribution': (str, False), 'seed': (int, False),
}
assert set(_FIELD_TYPES) == {f.name for f in fields(PolicyConfig)}, 'every PolicyConfig field needs a type'
