"""Policy checkpoints: a directory with model.safetensors (weights + normalization stats) and
config.json (PolicyConfig, a SHA-256 manifest, free-form metadata). Nothing is unpickled.

The SHA-256 catches corrupted, truncated or edited weight files; it is an integrity check, not a
signature (whoever can edit the weights can edit the manifest too).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import PolicyConfig
from .model import DiffusionPolicy

FORMAT = 'ros2_imitation.policy/1'
MODEL_FILE = 'model.safetensors'
CONFIG_FILE = 'config.json'


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupted or does not fit the model; the message names the file."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: str | Path) -> dict:
    return {'sha256': sha256_file(path), 'bytes': os.path.getsize(path)}


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> dict:
    """Atomic write (temp file + rename) so a crash never leaves half a file; returns its manifest entry."""
    path = Path(path)
    tmp = path.with_name(path.name + '.tmp')
    save_file({k: v.detach().to('cpu').contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={'format': FORMAT, **(metadata or {})})
    os.replace(tmp, path)
    return file_entry(path)


def load_tensors(path: str | Path, expected: dict[str, torch.Tensor] | None = None,
                 manifest: dict | None = None, device: str | torch.device = 'cpu') -> dict[str, torch.Tensor]:
    """Read a safetensors file, checking it against its manifest entry and the expected tensors
    (names, shapes, dtypes). Every failure is a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: file not found')
    if manifest:
        size = path.stat().st_size
        if 'bytes' in manifest and size < manifest['bytes']:
            raise CheckpointError(f'{path}: truncated ({size} of {manifest["bytes"]} bytes)')
        if 'sha256' in manifest and sha256_file(path) != manifest['sha256']:
            raise CheckpointError(f'{path}: SHA-256 does not match the manifest; the file was modified '
                                  f'or corrupted after it was written')
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f'{path}: not a readable safetensors file ({exc})') from None
    if expected is not None:
        problems = []
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        if missing:
            problems.append(f'missing tensors {_short(missing)}')
        if extra:
            problems.append(f'unexpected tensors {_short(extra)}')
        for name in sorted(set(expected) & set(tensors)):
            want, got = expected[name], tensors[name]
            if tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
                problems.append(f'{name}: {got.dtype} {tuple(got.shape)} where the model has '
                                f'{want.dtype} {tuple(want.shape)}')
        if problems:
            raise CheckpointError(f'{path}: does not fit the model: ' + '; '.join(problems))
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f'{path}: NaN or inf in {_short(bad)}')
    return tensors


def _short(names: list[str], n: int = 6) -> str:
    return str(names[:n]) + (f' and {len(names) - n} more' if len(names) > n else '')


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f'{path}: file not found')
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f'{path}: not valid JSON ({exc})') from None
    if not isinstance(data, dict):
        raise CheckpointError(f'{path}: expected a JSON object')
    return data


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def save_policy(policy: DiffusionPolicy, path: str | Path,
                weights: dict[str, torch.Tensor] | None = None, extra: dict | None = None) -> Path:
    """Write the checkpoint directory. `weights` overrides the module's state dict (the trainer
    passes the EMA weights); `extra` is stored under config.json's "metadata"."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    entry = save_tensors(path / MODEL_FILE, weights if weights is not None else policy.state_dict())
    write_json(path / CONFIG_FILE, {'format': FORMAT, 'config': policy.config.to_dict(),
                                    'files': {MODEL_FILE: entry}, 'metadata': extra or {}})
    return path


def _checkpoint_dir(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if path.is_file() and path.name in (MODEL_FILE, CONFIG_FILE):
        return path.parent
    if not path.is_dir():
        raise CheckpointError(f'{path}: no such checkpoint directory')
    return path


def read_checkpoint_config(path: str | Path) -> tuple[PolicyConfig, dict]:
    """(config, the whole config.json) of a checkpoint directory."""
    config_file = _checkpoint_dir(path) / CONFIG_FILE
    data = read_json(config_file)
    if data.get('format') != FORMAT:
        raise CheckpointError(f'{config_file}: format {data.get("format")!r}, expected {FORMAT!r}')
    try:
        return PolicyConfig.from_dict(data['config']), data
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f'{config_file}: bad policy config ({exc})') from None


def load_policy(path: str | Path, device: str | torch.device = 'cpu', inference_scheduler: str | None = None,
                num_inference_steps: int | None = None, noise_mode: str | None = None) -> DiffusionPolicy:
    """A ready-to-predict policy (eval mode) from a checkpoint directory.

    The overrides change only inference: the sampler ('ddpm' | 'ddim'), its step count, and the
    noise mode ('train_only' on a 'replica' model is the ablation that drops test-time noise).
    """
    directory = _checkpoint_dir(path)
    config, data = read_checkpoint_config(directory)
    if noise_mode is not None:
        try:
            config = config.replace(noise_mode=noise_mode)
        except ValueError as exc:
            raise CheckpointError(f'{directory}: {exc}') from None
    policy = DiffusionPolicy(config)
    state = load_tensors(directory / MODEL_FILE, expected=policy.state_dict(),
                         manifest=data.get('files', {}).get(MODEL_FILE))
    policy.load_state_dict(state, strict=True)
    policy.set_inference(inference_scheduler, num_inference_steps)
    return policy.to(device).eval()


def save_encoder(policy: DiffusionPolicy, path: str | Path, key: str | None = None) -> Path:
    """One camera's encoder weights as a safetensors file for PolicyConfig.encoder_weights
    (e.g. to train a new policy on top of a frozen, already-trained encoder)."""
    key = key or next(iter(policy.encoders), None)
    if key not in policy.encoders:
        raise KeyError(f'no encoder {key!r}; the policy has {list(policy.encoders)}')
    save_tensors(path, policy.encoders[key].state_dict())
    return Path(path)
