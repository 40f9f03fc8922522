HELP = 'evaluate a policy on seeded sim episodes (in-process: sim + chunk controller + policy)'


def add_arguments(p):
    p.add_argument('--model', required=True, help='policy checkpoint directory')
    p.add_argument('--task', default='push_cube')
    p.add_argument('--episodes', type=int, default=50)
    p.add_argument('--seed', type=int, default=0, help='first episode seed (then +1 each)')
    p.add_argument('--timeout', type=float, default=20.0, help='episode length limit (sim seconds)')
    p.add_argument('--steps', type=int, default=None, help='inference steps (default: the checkpoint\'s)')
    p.add_argument('--scheduler', choices=('ddpm', 'ddim'), default=None)
    p.add_argument('--noise-mode', choices=('replica', 'train_only', 'off'), default=None,
                   help='override test-time noise injection (train_only: trained with noise, run without)')
    p.add_argument('--mode', default='position', help='controller mode (position, impedance)')
    p.add_argument('--continuity', choices=('replan', 'ensemble', 'inpaint'), default='inpaint',
                   help='how consecutive chunks join (as policy_node)')
    p.add_argument('--latency', type=float, default=0.0,
                   help='pretend inference takes this long (s): overtaken actions are dropped, as on a robot')
    p.add_argument('--json', default=None, metavar='OUT', help='write the results as JSON')
    p.add_argument('--video', default=None, metavar='MP4', help='write the camera view of every episode')


def run(args) -> int:
    import json
    import time
    from pathlib import Path

    from tqdm import tqdm

    from ros2_imitation.policy import load_policy
    from ros2_imitation.rollout import PolicyAgent, Rollout, wilson_interval

    policy = load_policy(args.model, inference_scheduler=args.scheduler,
                         num_inference_steps=args.steps, noise_mode=args.noise_mode)
    cfg = policy.config
    size = (cfg.image_shape[1], cfg.image_shape[0]) if cfg.image_keys else (96, 96)
    rollout = Rollout(task=args.task, mode=args.mode, camera_size=size, render=bool(cfg.image_keys),
                      obs_horizon=cfg.n_obs_steps)
    agent = PolicyAgent(policy, continuity=args.continuity, latency=args.latency)
    results, start = [], time.monotonic()
    bar = tqdm(range(args.seed, args.seed + args.episodes), desc='eval', unit='episode')
    for seed in bar:
        results.append(rollout.run(agent, seed, args.timeout, record_frames=bool(args.video)))
        bar.set_postfix(success=f'{sum(r.success for r in results)}/{len(results)}')
    successes = sum(r.success for r in results)
    low, high = wilson_interval(successes, len(results))
    summary = {
        'model': str(args.model), 'task': args.task, 'episodes': len(results),
        'success_rate': successes / len(results), 'ci95': [low, high],
        'seeds': [r.seed for r in results], 'successes': [r.seed for r in results if r.success],
        'mean_duration_s': sum(r.duration for r in results) / len(results),
        'rms_jerk': sum(r.rms_jerk for r in results) / len(results),
        'noise_sigma': cfg.noise_sigma, 'noise_mode': cfg.noise_mode,
        'scheduler': cfg.inference_scheduler, 'inference_steps': cfg.num_inference_steps,
        'continuity': args.continuity, 'latency_s': args.latency,
        'wall_s': time.monotonic() - start,
    }
    print(f"{args.task}: success {successes}/{len(results)} = {summary['success_rate']:.0%} "
          f"(95% CI {low:.0%}-{high:.0%}), RMS jerk {summary['rms_jerk']:.1f} rad/s^3, {summary['wall_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    if args.video:
        from ros2_imitation.media import write_video
        write_video([(f'seed {r.seed} {"success" if r.success else "failure"}', r.frames, r.success)
                     for r in results], args.video)
    return 0
