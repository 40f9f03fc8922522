"""Every GPU figure in one run: the shipped model's chunk latency per inference runtime, training
throughput, and the policy-size table of bench/policy_latency.py, into the `policy_latency_cuda`
section of docs/benchmarks.md.

    python bench/gpu.py                  # one CUDA GPU, < 8 min (torch.compile's build is most of it)
    python bench/gpu.py --quick --print-only
    python bench/policy_latency.py --device cuda     # runs this

Runtimes (ros2_imitation/policy/runtimes.py), each at DDIM-10 and DDPM-100, predict_chunk at batch 1
on models/push_cube: torch eager fp32, 'half' fp16 without and with CUDA graphs, torch.compile
mode='reduce-overhead'. Training: AdamW steps of the shipped config at batch 64 and 256, fp32.
Exits 2, measuring and writing nothing, where no CUDA device is present.
"""
import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_latency import MODEL, interleaved, latency_table  # noqa: E402
from report import write_section  # noqa: E402

# (label, runtime, set_runtime options); eager first: the reference for speed-ups and differences
VARIANTS = (
    ('torch eager, fp32', 'torch', {}),
    ('half, fp16', 'half', {'precision': 'fp16', 'cuda_graphs': False}),
    ('half, fp16 + CUDA graphs', 'half', {'precision': 'fp16', 'cuda_graphs': True}),
    ("torch.compile, mode='reduce-overhead'", 'compile', {'mode': 'reduce-overhead'}),
)
SAMPLERS = (('ddim', 10), ('ddpm', 100))
TRAIN_BATCHES = (64, 256)


def cuda_problem(device: str) -> str | None:
    """Why `device` cannot be measured here, or None."""
    if not device.startswith('cuda'):
        return f'--device {device!r} is not a CUDA device; this script measures GPUs only'
    if not torch.cuda.is_available():
        return (f'no CUDA device here (torch {torch.__version__}, torch.cuda.is_available() is False); '
                'the GPU figures need one. The CPU figures: python bench/policy_latency.py --device cpu')
    index = torch.device(device).index or 0
    if index >= torch.cuda.device_count():
        return f'{device}: only {torch.cuda.device_count()} CUDA device(s) here'
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--quick', action='store_true', help='fewer chunks and repeats')
    parser.add_argument('--repeats', type=int, default=5, help='best-of repeats (training, size table)')
    parser.add_argument('--no-compile', action='store_true', help="leave torch.compile out (its build takes minutes)")
    parser.add_argument('--print-only', action='store_true', help='print the tables, leave docs/benchmarks.md alone')
    args = parser.parse_args(argv)
    problem = cuda_problem(args.device)
    if problem:
        print(f'bench/gpu.py: {problem}', file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    start = time.monotonic()
    repeats = 2 if args.quick else args.repeats
    parts = [gpu_line(args.device), runtimes_table(args), training_table(args.device, repeats),
             '### Policy sizes, eager fp32\n\n' + latency_table(args.device, repeats)]
    body = '\n\n'.join(parts) + f'\n\nWhole run: {time.monotonic() - start:.0f} s.'
    if args.print_only:
        print(body)
    else:
        write_section('policy_latency_cuda', f'Policy latency and training throughput ({args.device})', body)
    return 0


def gpu_line(device: str) -> str:
    props = torch.cuda.get_device_properties(device)
    return (f'GPU: {props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}, '
            f'cuDNN {torch.backends.cudnn.version()}, torch {torch.__version__}. fp32 eager uses PyTorch\'s '
            f'defaults: TF32 convolutions {torch.backends.cudnn.allow_tf32}, TF32 matmuls '
            f'{torch.backends.cuda.matmul.allow_tf32}, cudnn.benchmark {torch.backends.cudnn.benchmark}.')


def runtimes_table(args) -> str:
    from ros2_imitation.policy import load_policy
    from ros2_imitation.policy.runtimes import available

    rng = np.random.default_rng(0)
    obs = {'state': rng.uniform(-1, 1, (2, 7)).astype(np.float32),
           'image': rng.integers(0, 255, (2, 96, 96, 3), dtype=np.uint8)}
    policies, rows, unavailable = [], [], []
    for label, name, options in VARIANTS:
        if name == 'compile' and args.no_compile:
            continue
        t0 = time.monotonic()
        policy = load_policy(MODEL, device=args.device)
        used = policy.set_runtime(name, **options)
        setup_s = time.monotonic() - t0
        print(f'{label}: {used}, set-up {setup_s:.1f} s', flush=True)
        if used != name:
            unavailable.append(f'| {label} | unavailable: {available().get(name) or "see the log"} | | | | | | |')
            continue
        policies.append((label, policy, setup_s))
    chunks = {('ddim', 10): 20 if args.quick else 50, ('ddpm', 100): 5 if args.quick else 20}
    for kind, steps in SAMPLERS:
        for _, policy, _ in policies:
            policy.set_inference(kind, steps)
            for _ in range(3):      # warm-up: allocator, cuDNN algorithms, graphs of any new shape
                policy.predict_chunk(obs, seed=0)
        times, outputs = interleaved([(label, policy) for label, policy, _ in policies], obs, chunks[kind, steps])
        eager = policies[0][0]
        eager_p50 = np.percentile(times[eager], 50)
        for label, _, setup_s in policies:
            t = np.array(times[label])
            diff = max(float(np.abs(a - b).max()) for a, b in zip(outputs[label], outputs[eager]))
            p50, p99 = np.percentile(t, 50), np.percentile(t, 99)
            rows.append(f'| {label} | {kind.upper()}-{steps} | {p50:.2f} | {p99:.2f} | {t.min():.2f} | '
                        f'{eager_p50 / p50:.2f}x | {diff:.1e} | {setup_s:.1f} |')
            print(rows[-1], flush=True)
    head = ['| runtime | sampler | p50 (ms/chunk) | p99 (ms/chunk) | best (ms/chunk) | p50 speed-up vs eager | '
            'max abs diff to eager | set-up (s) |', '|---|---|---|---|---|---|---|---|']
    return ('### Inference runtimes, shipped model\n\n'
            f'models/push_cube (96x96 image + 7 joints), `predict_chunk` at batch 1 (observation upload '
            'through pinned memory, encoder, the denoising loop, unnormalisation, chunk back to the host), '
            f'{chunks["ddim", 10]} DDIM-10 and {chunks["ddpm", 100]} DDPM-100 chunks per runtime after 3 warm-up '
            'chunks, in blocks alternating across runtimes; p50/p99 over those chunks. Max abs diff: the '
            'largest difference to eager fp32 over all of them (robot units, same seeds; fp16 changes the '
            'numerics). Set-up: load + build (copies, graph capture, compilation) + the check against eager.\n\n'
            + '\n'.join(head + rows + unavailable))


def training_table(device: str, repeats: int) -> str:
    from ros2_imitation.policy import load_policy
    from ros2_imitation.policy.benchmark import train_step_ms
    from ros2_imitation.runtime.runner import blank_observation

    rows = []
    for batch in TRAIN_BATCHES:
        policy = load_policy(MODEL, device=device)
        ms = train_step_ms(policy, blank_observation(policy.config), batch, repeats)
        rows.append(f'| {batch} | {ms:.1f} | {batch / ms * 1e3:.0f} |')
        print(rows[-1], flush=True)
        del policy
        torch.cuda.empty_cache()
    return ('### Training throughput, shipped config\n\n'
            f'One AdamW step (forward, backward, update) in fp32, best of {repeats}; the batch is copied from '
            'host memory in every step, as a data loader\'s is. No data loading or augmentation.\n\n'
            '| batch | step (ms) | training samples/s |\n|---|---|---|\n' + '\n'.join(rows))


if __name__ == '__main__':
    sys.exit(main())
