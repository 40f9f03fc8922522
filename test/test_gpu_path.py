"""The GPU inference path, checked on the CPU: the 'half' runtime (bf16 copies here; fp16 + CUDA
graphs on a GPU) stays within its tolerance of eager float32 and leaves the policy's own weights
alone, CUDA graphs and the GPU benchmark refuse clearly without a CUDA device, 'auto' never picks
'half' on the CPU, and the runtimes' options (check tolerance, torch.compile mode) reach their
targets. Tiny policies from test_runtimes; nothing here measures or needs a GPU."""
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ros2_imitation.policy import runtimes
from ros2_imitation.policy.gpu_runtime import CudaGraphed
from test_policy import obs_for
from test_runtimes import STATS, chunks, make_policy

ROOT = Path(__file__).resolve().parent.parent
# chunks compared in normalised action units, the units of the networks' outputs and of the tolerance
ACTION_SCALE = (STATS['action']['max'] - STATS['action']['min']) / 2


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def state_copy(policy):
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}


@pytest.mark.parametrize('batch', [None, 3])
def test_half_bf16_chunks_are_within_its_tolerance_of_eager(batch):
    """Plain, hard- and soft-inpainted chunks on fixed seeds; float32 out; really reduced precision."""
    eager, policy = make_policy(), make_policy()
    assert policy.set_runtime('half') == 'half'
    runtime = policy._runtime
    assert (runtime.precision, runtime.cuda_graphs) == ('bf16', False)
    assert runtime.tolerance == runtimes.HALF_TOLERANCE['bf16']
    assert {p.dtype for p in runtime._unet.module.parameters()} == {torch.bfloat16}
    encoder = runtime._encoders['image'].module      # bf16 but for the spatial-softmax keypoints
    assert {p.dtype for n, p in encoder.named_parameters() if not n.startswith('keypoints.')} == {torch.bfloat16}
    assert {p.dtype for p in encoder.keypoints.parameters()} == {torch.float32}
    worst = 0.0
    for fast, ref in zip(chunks(policy, batch), chunks(eager, batch)):
        assert fast.dtype == np.float32 and fast.shape == ref.shape
        worst = max(worst, float(np.abs((fast - ref) / ACTION_SCALE).max()))
    assert 1e-4 < worst <= runtime.tolerance      # differs from float32 (bf16 ran), but within bounds


def test_half_networks_return_float32_and_accept_float32():
    policy = make_policy()
    runtime = runtimes.HalfRuntime(policy, precision='bf16')
    x, t, cond = runtimes._probe(policy, batch=2)
    with torch.no_grad():
        out = runtime.unet(x, t, cond)
        keypoints = runtime.encode('image', runtimes._probe_images(policy, batch=2))
    assert out.dtype == keypoints.dtype == torch.float32
    assert out.shape == x.shape and keypoints.shape == (2 * policy.config.n_obs_steps, 2 * policy.config.num_keypoints)
    assert 0 < runtimes.check_against_torch(policy, runtime) <= runtime.tolerance


def test_half_leaves_the_policy_weights_in_float32_and_training_works():
    policy = make_policy()
    before = state_copy(policy)
    assert policy.set_runtime('half') == 'half'
    after = policy.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    assert all(p.dtype == torch.float32 for p in policy.parameters())
    # a training step: float32 modules, float32 gradients, the weights move; the runtime's copy does not
    batch = {k: torch.from_numpy(v) for k, v in obs_for(policy, batch=2).items()}
    batch['action'] = torch.zeros(2, policy.config.horizon, policy.config.action_dim)
    policy.train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    loss = policy(batch)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert policy.unet.final[1].weight.grad.dtype == torch.float32
    copy_before = policy._runtime._unet.module.final[1].weight.clone()
    optimizer.step()
    assert not torch.equal(policy.unet.final[1].weight, before['unet.final.1.weight'])
    assert torch.equal(policy._runtime._unet.module.final[1].weight, copy_before)   # a snapshot
    policy.eval()
    assert policy.predict_chunk(obs_for(policy), seed=0).dtype == np.float32


def test_cuda_graphs_on_the_cpu_are_refused_and_the_policy_stays_on_torch(caplog):
    policy, eager = make_policy(), make_policy()
    with pytest.raises(runtimes.RuntimeUnavailable, match='CUDA graphs need a CUDA device; the policy is on cpu'):
        runtimes.HalfRuntime(policy, cuda_graphs=True)
    with caplog.at_level(logging.WARNING, logger='ros2_imitation.policy.runtimes'):
        assert policy.set_runtime('half', cuda_graphs=True) == 'torch'
    assert "'half' unavailable, staying on torch" in caplog.text and 'CUDA graphs need a CUDA device' in caplog.text
    assert all(np.array_equal(a, b) for a, b in zip(chunks(policy), chunks(eager)))
    with pytest.raises(ValueError, match='CUDA device'):
        CudaGraphed(policy.unet, torch.float16, torch.device('cpu'))
    with pytest.raises(ValueError, match='unknown precision'):
        policy.set_runtime('half', precision='int8')


def test_auto_on_the_cpu_never_builds_half(monkeypatch):
    """Not even when nothing else is there to pick (the ONNX packages reported missing: no export)."""
    built = []
    real = runtimes.HalfRuntime
    monkeypatch.setattr(runtimes, 'HalfRuntime', lambda *a, **k: built.append(1) or real(*a, **k))
    monkeypatch.setattr(runtimes, '_missing', lambda backend: [] if backend in ('torch', 'compile', 'half')
                        else [backend])
    policy = make_policy()
    assert policy.set_runtime('auto') == 'torch'
    assert not built
    assert policy.set_runtime('half') == 'half' and built == [1]     # asked for by name, it is built
    assert 'half' in runtimes.BACKENDS and 'half' in runtimes.CHOICES and runtimes.available()['half'] is None


def test_check_uses_the_runtimes_own_tolerance():
    policy = make_policy(image=False)

    class Off:
        name = 'off'

        def __init__(self, by, tolerance=None):
            self.by = by
            if tolerance is not None:
                self.tolerance = tolerance

        def unet(self, sample, timestep, cond):
            return policy.unet(sample, timestep, cond) + self.by

    assert runtimes.check_against_torch(policy, Off(1e-2, tolerance=2e-2)) == pytest.approx(1e-2, rel=1e-3)
    with pytest.raises(runtimes.RuntimeUnavailable, match='tolerance 0.001'):
        runtimes.check_against_torch(policy, Off(1e-2))
    with pytest.raises(runtimes.RuntimeUnavailable, match='tolerance 0.02'):
        runtimes.check_against_torch(policy, Off(3e-2, tolerance=2e-2))


@pytest.mark.skipif(runtimes.available()['compile'] is not None, reason='no C++ compiler')
def test_compile_mode_reaches_torch_compile(monkeypatch):
    """The option only (torch.compile stubbed: compiling takes tens of seconds)."""
    modes = []
    monkeypatch.setattr(torch, 'compile', lambda module, mode=None: modes.append(mode) or module)
    policy = make_policy()
    assert policy.set_runtime('compile', mode='reduce-overhead') == 'compile'
    assert modes == ['reduce-overhead'] * 2 and policy._runtime.mode == 'reduce-overhead'
    assert not policy._runtime._graphs      # inductor's CUDA graphs only on a CUDA device
    assert policy.set_runtime('compile') == 'compile' and modes[-2:] == [None, None]


@pytest.mark.parametrize('command', [['bench/gpu.py'], ['bench/policy_latency.py', '--device', 'cuda']])
def test_the_gpu_benchmark_refuses_without_cuda(command):
    doc = ROOT / 'docs' / 'benchmarks.md'
    before = doc.read_text()
    result = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, 'CUDA_VISIBLE_DEVICES': ''})
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'bench/gpu.py: no CUDA device here' in result.stderr and 'the GPU figures need one' in result.stderr
    assert doc.read_text() == before
