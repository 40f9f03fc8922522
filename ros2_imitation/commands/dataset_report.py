HELP = ('summarize a zarr replay buffer or a LeRobot v3.0 folder: episodes, per-dimension stats, plots, '
        'action determinism')


def add_arguments(p):
    p.add_argument('dataset', metavar='DATASET',
                   help='zarr replay buffer or LeRobot v3.0 folder (e.g. from bag2dataset)')
    p.add_argument('--out', default=None, metavar='DIR',
                   help='where report.md, report.json and the PNGs go (default: <DATASET>_report)')
    p.add_argument('--episodes', type=int, default=4, help='episodes drawn in the trajectory plot (4)')
    p.add_argument('--k', type=int, default=10, help='neighbours per state for the determinism estimate (10)')


def run(args) -> int:
    import sys

    from ros2_imitation.data.dataset_report import report
    try:
        summary = report(args.dataset, args.out, n_episodes=args.episodes, k=args.k)
    except (KeyError, ValueError, FileNotFoundError) as exc:
        print(f'ros2-imitation dataset-report: {exc}', file=sys.stderr)
        return 2
    constant = summary['constant_dims']
    print(f"{summary['episodes']} episodes, {summary['steps']} steps; success {summary['success']}, "
          f"failure {summary['failure']}, unknown {summary['outcome_unknown']}")
    if constant['state'] or constant['action']:
        print(f"constant dimensions: state {constant['state']}, action {constant['action']}")
    print(f"action determinism ratio {summary['determinism']['ratio']:.3f}: {summary['interpretation']}")
    print(f"wrote {summary['out']}/report.md")
    return 0
