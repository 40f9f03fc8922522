"""Chunk continuity: execute-then-replan vs temporal ensembling vs inpainting, with the shipped model.

In-process sim + chunk controller + policy (ros2_imitation.sim.evaluation), the same seeds for each
mode; `--latency` pretends inference takes that long (what the full graph shows on this CPU), so
actions due before it are dropped and, with inpaint, frozen. Success and the arm's RMS jerk.
Writes the `continuity` section of docs/benchmarks.md.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODES = (('replan', 'replan (execute, then the controller switches)'),
         ('ensemble', 'ensemble (temporal ensembling, ACT weights k = 0.01)'),
         ('inpaint', 'inpaint (new chunk denoised with its first actions held to the running one)'))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default=str(ROOT / 'models' / 'push_cube'))
    parser.add_argument('--episodes', type=int, default=20)
    parser.add_argument('--seed', type=int, default=100)
    parser.add_argument('--latency', type=float, default=0.25)
    parser.add_argument('--quick', action='store_true', help='5 episodes per mode')
    args = parser.parse_args()
    import torch

    from ros2_imitation.policy import load_policy
    from ros2_imitation.sim.evaluation import evaluate
    episodes = 5 if args.quick else args.episodes
    policy = load_policy(args.model)
    rows = []
    for mode, label in MODES:
        r = evaluate(policy, range(args.seed, args.seed + episodes), continuity=mode, latency=args.latency,
                     batch=episodes)
        print(mode, f"{len(r['successes'])}/{r['episodes']}", f"jerk {r['rms_jerk']:.1f}", f"{r['wall_s']:.0f} s")
        rows.append((mode, label, r))
    best = min((r['rms_jerk'], mode) for mode, _, r in rows if r['success_rate'] == max(x['success_rate'] for *_, x in rows))[1]
    table = ['| continuity | success | RMS jerk of the arm (rad/s^3) |', '|---|---|---|']
    for mode, label, r in rows:
        mark = '**' if mode == best else ''
        table.append(f"| {mark}{label}{mark} | {len(r['successes'])}/{r['episodes']} | {r['rms_jerk']:.1f} |")
    body = (f'`{Path(args.model).name}`, {episodes} episodes per mode (seeds {args.seed}-{args.seed + episodes - 1}), '
            f'pretended inference latency {args.latency:g} s, torch {torch.__version__} on CPU. The smoothest of '
            f'the most successful modes is in bold; `policy_node` defaults to `inpaint`.\n\n' + '\n'.join(table))
    write_section('continuity', 'Chunk continuity: replan vs temporal ensembling vs inpainting', body)


if __name__ == '__main__':
    main()
