"""The noise-injection study: does injecting the training-time observation noise again at execution
time (mode `replica`) help, against training with it only (`train_only`) and no noise (sigma 0)?

push_cube, state-based policies (arm joints + the cube's pose + the goal: images would cost ~10x the
training time this 2-core budget has), 10 / 20 / 40 demonstrations, sigma in {0, 0.03, 0.05, 0.1,
0.3}, several training seeds, 50 evaluation episodes each (seeds 0.., never trained on). Also: the
chunk-length ablation (actions executed per chunk 1, 4, 8, 16) and noise-injected collection
(demonstrations executed with smooth action noise, labelled with the expert's correction) vs clean.

Every training and evaluation is a file under --work; a rerun skips what exists (resumable).
Writes docs/noise_study.png and the `noise_study` section of docs/benchmarks.md.

    python bench/noise_study.py            # the full study (~1.5 h on 2 cores with --jobs 2)
    python bench/noise_study.py --quick    # the same pipeline, tiny budget (~4 min)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIGMAS = (0.0, 0.03, 0.05, 0.1, 0.3)
COLLECTION_NOISE = 0.03     # rad, std of the smooth action noise for noise-injected collection
CONTROL_RATE = 100.0        # Hz in the study's rollouts: the expert succeeds as at 500 Hz, 3x cheaper


@dataclass(frozen=True)
class Run:
    """One training: dataset, data size, sigma, seed, horizon."""
    data: str
    demos: int
    sigma: float
    seed: int
    horizon: int = 16

    @property
    def name(self) -> str:
        return f'{self.data}{self.demos}_h{self.horizon}_s{self.sigma:g}_seed{self.seed}'


def plan(args):
    """(run, [(noise_mode, execute), ...]) in the order that makes partial results useful."""
    sizes, sigmas, seeds = args.sizes, args.sigmas, range(args.seeds)
    units = []
    for seed in seeds:
        for demos in sizes:
            for sigma in sigmas:
                modes = [('replica', 8)] + ([('train_only', 8)] if sigma > 0 else [])
                units.append((Run('clean', demos, sigma, seed), modes))
    top = max(sizes)
    for seed in seeds:
        # chunk-length ablation: horizon 20 leaves room to execute 16 actions
        units.append((Run('clean', top, args.ablation_sigma, seed, horizon=20),
                      [('replica', n) for n in args.executes]))
        for sigma in (0.0, args.ablation_sigma):
            units.append((Run('noisy', top, sigma, seed), [('replica', 8)]))
    return units


# ---- data ----------------------------------------------------------------------------------------
def expert_demos(task: str, count: int, first_seed: int, noise: float | None = None,
                 timeout: float | None = None, label: str = '') -> tuple[list, int]:
    """(`count` successful scripted demonstrations, state only, the tries it took), from `first_seed`
    on, at the study's control rate; `noise`: the expert's actions perturbed (noise-injected collection)."""
    from tqdm import tqdm

    from ros2_imitation.sim.experts import ActionNoise, make_expert
    from ros2_imitation.sim.rollout import ExpertAgent, Rollout
    from ros2_imitation.sim.tasks import episode_timeout
    rollout = Rollout(task=task, render=False, task_features=True, control_rate=CONTROL_RATE)
    agent = ExpertAgent(make_expert(task, rollout.sim.model), ActionNoise(std=noise) if noise else None)
    episodes, seed = [], first_seed
    with tqdm(total=count, desc=f'{label or task} demos', unit='demo') as bar:
        while len(episodes) < count:
            result = rollout.run(agent, seed, episode_timeout(task, timeout), record=True)
            seed += 1
            if result.success:
                episodes.append({k: v for k, v in result.data.items() if k != 'image'})
                bar.update(1)
    return episodes, seed - first_seed


def make_datasets(work: Path, top: int, sizes) -> None:
    """`top` successful demonstrations each, clean and noise-collected; subsets of the first N."""
    from ros2_imitation.policy.dataset import write_episodes
    for data, first_seed, noise in (('clean', 10000, None), ('noisy', 20000, COLLECTION_NOISE)):
        paths = {n: work / 'data' / f'{data}{n}.zarr' for n in sizes}
        if all(p.exists() for p in paths.values()):
            continue
        episodes, _ = expert_demos('push_cube', top, first_seed, noise, 20.0, label=data)
        for n, path in paths.items():
            write_episodes(path, episodes[:n], overwrite=True)


# ---- one unit: train, then its evaluations (a worker process) --------------------------------------
def run_unit(job) -> list[dict]:
    run, modes, work, steps, episodes = job
    import torch
    torch.set_num_threads(1)
    from ros2_imitation.policy import PolicyConfig, load_policy
    from ros2_imitation.policy.train import train
    from ros2_imitation.sim.evaluation import evaluate

    out = work / 'runs' / run.name
    policy_dir = out / 'policy'
    if not (policy_dir / 'config.json').exists():
        config = PolicyConfig(image_keys=(), down_dims=(32, 64, 128), horizon=run.horizon, n_action_steps=8,
                              noise_sigma=run.sigma, noise_mode='replica', seed=run.seed)
        start = time.monotonic()
        result = train(work / 'data' / f'{run.data}{run.demos}.zarr', config, out, steps=steps, batch_size=64,
                       lr=1e-3, val_fraction=0.0, checkpoint_every=None, progress=False)
        (out / 'train.json').write_text(json.dumps({'seconds': time.monotonic() - start,
                                                    'loss': result.train_loss, 'steps': steps}))
    rows = []
    for mode, execute in modes:
        path = work / 'evals' / f'{run.name}_{mode}_x{execute}.json'
        if not path.exists():
            policy = load_policy(policy_dir, noise_mode=mode)
            summary = evaluate(policy, range(episodes), timeout=15.0, batch=episodes, execute=execute,
                               control_rate=CONTROL_RATE, task_features=True)
            summary.pop('results')
            summary.update(run=run.name, data=run.data, demos=run.demos, sigma=run.sigma, seed=run.seed,
                           horizon=run.horizon, mode=mode)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(summary, indent=1))
        rows.append(json.loads(path.read_text()))
    return rows


# ---- report --------------------------------------------------------------------------------------
def pooled(rows) -> tuple:
    from ros2_imitation.sim.rollout import wilson_interval
    wins = sum(len(r['successes']) for r in rows)
    n = sum(r['episodes'] for r in rows)
    per_seed = [r['success_rate'] for r in rows]
    return wins / n, wilson_interval(wins, n), float(np.std(per_seed)), n


def compute_minutes(rows, work: Path) -> float:
    """Single-core minutes spent: every training (train.json) and evaluation, wherever resumed."""
    train = sum(json.loads(p.read_text())['seconds'] for p in (work / 'runs').glob('*/train.json'))
    return (train + sum(r['wall_s'] for r in rows)) / 60


def report(rows, args, work: Path) -> str:
    def select(**kv):
        return [r for r in rows if all(r[k] == v for k, v in kv.items())]

    sizes, sigmas = args.sizes, args.sigmas
    lines = [f'push_cube, state-based DDPM policy (U-Net 32-64-128, horizon 16, 8 actions per chunk, DDIM-10), '
             f'{args.steps} training steps, {args.seeds} training seed(s), {args.episodes} evaluation episodes '
             f'each (seeds 0-{args.episodes - 1}); success pooled over seeds with a 95% Wilson interval '
             f'(± = std over training seeds). Compute: {compute_minutes(rows, work):.0f} single-core minutes '
             f'(trainings + evaluations; run as --jobs parallel workers).', '',
             '| demos | sigma | replica (train + test noise) | train_only (train noise only) |', '|---|---|---|---|']
    for demos in sizes:
        for sigma in sigmas:
            cells = []
            for mode in ('replica', 'train_only'):
                sel = select(data='clean', demos=demos, sigma=sigma, horizon=16, mode=mode, execute=8)
                if sigma == 0 and mode == 'train_only':
                    sel = []   # the same as replica: no noise anywhere
                if sel:
                    p, (lo, hi), sd, n = pooled(sel)
                    cells.append(f'{p:.0%} ({lo:.0%}-{hi:.0%}) ±{sd:.0%}')
                else:
                    cells.append('=' if sigma == 0 else 'not run')
            lines.append(f'| {demos} | {sigma:g} | {cells[0]} | {cells[1]} |')
    top = max(sizes)
    lines += ['', f'Chunk length ablation ({top} demos, sigma {args.ablation_sigma:g} replica, horizon 20):', '',
              '| actions executed per chunk | success | mean episode s |', '|---|---|---|']
    for execute in args.executes:
        sel = select(data='clean', demos=top, horizon=20, execute=execute)
        if sel:
            p, (lo, hi), sd, n = pooled(sel)
            dur = np.mean([r['mean_duration_s'] for r in sel])
            lines.append(f'| {execute} | {p:.0%} ({lo:.0%}-{hi:.0%}) ±{sd:.0%} | {dur:.1f} |')
    lines += ['', f'Noise-injected collection ({top} demos executed with smooth action noise, std '
              f'{COLLECTION_NOISE} rad, labelled with the expert\'s correction) vs clean demonstrations:', '',
              '| sigma | clean demos | noise-collected demos |', '|---|---|---|']
    for sigma in (0.0, args.ablation_sigma):
        cells = []
        for data in ('clean', 'noisy'):
            sel = select(data=data, demos=top, sigma=sigma, horizon=16, mode='replica', execute=8)
            if sel:
                p, (lo, hi), sd, n = pooled(sel)
                cells.append(f'{p:.0%} ({lo:.0%}-{hi:.0%})')
            else:
                cells.append('not run')
        lines.append(f'| {sigma:g} | {cells[0]} | {cells[1]} |')
    return '\n'.join(lines)


def plot(rows, args, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(args.sizes), figsize=(4.2 * len(args.sizes), 3.6), sharey=True, squeeze=False)
    for ax, demos in zip(axes[0], args.sizes):
        for mode, colour in (('replica', 'tab:blue'), ('train_only', 'tab:orange')):
            xs, ps, errs = [], [], []
            for sigma in args.sigmas:
                m = 'replica' if sigma == 0 else mode
                sel = [r for r in rows if r['data'] == 'clean' and r['demos'] == demos and r['sigma'] == sigma
                       and r['horizon'] == 16 and r['mode'] == m and r['execute'] == 8]
                if sel:
                    p, (lo, hi), _, _ = pooled(sel)
                    xs.append(sigma)
                    ps.append(p)
                    errs.append((p - lo, hi - p))
            if xs:
                ax.errorbar(np.arange(len(xs)) + (0.05 if mode == 'train_only' else 0), ps,
                            yerr=np.array(errs).T, marker='o', capsize=3, color=colour, label=mode)
                ax.set_xticks(np.arange(len(xs)), [f'{x:g}' for x in xs])
        ax.set_title(f'{demos} demonstrations')
        ax.set_xlabel('noise sigma (normalized units)')
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel('success rate (95% interval)')
    axes[0][0].legend()
    fig.suptitle('push_cube: test-time noise injection')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='10 demos, sigma 0 and 0.05, one seed, 10 episodes')
    parser.add_argument('--work', default=None, help='where runs and evaluations are kept (resumable)')
    parser.add_argument('--jobs', type=int, default=1, help='worker processes (one torch thread each)')
    parser.add_argument('--steps', type=int, default=None)
    parser.add_argument('--seeds', type=int, default=None)
    parser.add_argument('--episodes', type=int, default=None)
    parser.add_argument('--no-write', action='store_true', help='print, do not touch docs/')
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = [10] if quick else [10, 20, 40]
    args.sigmas = [0.0, 0.05] if quick else list(SIGMAS)
    args.executes = [1, 8] if quick else [1, 4, 8, 16]
    args.ablation_sigma = 0.05
    args.steps = args.steps or (600 if quick else 1000)
    args.seeds = args.seeds or (1 if quick else 3)
    args.episodes = args.episodes or (10 if quick else 50)
    work = Path(args.work or ROOT / 'runs' / ('noise_study_quick' if quick else 'noise_study'))
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    make_datasets(work, max(args.sizes), args.sizes)
    jobs = [(run, modes, work, args.steps, args.episodes) for run, modes in plan(args)]
    from tqdm import tqdm
    rows = []
    bar = tqdm(total=len(jobs), desc='noise study', unit='training')
    if args.jobs > 1:
        import multiprocessing as mp
        with mp.get_context('spawn').Pool(args.jobs) as pool:
            for result in pool.imap_unordered(run_unit, jobs):
                rows += result
                bar.update(1)
    else:
        for job in jobs:
            rows += run_unit(job)
            bar.update(1)
    bar.close()
    print(f'wall time {time.monotonic() - start:.0f} s')
    body = report(rows, args, work)
    print(body)
    if not args.no_write:
        name = 'noise_study_quick' if quick else 'noise_study'
        plot(rows, args, ROOT / 'docs' / f'{name}.png')
        write_section(name, 'Noise-injection study' + (' (quick)' if quick else ''),
                      body + f'\n\n![success vs sigma]({name}.png)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
