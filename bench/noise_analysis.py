"""The noise study's registered analysis (docs/noise_study.md, "Analysis"), over the evaluation files
bench/noise_study.py keeps (committed, bench/results/noise_study/evals): McNemar's exact test on paired
episodes (the same model seed and the same episode seed in both arms), the per-seed paired
difference with a t interval over training seeds, Holm over each task's secondary family, the
smallest detectable effect, the verdicts by the registered rules, and the plot. Writes the
`noise_results` section of docs/noise_study.md.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from study_common import detectable_effect, holm, paired_exact, t_interval

ROOT = Path(__file__).resolve().parent.parent
ALPHA = 0.05


def load(store: Path, steps: dict) -> dict:
    """(cell, arm, seed, sampler, mode) -> {episode seed: success}, for the models trained exactly as
    long as their cell's plateau (`steps`: cell name -> training steps); others are left out."""
    table = {}
    for path in sorted((store / 'evals').glob('*.json')):
        row = json.loads(path.read_text())
        if row['train_steps'] != steps.get(row['cell']):
            continue
        wins = set(row['successes'])
        table[row['cell'], row['arm'], row['seed'], row['sampler'], row['mode']] = \
            {s: s in wins for s in row['seeds']}
    return table


def outcomes(table, cell, arm, mode, sampler='ddim10') -> dict:
    """model seed -> {episode seed: success} for one arm of one cell."""
    return {k[2]: v for k, v in table.items() if k[0] == cell and k[1] == arm and k[3] == sampler and k[4] == mode}


def compare(a: dict, b: dict) -> dict | None:
    """a against b over the model seeds and episode seeds both have: McNemar and the seed-level
    interval of the success difference (a - b)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    xs, ys, diffs = [], [], []
    for s in seeds:
        episodes = sorted(set(a[s]) & set(b[s]))
        xs += [a[s][e] for e in episodes]
        ys += [b[s][e] for e in episodes]
        diffs.append(np.mean([a[s][e] for e in episodes]) - np.mean([b[s][e] for e in episodes]))
    only_a, only_b, p = paired_exact(xs, ys)
    mean, low, high = t_interval(diffs)
    return {'seeds': len(seeds), 'pairs': len(xs), 'rate_a': float(np.mean(xs)), 'rate_b': float(np.mean(ys)),
            'only_a': only_a, 'only_b': only_b, 'p': p, 'diff': mean, 'low': low, 'high': high,
            'per_seed': diffs, 'seed_sd': float(np.std(diffs, ddof=1)) if len(diffs) > 1 else float('nan')}


def gap(table, cell, arm, sampler='ddim10') -> dict:
    """model seed -> {episode: replica - train_only} (-1, 0 or 1): the H1 effect, episode by episode."""
    rep, plain = outcomes(table, cell, arm, 'replica', sampler), outcomes(table, cell, arm, 'train_only', sampler)
    return {s: {e: int(rep[s][e]) - int(plain[s][e]) for e in set(rep[s]) & set(plain[s])}
            for s in set(rep) & set(plain)}


def verdict(c: dict | None, p: float, needed: int) -> str:
    """The registered rule: supported only if the test rejects AND the seed-level interval excludes 0
    in the same direction; contradicted if both point the other way."""
    if c is None:
        return 'not run'
    if c['seeds'] < needed:
        return f'incomplete ({c["seeds"]}/{needed} seeds)'
    if p < ALPHA and c['low'] > 0:
        return '**supported**'
    if p < ALPHA and c['high'] < 0:
        return '**contradicted** (it hurts)'
    return 'not supported (no difference shown)'


def fmt(c: dict) -> str:
    ci = '' if np.isnan(c['low']) else f' [{c["low"]:+.1%}, {c["high"]:+.1%}]'
    return f'{c["diff"]:+.1%}{ci}'


def secondary(table, cell: str) -> list[tuple]:
    """(name, comparison) of the secondary family of `cell` (DDIM-10 unless named)."""
    from noise_study import ARMS, DART, REGISTERED, SIGMA0
    rows = []
    for arm in ARMS:
        if arm.sigma > 0 and arm != REGISTERED:
            rows.append((f'H1 at {arm.name}: replica - train_only',
                         compare(outcomes(table, cell, arm.name, 'replica'), outcomes(table, cell, arm.name, 'train_only'))))
    rows.append(('H1 with DDPM-100, replan: replica - train_only',
                 compare(outcomes(table, cell, REGISTERED.name, 'replica', 'ddpm100'),
                         outcomes(table, cell, REGISTERED.name, 'train_only', 'ddpm100'))))
    rows.append((f'H2: train_only at {REGISTERED.name} - sigma 0',
                 compare(outcomes(table, cell, REGISTERED.name, 'train_only'), outcomes(table, cell, SIGMA0.name, 'off'))))
    rows.append(('H3: the H1 gap under uniform0.35 - under gauss0.1',
                 compare(gap(table, cell, 'uniform0.35'), gap(table, cell, REGISTERED.name))))
    rows.append(('H5: DART-labelled noisy demonstrations - clean (sigma 0)',
                 compare(outcomes(table, cell, DART.name, 'off'), outcomes(table, cell, SIGMA0.name, 'off'))))
    if cell == 'pick_place25':
        rows.append(('H4: the H1 gap with 25 demonstrations - with 100',
                     compare(gap(table, 'pick_place25', REGISTERED.name), gap(table, 'pick_place100', REGISTERED.name))))
    return [(name, c) for name, c in rows if c is not None]


def compute_hours(store: Path) -> tuple[float, int, int]:
    records = [json.loads(p.read_text()) for p in (store / 'trains').glob('*.json')]
    trains = [r['seconds'] - r.get('stopped_s', 0) for r in records]     # less any time it was stopped
    evals = [json.loads(p.read_text())['wall_s'] for p in (store / 'evals').glob('*.json')]
    return (sum(trains) + sum(evals)) / 3600, len(trains), len(evals)


def analyse(store: Path, cells: dict, needed: int, quick: bool = False, write: bool = True) -> str:
    """`store`: where the evaluations and trainings are kept; `needed`: the training seeds a cell needs
    before its verdict counts."""
    from noise_study import REGISTERED, cell_name
    table = load(store, {cell_name(*cell): info['steps'] for cell, info in cells.items()})
    hours, n_train, n_eval = compute_hours(store)
    lines = [f'Results kept in `{store.relative_to(ROOT) if store.is_relative_to(ROOT) else store}`: {n_train} models '
             f'trained, {n_eval} evaluations, {hours:.1f} single-core hours.', '',
             '| cell | training length (pilot plateau) | status |', '|---|---|---|']
    for cell, info in cells.items():
        steps = f'{info["steps"]} steps' + (f' (pilot {info["pilot_success"]:.0%})' if 'pilot_success' in info else '')
        lines.append(f'| {cell_name(*cell)} | {steps if info["steps"] else "-"} | {info["status"]} |')
    lines += ['', f'**H1, the primary test** ({REGISTERED.name}, DDIM-10, inpainting; the same models and episode '
              'seeds in both arms; per-seed difference with a t interval over training seeds):', '',
              '| cell | seeds x episodes | replica | train_only | replica only / train_only only | McNemar p | '
              'replica - train_only per seed [95 %] | detectable with 80 % power (pairs / seeds) | verdict |',
              '|---|---|---|---|---|---|---|---|---|']
    primary = {}
    for cell in cells:
        name = cell_name(*cell)
        c = compare(outcomes(table, name, REGISTERED.name, 'replica'), outcomes(table, name, REGISTERED.name, 'train_only'))
        if c is None:
            lines.append(f'| {name} | 0 | | | | | | | not run |')
            continue
        primary[name] = c
        pairs_mde, seed_mde = detectable_effect((c['only_a'] + c['only_b']) / c['pairs'], c['pairs'], c['seed_sd'], c['seeds'])
        lines.append(f'| {name} | {c["seeds"]} x {c["pairs"] // c["seeds"]} | {c["rate_a"]:.1%} | {c["rate_b"]:.1%} | '
                     f'{c["only_a"]} / {c["only_b"]} | {c["p"]:.3g} | {fmt(c)} | {pairs_mde:.1%} / {seed_mde:.1%} | '
                     f'{verdict(c, c["p"], needed)} |')
    lines += ['', '**Secondary tests** (Holm-corrected within each task):', '',
              '| cell | comparison | seeds | a / b | a only / b only | p (Holm) | a - b per seed [95 %] | verdict |',
              '|---|---|---|---|---|---|---|---|']
    for task in sorted({t for t, _ in cells}):
        family = [(cell_name(*cell), name, c) for cell in cells if cell[0] == task
                  for name, c in secondary(table, cell_name(*cell))]
        adjusted = holm([c['p'] for _, _, c in family])
        for (cell, name, c), p_adj in zip(family, adjusted):
            rates = f'{c["rate_a"]:.1%} / {c["rate_b"]:.1%}' if not name.startswith(('H3', 'H4')) else 'gaps'
            lines.append(f'| {cell} | {name} | {c["seeds"]} | {rates} | {c["only_a"]} / {c["only_b"]} | '
                         f'{c["p"]:.3g} ({p_adj:.3g}) | {fmt(c)} | {verdict(c, p_adj, needed)} |')
    body = '\n'.join(lines)
    print(body)
    if write:
        from report import write_section
        png = 'noise_study_quick.png' if quick else 'noise_results.png'
        plot(table, [cell_name(*c) for c in cells], ROOT / 'docs' / png)
        if quick:
            write_section('noise_study_quick', 'Noise study grid (quick: the pipeline on a tiny budget)',
                          body + f'\n\n![noise study]({png})')
        else:
            write_section('noise_results', 'Results: the grid', body + f'\n\n![noise study]({png})',
                          doc=ROOT / 'docs' / 'noise_study.md')
    return body


def plot(table, cells: list[str], path: Path) -> None:
    """Per cell: success per arm and mode (dots: training seeds; bar: their mean and t interval), and
    the per-seed paired difference replica - train_only."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from noise_study import ARMS
    cells = [c for c in cells if any(k[0] == c for k in table)] or cells[:1]
    arms = [arm for arm in ARMS if any(k[1] == arm.name for k in table)] or list(ARMS)
    fig, axes = plt.subplots(2, len(cells), figsize=(4.8 * len(cells), 6.4), squeeze=False)
    for col, cell in enumerate(cells):
        top, bottom = axes[0][col], axes[1][col]
        labels = []
        for i, arm in enumerate(arms):
            labels.append(arm.name)
            for j, mode in enumerate(arm.modes):
                rates = [np.mean(list(v.values())) for v in outcomes(table, cell, arm.name, mode).values()]
                if not rates:
                    continue
                x = i + (0.18 * (1 if mode == 'train_only' else -1) if arm.sigma > 0 else 0)
                colour = {'replica': 'tab:blue', 'train_only': 'tab:orange', 'off': 'tab:grey'}[mode]
                mean, low, high = t_interval(rates)
                top.scatter([x] * len(rates), rates, s=10, color=colour, alpha=0.6)
                top.errorbar([x], [mean], yerr=None if np.isnan(low) else [[mean - low], [high - mean]],
                             fmt='s', color=colour, capsize=3, label=mode if col == 0 and i < 2 else None)
            c = compare(outcomes(table, cell, arm.name, 'replica'), outcomes(table, cell, arm.name, 'train_only'))
            if c is not None:
                bottom.scatter([i] * len(c['per_seed']), c['per_seed'], s=12, color='tab:purple')
                if not np.isnan(c['low']):
                    bottom.errorbar([i], [c['diff']], yerr=[[c['diff'] - c['low']], [c['high'] - c['diff']]],
                                    fmt='_', color='black', capsize=4)
        for ax in (top, bottom):
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
            ax.set_xlim(-0.6, len(labels) - 0.4)
            ax.grid(alpha=0.3)
        top.set_title(cell)
        top.set_ylim(-0.02, 1.02)
        bottom.axhline(0, color='grey', lw=0.8)
    axes[0][0].set_ylabel('success (held-out seeds)')
    axes[1][0].set_ylabel('replica - train_only, per seed')
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7)
    fig.suptitle('Test-time noise: dots are training seeds, bars their 95 % t interval', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
