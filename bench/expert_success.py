"""How often a task's scripted expert succeeds, in process (sim + chunk controller + the expert), on
seeds its constants were not tuned on: what a dataset from `sim-dataset` can hold, and whether the
task is solvable at the rate the sim graphs control at.

    python bench/expert_success.py --task push_t --episodes 50 --seed 10000      # ~6 min
    python bench/expert_success.py --task push_t --style reactive
Prints success, mean episode length, the mean best coverage (push_t), the pushes per episode and the
modes drawn, and writes the `expert_<task>` section of docs/benchmarks.md (`expert_<task>_<style>`
for a style other than the expert's default).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--task', default='push_t')
    parser.add_argument('--episodes', type=int, default=50)
    parser.add_argument('--seed', type=int, default=10000)
    parser.add_argument('--rate', type=float, default=500.0, help='control rate (Hz); the sim graphs run 500')
    parser.add_argument('--style', default=None, help="the expert's style (default its first; push_t: phased, reactive)")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    from ros2_imitation.sim.experts import make_expert
    from ros2_imitation.sim.rollout import ExpertAgent, Rollout
    rollout = Rollout(task=args.task, render=False, control_rate=args.rate)
    expert = make_expert(args.task, rollout.sim.model, style=args.style)
    agent = ExpertAgent(expert)
    wins, durations, best, modes, pushes, start = 0, [], [], {}, [], time.monotonic()
    for seed in tqdm(range(args.seed, args.seed + args.episodes), desc=f'{args.task} expert', unit='episode'):
        result = rollout.run(agent, seed, rollout.sim.task.timeout)
        wins += result.success
        durations.append(result.duration)
        best.append(np.nan if result.best_coverage is None else result.best_coverage)
        modes[expert.mode] = modes.get(expert.mode, 0) + 1
        pushes.append(expert.progress().get('pushes', np.nan))
    lines = [f'- success: **{wins}/{args.episodes}** (seeds {args.seed}-{args.seed + args.episodes - 1}, '
             f'control {args.rate:g} Hz, timeout {rollout.sim.task.timeout:g} s)',
             f'- mean episode: {np.mean(durations):.1f} s',
             f'- style: {expert.style}',
             f'- modes drawn: {", ".join(f"{m} {n}" for m, n in sorted(modes.items()))}']
    if not np.all(np.isnan(best)):
        lines.insert(2, f'- mean best coverage: {np.nanmean(best):.3f}')
    if not np.all(np.isnan(pushes)):
        lines.insert(3, f'- pushes per episode: {np.nanmean(pushes):.1f} (mean)')
    lines.append(f'- wall time: {time.monotonic() - start:.0f} s')
    body = '\n'.join(lines)
    print(body)
    default = expert.style == expert.STYLES[0]
    write_section(f'expert_{args.task}' + ('' if default else f'_{expert.style}'),
                  f'The {args.task} scripted expert' + ('' if default else f' ({expert.style} style)'), body)
    return 0


if __name__ == '__main__':
    sys.exit(main())
