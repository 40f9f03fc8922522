"""The shipped push_t policy beside Diffusion Policy's Push-T table (docs/benchmarks.md, `push_t_model`).

Evaluates a push_t policy in process (sim + chunk controller + the policy's end-effector chunks
through the IK, 500 Hz control as the sim graphs) on held-out seeds, twice on the same seeds: with
test-time noise injection as shipped (`replica`) and without it (`train_only`), so the two are paired
episode by episode (McNemar's exact test on success, a sign test on each episode's best coverage). Reports success (coverage >= 0.95), mean max coverage, and
Diffusion Policy's Push-T score (the mean of each episode's best min(1, coverage / 0.95)), beside the
figures Diffusion Policy and LeRobot publish.

    python bench/push_t_model.py --model models/push_t --episodes 50     # ~10 min on 2 cores
Writes <model>/eval_seeds_<a>-<b>[_train_only].json (an existing one for the same seeds is reused:
delete it to evaluate again) and the push_t_model section of docs/benchmarks.md.
"""
import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402
from study_common import paired_exact  # noqa: E402

# Published Push-T figures (max over checkpoints / mean of the last checkpoints, of the Push-T score)
PUBLISHED = [
    ('Diffusion Policy (CNN), state', '0.95 / 0.91', '2D Push-T, 200 human demonstrations, GPU, thousands of epochs'),
    ('Diffusion Policy (CNN), image', '0.91 / 0.84', 'the same, 96x96 image + agent position, ResNet-18'),
    ('LeRobot diffusion, image', '63.8 % success', 'LeRobot\'s pusht checkpoint, success rate'),
]


def run_eval(job) -> dict:
    model, seeds, noise_mode, out = job
    if Path(out).exists():
        done = json.loads(Path(out).read_text())
        if done.get('seeds') == list(seeds) and done.get('noise_mode_evaluated') == noise_mode:
            return done
    import torch
    torch.set_num_threads(1)
    from ros2_imitation.policy import load_policy
    from ros2_imitation.sim.evaluation import evaluate
    policy = load_policy(model, noise_mode=noise_mode)
    summary = evaluate(policy, seeds, task='push_t', batch=10)
    results = summary.pop('results')
    summary.update(model=str(model), noise_mode_evaluated=noise_mode,
                   outcomes=[bool(r.success) for r in results])
    Path(out).write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', type=Path, default=Path('models/push_t'))
    parser.add_argument('--episodes', type=int, default=50)
    parser.add_argument('--seed', type=int, default=0, help='first held-out seed')
    parser.add_argument('--graph', type=Path, default=None,
                        help='a `demo --task push_t --json` summary to quote (through the full ROS graph)')
    parser.add_argument('--dataset', type=Path, default=None,
                        help='the zarr the model was trained on, to name its demonstrations')
    args = parser.parse_args(argv)
    seeds = list(range(args.seed, args.seed + args.episodes))
    tag = f'eval_seeds_{seeds[0]}-{seeds[-1]}'
    saved = json.loads((args.model / 'config.json').read_text())
    noisy = saved['config'].get('noise_sigma', 0.0) > 0
    modes = (('replica', ''), ('train_only', '_train_only')) if noisy else (('off', '_off'),)
    jobs = [(str(args.model), seeds, mode, args.model / f'{tag}{suffix}.json') for mode, suffix in modes]
    with ProcessPoolExecutor(len(jobs)) as pool:
        evals = list(pool.map(run_eval, jobs))
    graph = [graph_row(json.loads(args.graph.read_text()))] if args.graph else []
    body = paired_body(evals, seeds, graph) if noisy else one_body(evals[0], seeds, graph)
    body += '\n\n' + differences(saved, args.dataset)
    print(body)
    write_section('push_t_model', 'push_t: the shipped policy beside Diffusion Policy\'s Push-T', body)
    return 0


def published_rows() -> list:
    rows = ['| policy | Push-T score (max / mean) | success (coverage >= 0.95) | setting |', '|---|---|---|---|']
    return rows + [f'| {name} | {score} | | {setting} |' if 'success' not in score else
                   f'| {name} | | {score} | {setting} |' for name, score, setting in PUBLISHED]


def our_row(s: dict, label: str, n: int) -> str:
    low, high = s['ci95']
    return (f'| **ours**, image + tip pose, {label} | {s["push_t_score"]:.2f} (one model) | '
            f'**{sum(s["outcomes"])}/{n}** ({low:.0%}-{high:.0%}), mean max coverage '
            f'{s["mean_max_coverage"]:.3f} | 3D Panda, {n} held-out seeds |')


def graph_row(g: dict) -> str:
    """The row of a `demo --task push_t --json` summary (through the full ROS graph)."""
    wins = sum(e['success'] for e in g['per_episode'])
    return (f'| **ours** through the full ROS graph (`demo --task push_t`) | | {wins}/{g["episodes"]}, latency '
            f'p50 {g["latency_p50_ms"]:.0f} ms | separate processes over DDS, real time, seeds '
            f'{g["seeds"][0]}-{g["seeds"][-1]} |')


def one_body(s: dict, seeds: list, graph: list) -> str:
    """A model trained without observation noise: one evaluation (test-time noise does not apply)."""
    rows = published_rows() + [our_row(s, 'trained without observation noise', len(seeds))] + graph
    return '\n'.join(rows) + f"""

Mean episode {s['mean_duration_s']:.1f} s (timeout 60 s); {s['chunks_rejected']} chunks were refused by the
controller's IK (of about 75 chunks an episode sends), each episode going on as on the robot."""


def paired_body(evals: list, seeds: list, graph: list) -> str:
    shipped, plain = evals
    only_r, only_t, p = paired_exact(shipped['outcomes'], plain['outcomes'])
    import numpy as np
    diff = np.array(shipped['best_coverage']) - np.array(plain['best_coverage'])
    half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
    more_r, more_t, p_cover = paired_exact(shipped['best_coverage'], plain['best_coverage'])
    rows = published_rows()
    sigma = shipped.get('noise_sigma', 0.0)
    rows += [our_row(shipped, f'test-time noise (replica, sigma {sigma:g})', len(seeds)),
             our_row(plain, 'the same model, no test-time noise (train_only)', len(seeds))] + graph
    body = '\n'.join(rows) + f"""

Paired on the same {len(seeds)} seeds: replica alone succeeded on {only_r}, no-noise alone on {only_t}
(McNemar exact p = {p:.2f}). Best coverage, replica minus no noise, per seed: mean {diff.mean():+.3f}
(95 % interval {diff.mean() - half:+.3f} to {diff.mean() + half:+.3f}); replica higher on {more_r} seeds,
no noise on {more_t} (sign test p = {p_cover:.3g}). One model and one task: an observation for the noise
study (docs/noise_study.md), not its registered test. Mean episode {shipped['mean_duration_s']:.1f} s
(timeout 60 s); {shipped['chunks_rejected']} + {plain['chunks_rejected']} chunks were refused by the
controller's IK (of about 75 chunks an episode sends), each episode going on as on the robot."""
    return body


def demonstrations(dataset: Path | None) -> str:
    """What the model learnt from, read from its dataset's metadata (sim-dataset writes it)."""
    if dataset is None:
        return 'a scripted expert (models/README.md gives the dataset)'
    import zarr
    meta = zarr.open_group(str(dataset), mode='r')['meta']
    episodes = meta.attrs.get('episodes', [])
    kept = int(meta['episode_ends'].shape[0])
    seeds = [e['seed'] for e in episodes]
    style = meta.attrs.get('expert_style')
    span = f', seeds {min(seeds)}-{max(seeds)}' if seeds else ''
    return (f'a scripted expert{f" in its {style} style" if style else ""} ({kept} successful of '
            f'{len(episodes) or kept}{span})')


def differences(saved: dict, dataset: Path | None) -> str:
    steps = saved.get('metadata', {}).get('step')
    return f"""What differs from Diffusion Policy's Push-T: ours is a 7-joint arm pushing a 3 cm high T block on a
table in MuJoCo (contact, friction, the fingers' footprint), with end-effector actions (tip position and
6D rotation) through the controller's IK at 500 Hz; theirs is a 2D point pusher in pymunk. Our
demonstrations come from {demonstrations(dataset)}, theirs from 200 human
demonstrations; our policy is a 5 M-parameter U-Net with a small ResNet encoder trained on a 2-core CPU
for {f"{steps:,}".replace(",", " ") if steps else "?"} steps, theirs ResNet-18 trained on a GPU for thousands of epochs. Their score is max / mean
over checkpoints; ours is the one shipped checkpoint (the EMA weights at the last step)."""


if __name__ == '__main__':
    sys.exit(main())
