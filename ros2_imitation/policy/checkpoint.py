"""Policy checkpoints: a directory with model.safetensors (weights + normalization stats) and
config.json (PolicyConfig, a SHA-256 manifest, free-form metadata). Nothing is unpickled.

The SHA-256 catches corrupted, truncated or edited weight files; it is an integrity check, not a
signature (whoever can edit the weights can edit the manifest too).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .config import PolicyConfig
from .model import DiffusionPolicy
from .tensor_files import FORMAT, CheckpointError, load_tensors, read_json, save_tensors, write_json

__all__ = ['CONFIG_FILE', 'MODEL_FILE', 'CheckpointError', 'load_policy', 'load_tensors', 'read_checkpoint_config',
           'save_encoder', 'save_policy', 'save_tensors']

MODEL_FILE = 'model.safetensors'
CONFIG_FILE = 'config.json'


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
                num_inference_steps: int | None = None, noise_mode: str | None = None,
                runtime: str | None = None, runtime_options: dict | None = None) -> DiffusionPolicy:
    """A ready-to-predict policy (eval mode) from a checkpoint directory.

    The overrides change only inference: the sampler ('ddpm' | 'ddim'), its step count, and the
    noise mode ('train_only' on a 'replica' model is the ablation that drops test-time noise).
    runtime: 'torch' (default) | 'compile' | 'half' | 'onnxruntime' | 'openvino' | 'auto', see
    DiffusionPolicy.set_runtime(); an ONNX export is cached beside the checkpoint, keyed by its SHA-256.
    runtime_options: passed to set_runtime (e.g. dynamic_batch=False where only batch 1 is run).
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
    policy = policy.to(device).eval()
    if runtime not in (None, 'torch'):
        policy.set_runtime(runtime, checkpoint=directory, **(runtime_options or {}))
    return policy


def save_encoder(policy: DiffusionPolicy, path: str | Path, key: str | None = None) -> Path:
    """One camera's encoder weights as a safetensors file for PolicyConfig.encoder_weights
    (e.g. to train a new policy on top of a frozen, already-trained encoder)."""
    key = key or next(iter(policy.encoders), None)
    if key not in policy.encoders:
        raise KeyError(f'no encoder {key!r}; the policy has {list(policy.encoders)}')
    save_tensors(path, policy.encoders[key].state_dict())
    return Path(path)
