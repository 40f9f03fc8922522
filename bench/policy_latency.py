"""Policy latency (ms per chunk: DDPM-100, DDIM-10, DDIM-4) and training throughput on this machine.

The shipped push_cube configuration (96x96 image + 7 joint positions -> 16 x 7 actions) and its
state-only variant. Writes the `policy_latency` section of docs/benchmarks.md, and on the CPU the
`policy_runtimes` section: the shipped model's DDIM-10 chunk on each inference runtime
(ros2_imitation/policy/runtimes.py), all measured in one run. With --device cuda it runs
bench/gpu.py, which writes every GPU figure into the `policy_latency_cuda` section (exit 2 when no
CUDA device is present).
"""
import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

SAMPLERS = (('ddpm', 100), ('ddim', 10), ('ddim', 4))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--quick', action='store_true', help='fewer repeats')
    parser.add_argument('--only', choices=('latency', 'runtimes'), help='just this section')
    parser.add_argument('--chunks', type=int, default=50, help='timed chunks per runtime (runtimes section)')
    parser.add_argument('--threads', type=int, default=2, help='intra-op threads (runtimes section)')
    parser.add_argument('--print-only', action='store_true', help='print the tables, leave docs/benchmarks.md alone')
    args = parser.parse_args()
    if args.device.startswith('cuda'):
        import gpu
        return gpu.main(['--device', args.device, '--repeats', str(args.repeats)]
                        + ['--quick'] * args.quick + ['--print-only'] * args.print_only)
    if args.only != 'runtimes':
        latency_section(args)
    if args.only != 'latency' and args.device == 'cpu':
        runtimes_section(args)


def latency_section(args):
    repeats = 2 if args.quick else args.repeats
    body = latency_table(args.device, repeats)
    if args.print_only:
        print(body)
    else:
        write_section(f'policy_latency_{args.device.split(":")[0]}',
                      f'Policy latency and training throughput ({args.device})', body)


def latency_table(device: str, repeats: int) -> str:
    """The shipped config, its state-only variant and Diffusion Policy's U-Net size: params, chunk
    latency per sampler, training step (eager torch, random weights)."""
    from ros2_imitation.policy.benchmark import measure
    from ros2_imitation.policy.config import load_policy_file

    image, _ = load_policy_file('push_cube', {'state_dim': 7, 'action_dim': 7, 'image_shape': [96, 96, 3]})
    state_only = image.replace(image_keys=(), image_shape=None, crop_shape=None)
    # Diffusion Policy's published CNN U-Net size (down_dims 256-512-1024, step embedding 128) on the
    # same inputs, encoder and samplers: what the smaller U-Net buys
    reference = image.replace(down_dims=(256, 512, 1024), diffusion_step_embed_dim=128)
    rows = []
    for name, config in (('image + state (shipped config)', image), ('state only', state_only),
                         ("image + state, Diffusion Policy's U-Net size (256-512-1024)", reference)):
        r = measure(config, device, 64, repeats, SAMPLERS)
        rows.append((name, r))
        print(name, r)
    head = '| policy | params | ' + ' | '.join(f'{k.upper()}-{n} (ms/chunk)' for k, n in SAMPLERS) + \
        ' | train step, batch 64 (ms) | training samples/s |'
    table = [head, '|' + '---|' * (5 + len(SAMPLERS) - 1)]
    for name, r in rows:
        table.append(f"| {name} | {r['params'] / 1e6:.2f} M | " +
                     ' | '.join(f"{r[f'predict_{k}{n}_ms']:.1f}" for k, n in SAMPLERS) +
                     f" | {r['train_step_ms']:.0f} | {r['train_samples_per_s']:.0f} |")
    return (f'Device `{device}`, torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1 '
            f'inference (one chunk = the whole denoising loop), best of {repeats} runs. Inference time is '
            'steps x one U-Net forward plus the observation encoding. The last row is the reference U-Net of '
            "Diffusion Policy's published size (ConditionalUnet1D down_dims 256-512-1024, step embedding 128) "
            'with everything else equal (encoder, horizon 16, samplers), measured in the same run.\n\n'
            + '\n'.join(table))


# (label, runtime, set_runtime options); eager first: the reference for the differences
RUNTIMES = (
    ('torch eager', 'torch', {}),
    ('torch.compile (inductor)', 'compile', {}),
    ('ONNX Runtime, dynamic batch', 'onnxruntime', {}),
    ('ONNX Runtime, batch fixed to 1', 'onnxruntime', {'dynamic_batch': False}),
    ('OpenVINO, dynamic batch', 'openvino', {}),
    ('OpenVINO, batch fixed to 1', 'openvino', {'dynamic_batch': False}),
)
MODEL = Path(__file__).resolve().parent.parent / 'models' / 'push_cube'


def runtimes_section(args):
    """The shipped model's DDIM-10 chunk (predict_chunk, batch 1) on each runtime, in alternating
    blocks (interleaved()); every runtime gets the same seeds, and its chunks are compared with
    eager torch's."""
    from ros2_imitation.policy import load_policy
    from ros2_imitation.policy.runtimes import available

    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    torch.set_num_threads(args.threads)
    chunks = 20 if args.quick else args.chunks
    rng = np.random.default_rng(0)
    obs = {'state': rng.uniform(-1, 1, (2, 7)).astype(np.float32),
           'image': rng.integers(0, 255, (2, 96, 96, 3), dtype=np.uint8)}
    batch_obs = {k: np.repeat(v[None], 8, 0) for k, v in obs.items()}
    rows, policies = [], []
    for label, name, options in RUNTIMES:
        start = time.monotonic()
        policy = load_policy(MODEL, num_inference_steps=10, inference_scheduler='ddim')
        used = policy.set_runtime(name, checkpoint=MODEL, threads=args.threads, **options) if name != 'torch' else 'torch'
        build_s = time.monotonic() - start
        if used != name:
            rows.append((label, None, f'unavailable: {available().get(name) or "see the log above"}'))
            continue
        for _ in range(3):    # warm-up (allocators, thread pools, compiled graphs)
            policy.predict_chunk(obs, seed=0)
        policies.append((label, policy, build_s))
    times, outputs = interleaved([(label, policy) for label, policy, _ in policies], obs, chunks)
    batch_ms = {}
    for _ in range(3 if args.quick else 5):
        for label, policy, _ in policies:
            start = time.perf_counter()
            policy.predict_chunk(batch_obs, seed=0)
            batch_ms[label] = min(batch_ms.get(label, np.inf), 1e3 * (time.perf_counter() - start))
    eager_label = policies[0][0]
    eager_p50 = np.percentile(times[eager_label], 50)
    for label, _, build_s in policies:
        t = np.array(times[label])
        diff = max(float(np.abs(a - b).max()) for a, b in zip(outputs[label], outputs[eager_label]))
        rows.append((label, dict(p50=np.percentile(t, 50), p99=np.percentile(t, 99), best=t.min(),
                                 speedup=eager_p50 / np.percentile(t, 50), diff=diff, build_s=build_s,
                                 batch8=batch_ms[label]), None))
    table = ['| runtime | p50 (ms/chunk) | p99 (ms/chunk) | best (ms/chunk) | p50 speed-up vs eager | '
             'max abs diff to eager | batch 8, best (ms/chunk) | set-up (s) |', '|---|---|---|---|---|---|---|---|']
    for label, r, why in rows:
        if r is None:
            table.append(f'| {label} | {why} | | | | | | |')
        else:
            table.append(f"| {label} | {r['p50']:.1f} | {r['p99']:.1f} | {r['best']:.1f} | {r['speedup']:.2f}x | "
                         f"{r['diff']:.1e} | {r['batch8']:.1f} | {r['build_s']:.1f} |")
    versions = ', '.join(f'{m} {_version(m)}' for m in ('onnxruntime', 'openvino', 'onnx'))
    body = (f'The shipped model (models/push_cube: 96x96 image + 7 joints, {_params(policies)} params), DDIM-10, '
            f'`predict_chunk` at batch 1 (observation conversion, encoder, 10 U-Net steps, scheduler, '
            f'unnormalisation), {args.threads} intra-op threads, torch {torch.__version__}, {versions}. '
            f'{chunks} chunks per runtime after 3 warm-up chunks, in 5 blocks of consecutive chunks alternating '
            'across runtimes (one runtime at a time, as a node runs one; the rounds spread the load of a shared '
            "machine over all alike); p50/p99 over those chunks. Max abs diff: "
            'the largest difference to eager torch over all of them (robot units, same seeds). Batch 8: best '
            'of a few chunks of 8 observations (evaluation batches episodes). Set-up: load + export or compile '
            '(an ONNX export is cached beside the checkpoint, so only the first load pays for it).\n\n'
            + '\n'.join(table))
    if args.print_only:
        print(body)
    else:
        write_section('policy_runtimes_cpu', 'Policy inference runtimes (cpu, DDIM-10 chunk)', body)


def interleaved(policies, obs, chunks: int, rounds: int = 5):
    """`chunks` predict_chunk calls per (label, policy), seed i for the i-th, in `rounds` blocks of
    consecutive chunks per runtime alternating across runtimes: one runtime at a time, as a node
    runs it (ONNX Runtime's and OpenVINO's thread pools spin on after a call and would slow
    whichever runs next), while the rounds spread a shared machine's load over all alike. Returns
    ({label: [ms]}, {label: [chunk]}). predict_chunk returns numpy arrays, so a GPU's work is done
    when it returns."""
    times = {label: [] for label, _ in policies}
    outputs = {label: [] for label, _ in policies}
    rounds = max(1, min(rounds, chunks))
    for r in range(rounds):
        for label, policy in policies:
            policy.predict_chunk(obs, seed=0)      # the runtime's threads wake up, untimed
            for i in range(r * chunks // rounds, (r + 1) * chunks // rounds):
                start = time.perf_counter()
                chunk = policy.predict_chunk(obs, seed=i)
                times[label].append(1e3 * (time.perf_counter() - start))
                outputs[label].append(chunk)
    return times, outputs


def _params(policies) -> str:
    return f'{policies[0][1].param_count() / 1e6:.2f} M' if policies else '?'


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(module)
    except PackageNotFoundError:
        return 'not installed'


if __name__ == '__main__':
    sys.exit(main())
