"""Training throughput on this machine: samples/s of each shipped configuration, where a step's time
goes (fetching the batch, the optimisation step), the end-to-end `train()` rate with and without a
DataLoader worker, and the time to the shipped model's success at that rate.

A synthetic replay buffer with the shipped shapes (50 episodes x 90 steps of 96x96 RGB + 7 joints;
the content does not change the cost) is written to a temporary folder. Writes the `train_throughput`
section of docs/benchmarks.md.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODELS = {'push_cube': ROOT / 'models' / 'push_cube'}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, default=60, help='train() steps per end-to-end run')
    parser.add_argument('--repeats', type=int, default=20, help='timed batches / steps per component')
    parser.add_argument('--quick', action='store_true', help='fewer steps and repeats')
    parser.add_argument('--print-only', action='store_true', help='leave docs/benchmarks.md alone')
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 30, 8
    from ros2_imitation.policy.config import load_policy_file
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in MODELS.items():
            config, training = load_policy_file(name, {'state_dim': 7, 'action_dim': 7, 'image_shape': [96, 96, 3]})
            batch_size = int(training.get('batch_size', 64))
            data = synthetic_dataset(Path(tmp) / f'{name}.zarr', config)
            row = {'model': name, 'batch': batch_size, **components(data, config, batch_size, args.repeats)}
            for workers in (0, 1):
                row[f'train_w{workers}'] = end_to_end(data, config, batch_size, args.steps, workers,
                                                      Path(tmp) / f'{name}_w{workers}')
            row.update(shipped_success(model))
            rows.append(row)
            print(json.dumps(row, indent=1))
    body = table(rows, args)
    print(body)
    if not args.print_only:
        write_section('train_throughput', 'Training throughput (cpu)', body)


def synthetic_dataset(path: Path, config, episodes: int = 50, length: int = 90) -> Path:
    from ros2_imitation.policy import write_episodes
    rng = np.random.default_rng(0)
    eps = [{config.state_key: rng.uniform(-1, 1, (length, 7)).astype(np.float32),
            config.action_key: rng.uniform(-1, 1, (length, 7)).astype(np.float32),
            **{k: rng.integers(0, 255, (length, 96, 96, 3), dtype=np.uint8) for k in config.image_keys}}
           for _ in range(episodes)]
    return write_episodes(path, eps)


def components(path: Path, config, batch_size: int, repeats: int) -> dict:
    """ms per batch: fetching it window by window + default_collate (the DataLoader's per-item path)
    against one gather per key (WindowDataset.__getitems__); ms per optimisation step (forward,
    backward, AdamW, EMA) on a fixed batch."""
    from diffusers.training_utils import EMAModel
    from torch.utils.data import default_collate

    from ros2_imitation.policy import DiffusionPolicy, ReplayBuffer, WindowDataset
    from ros2_imitation.policy.dataset import dataset_stats, fill_shapes
    buffer = ReplayBuffer.open(path, [config.state_key, config.action_key, *config.image_keys])
    config = fill_shapes(config, buffer)
    ds = WindowDataset(buffer, config)
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(ds), batch_size, replace=False).tolist() for _ in range(repeats)]
    per_item = _median_ms(lambda idx: default_collate([ds[i] for i in idx]), batches)
    gathered = _median_ms(ds.__getitems__, batches)
    torch.manual_seed(0)
    policy = DiffusionPolicy(config)
    policy.set_stats(dataset_stats(buffer, config))
    policy.train()
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, foreach=True)
    ema = EMAModel(policy.parameters(), decay=0.9999, foreach=True)
    batch = ds.__getitems__(batches[0])

    def step(_):
        loss = policy(batch, training=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.step(policy.parameters())

    step(None)
    return {'fetch_item_ms': per_item, 'fetch_batch_ms': gathered,
            'step_ms': _median_ms(step, range(max(5, repeats // 2)))}


def end_to_end(path: Path, config, batch_size: int, steps: int, workers: int, out: Path) -> float:
    """samples/s of train() itself between its first and last log lines (start-up excluded)."""
    from ros2_imitation.policy import train
    every = max(1, steps // 3)
    result = train(path, config, out, steps=steps, batch_size=batch_size, checkpoint_every=None,
                   val_every=10 ** 9, log_every=every, progress=False, num_workers=workers, val_fraction=0.0)
    logged = [(r['step'], r['seconds']) for r in result.history]
    (s0, t0), (s1, t1) = logged[0], logged[-1]
    return batch_size * (s1 - s0) / (t1 - t0)


def shipped_success(model: Path) -> dict:
    """The shipped model's training log: the first checkpoint whose rollouts all succeeded, and how
    long its own run took to reach it."""
    log = [json.loads(line) for line in (model / 'train_log.jsonl').read_text().splitlines() if line.strip()]
    first = next((r for r in log if r.get('eval', {}).get('eval_success_rate', 0) >= 1.0), None)
    return {'success_step': first['step'] if first else None, 'success_s': first['seconds'] if first else None}


def _median_ms(fn, inputs) -> float:
    times = []
    for x in inputs:
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def table(rows, args) -> str:
    lines = ['| model | batch | fetch, window by window + collate (ms) | fetch, one gather (ms) | '
             'optimisation step (ms) | before: samples/s (per-window fetch + step) | train(), 0 workers: samples/s | '
             'train(), 1 worker: samples/s | shipped run to its first 100% checkpoint | that many steps at the best rate |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        before = r['batch'] / (r['fetch_item_ms'] + r['step_ms']) * 1e3
        best = max(r['train_w0'], r['train_w1'])
        shipped = (f"step {r['success_step']}, {r['success_s'] / 60:.0f} min" if r['success_step'] else 'not reached')
        at_best = f"{r['success_step'] * r['batch'] / best / 60:.0f} min" if r['success_step'] else '-'
        lines.append(f"| {r['model']} | {r['batch']} | {r['fetch_item_ms']:.1f} | {r['fetch_batch_ms']:.1f} | "
                     f"{r['step_ms']:.0f} | {before:.0f} | {r['train_w0']:.0f} | {r['train_w1']:.0f} | {shipped} | {at_best} |")
    return (f'torch {torch.__version__}, {torch.get_num_threads()} threads. Synthetic replay buffer with the '
            'shipped shapes (50 episodes x 90 steps, 96x96 RGB + 7 joints). Fetch: median over '
            f'{args.repeats} random batches; optimisation step: forward (noise injection included), backward, '
            "AdamW (foreach), EMA, median. train(): `ros2_imitation.policy.train` as `ros2-imitation train` runs "
            f'it, samples/s between its first and last log line of {args.steps} steps (start-up, validation and '
            "checkpoints excluded). Before = the per-window fetch plus the step, in sequence (the DataLoader's "
            "path before WindowDataset.__getitems__). The last two columns: the shipped model's own run "
            '(models/push_cube/train_log.jsonl, 10 rollouts per checkpoint) and the same number of steps at '
            "this run's best rate.\n\n" + '\n'.join(lines))


if __name__ == '__main__':
    main()
