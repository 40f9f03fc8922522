"""What a replay-buffer dataset contains, before training on it (`ros2-imitation dataset-report`).

Episodes and lengths, outcomes, per-dimension statistics (constant dimensions flagged: they break
min-max normalization), trajectory and frame plots, and an action-determinism estimate: how much
the demonstrated actions vary among similar states, the data property behind the H(action | state)
argument of "Generalization Capability for Imitation Learning" (near-deterministic data leaves the
generalization gap unconstrained).

ROS-free and torch-free: reads the zarr directly, or a LeRobot v3.0 folder (meta/info.json; its
videos are decoded only for the frames drawn).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# Same threshold as ros2_imitation.policy.normalize.CONSTANT_RANGE (not imported: that pulls torch).
CONSTANT_RANGE = 1e-6
# Even exactly deterministic demonstrations score ~0.1-0.2 with tens of episodes (neighbours are not
# identical states); pure state-independent noise scores ~1.
DETERMINISTIC_BELOW = 0.3
VARIABLE_ABOVE = 0.7


def load(path) -> dict:
    """state, action (float64), episode_ends, episode ids per row, meta attributes; images stay lazy."""
    import zarr

    from ros2_imitation.data.lerobot_format import LeRobotFormatError, is_lerobot_dataset, open_for_report
    path = Path(path)
    if is_lerobot_dataset(path):
        try:
            ds = open_for_report(path)
        except LeRobotFormatError as exc:
            raise FileNotFoundError(str(exc)) from None
        ends = np.asarray(ds['ends'], np.int64)
        starts = np.concatenate([[0], ends[:-1]])
        return {'path': path, 'state': np.asarray(ds['state'], np.float64),
                'action': np.asarray(ds['action'], np.float64), 'ends': ends, 'starts': starts,
                'episode': np.repeat(np.arange(len(ends)), ends - starts), 'image': ds['image'],
                'attrs': ds['attrs'], 'episode_outcome': ds['episode_outcome'],
                'episode_noisy': ds['episode_noisy']}
    try:
        root = zarr.open_group(str(path), mode='r')
    except Exception as exc:
        raise FileNotFoundError(f'{path}: not a zarr replay buffer ({exc})') from None
    if 'data' not in root or 'meta' not in root or 'episode_ends' not in root['meta']:
        raise FileNotFoundError(f'{path}: needs data/ and meta/episode_ends')
    data = root['data']
    missing = [k for k in ('state', 'action') if k not in data]
    if missing:
        raise KeyError(f'{path}: data/ lacks {missing}; has {sorted(data.keys())}')
    meta = root['meta']
    ends = np.asarray(meta['episode_ends'][...], dtype=np.int64)
    state = np.asarray(data['state'][...], dtype=np.float64)
    action = np.asarray(data['action'][...], dtype=np.float64)
    if len(ends) == 0 or ends[-1] != len(state) or len(action) != len(state):
        raise ValueError(f'{path}: episode_ends[-1] does not match the data rows ({len(state)})')
    starts = np.concatenate([[0], ends[:-1]])
    episode = np.repeat(np.arange(len(ends)), ends - starts)
    codes = {}
    for key in ('episode_outcome', 'episode_noisy'):
        codes[key] = np.asarray(meta[key][...]) if key in meta else np.full(len(ends), -1, np.int8)
    return {'path': path, 'state': state, 'action': action, 'ends': ends, 'starts': starts,
            'episode': episode, 'image': data['image'] if 'image' in data else None,
            'attrs': dict(meta.attrs.asdict()), **codes}


def dimension_stats(x: np.ndarray) -> list[dict]:
    """Per-dimension min / max / mean / std, 'constant' where max - min <= CONSTANT_RANGE."""
    out = []
    for j in range(x.shape[1]):
        col = x[:, j]
        finite = np.isfinite(col)
        c = col[finite]
        lo, hi = (float(c.min()), float(c.max())) if c.size else (float('nan'), float('nan'))
        out.append({'dim': j, 'min': lo, 'max': hi, 'mean': float(c.mean()) if c.size else float('nan'),
                    'std': float(c.std()) if c.size else float('nan'),
                    'non_finite': int((~finite).sum()),
                    'constant': bool(c.size and hi - lo <= CONSTANT_RANGE)})
    return out


def _minmax(x: np.ndarray) -> np.ndarray:
    """To [-1, 1] per dimension; constant dimensions -> 0 (as the policy's normalizer does)."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = hi - lo
    scale = np.where(span > CONSTANT_RANGE, 2.0 / np.where(span > CONSTANT_RANGE, span, 1.0), 0.0)
    return (x - (lo + hi) / 2) * scale


def action_determinism(state: np.ndarray, action: np.ndarray, episode: np.ndarray, k: int = 10,
                       max_queries: int = 2000, window: int = 10, seed: int = 0) -> dict:
    """Fraction of the action variance that similar states do not explain: ~ Var(a | s) / Var(a).

    States are min-max normalized. The action is taken relative to the state (action - state, the
    commanded motion) when both have the same dimension: an absolute joint target is ~ the state itself,
    so it is "explained" by the state for any dataset. Action dimensions are scaled to unit variance.
    Each query row is predicted by the mean action of its k nearest states from *other* episodes (one
    episode: rows more than `window` steps apart); ratio = mean squared residual * k / (k + 1) (the
    factor makes pure noise read ~1) over the action variance. ~0: the state determines the action;
    ~1: the action does not depend on the state. Sparse data biases it up (reported: the median
    neighbour distance). Gaussian reading: H(a | s) - H(a) ~ 0.5 * sum_d ln(ratio_d) nats.
    """
    rng = np.random.default_rng(seed)
    x = _minmax(np.asarray(state, np.float64))
    y = np.asarray(action, np.float64)
    relative = y.shape == np.shape(state)
    if relative:
        y = y - np.asarray(state, np.float64)
    std = y.std(axis=0)
    varying = std > 1e-12
    y = (y[:, varying] - y[:, varying].mean(axis=0)) / std[varying]
    n = len(x)
    episode = np.asarray(episode)
    across = len(np.unique(episode)) > 1
    queries = np.sort(rng.choice(n, size=min(n, max_queries), replace=False))
    rows = np.arange(n)
    residual = np.full((len(queries), y.shape[1]), np.nan)
    dists = np.full(len(queries), np.nan)
    kk = max(1, min(k, n - 1))
    for start in range(0, len(queries), 256):
        q = queries[start:start + 256]
        d2 = ((x[q, None, :] - x[None, :, :]) ** 2).sum(-1)
        if across:
            d2[episode[q][:, None] == episode[None, :]] = np.inf
        else:
            d2[np.abs(q[:, None] - rows[None, :]) <= window] = np.inf
        m = min(kk, int(np.isfinite(d2).sum(axis=1).min()))
        if m == 0 or not y.shape[1]:
            continue
        nn = np.argpartition(d2, m - 1, axis=1)[:, :m]
        residual[start:start + len(q)] = (y[q] - y[nn].mean(axis=1)) ** 2 * (m / (m + 1))
        dists[start:start + len(q)] = np.sqrt(np.take_along_axis(d2, nn, axis=1)).mean(axis=1)
    ok = np.isfinite(dists)
    base = {'k': kk, 'relative_action': relative, 'across_episodes': across, 'queries': int(ok.sum()),
            'action_dims_used': int(varying.sum())}
    if not ok.any():
        return {**base, 'ratio': float('nan'), 'per_dim': [], 'entropy_gap_nats': float('nan'),
                'per_sample': np.zeros(0), 'neighbour_distance': float('nan')}
    per_dim = residual[ok].mean(axis=0)       # action dims have unit variance
    return {**base, 'ratio': float(per_dim.mean()), 'per_dim': [float(v) for v in per_dim],
            'entropy_gap_nats': float(0.5 * np.log(np.maximum(per_dim, 1e-12)).sum()),
            'per_sample': residual[ok].mean(axis=1), 'neighbour_distance': float(np.median(dists[ok]))}


def interpret(ratio: float) -> str:
    if not np.isfinite(ratio):
        return 'Not measurable: actions are constant or there are too few rows.'
    if ratio < DETERMINISTIC_BELOW:
        return (f'Near-deterministic (ratio {ratio:.2f} < {DETERMINISTIC_BELOW}): similar states get almost the '
                'same action, so H(action | state) is low and, by the information-bottleneck argument, the '
                'generalization gap is left unconstrained: expect the policy to memorize these demonstrations. '
                'More varied data helps: more demonstrations, several demonstrators, varied initial states '
                '(noise-injected collection did not: docs/noise_study.md, H5).')
    if ratio > VARIABLE_ABOVE:
        return (f'Highly variable (ratio {ratio:.2f} > {VARIABLE_ABOVE}): similar states get very different '
                'actions (multimodal strategies, noisy teleoperation, or state alone does not determine the '
                'action because the task depends on what the camera sees). High H(action | state) flattens '
                'the loss landscape, but check that the variation is task structure a diffusion policy can '
                'model rather than recording noise.')
    return (f'Moderately variable (ratio {ratio:.2f}): similar states get related but not identical actions, '
            'a reasonable amount of action entropy for imitation learning.')


# ------------------------------------------------------------------------------------------- plotting

def _plot_actions(ds: dict, out: Path, n_episodes: int) -> Path:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    dims = ds['action'].shape[1]
    dt = float(ds['attrs'].get('dt') or 1.0)
    cols = min(dims, 4)
    rows = int(np.ceil(dims / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharex=True)
    names = ds['attrs'].get('joint_names') or [f'dim {j}' for j in range(dims)]
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    same = ds['state'].shape[1] == dims
    for e in range(min(n_episodes, len(ds['ends']))):
        s, t = ds['starts'][e], ds['ends'][e]
        time = np.arange(t - s) * dt
        for j in range(dims):
            ax = axes[j // cols][j % cols]
            ax.plot(time, ds['action'][s:t, j], color=colors[e % len(colors)], lw=1.2,
                    label=f'ep {e} action' if j == 0 else None)
            if same:
                ax.plot(time, ds['state'][s:t, j], color=colors[e % len(colors)], lw=0.8, ls='--',
                        label=f'ep {e} state' if j == 0 else None)
    for j in range(rows * cols):
        ax = axes[j // cols][j % cols]
        if j >= dims:
            ax.axis('off')
            continue
        ax.set_title(names[j] if j < len(names) else f'dim {j}', fontsize=9)
        ax.tick_params(labelsize=7)
        if j // cols == rows - 1:
            ax.set_xlabel('time (s)' if ds['attrs'].get('dt') else 'step', fontsize=8)
    axes[0][0].legend(fontsize=6)
    fig.suptitle('actions (solid) and states (dashed) per joint', fontsize=10)
    fig.tight_layout()
    path = out / 'actions.png'
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_frames(ds: dict, out: Path, n_episodes: int) -> Path | None:
    if ds['image'] is None:
        return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    n = min(n_episodes, len(ds['ends']))
    fig, axes = plt.subplots(n, 2, figsize=(4, 2 * n), squeeze=False)
    for e in range(n):
        for c, (row, title) in enumerate([(ds['starts'][e], 'first'), (ds['ends'][e] - 1, 'last')]):
            ax = axes[e][c]
            ax.imshow(np.asarray(ds['image'][int(row)]))
            ax.set_title(f'ep {e} {title}', fontsize=8)
            ax.axis('off')
    fig.tight_layout()
    path = out / 'frames.png'
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_determinism(det: dict, out: Path) -> Path:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if len(det['per_sample']):
        ax.hist(np.minimum(det['per_sample'], 4.0), bins=40, range=(0, 4), color='tab:blue', alpha=0.8)
        ax.axvline(det['ratio'], color='k', lw=1.5, label=f"dataset ratio {det['ratio']:.2f}")
    ax.axvline(1.0, color='tab:red', ls='--', lw=1, label='action independent of state')
    ax.axvspan(0, DETERMINISTIC_BELOW, color='tab:orange', alpha=0.12, label='near-deterministic')
    ax.set_xlabel(f"squared residual of the {det['k']}-nearest-state prediction / action variance")
    ax.set_ylabel('rows')
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / 'determinism.png'
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------- report

def _stats_table(title: str, stats: list[dict], names) -> list[str]:
    lines = [f'### {title}', '', '| dim | name | min | max | mean | std | flag |', '|---|---|---|---|---|---|---|']
    for s in stats:
        name = names[s['dim']] if names and s['dim'] < len(names) else ''
        flags = []
        if s['constant']:
            flags.append('**CONSTANT**')
        if s['non_finite']:
            flags.append(f"**{s['non_finite']} non-finite**")
        lines.append(f"| {s['dim']} | {name} | {s['min']:.4f} | {s['max']:.4f} | {s['mean']:.4f} | "
                     f"{s['std']:.4f} | {' '.join(flags)} |")
    return lines + ['']


def report(dataset, out_dir=None, n_episodes: int = 4, k: int = 10, seed: int = 0) -> dict:
    """Write report.md, report.json and PNGs into out_dir (default: <dataset>_report next to it)."""
    ds = load(dataset)
    path = ds['path']
    out = Path(out_dir) if out_dir else path.with_name(path.name.removesuffix('.zarr') + '_report')
    out.mkdir(parents=True, exist_ok=True)
    attrs = ds['attrs']
    lengths = ds['ends'] - ds['starts']
    rate = attrs.get('rate')
    state_stats, action_stats = dimension_stats(ds['state']), dimension_stats(ds['action'])
    constant = {'state': [s['dim'] for s in state_stats if s['constant']],
                'action': [s['dim'] for s in action_stats if s['constant']]}
    det = action_determinism(ds['state'], ds['action'], ds['episode'], k=k, seed=seed)
    outcome, noisy = ds['episode_outcome'], ds['episode_noisy']
    summary = {
        'dataset': str(path), 'format': 'lerobot' if attrs.get('lerobot') else 'zarr',
        'episodes': int(len(lengths)), 'steps': int(lengths.sum()),
        'rate': rate, 'length_min': int(lengths.min()), 'length_median': float(np.median(lengths)),
        'length_max': int(lengths.max()),
        'success': int((outcome == 1).sum()), 'failure': int((outcome == 0).sum()),
        'outcome_unknown': int((outcome == -1).sum()), 'noisy': int((noisy == 1).sum()),
        'constant_dims': constant,
        'non_finite': {'state': int(sum(s['non_finite'] for s in state_stats)),
                       'action': int(sum(s['non_finite'] for s in action_stats))},
        'determinism': {key: v for key, v in det.items() if key != 'per_sample'},
        'interpretation': interpret(det['ratio']),
        'state_stats': state_stats, 'action_stats': action_stats,
    }
    figures = {'actions': _plot_actions(ds, out, n_episodes), 'frames': _plot_frames(ds, out, 6),
               'determinism': _plot_determinism(det, out)}
    summary['figures'] = {key: p.name for key, p in figures.items() if p}

    names = attrs.get('joint_names')
    dur = f" ({lengths.sum() / rate:.1f} s at {rate:g} Hz)" if rate else ''
    md = [f'# Dataset report: `{path}`', '',
          f"- episodes: {summary['episodes']}, steps: {summary['steps']}{dur}",
          f"- episode length (steps): min {summary['length_min']}, median {summary['length_median']:g}, "
          f"max {summary['length_max']}",
          f"- outcomes: {summary['success']} success, {summary['failure']} failure, "
          f"{summary['outcome_unknown']} unknown; {summary['noisy']} noise-injected episodes"]
    if attrs.get('lerobot'):
        lr = attrs['lerobot']
        md.append(f"- LeRobot dataset {lr['codebase_version']} (robot_type {lr['robot_type']}): state "
                  f"`{lr['features']['state']}`, action `{lr['features']['action']}`, cameras "
                  f"{', '.join(f'`{c}`' for c in lr['cameras']) or 'none'}; {lr['total_tasks']} tasks: "
                  + '; '.join(lr['tasks'][:5]) + (' ...' if len(lr['tasks']) > 5 else ''))
    if attrs.get('source_bags'):
        md.append(f"- converted from {len(attrs['source_bags'])} bags by {attrs.get('format', '?')}, "
                  f"action source {attrs.get('action_source', '?')}; "
                  f"{len(attrs.get('failed_bags', []))} bags failed, {len(attrs.get('skipped_bags', []))} skipped")
    md += ['', '## Per-dimension statistics', '']
    if constant['state'] or constant['action']:
        md += [f"**Constant dimensions** (range <= {CONSTANT_RANGE:g}): state {constant['state']}, action "
               f"{constant['action']}. Textbook min-max normalization divides by zero there (NaN actions); "
               "ros2_imitation's normalizer maps them to 0 and back, but check they are meant to be constant "
               "(a locked joint, an unused gripper) and not a recording fault.", '']
    if summary['non_finite']['state'] or summary['non_finite']['action']:
        md += [f"**Non-finite values**: {summary['non_finite']}.", '']
    md += _stats_table('state', state_stats, names) + _stats_table('action', action_stats, names)
    md += ['## Trajectories', '', f'![actions]({figures["actions"].name})', '']
    if figures['frames']:
        md += ['## First and last frames', '', f'![frames]({figures["frames"].name})', '']
    d = summary['determinism']
    md += ['## Action determinism', '',
           f"**ratio = {d['ratio']:.3f}**: the fraction of the action variance that the nearest states do not "
           "explain, ~Var(action | state) / Var(action); 0 = the state determines the action, 1 = the action "
           f"does not depend on the state. Gaussian reading: H(action | state) - H(action) ~ "
           f"{d['entropy_gap_nats']:.1f} nats.", '',
           f"{summary['interpretation']}", '',
           f"Method: {d['queries']} rows, each predicted by the mean of its {d['k']} nearest states "
           f"({'from other episodes' if d['across_episodes'] else 'more than 10 steps away'}; min-max normalized "
           f"state, median neighbour distance {d['neighbour_distance']:.3f}); the "
           f"{'commanded motion (action - state)' if d['relative_action'] else 'action'}, each dimension scaled "
           "to unit variance. Per dimension: "
           + ', '.join(f'{v:.2f}' for v in d['per_dim']) + ". It sees the state only: when the task depends on "
           "what the camera sees (object positions), part of this variation is explained by the image and the "
           "true H(action | observation) is lower. Sparse data (large neighbour distances) biases the ratio up.",
           '', f'![determinism]({figures["determinism"].name})', '']
    (out / 'report.md').write_text('\n'.join(md))
    (out / 'report.json').write_text(json.dumps(summary, indent=1, default=float))
    summary['out'] = str(out)
    return summary
