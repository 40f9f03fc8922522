"""Tensor and JSON files with integrity checks, every error naming the file: safetensors weights
(nothing is unpickled) with their SHA-256, and small JSON documents written atomically. Used by
checkpoints (checkpoint.py) and by the image encoder's pretrained weights (encoder.py).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT = 'ros2_imitation.policy/1'   # in every file's metadata and every checkpoint's config.json


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
