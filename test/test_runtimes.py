"""Inference runtimes (policy/runtimes.py): every available backend gives eager torch's chunk on a
fixed seed, a missing or failing one falls back to torch, and the ONNX export cache follows the
checkpoint's SHA-256. Tiny policies, CPU; torch.compile only with RUN_COMPILE_TESTS=1 (it compiles
for tens of seconds)."""
import logging
import os

import numpy as np
import pytest
import torch

from ros2_imitation.policy import DiffusionPolicy, PolicyConfig, load_policy, save_policy
from ros2_imitation.policy import runtimes
from ros2_imitation.policy.checkpoint import CONFIG_FILE
from ros2_imitation.policy.tensor_files import read_json
from ros2_imitation.runtime.chunking import soft_prefix_weights
from test_policy import obs_for

SMALL = dict(down_dims=(32, 64), diffusion_step_embed_dim=32, horizon=8, n_action_steps=4,
             encoder_channels=(8, 16), num_keypoints=8, state_dim=3, action_dim=2)
STATS = {'state': {'min': np.array([-1, -1, 0.5]), 'max': np.array([1, 1, 0.5])},
         'action': {'min': np.array([-1.0, -2.0]), 'max': np.array([1.0, 2.0])}}
TOLERANCE = 1e-4
ONNX_BACKENDS = [b for b in ('onnxruntime', 'openvino') if runtimes.available()[b] is None]
BACKENDS = ONNX_BACKENDS + (['compile'] if os.environ.get('RUN_COMPILE_TESTS') == '1'
                            and runtimes.available()['compile'] is None else [])
needs_onnx = pytest.mark.skipif(not ONNX_BACKENDS, reason='neither onnxruntime nor openvino installed')


pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture(autouse=True, scope='module')
def user_cache(tmp_path_factory):
    """Exports never land in the real ~/.cache (one folder for the module: tests share exports)."""
    before = os.environ.get('ROS2_IMITATION_CACHE')
    folder = tmp_path_factory.mktemp('user_cache')
    os.environ['ROS2_IMITATION_CACHE'] = str(folder)
    yield folder / 'runtimes'
    if before is None:
        del os.environ['ROS2_IMITATION_CACHE']
    else:
        os.environ['ROS2_IMITATION_CACHE'] = before


def make_policy(image=True, seed=0):
    torch.manual_seed(seed)
    config = PolicyConfig(**SMALL, image_shape=(32, 32, 3), crop_shape=(28, 28)) if image else \
        PolicyConfig(**SMALL, image_keys=())
    policy = DiffusionPolicy(config)
    policy.set_stats(STATS)
    return policy.eval()


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return save_policy(make_policy(), tmp_path_factory.mktemp('ckpt') / 'policy')


@pytest.fixture(scope='module')
def eager(checkpoint):
    return load_policy(checkpoint)


def chunks(policy, batch=None):
    """Chunks on fixed seeds: plain, hard-inpainted and soft-inpainted prefixes."""
    obs = obs_for(policy, batch)
    prefix = np.array([[0.1, -0.5], [0.2, -0.4], [0.3, -0.3]], np.float32)
    weights = soft_prefix_weights(policy.config.horizon, prefix_len=3, frozen=1)[:3]
    return [policy.predict_chunk(obs, seed=7),
            policy.predict_chunk(obs, seed=8, prefix=prefix),
            policy.predict_chunk(obs, seed=9, prefix=prefix, prefix_weights=weights)]


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('batch', [None, 3])
def test_backend_chunk_equals_eager(backend, batch, checkpoint, eager):
    policy = load_policy(checkpoint, runtime=backend)
    assert policy.runtime == backend
    for fast, ref in zip(chunks(policy, batch), chunks(eager, batch)):
        assert fast.shape == ref.shape
        assert np.abs(fast - ref).max() <= TOLERANCE
    # the runtime serves inference only: training losses still run (and differentiate) in torch
    batch_ = {k: torch.from_numpy(v) for k, v in obs_for(policy, batch=2).items()}
    batch_['action'] = torch.zeros(2, policy.config.horizon, policy.config.action_dim)
    policy.train()
    policy(batch_).backward()
    assert policy.unet.final[1].weight.grad is not None


@pytest.fixture(scope='module')
def state_checkpoint(tmp_path_factory):
    return save_policy(make_policy(image=False), tmp_path_factory.mktemp('state') / 'policy')


@needs_onnx
@pytest.mark.parametrize('backend', ONNX_BACKENDS)
def test_state_only_policy_in_a_read_only_folder(backend, state_checkpoint, user_cache, monkeypatch):
    """A model folder that cannot be written (an installed share/): the export goes to the user cache."""
    real = runtimes._writable_root
    monkeypatch.setattr(runtimes, '_writable_root', lambda folder: folder.parent != state_checkpoint and real(folder))
    policy = load_policy(state_checkpoint)
    ref = chunks(policy)
    assert policy.set_runtime(backend, checkpoint=state_checkpoint) == backend
    assert not (state_checkpoint / runtimes.CACHE_FOLDER).exists()
    sha = read_json(state_checkpoint / CONFIG_FILE)['files']['model.safetensors']['sha256']
    assert [read_json(f / 'meta.json')['weights_sha256'] for f in user_cache.iterdir()].count(sha) == 1
    for fast, want in zip(chunks(policy), ref):
        assert np.abs(fast - want).max() <= TOLERANCE
    assert policy.set_runtime('torch') == 'torch'
    assert all(np.array_equal(a, b) for a, b in zip(chunks(policy), ref))


def test_missing_runtime_falls_back_to_torch(checkpoint, eager, monkeypatch, caplog):
    real = runtimes._missing
    monkeypatch.setattr(runtimes, '_missing', lambda b: ['onnxruntime'] if b == 'onnxruntime' else
                        ['openvino'] if b == 'openvino' else real(b))
    with caplog.at_level(logging.WARNING, logger='ros2_imitation.policy.runtimes'):
        policy = load_policy(checkpoint, runtime='onnxruntime')
    assert policy.runtime == 'torch'
    assert "'onnxruntime' unavailable" in caplog.text and 'not installed' in caplog.text
    assert all(np.array_equal(a, b) for a, b in zip(chunks(policy), chunks(eager)))
    assert load_policy(checkpoint, runtime='auto').runtime == 'torch'
    with pytest.raises(ValueError, match='unknown runtime'):
        eager.set_runtime('tensorrt')


@needs_onnx
def test_failed_export_falls_back_to_torch(monkeypatch, caplog, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError('unsupported operator')
    monkeypatch.setattr(torch.onnx, 'export', broken)
    policy = make_policy()
    with caplog.at_level(logging.WARNING, logger='ros2_imitation.policy.runtimes'):
        assert policy.set_runtime(ONNX_BACKENDS[0], cache_dir=tmp_path) == 'torch'
    assert 'ONNX export failed' in caplog.text and 'unsupported operator' in caplog.text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.tmp')]   # no half-written export left


@needs_onnx
def test_cache_is_reused_and_follows_the_checkpoint(tmp_path, monkeypatch):
    backend = ONNX_BACKENDS[0]
    path = save_policy(make_policy(image=False, seed=0), tmp_path / 'policy')
    sha_a = read_json(path / CONFIG_FILE)['files']['model.safetensors']['sha256']
    policy = load_policy(path, runtime=backend)
    cache = path / runtimes.CACHE_FOLDER
    (first,) = list(cache.iterdir())
    assert read_json(first / 'meta.json')['weights_sha256'] == sha_a

    # the same checkpoint again: served from the cache, no export
    exported = []
    real_export = runtimes.OnnxExport._export
    monkeypatch.setattr(runtimes.OnnxExport, '_export', staticmethod(
        lambda *a, **k: exported.append(1) or real_export(*a, **k)))
    assert load_policy(path, runtime=backend).runtime == backend
    assert not exported

    # a retrained checkpoint in the same folder: new SHA-256 -> new export, the old one pruned
    retrained = make_policy(image=False, seed=1)
    save_policy(retrained, path)
    sha_b = read_json(path / CONFIG_FILE)['files']['model.safetensors']['sha256']
    assert sha_b != sha_a
    policy = load_policy(path, runtime=backend)
    assert exported == [1]
    (second,) = list(cache.iterdir())
    assert second != first and read_json(second / 'meta.json')['weights_sha256'] == sha_b
    for fast, ref in zip(chunks(policy), chunks(load_policy(path))):
        assert np.abs(fast - ref).max() <= TOLERANCE

    # a damaged cached file is never served: exported again
    with open(second / 'unet.onnx', 'r+b') as f:
        f.seek(100)
        f.write(b'\0' * 16)
    assert load_policy(path, runtime=backend).runtime == backend
    assert exported == [1, 1]


@needs_onnx
def test_changed_weights_in_memory_get_their_own_export(tmp_path):
    """Without a checkpoint the key is the SHA-256 of the weights in memory."""
    backend = ONNX_BACKENDS[-1]
    policy = make_policy(image=False)
    policy.set_runtime(backend, cache_dir=tmp_path)
    with torch.no_grad():
        policy.unet.final[1].bias.add_(0.5)
    twin = make_policy(image=False)
    twin.load_state_dict(policy.state_dict())
    policy.set_runtime(backend, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2
    for fast, want in zip(chunks(policy), chunks(twin)):
        assert np.abs(fast - want).max() <= TOLERANCE


@needs_onnx
def test_auto_picks_an_available_runtime(checkpoint, eager):
    policy = load_policy(checkpoint, runtime='auto')
    assert policy.runtime in ('torch', *ONNX_BACKENDS)
    for fast, ref in zip(chunks(policy), chunks(eager)):
        assert np.abs(fast - ref).max() <= TOLERANCE
