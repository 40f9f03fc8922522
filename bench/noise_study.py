"""The noise study's grid, as registered in docs/noise_study.md: does injecting the training-time
observation noise again at execution (`replica`) beat training with it only (`train_only`) on the
same models and the same episode seeds?

Cells (task, demonstrations): push_cube 10, pick_place 25 and 100, push_t 50. A cell runs once its
pilot (bench/noise_pilot.py, sigma 0) shows a plateau; every model of the cell trains exactly that
many steps (the pilot's recipe: study_common.study_config / TRAIN), with 5 training seeds. Arms:
Gaussian sigma 0.1 (registered), sigma 0, uniform_paper 0.35, DART-labelled noisy demonstrations at
sigma 0 (H5, push_cube 10), Gaussian 0.03, uniform_paper 0.1. Every model with sigma > 0 is evaluated
`replica` and `train_only` on held-out seeds 0-199 with DDIM-10 and inpainting continuity; the
registered arm also with DDPM-100 and `replan` continuity. The queue runs in that priority order
(the primary test first), so a partial run answers the primary question first.

Trainings (with checkpoints) are files under --work; a rerun resumes them. What a result is made of
lives in the repository, under bench/results/noise_study/ (RESULTS): each evaluation's per-episode
outcomes (evals/), each finished training's length and time (trains/), and each cell's pilot curve
(pilots/), so results survive a fresh checkout, a unit whose evaluations are all there is not run
again, and the grid grows across sessions by committing that folder. The analysis (noise_analysis.py)
writes the results section of docs/noise_study.md and docs/noise_results.png.

    python bench/noise_study.py --jobs 2           # the grid, resumable (hours: see the budget)
    python bench/noise_study.py --report           # run nothing; the analysis of what exists
    python bench/noise_study.py --quick            # the same pipeline on a tiny budget (~3 min)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_common import CONTROL_RATE, RESULTS, TRAIN, make_dataset, study_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CELLS = (('push_cube', 10), ('pick_place', 25), ('pick_place', 100), ('push_t', 50))
SEEDS, EPISODES = 5, 200
COLLECTION_NOISE = 0.03     # rad: the smooth action noise of noise-injected collection (H5)
H5_CELL = ('push_cube', 10)


@dataclass(frozen=True)
class Arm:
    name: str
    sigma: float
    distribution: str = 'gaussian'
    data: str = 'clean'         # clean, or dart: noise-injected demonstrations with DART labels (H5)

    @property
    def modes(self) -> tuple:
        return ('replica', 'train_only') if self.sigma > 0 else ('off',)


REGISTERED = Arm('gauss0.1', 0.1)
SIGMA0 = Arm('sigma0', 0.0)
DART = Arm('dart_sigma0', 0.0, data='dart')
ARMS = (REGISTERED, SIGMA0, Arm('uniform0.35', 0.35, 'uniform_paper'), DART,
        Arm('gauss0.03', 0.03), Arm('uniform0.1', 0.1, 'uniform_paper'))
SAMPLERS = {'ddim10': ('ddim', 10, 'inpaint'), 'ddpm100': ('ddpm', 100, 'replan')}


def cell_name(task: str, demos: int) -> str:
    return f'{task}{demos}'


def pilot_file(task: str, demos: int, pilots: Path) -> Path:
    """The cell's pilot curve: the committed copy (RESULTS/pilots) unless --pilots holds a newer run."""
    local = pilots / cell_name(task, demos) / 'pilot.json'
    return local if local.exists() else RESULTS / 'pilots' / f'{cell_name(task, demos)}.json'


def cell_status(task: str, demos: int, pilots: Path) -> dict:
    """The cell's training length from its pilot, or why it cannot run (yet)."""
    from noise_pilot import plateau
    path = pilot_file(task, demos, pilots)
    if not path.exists():
        return {'status': 'no pilot yet', 'steps': None}
    curve = json.loads(path.read_text())['curve']
    step = plateau(curve)
    if step is None:
        best = max((r['success_rate'] for r in curve), default=0.0)
        return {'status': f'pilot without a plateau yet (best {best:.0%} at {max(r["step"] for r in curve)} steps)',
                'steps': None}
    success = next(r['success_rate'] for r in curve if r['step'] == step)
    if not 0.10 <= success <= 0.95:
        return {'status': f'dropped: the pilot succeeds on {success:.0%} at its plateau', 'steps': None,
                'pilot_success': success}
    return {'status': 'in', 'steps': step, 'pilot_success': success}


def dataset(work: Path, pilots: Path, task: str, demos: int, data: str, quick: bool) -> Path:
    """The clean data is the pilot's own (scripted expert, seeds 10000..; made again from those seeds when
    --pilots lacks it); DART data is recorded under --work with the same count (seeds 20000..,
    ActionNoise 0.03 rad, labels dart)."""
    if data == 'clean' and not quick:
        path = pilots / cell_name(task, demos) / 'data.zarr'
        path.parent.mkdir(parents=True, exist_ok=True)
        make_dataset(path, task, demos)
        return path
    path = work / 'data' / f'{cell_name(task, demos)}_{data}.zarr'
    path.parent.mkdir(parents=True, exist_ok=True)
    if data == 'dart':
        make_dataset(path, task, demos, 20000, noise=COLLECTION_NOISE, labels='dart')
    else:
        make_dataset(path, task, demos)
    return path


def plan(cells: dict, arms, seeds: int, samplers) -> list:
    """Units (task, demos, arm, seed, sampler) in priority order: the registered DDIM-10 cell for
    every task first, then each further arm; DDPM-100 last (10x the evaluation cost)."""
    units = []
    for sampler in samplers:
        for arm in arms:
            if sampler == 'ddpm100' and arm != REGISTERED:
                continue
            for (task, demos), info in cells.items():
                if info['steps'] is None or (arm.data == 'dart' and (task, demos) != H5_CELL and not info.get('quick')):
                    continue
                units += [(task, demos, arm, seed, sampler) for seed in range(seeds)]
    return units


def unit_name(task, demos, arm, seed) -> str:
    return f'{cell_name(task, demos)}_{arm.name}_seed{seed}'


def eval_path(store: Path, task, demos, arm, seed, sampler, mode) -> Path:
    return store / 'evals' / f'{unit_name(task, demos, arm, seed)}_{sampler}_{mode}.json'


def run_unit(job) -> list[dict]:
    """Train the unit's model (resumable) and evaluate it in each of its modes; returns the rows."""
    (task, demos, arm, seed, sampler), cell, work, store, pilots, episodes, quick = job
    paths = [eval_path(store, task, demos, arm, seed, sampler, mode) for mode in arm.modes]
    import torch
    torch.set_num_threads(1)
    from ros2_imitation.policy import load_policy
    from ros2_imitation.policy.train import train
    from ros2_imitation.sim.evaluation import evaluate

    out = work / 'runs' / unit_name(task, demos, arm, seed)
    if (out / 'train.json').exists() and json.loads((out / 'train.json').read_text())['steps'] != cell['steps']:
        raise RuntimeError(f'{out} was trained {json.loads((out / "train.json").read_text())["steps"]} steps, '
                           f'the cell now needs {cell["steps"]}: move it (and its evaluations) aside')
    if not (out / 'train.json').exists():
        data = dataset(work, pilots, task, demos, arm.data, quick)
        start = time.monotonic()
        result = train(data, study_config(arm.sigma, arm.distribution, seed), out, steps=cell['steps'], **TRAIN,
                       checkpoint_every=None if quick else 2000, keep_checkpoints=1, resume=True, progress=False)
        record = json.dumps({'seconds': time.monotonic() - start, 'steps': cell['steps'],
                             'loss': result.train_loss, 'data': str(data.relative_to(ROOT) if data.is_relative_to(ROOT) else data)})
        (out / 'train.json').write_text(record)
        (store / 'trains').mkdir(parents=True, exist_ok=True)
        (store / 'trains' / f'{unit_name(task, demos, arm, seed)}.json').write_text(record)
    rows = []
    scheduler, steps, continuity = SAMPLERS[sampler]
    for mode, path in zip(arm.modes, paths):
        if not path.exists():
            policy = load_policy(out / 'policy', noise_mode=mode, inference_scheduler=scheduler,
                                 num_inference_steps=min(steps, 10) if quick else steps)
            summary = evaluate(policy, range(episodes), task=task, timeout=3.0 if quick else None,   # the task's own
                               batch=episodes, continuity=continuity, control_rate=CONTROL_RATE,
                               task_features=True)
            summary.pop('results')
            summary.update(cell=cell_name(task, demos), arm=arm.name, sigma=arm.sigma, seed=seed, mode=mode,
                           distribution=arm.distribution, data=arm.data, sampler=sampler,
                           train_steps=cell['steps'])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(summary, indent=1))
        rows.append(json.loads(path.read_text()))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='push_cube 4 demos, sigma 0.1 / 0 / DART, 2 seeds, 4 episodes of 3 s, no pilot')
    parser.add_argument('--work', type=Path, default=None, help='runs and evaluations (resumable)')
    parser.add_argument('--pilots', type=Path, default=ROOT / 'runs' / 'noise_pilot',
                        help="bench/noise_pilot.py's --work: the training lengths and clean datasets")
    parser.add_argument('--jobs', type=int, default=1, help='worker processes (one torch thread each)')
    parser.add_argument('--cells', nargs='+', default=None, help='only these cells, e.g. push_cube10')
    parser.add_argument('--arms', nargs='+', default=None, choices=[a.name for a in ARMS],
                        help='only these arms, in this order (default: all, in priority order)')
    parser.add_argument('--steps', type=int, default=200, help='--quick only: training steps')
    parser.add_argument('--seeds', type=int, default=None)
    parser.add_argument('--episodes', type=int, default=None)
    parser.add_argument('--report', action='store_true', help='run nothing; analyse what exists')
    parser.add_argument('--no-write', action='store_true', help='print, do not touch docs/')
    args = parser.parse_args(argv)
    quick = args.quick
    work = args.work or ROOT / 'runs' / ('noise_study_quick' if quick else 'noise_grid')
    work.mkdir(parents=True, exist_ok=True)
    store = work if quick else RESULTS
    seeds = args.seeds or (2 if quick else SEEDS)
    episodes = args.episodes or (4 if quick else EPISODES)
    if quick:
        cells = {('push_cube', 4): {'status': 'in', 'steps': args.steps, 'quick': True}}
        arms, samplers = (REGISTERED, SIGMA0, DART), ('ddim10', 'ddpm100')
    else:
        cells = {cell: cell_status(*cell, args.pilots) for cell in CELLS
                 if args.cells is None or cell_name(*cell) in args.cells}
        arms, samplers = ARMS, tuple(SAMPLERS)
        if args.arms:
            arms = tuple(next(a for a in ARMS if a.name == name) for name in args.arms)
    for cell, info in cells.items():
        print(f'{cell_name(*cell)}: {info["status"]}' + (f', {info["steps"]} training steps' if info['steps'] else ''))
    units = [] if args.report else plan(cells, arms, seeds, samplers)
    units = [u for u in units if not all(eval_path(store, *u, m).exists() for m in u[2].modes)]   # done before
    for task, demos, data in sorted({(u[0], u[1], u[2].data) for u in units}):
        dataset(work, args.pilots, task, demos, data, quick)     # here, not in two workers at once
    jobs = [(unit, cells[unit[:2]], work, store, args.pilots, episodes, quick) for unit in units]
    start = time.monotonic()
    from tqdm import tqdm
    bar = tqdm(total=len(jobs), desc='noise grid', unit='model')
    if args.jobs > 1 and jobs:
        import multiprocessing as mp
        with mp.get_context('spawn').Pool(args.jobs) as pool:
            for _ in pool.imap_unordered(run_unit, jobs):
                bar.update(1)
    else:
        for job in jobs:
            run_unit(job)
            bar.update(1)
    bar.close()
    print(f'wall time {time.monotonic() - start:.0f} s')
    from noise_analysis import analyse
    analyse(store, cells, seeds, quick=quick, write=not args.no_write)
    return 0


if __name__ == '__main__':
    sys.exit(main())
