"""Inference runtimes for DiffusionPolicy.predict_chunk(): the per-step U-Net forward and the
image-encoder forward on torch (eager), torch.compile, reduced precision with CUDA graphs ('half'),
ONNX Runtime or OpenVINO.

    policy = load_policy('models/push_cube', runtime='auto')     # or policy.set_runtime('onnxruntime')
    policy.runtime                                                # the one actually in use

Only the two networks move. The diffusers scheduler loop, normalisation, cropping, noise injection
and inpainting stay in torch (float32), drawing from the same generator in the same order, so a
fixed seed gives the same chunk on every float32 backend (within float rounding, ~1e-6).

Backends:
- 'torch': the eager modules (the default; also the fallback whenever another one is unavailable).
- 'compile': torch.compile (inductor) of the U-Net and the encoders; needs a C++ compiler, and the
  first call per batch size compiles (tens of seconds, done at set_runtime() for batch 1). Option
  mode: torch.compile's mode (default None; 'reduce-overhead' adds CUDA graphs on a CUDA device).
- 'onnxruntime', 'openvino': both run the same ONNX export (batch dimension dynamic), made once and
  cached beside the checkpoint in `runtime_cache/<key>/` (or under $ROS2_IMITATION_CACHE, default
  ~/.cache/ros2_imitation/runtimes/, when the model folder is not writable). <key> hashes the
  checkpoint's SHA-256 from config.json (or, for a policy not given a checkpoint, the SHA-256 of its
  weights in memory), the network-shaping config fields and this export format, so a changed
  checkpoint never gets an old export. The folder's meta.json lists the SHA-256 of every file and is
  checked before use. Only ONNX protobufs and JSON are written: nothing is pickled.
- 'half': float16/bfloat16 copies of the U-Net and encoders (gpu_runtime.py), inputs cast in and
  outputs cast back to float32, so the scheduler loop, normalisation, noise and inpainting stay
  float32; on a CUDA device each forward is replayed from a CUDA graph captured per input shape.
  Options: precision 'fp16' (default on CUDA) | 'bf16' (default on CPU); cuda_graphs (default: on
  a CUDA device; asking for them on the CPU is RuntimeUnavailable). It changes the numerics (1e-3 to
  1e-2, see HALF_TOLERANCE), so 'auto' picks it only on a CUDA device.
- 'auto': on the CPU, builds the available ONNX backends and keeps the fastest on a timed batch-1
  U-Net probe (torch eager included), so it adapts to the machine; 'compile' is left out (slow to
  build). On a CUDA device it chooses between torch eager and 'half' (fp16 + CUDA graphs) alike.

Every non-torch backend is checked against eager torch on a probe input when it is built (within
CHECK_TOLERANCE, or the runtime's own `tolerance`); an export that fails, a missing package or a
failed check leaves the policy on torch with the reason logged. A runtime snapshots the weights:
call set_runtime() again after changing them.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .gpu_runtime import PRECISIONS, Cast, CudaGraphed, half_encoder, half_unet
from .tensor_files import file_entry, read_json, sha256_file

log = logging.getLogger(__name__)

BACKENDS = ('torch', 'compile', 'half', 'onnxruntime', 'openvino')
CHOICES = (*BACKENDS, 'auto')
EXPORT_FORMAT = 'ros2_imitation.runtime/1'
CACHE_FOLDER = 'runtime_cache'
CHECK_TOLERANCE = 1e-3      # max |backend - eager| on the build-time probe (observed: ~1e-6)
# The same for 'half', per precision. float16 keeps 11 significant bits, bfloat16 8: on the probe
# a U-Net forward (outputs of order 1) differs from float32 by ~3e-3 (fp16) and ~1.5e-2 (bf16), on
# the shipped model and on the tests' random ones (CPU). A whole chunk iterates the U-Net and drifts
# further: in normalised action units ~1e-3 (fp16) and ~1e-2 (bf16) on the shipped model at DDIM-10,
# up to 8e-2 (bf16) on a random test network. The check catches a broken conversion (errors of order
# 1); it does not make the reduced-precision numerics equal to float32's.
HALF_TOLERANCE = {'fp16': 5e-2, 'bf16': 1e-1}
# Config fields that change neither network: inference and noise settings can differ between
# loads of one checkpoint and still share its export.
_NOT_IN_NETWORKS = ('inference_scheduler', 'num_inference_steps', 'noise_mode', 'noise_sigma', 'seed',
                    'n_action_steps', 'action_offset_steps', 'encoder_weights', 'freeze_encoder')


class RuntimeUnavailable(RuntimeError):
    """A backend cannot run here (package missing, export or check failed); the message says why."""


class ExportFailed(RuntimeUnavailable):
    """The ONNX export itself failed: no ONNX backend can run."""


# what each backend imports (the ONNX ones also need the exporter's packages)
REQUIRES = {'torch': (), 'compile': (), 'half': (), 'onnxruntime': ('onnxruntime', 'onnx', 'onnxscript'),
            'openvino': ('openvino', 'onnx', 'onnxscript')}


# ---------------------------------------------------------------- selection
def make_runtime(policy, name: str = 'torch', checkpoint: str | Path | None = None,
                 cache_dir: str | Path | None = None, threads: int | None = None, dynamic_batch: bool = True,
                 precision: str | None = None, cuda_graphs: bool | None = None, mode: str | None = None):
    """The runtime object for DiffusionPolicy.set_runtime(), or None for torch eager.

    checkpoint: the directory the policy's weights were just loaded from (its config.json manifest
    keys the export cache; without it the weights in memory are hashed). cache_dir: where exports
    go instead of beside the checkpoint. threads: intra-op threads (default torch.get_num_threads()).
    dynamic_batch: export the batch dimension as dynamic (default; evaluation batches episodes).
    precision, cuda_graphs: the 'half' backend's options (see HalfRuntime). mode: torch.compile's mode.
    """
    if name not in CHOICES:
        raise ValueError(f'unknown runtime {name!r}; choose one of {CHOICES}')
    if name == 'torch':
        return None
    threads = threads or torch.get_num_threads()
    if name != 'auto':
        candidates = (name,)
    elif policy.device.type == 'cuda':
        candidates = ('half',)            # the ONNX backends run on the CPU only
    else:
        candidates = ('openvino', 'onnxruntime')
    built, export = [], None
    for backend in candidates:
        try:
            missing = _missing(backend)
            if missing:
                raise RuntimeUnavailable(f'{missing} not installed (pip install ros2_imitation[fast])')
            if backend == 'compile':
                runtime = CompileRuntime(policy, mode=mode)
            elif backend == 'half':
                runtime = HalfRuntime(policy, precision=precision, cuda_graphs=cuda_graphs)
                check_against_torch(policy, runtime)
            else:
                if export is None:
                    export = OnnxExport.get(policy, checkpoint, cache_dir, dynamic_batch)
                runtime = _ONNX_BACKENDS[backend](export, threads)
                try:
                    check_against_torch(policy, runtime)
                except RuntimeUnavailable:
                    if not export.fresh:      # a cached export that no longer fits: make it again, once
                        log.warning('cached export %s disagrees with the policy; exporting again', export.folder)
                        export = OnnxExport.get(policy, checkpoint, cache_dir, dynamic_batch, refresh=True)
                        runtime = _ONNX_BACKENDS[backend](export, threads)
                    check_against_torch(policy, runtime)
            built.append(runtime)
        except RuntimeUnavailable as exc:
            log.warning('runtime %r unavailable, %s: %s', backend,
                        'trying the next' if name == 'auto' else 'staying on torch', exc)
            if isinstance(exc, ExportFailed):
                break           # no ONNX backend can run without the export
    if not built:
        return None
    if len(built) == 1 and name != 'auto':
        return built[0]
    return _fastest(policy, built)


def _fastest(policy, runtimes: list):
    """The fastest of `runtimes` and torch eager on batch-1 U-Net forwards, interleaved so that the
    load of a shared machine falls on all alike; min over repeats."""
    x, t, cond = _probe(policy, batch=1, device=policy.device)
    eager = _TorchUnet(policy)
    options = [eager, *runtimes]
    best = {id(r): float('inf') for r in options}
    sync = torch.cuda.synchronize if policy.device.type == 'cuda' else (lambda: None)
    with torch.no_grad():
        for r in options:
            r.unet(x, t, cond)
        for _ in range(8):
            for r in options:
                sync()
                start = time.perf_counter()
                r.unet(x, t, cond)
                sync()
                best[id(r)] = min(best[id(r)], time.perf_counter() - start)
    winner = min(options, key=lambda r: best[id(r)])
    log.info('runtime auto: %s', ', '.join(f'{r.name} {1e3 * best[id(r)]:.2f} ms' for r in options))
    return None if winner is eager else winner


class _TorchUnet:
    name = 'torch'

    def __init__(self, policy):
        self.unet = policy.unet


def _probe(policy, batch: int, device='cpu'):
    cfg = policy.config
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.horizon, cfg.action_dim, generator=gen)
    cond = torch.randn(batch, policy.cond_dim, generator=gen)
    return x.to(device), torch.tensor(cfg.num_train_timesteps // 2, device=device), cond.to(device)


def _probe_images(policy, batch: int, device='cpu') -> torch.Tensor:
    cfg = policy.config
    h, w = cfg.crop_shape or cfg.image_shape[:2]
    images = torch.rand(batch * cfg.n_obs_steps, 3, h, w, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return images.to(device)


def check_against_torch(policy, runtime, batches=(1, 2)) -> float:
    """Max |runtime - eager| over the U-Net and every encoder on probe inputs (on the policy's
    device) at batch 1 and 2 (the second exercises the dynamic batch); RuntimeUnavailable above the
    runtime's `tolerance` (default CHECK_TOLERANCE)."""
    tolerance = getattr(runtime, 'tolerance', CHECK_TOLERANCE)
    worst = 0.0
    try:
        with torch.no_grad():
            for b in batches:
                x, t, cond = _probe(policy, b, policy.device)
                worst = max(worst, (runtime.unet(x, t, cond) - policy.unet(x, t, cond)).abs().max().item())
                for key, encoder in policy.encoders.items():
                    images = _probe_images(policy, b, policy.device)
                    worst = max(worst, (runtime.encode(key, images) - encoder(images)).abs().max().item())
    except RuntimeUnavailable:
        raise
    except Exception as exc:
        raise RuntimeUnavailable(f'{runtime.name} failed on the probe: {type(exc).__name__}: {str(exc)[:300]}') from exc
    if not worst <= tolerance:
        raise RuntimeUnavailable(f'{runtime.name} differs from torch eager by {worst:.3g} on the probe '
                                 f'(tolerance {tolerance})')
    return worst


# ---------------------------------------------------------------- torch.compile
class CompileRuntime:
    """mode: torch.compile's mode. With 'reduce-overhead' on a CUDA device inductor replays CUDA
    graphs whose output buffers the next call reuses: every call starts a new cudagraph step and
    returns a clone."""
    name = 'compile'

    def __init__(self, policy, mode: str | None = None):
        if policy.device.type == 'cpu' and not any(shutil.which(c) for c in (os.environ.get('CXX', 'g++'), 'c++', 'clang++')):
            raise RuntimeUnavailable('torch.compile on CPU needs a C++ compiler (g++/clang++); none found')
        self.mode = mode
        self._graphs = mode == 'reduce-overhead' and policy.device.type == 'cuda'
        try:
            self._unet = torch.compile(policy.unet, mode=mode)
            self._encoders = {k: torch.compile(e, mode=mode) for k, e in policy.encoders.items()}
            check_against_torch(policy, self, batches=(1,))     # compiles for batch 1 now, not mid-episode
        except RuntimeUnavailable:
            raise
        except Exception as exc:   # inductor raises many kinds (BackendCompilerFailed, CalledProcessError...)
            raise RuntimeUnavailable(f'torch.compile failed: {type(exc).__name__}: {str(exc)[:300]}') from exc

    def _call(self, fn, *args):
        if not self._graphs:
            return fn(*args)
        torch.compiler.cudagraph_mark_step_begin()
        return fn(*args).clone()

    def unet(self, sample, timestep, cond):
        return self._call(self._unet, sample, timestep, cond)

    def encode(self, key, images):
        return self._call(self._encoders[key], images)


# ---------------------------------------------------------------- reduced precision (+ CUDA graphs)
class HalfRuntime:
    """The U-Net and the encoders as float16/bfloat16 copies (gpu_runtime.py): float32 in, float32
    out, so everything around them stays float32. precision: 'fp16' | 'bf16' (default: fp16 on a
    CUDA device, bf16 on the CPU). cuda_graphs: replay each forward from a CUDA graph captured per
    input shape (default: on a CUDA device; only there)."""
    name = 'half'

    def __init__(self, policy, precision: str | None = None, cuda_graphs: bool | None = None):
        cuda = policy.device.type == 'cuda'
        precision = precision or ('fp16' if cuda else 'bf16')
        if precision not in PRECISIONS:
            raise ValueError(f'unknown precision {precision!r}; choose one of {tuple(PRECISIONS)}')
        cuda_graphs = cuda if cuda_graphs is None else bool(cuda_graphs)
        if cuda_graphs and not cuda:
            raise RuntimeUnavailable(f'CUDA graphs need a CUDA device; the policy is on {policy.device} '
                                     "(load_policy(..., device='cuda'), or cuda_graphs=False)")
        self.precision, self.cuda_graphs = precision, cuda_graphs
        self.tolerance = HALF_TOLERANCE[precision]      # check_against_torch's bound for this runtime
        dtype = PRECISIONS[precision]
        wrap = (lambda m: CudaGraphed(m, dtype, policy.device)) if cuda_graphs else (lambda m: Cast(m, dtype))
        try:
            self._unet = wrap(half_unet(policy.unet, dtype))
            self._encoders = {k: wrap(half_encoder(e, dtype)) for k, e in policy.encoders.items()}
        except Exception as exc:
            raise RuntimeUnavailable(f'no {precision} copy of the networks: {type(exc).__name__}: {exc}') from exc

    def unet(self, sample, timestep, cond):
        # a tensor on the device: with CUDA graphs the timestep goes through a static buffer too
        return self._unet(sample, torch.as_tensor(timestep, device=sample.device), cond)

    def encode(self, key, images):
        return self._encoders[key](images)


# ---------------------------------------------------------------- ONNX export and its cache
class _UnetGraph(nn.Module):
    """The exported U-Net signature: (sample (B, T, A), timestep (B,) int64, cond (B, C)) -> (B, T, A)."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, cond):
        return self.unet(sample, timestep, cond)


def weights_digest(policy) -> str:
    """SHA-256 of the policy's tensors in memory (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(policy.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f'{name}|{t.dtype}|{tuple(t.shape)}|'.encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b'')
    return digest.hexdigest()


def checkpoint_sha256(checkpoint: str | Path) -> str:
    """The weights' SHA-256 from a checkpoint directory's config.json manifest."""
    data = read_json(Path(checkpoint) / 'config.json')
    try:
        return data['files']['model.safetensors']['sha256']
    except (KeyError, TypeError):
        raise RuntimeUnavailable(f'{checkpoint}/config.json has no SHA-256 manifest for the weights') from None


def cache_key(policy, weights_sha256: str, dynamic_batch: bool) -> str:
    config = {k: v for k, v in policy.config.to_dict().items() if k not in _NOT_IN_NETWORKS}
    ident = {'format': EXPORT_FORMAT, 'weights_sha256': weights_sha256, 'config': config,
             'dynamic_batch': bool(dynamic_batch)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _writable_root(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
        return True
    except OSError:
        return False


def default_cache_dir() -> Path:
    base = os.environ.get('ROS2_IMITATION_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'ros2_imitation')
    return Path(base) / 'runtimes'


class OnnxExport:
    """The ONNX files of one policy (U-Net + one encoder per camera) in a verified cache folder."""

    def __init__(self, folder: Path, meta: dict, fresh: bool):
        self.folder, self.meta, self.fresh = folder, meta, fresh
        self.unet = folder / meta['unet']
        self.encoders = {k: folder / f for k, f in meta['encoders'].items()}

    @classmethod
    def get(cls, policy, checkpoint=None, cache_dir=None, dynamic_batch=True, refresh=False) -> 'OnnxExport':
        if policy.device.type != 'cpu':
            raise RuntimeUnavailable(f'the ONNX backends run on the CPU; the policy is on {policy.device}')
        sha = checkpoint_sha256(checkpoint) if checkpoint is not None else weights_digest(policy)
        key = cache_key(policy, sha, dynamic_batch)
        roots = [Path(cache_dir).expanduser()] if cache_dir is not None else []
        if checkpoint is not None and cache_dir is None:
            roots.append(Path(checkpoint) / CACHE_FOLDER)
        roots.append(default_cache_dir())
        root = next((r for r in roots if _writable_root(r)), None)
        if root is None:
            raise RuntimeUnavailable(f'no writable cache folder for the ONNX export (tried {[str(r) for r in roots]})')
        folder = root / key
        if not refresh:
            meta = cls._verified(folder, key)
            if meta is not None:
                log.info('ONNX export from cache %s', folder)
                return cls(folder, meta, fresh=False)
        start = time.monotonic()
        try:
            meta = cls._export(policy, root, folder, key, sha, dynamic_batch)
        except Exception as exc:
            raise ExportFailed(f'ONNX export failed: {type(exc).__name__}: {str(exc)[:300]}') from exc
        log.info('exported the policy to ONNX in %.1f s: %s', time.monotonic() - start, folder)
        if checkpoint is not None and root == Path(checkpoint) / CACHE_FOLDER:
            _prune(root, keep=key, weights_sha256=sha)
        return cls(folder, meta, fresh=True)

    @staticmethod
    def _verified(folder: Path, key: str) -> dict | None:
        """meta.json of a complete, unmodified export with this key, else None."""
        try:
            meta = read_json(folder / 'meta.json')
        except Exception:
            return None
        if meta.get('format') != EXPORT_FORMAT or meta.get('key') != key:
            return None
        for name, entry in meta.get('files', {}).items():
            path = folder / name
            if not path.is_file() or path.stat().st_size != entry.get('bytes') or sha256_file(path) != entry.get('sha256'):
                log.warning('cached export %s: %s is missing or modified; exporting again', folder, name)
                return None
        return meta

    @staticmethod
    def _export(policy, root: Path, folder: Path, key: str, sha: str, dynamic_batch: bool) -> dict:
        tmp = root / f'.tmp-{key[:12]}-{os.getpid()}-{uuid.uuid4().hex[:8]}'
        tmp.mkdir(parents=True)
        try:
            was_training = policy.training
            policy.eval()
            try:
                files = {'unet.onnx': _export_unet(policy, tmp / 'unet.onnx', dynamic_batch)}
                encoders = {}
                for i, (cam, encoder) in enumerate(policy.encoders.items()):
                    name = f'encoder{i}.onnx'
                    files[name] = _export_encoder(policy, encoder, tmp / name, dynamic_batch)
                    encoders[cam] = name
            finally:
                policy.train(was_training)
            meta = {'format': EXPORT_FORMAT, 'key': key, 'weights_sha256': sha, 'dynamic_batch': dynamic_batch,
                    'images_per_call': None if dynamic_batch else policy.config.n_obs_steps,
                    'torch': torch.__version__, 'unet': 'unet.onnx', 'encoders': encoders,
                    'files': {name: file_entry(tmp / name) for name in files}}
            (tmp / 'meta.json').write_text(json.dumps(meta, indent=2))
            if folder.exists():           # stale or damaged: replace it
                shutil.rmtree(folder, ignore_errors=True)
            try:
                os.rename(tmp, folder)
            except OSError:               # another process finished the same export first
                if OnnxExport._verified(folder, key) is None:
                    raise
                return read_json(folder / 'meta.json')
            return meta
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _prune(root: Path, keep: str, weights_sha256: str) -> None:
    """Drop exports beside a checkpoint that were made from other weights (a retrained checkpoint)."""
    for folder in root.iterdir():
        if folder.name == keep or not folder.is_dir() or folder.name.startswith('.tmp-'):
            continue
        try:
            old = read_json(folder / 'meta.json').get('weights_sha256')
        except Exception:
            old = None
        if old != weights_sha256:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _quiet_exporter():
    """torch.onnx's exporter logs progress and torchvision notices; keep them out of a node's log."""
    loggers = [logging.getLogger(n) for n in ('torch.onnx', 'torch.export', 'torch._export', 'onnxscript', 'onnx_ir')]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with open(os.devnull, 'w') as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _onnx_export(module, args, path, names, dynamic_batch):
    inputs, outputs = names
    dynamic = None
    if dynamic_batch:
        batch = torch.export.Dim('batch', min=1, max=1 << 16)
        dynamic = {name: {0: batch} for name in inputs}
    with _quiet_exporter():
        torch.onnx.export(module, args, str(path), input_names=list(inputs), output_names=list(outputs),
                          dynamic_shapes=dynamic, dynamo=True, external_data=False, optimize=True, verbose=False)
    return path


def _export_unet(policy, path: Path, dynamic_batch: bool) -> Path:
    # Traced at batch 2 so that no batch-1 broadcasting gets baked into the graph; a fixed-batch
    # export takes one observation (U-Net batch 1, encoder n_obs_steps images), see _OnnxRuntimeBase.
    x, _, cond = _probe(policy, batch=2 if dynamic_batch else 1)
    t = torch.full((x.shape[0],), 10, dtype=torch.int64)
    return _onnx_export(_UnetGraph(policy.unet), (x, t, cond), path, (('sample', 'timestep', 'cond'), ('out',)),
                        dynamic_batch)


def _export_encoder(policy, encoder, path: Path, dynamic_batch: bool) -> Path:
    images = _probe_images(policy, batch=2 if dynamic_batch else 1)
    return _onnx_export(encoder, (images,), path, (('images',), ('keypoints',)), dynamic_batch)


# ---------------------------------------------------------------- ONNX Runtime and OpenVINO
class _OnnxRuntimeBase:
    """U-Net / encoder calls through numpy views (no copies on the way in); the timestep arrays of
    a chunk's steps are made once and reused. A fixed-batch export (dynamic_batch=False: the
    fastest at batch 1, what policy_node uses) runs a larger batch one observation at a time."""
    name = ''

    def __init__(self, export: OnnxExport, threads: int):
        self.export, self.threads = export, threads
        self.dynamic_batch = export.meta['dynamic_batch']
        self._timesteps: dict[tuple[int, int], np.ndarray] = {}

    def _timestep(self, timestep, batch: int) -> np.ndarray:
        if torch.is_tensor(timestep) and timestep.numel() > 1:     # one per sample
            return timestep.to('cpu', torch.int64).expand(batch).contiguous().numpy()
        t = int(timestep)
        arr = self._timesteps.get((t, batch))
        if arr is None:
            arr = self._timesteps[(t, batch)] = np.full((batch,), t, dtype=np.int64)
        return arr

    @staticmethod
    def _array(x: torch.Tensor) -> np.ndarray:
        return x.detach().to('cpu', torch.float32).contiguous().numpy()

    def unet(self, sample, timestep, cond):
        b = sample.shape[0]
        if not self.dynamic_batch and b != 1:
            return torch.cat([self.unet(sample[i:i + 1], timestep if torch.is_tensor(timestep) and timestep.numel() == 1
                                        else timestep[i:i + 1], cond[i:i + 1]) for i in range(b)])
        out = self._run_unet(self._array(sample), self._timestep(timestep, b), self._array(cond))
        return torch.from_numpy(out).to(sample.device)

    def encode(self, key, images):
        n = self.export.meta['images_per_call']
        if not self.dynamic_batch and images.shape[0] != n:
            return torch.cat([self.encode(key, images[i:i + n]) for i in range(0, images.shape[0], n)])
        return torch.from_numpy(self._run_encoder(key, self._array(images))).to(images.device)


class OnnxRuntimeBackend(_OnnxRuntimeBase):
    name = 'onnxruntime'

    def __init__(self, export: OnnxExport, threads: int, spinning: bool = True):
        super().__init__(export, threads)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeUnavailable(f'onnxruntime is not installed ({exc}); pip install onnxruntime') from exc
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if not spinning:
            options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        try:
            self._unet = ort.InferenceSession(str(export.unet), options, providers=['CPUExecutionProvider'])
            self._encoders = {k: ort.InferenceSession(str(p), options, providers=['CPUExecutionProvider'])
                              for k, p in export.encoders.items()}
        except Exception as exc:
            raise RuntimeUnavailable(f'onnxruntime could not load the export: {exc}') from exc

    def _run_unet(self, sample, timestep, cond):
        return self._unet.run(None, {'sample': sample, 'timestep': timestep, 'cond': cond})[0]

    def _run_encoder(self, key, images):
        return self._encoders[key].run(None, {'images': images})[0]


class OpenVinoBackend(_OnnxRuntimeBase):
    name = 'openvino'

    def __init__(self, export: OnnxExport, threads: int):
        super().__init__(export, threads)
        try:
            import openvino as ov
        except ImportError as exc:
            raise RuntimeUnavailable(f'openvino is not installed ({exc}); pip install openvino') from exc
        # f32 explicitly: on CPUs with bf16 units OpenVINO would otherwise pick bf16 by itself.
        config = {'PERFORMANCE_HINT': 'LATENCY', 'INFERENCE_NUM_THREADS': threads,
                  'INFERENCE_PRECISION_HINT': 'f32', 'NUM_STREAMS': 1}
        core = ov.Core()
        try:
            self._compile(core, export, config)
        except Exception as first:
            # The CPU plugin's fused-subgraph JIT ("snippets") fails on some static shapes with one
            # thread (openvino 2026.4: "Supported precisions set is not available for Mish
            # operation" on the batch-1 export); without it the model compiles and runs.
            try:
                self._compile(core, export, {**config, 'SNIPPETS_MODE': 'DISABLE'})
                log.info('openvino: compiled without snippets (%s)', str(first).strip().splitlines()[-1][:120])
            except Exception as exc:
                raise RuntimeUnavailable(f'openvino could not compile the export: {exc}') from exc

    def _compile(self, core, export: OnnxExport, config: dict) -> None:
        self._unet = core.compile_model(str(export.unet), 'CPU', config).create_infer_request()
        self._encoders = {k: core.compile_model(str(p), 'CPU', config).create_infer_request()
                          for k, p in export.encoders.items()}

    def _run_unet(self, sample, timestep, cond):
        return self._unet.infer((sample, timestep, cond), share_inputs=True)[0]

    def _run_encoder(self, key, images):
        return self._encoders[key].infer((images,), share_inputs=True)[0]


_ONNX_BACKENDS = {'onnxruntime': OnnxRuntimeBackend, 'openvino': OpenVinoBackend}


def _missing(backend: str) -> list[str]:
    import importlib.util
    return [m for m in REQUIRES[backend] if importlib.util.find_spec(m) is None]


def available() -> dict[str, str | None]:
    """backend -> None where it can be tried here, else why not (imports checked, nothing exported)."""
    out = {}
    for backend in BACKENDS:
        missing = _missing(backend)
        out[backend] = f'{missing} not installed' if missing else None
    if not any(shutil.which(c) for c in (os.environ.get('CXX', 'g++'), 'c++', 'clang++')):
        out['compile'] = 'no C++ compiler'
    return out
