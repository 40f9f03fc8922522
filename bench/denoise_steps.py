"""Success against the number of denoising steps: DDIM 2/4/6/10/16 and DDPM-100 on held-out seeds.

For every shipped model (models/*/): closed-loop success over seeded in-process episodes (the seeds
0..N-1 the models never saw in training) and the policy's time per chunk at batch 1 on this CPU, for
each sampler setting. The knee is the fewest DDIM steps whose success is within one episode of the
best setting's. Writes the `denoise_steps` section of docs/benchmarks.md and docs/denoise_steps.png;
every evaluation is kept in runs/denoise_steps/ (resumable).
"""
import argparse
import json
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'bench'))
from report import write_section  # noqa: E402

SETTINGS = [('ddim', 2), ('ddim', 4), ('ddim', 6), ('ddim', 10), ('ddim', 16), ('ddpm', 100)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--episodes', type=int, default=50)
    parser.add_argument('--quick', action='store_true', help='10 episodes, DDIM 2 and 10 only')
    parser.add_argument('--work', default=str(ROOT / 'runs' / 'denoise_steps'))
    parser.add_argument('--report-only', action='store_true',
                        help='write the section from the evaluations already in --work (a run cut short)')
    parser.add_argument('--time-only', action='store_true',
                        help='re-measure only the time per chunk (e.g. on a quiet machine) for saved evaluations')
    args = parser.parse_args(argv)
    import torch
    from tqdm import tqdm

    from ros2_imitation.policy import load_policy
    from ros2_imitation.runtime.runner import chunk_time_ms
    from ros2_imitation.sim.evaluation import evaluate
    torch.set_num_threads(2)
    settings = [('ddim', 2), ('ddim', 10)] if args.quick else SETTINGS
    episodes = 10 if args.quick else args.episodes
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = {}
    models = sorted(p.parent for p in (ROOT / 'models').glob('*/config.json'))
    for model in models:
        for kind, steps in tqdm(settings, desc=f'{model.name} samplers', unit='setting'):
            out = work / f'{model.name}_{kind}{steps}_{episodes}.json'
            if args.report_only and not out.exists():
                continue
            if args.time_only and out.exists():
                summary = json.loads(out.read_text())
                summary['chunk_ms'] = chunk_time_ms(load_policy(model, inference_scheduler=kind, num_inference_steps=steps))
                out.write_text(json.dumps(summary, indent=2))
            if not out.exists():
                policy = load_policy(model, inference_scheduler=kind, num_inference_steps=steps)
                task = json.loads((model / 'config.json').read_text()).get('metadata', {}).get('task', 'push_cube')
                summary = evaluate(policy, range(episodes), task=task, batch=10)
                summary.pop('results')
                summary['chunk_ms'] = chunk_time_ms(policy)
                out.write_text(json.dumps(summary, indent=2))
            rows[(model.name, kind, steps)] = json.loads(out.read_text())
    lines = ['| model | sampler | steps | success | 95% CI | mean episode (s) |', '|---|---|---|---|---|---|']
    knees = {}
    for model in models:
        mine = {k: v for k, v in rows.items() if k[0] == model.name}
        best = max(r['success_rate'] for r in mine.values())
        ddim = sorted((k[2], r) for k, r in mine.items() if k[1] == 'ddim')
        knee = next((s for s, r in ddim if r['success_rate'] >= best - 1.0 / episodes - 1e-9), None)
        knees[model.name] = knee
        for (name, kind, steps), r in mine.items():
            mark = ' (knee)' if kind == 'ddim' and steps == knee else ''
            lines.append(f'| {name} | {kind.upper()} | {steps}{mark} | {r["success_rate"]:.0%} '
                         f'({round(r["success_rate"] * r["episodes"])}/{r["episodes"]}) | '
                         f'{r["ci95"][0]:.0%}-{r["ci95"][1]:.0%} | {r["mean_duration_s"]:.1f} |')
    for model in models:   # the shipped evaluation (its own batch setting), for reference
        for shipped in sorted(model.glob('eval_seeds_*.json')):
            r = json.loads(shipped.read_text())
            lines.append(f'| {model.name} | {r["scheduler"].upper()} (shipped default, `{shipped.name}`, '
                         f'batch {r.get("batch", 1)}) | {r["inference_steps"]} | {r["success_rate"]:.0%} '
                         f'({len(r["successes"])}/{r["episodes"]}) | {r["ci95"][0]:.0%}-{r["ci95"][1]:.0%} | '
                         f'{r["mean_duration_s"]:.1f} |')
    plot = ROOT / 'docs' / ('denoise_steps_quick.png' if args.quick else 'denoise_steps.png')
    _plot(rows, models, plot)
    missing = [f'{k.upper()}-{n}' for k, n in settings if not any(key[1:] == (k, n) for key in rows)]
    body = ((f'Not measured in this run (cut short): {", ".join(missing)}. ' if missing else '') +
            f'Held-out seeds 0-{episodes - 1}, in-process closed loop (`sim/evaluation.py`, batches of 10), '
            f'inpaint continuity. Time per chunk is steps x one U-Net forward (the policy_latency section); '
            f'`chunk_ms` in each saved evaluation is only comparable within a quiet run. Knee: the fewest DDIM '
            f'steps within one episode of the best setting.\n\n' + '\n'.join(lines) +
            f'\n\nKnee per model: {knees}. ![success vs steps]({plot.name})\n')
    write_section('denoise_steps', 'Denoising steps: success against DDIM steps and DDPM-100', body)
    print('\n'.join(lines))
    return 0


def _plot(rows, models, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for model in models:
        pts = sorted((k[2], r['success_rate'], r['chunk_ms']) for k, r in rows.items()
                     if k[0] == model.name and k[1] == 'ddim')
        ax.plot([p[0] for p in pts], [p[1] for p in pts], 'o-', label=f'{model.name} DDIM')
        ddpm = [r['success_rate'] for k, r in rows.items() if k[0] == model.name and k[1] == 'ddpm']
        if ddpm:
            ax.axhline(ddpm[0], ls='--', lw=1, label=f'{model.name} DDPM-100')
    ax.set_xlabel('DDIM steps')
    ax.set_ylabel('success (held-out seeds)')
    ax.set_ylim(0, 1.05)
    ax.legend(loc='lower right')
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == '__main__':
    raise SystemExit(main())
