HELP = ('train a diffusion policy on a zarr or LeRobot v3.0 dataset (config YAML, tqdm progress, EMA, '
        'validation, resume)')


def add_arguments(p):
    p.add_argument('--dataset', required=True,
                   help='zarr dataset (from bag2dataset), or a LeRobot v3.0 folder (it has meta/info.json)')
    p.add_argument('--map', action='append', default=None, metavar='KEY=FEATURE',
                   help='LeRobot datasets: the feature for a policy key, e.g. image=observation.images.top '
                        '(repeat, or comma-separate). Default: state=observation.state, action=action, an '
                        'image key = observation.images.<key>, or the only camera')
    p.add_argument('--config', default='push_cube',
                   help='policy config: a name in config/policies/ or a YAML path (PolicyConfig fields, '
                        'plus an optional `training:` section of train() arguments)')
    p.add_argument('--out', required=True, help='output folder; the policy lands in OUT/policy')
    p.add_argument('--steps', type=int, default=None)
    p.add_argument('--epochs', type=int, default=None)
    p.add_argument('--batch-size', type=int, default=None)
    p.add_argument('--lr', type=float, default=None)
    p.add_argument('--device', default='auto', help='auto (CUDA when present), cpu, cuda, cuda:1')
    p.add_argument('--resume', action='store_true', help='continue from the newest checkpoint in OUT')
    p.add_argument('--sigma', type=float, default=None, help='noise injection sigma (overrides the config)')
    p.add_argument('--noise-mode', choices=('replica', 'train_only', 'off'), default=None)
    p.add_argument('--noise-distribution', choices=('gaussian', 'uniform_paper'), default=None,
                   help="gaussian N(0, sigma^2), or uniform_paper U[0, sigma) as the paper's code")
    p.add_argument('--seed', type=int, default=None)
    p.add_argument('--eval-episodes', type=int, default=0,
                   help='closed-loop sim episodes at each checkpoint (0 = none)')
    p.add_argument('--task', default='push_cube', help='sim task for --eval-episodes')


def run(args) -> int:
    import json
    import sys

    from ros2_imitation.data.lerobot_format import (
        DatasetPath,
        is_lerobot_dataset,
        parse_feature_map,
        read_info,
        resolve_features,
    )
    from ros2_imitation.policy import train
    from ros2_imitation.policy.config import load_policy_file
    try:
        config, training = load_policy_file(args.config, dict(
            noise_sigma=args.sigma, noise_mode=args.noise_mode, noise_distribution=args.noise_distribution,
            seed=args.seed))
        feature_map = parse_feature_map(args.map)
        if is_lerobot_dataset(args.dataset):   # its features must fit the policy's keys: say so now
            found = resolve_features(read_info(args.dataset)['features'],
                                     [config.state_key, config.action_key, *config.image_keys],
                                     feature_map, args.dataset)
            print('LeRobot dataset: ' + ', '.join(f'{k} <- {v}' for k, v in found.items()), file=sys.stderr)
        elif feature_map:
            raise ValueError(f'--map is for LeRobot datasets; {args.dataset} has no meta/info.json')
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f'ros2-imitation train: {exc.args[0] if isinstance(exc, KeyError) else exc}', file=sys.stderr)
        return 2
    dataset = DatasetPath(args.dataset, feature_map) if feature_map else args.dataset
    for key, value in (('steps', args.steps), ('epochs', args.epochs), ('batch_size', args.batch_size),
                       ('lr', args.lr)):
        if value is not None:
            training[key] = value
    if args.steps is not None or args.epochs is not None:  # the command line's budget wins
        training.pop('epochs' if args.steps is not None else 'steps', None)
    def eval_fn(policy, step):   # closed-loop sim episodes at each checkpoint
        from ros2_imitation.sim.evaluation import evaluate
        summary = evaluate(policy, range(args.eval_episodes), task=args.task, batch=args.eval_episodes)
        return {'eval_success_rate': summary['success_rate']}

    result = train(dataset, config, args.out, device=args.device, resume=args.resume,
                   eval_fn=eval_fn if args.eval_episodes else None, **training)
    print(json.dumps({'policy': str(result.policy_dir), 'step': result.step,
                      'train_loss': result.train_loss, 'val_loss': result.val_loss}, indent=2))
    return 0
