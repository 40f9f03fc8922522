"""The noise study's pilot (docs/noise_study.md, "Training length: the pilot"): how long must a
state policy train before its success stops rising? sigma 0, checkpoints every --every steps, each
evaluated on --episodes pilot seeds (100000.., never used again in the study). Also the first look at
a task: a pilot that stays near 0 % says the policy cannot learn the task from that data at all.

State policies: the arm joints (+ the gripper opening) + the task's privileged state (cube xy, yaw,
goal xy; rollout.task_features), demonstrations from the scripted expert (seeds 10000..), position
control at 100 Hz. Resumable: the dataset and the training's checkpoints are files under --work; a
rerun continues where it stopped and re-evaluates nothing it has logged.

    python bench/noise_pilot.py --task pick_place --demos 100       # ~40 min on one core
    python bench/noise_pilot.py --task push_cube --demos 10
    python bench/noise_pilot.py --quick                             # the pipeline in ~2 minutes
Writes <work>/<task><demos>/pilot.json and its committed copy bench/results/noise_study/pilots/<task><demos>.json
(what the grid and this report read in a fresh checkout), docs/noise_pilot.png and the pilot section of
docs/noise_study.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402
from study_common import (CONTROL_RATE, PILOT_SEEDS, RESULTS, TASKS, TIMEOUT, TRAIN,  # noqa: E402
                          make_dataset, study_config)

ROOT = Path(__file__).resolve().parent.parent
STORE = RESULTS / 'pilots'


def pilot(task: str, demos: int, steps: int, every: int, episodes: int, work: Path, store: Path | None,
          action_space: str = 'joint', style: str | None = None) -> dict:
    import torch
    torch.set_num_threads(1)
    from ros2_imitation.policy.train import train
    from ros2_imitation.sim.evaluation import evaluate

    # an end-effector pilot learns from the same demonstrations (their state_ee/action_ee) in a folder
    # of its own; another expert style (--expert-style) records demonstrations of its own
    demos_name = f'{task}{demos}' + (f'_{style}' if style else '')
    name = demos_name + ('_ee' if action_space == 'ee' else '')
    out = work / name
    out.mkdir(parents=True, exist_ok=True)
    data_path = work / demos_name / 'data.zarr'
    data = make_dataset(data_path, task, demos, style=style)
    config = study_config(action_space=action_space)
    if action_space == 'ee' and not (data_path / 'data' / config.action_key).exists():
        raise SystemExit(f'{data_path} has no {config.action_key} (made before the end-effector streams were '
                         'recorded): move it away and run again to record it anew')
    curve_path = out / 'pilot.json'
    curve = json.loads(curve_path.read_text())['curve'] if curve_path.exists() else []
    done = {row['step'] for row in curve}

    def save(summary: dict) -> None:
        curve_path.write_text(json.dumps(summary, indent=1))
        if store is not None:
            store.mkdir(parents=True, exist_ok=True)
            (store / f'{name}.json').write_text(json.dumps(summary, indent=1) + '\n')

    def eval_fn(policy, step):
        if step in done:
            return None
        result = evaluate(policy, range(PILOT_SEEDS, PILOT_SEEDS + episodes), task=task,
                          timeout=TIMEOUT.get(task), batch=episodes, control_rate=CONTROL_RATE, task_features=True)
        row = {'step': step, 'success_rate': result['success_rate'], 'ci95': result['ci95'],
               'eval_s': round(result['wall_s'], 1)}
        if 'mean_max_coverage' in result:      # push_t: graded progress below the success line
            row['mean_max_coverage'] = round(result['mean_max_coverage'], 3)
        curve.append(row)
        save({'task': task, 'action_space': action_space, 'data': data, 'steps': steps, 'curve': curve})
        print(f'step {step}: success {result["success_rate"]:.2f}', flush=True)
        return {'pilot_success': result['success_rate']}

    start = time.monotonic()
    train(data_path, config, out / 'run', steps=steps, **TRAIN,
          checkpoint_every=every, keep_checkpoints=1, eval_fn=eval_fn, resume=True, progress=True)
    summary = {'task': task, 'action_space': action_space, 'data': data, 'steps': steps, 'curve': curve,
               'train_eval_s_this_run': round(time.monotonic() - start)}
    save(summary)
    return summary


def plateau(curve, rise: float = 0.05, minimum: int = 10000):
    """The registered rule: the first checkpoint (>= minimum steps) after which success rises by less
    than `rise` over the next two checkpoints; None if the curve does not show one yet."""
    rows = sorted(curve, key=lambda r: r['step'])
    for i, row in enumerate(rows[:-2]):
        if row['step'] >= minimum and max(r['success_rate'] for r in rows[i + 1:i + 3]) - row['success_rate'] < rise:
            return row['step']
    return None


def report(summaries, args) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    lines = ['| task | demos | expert success | checkpoints: step -> success on the pilot seeds | plateau |',
             '|---|---|---|---|---|']
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for s in summaries:
        rows = sorted(s['curve'], key=lambda r: r['step'])
        points = ', '.join(f'{r["step"] / 1000:g}k: {r["success_rate"]:.2f}'
                           + (f' (coverage {r["mean_max_coverage"]:.2f})' if 'mean_max_coverage' in r else '')
                           for r in rows)
        stop = plateau(rows, minimum=0 if args.quick else 10000)
        marks = ([f'{s["data"]["style"]} expert'] if s['data'].get('style') else []) + \
            (['end-effector actions'] if s.get('action_space') == 'ee' else [])
        task = s['task'] + (f' ({", ".join(marks)})' if marks else '')
        lines.append(f'| {task} | {s["data"]["demos"]} | {s["data"]["expert_success"]:.2f} | {points} | '
                     f'{stop if stop is not None else "not yet"} |')
        if rows:
            ax.plot([r['step'] for r in rows], [r['success_rate'] for r in rows], 'o-',
                    label=f'{task}, {s["data"]["demos"]} demos')
    ax.set(xlabel='training step', ylabel=f'success ({args.episodes} pilot seeds)', ylim=(-0.02, 1.02),
           title='Noise study pilot: sigma 0 state policies')
    ax.legend()
    fig.tight_layout()
    if not args.quick:
        fig.savefig(ROOT / 'docs' / 'noise_pilot.png', dpi=110)
        body = '\n'.join(lines) + ('\n\nEach row: `python bench/noise_pilot.py --task <task> --demos <demos>` '
                                   '(resumable; a row that stops short of 20k is a pilot still to finish). '
                                   'State policies (sigma 0, DDIM-10, inpainting continuity), position control '
                                   'at 100 Hz; the plot is `noise_pilot.png`. The learning rate follows one cosine '
                                   'schedule to --steps: a curve that has not reached its plateau needs a longer '
                                   'run in a fresh --work folder, not a resumed one. A row marked "end-effector '
                                   'actions" (`--action-space ee`) learnt from the same demonstrations as the task\'s '
                                   'joint row, seeing and commanding the tip pose (position + 6D rotation) instead of '
                                   'the joints; its chunks go through the controller\'s IK. A row marked "reactive expert" '
                                   '(`--expert-style reactive`) learnt from demonstrations of the push_t expert\'s '
                                   'reactive style (sim/experts_push_t.py), recorded on the same seeds.')
        write_section('noise_pilot', 'Results: the pilot', body, doc=ROOT / 'docs' / 'noise_study.md')
    plt.close(fig)
    print('\n'.join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--task', action='append', choices=TASKS, help='repeatable')
    parser.add_argument('--demos', type=int, action='append', help='repeatable; every task gets each size')
    parser.add_argument('--action-space', choices=('joint', 'ee'), default='joint',
                        help='ee: the policy sees and commands the tip pose (the same demonstrations)')
    parser.add_argument('--expert-style', default=None,
                        help="the expert's style (push_t: phased, the default, or reactive); its own demonstrations")
    parser.add_argument('--steps', type=int, default=20000)
    parser.add_argument('--every', type=int, default=2000)
    parser.add_argument('--episodes', type=int, default=50)
    parser.add_argument('--work', type=Path, default=ROOT / 'runs' / 'noise_pilot')
    parser.add_argument('--quick', action='store_true', help='2 demos, 200 steps, 4 episodes, a scratch --work')
    parser.add_argument('--report', action='store_true', help='run nothing: rewrite the section from --work')
    args = parser.parse_args(argv)
    tasks, sizes = args.task or ['pick_place'], args.demos or [100]
    if args.quick:
        tasks, sizes, args.steps, args.every, args.episodes = ['push_cube'], [2], 200, 100, 4
        args.work = args.work.parent / 'noise_pilot_quick'
    if not args.report:
        for t in tasks:
            for n in sizes:
                pilot(t, n, args.steps, args.every, args.episodes, args.work, None if args.quick else STORE,
                      args.action_space, args.expert_style)
    # the section shows every pilot kept (committed, or under --work when quick), not only this command's
    kept = sorted(args.work.glob('*/pilot.json')) if args.quick else sorted(STORE.glob('*.json'))
    summaries = [json.loads(p.read_text()) for p in kept]
    report(summaries, args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
