HELP = 'evaluate a policy on seeded sim episodes (in-process: sim + chunk controller + policy)'


def add_arguments(p):
    p.add_argument('--model', required=True, help='policy checkpoint directory')
    p.add_argument('--task', default='push_cube')
    p.add_argument('--episodes', type=int, default=50)
    p.add_argument('--seed', type=int, default=0, help='first episode seed (then +1 each)')
    p.add_argument('--timeout', type=float, default=None,
                   help="episode length limit (sim seconds; default the task's: 20, push_t 60)")
    p.add_argument('--steps', type=int, default=None, help='inference steps (default: the checkpoint\'s)')
    p.add_argument('--scheduler', choices=('ddpm', 'ddim'), default=None)
    p.add_argument('--noise-mode', choices=('replica', 'train_only', 'off'), default=None,
                   help='override test-time noise injection (train_only: trained with noise, run without)')
    p.add_argument('--runtime', default='torch',
                   choices=('torch', 'compile', 'half', 'onnxruntime', 'openvino', 'auto'),
                   help='inference backend (auto: the fastest here); torch when another cannot run')
    p.add_argument('--mode', default='position', help='controller mode (position, impedance)')
    p.add_argument('--continuity', choices=('replan', 'ensemble', 'inpaint'), default='inpaint',
                   help='how consecutive chunks join (as policy_node)')
    p.add_argument('--latency', type=float, default=0.0,
                   help='pretend inference takes this long (s): overtaken actions are dropped, as on a robot')
    p.add_argument('--batch', type=int, default=1,
                   help='episodes run side by side sharing one batched policy call (faster; 1: one by one)')
    p.add_argument('--json', default=None, metavar='OUT', help='write the results as JSON')
    p.add_argument('--video', default=None, metavar='MP4', help='write the camera view of every episode (.mp4, or .gif)')


def run(args) -> int:
    import json
    from pathlib import Path

    from tqdm import tqdm

    from ros2_imitation.policy import load_policy
    from ros2_imitation.sim.evaluation import evaluate

    policy = load_policy(args.model, inference_scheduler=args.scheduler,
                         num_inference_steps=args.steps, noise_mode=args.noise_mode, runtime=args.runtime)
    bar = tqdm(total=args.episodes, desc='eval', unit='episode')
    wins = []

    def progress(result):
        wins.append(result.success)
        bar.update(1)
        bar.set_postfix(success=f'{sum(wins)}/{len(wins)}')

    summary = evaluate(policy, range(args.seed, args.seed + args.episodes), task=args.task,
                       timeout=args.timeout, batch=args.batch, continuity=args.continuity,
                       latency=args.latency, mode=args.mode, record_frames=bool(args.video),
                       progress=progress)
    bar.close()
    results = summary.pop('results')
    summary['model'] = str(args.model)
    low, high = summary['ci95']
    print(f"{args.task}: success {len(summary['successes'])}/{summary['episodes']} = {summary['success_rate']:.0%} "
          f"(95% CI {low:.0%}-{high:.0%}), RMS jerk {summary['rms_jerk']:.1f} rad/s^3, {summary['wall_s']:.0f} s")
    if 'mean_max_coverage' in summary:
        print(f"{args.task}: mean max coverage {summary['mean_max_coverage']:.3f}, Diffusion Policy's Push-T score "
              f"(mean best min(1, coverage / 0.95)) {summary['push_t_score']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    if args.video:
        from ros2_imitation.data.media import write_video
        write_video([(f'seed {r.seed} {"success" if r.success else "failure"}', r.frames, r.success)
                     for r in results], args.video)
    return 0
