HELP = 'convert rosbag2 episodes (one bag each) into a Diffusion Policy zarr replay buffer'


def add_arguments(p):
    from ros2_imitation.data.bag_reading import ACTION_SOURCES, DEFAULT_TOPICS
    p.add_argument('bags', nargs='+', metavar='BAG',
                   help='bag folders (or a folder of bag folders); one bag = one episode')
    p.add_argument('--out', required=True, metavar='DATASET', help='output zarr folder (e.g. demos.zarr)')
    p.add_argument('--overwrite', action='store_true', help='replace DATASET if it exists')
    p.add_argument('--rate', type=float, default=10.0, help='policy rate of the resampling grid, Hz (10)')
    p.add_argument('--image-size', default='96x96', metavar='WxH', help='image WIDTHxHEIGHT (96x96)')
    p.add_argument('--max-age', type=float, default=0.15,
                   help='oldest joint_states / image sample a grid step may use, s (0.15); '
                        'the episode ends at the first step with an older one')
    p.add_argument('--action-source', choices=ACTION_SOURCES, default='auto',
                   help='auto: expert_label if the bag has it, else action_chunk; joint_states: the measured '
                        'position one step later (kinesthetic / leader-arm demos)')
    p.add_argument('--only-success', action='store_true',
                   help='keep only episodes whose outcome is success (unknown outcome is dropped)')
    p.add_argument('--joints', default=None, metavar='J1,J2,...',
                   help='arm joints of state/action, in order (default: the panda profile\'s 7 arm joints)')
    p.add_argument('--image-topic', default=DEFAULT_TOPICS['image'],
                   help=f"('' for a dataset without images) ({DEFAULT_TOPICS['image']})")
    p.add_argument('--joint-states-topic', default=DEFAULT_TOPICS['joint_states'])
    p.add_argument('--chunk-topic', default=DEFAULT_TOPICS['chunk'])
    p.add_argument('--label-topic', default=DEFAULT_TOPICS['label'])
    p.add_argument('--task-state-topic', default=DEFAULT_TOPICS['task_state'],
                   help='std_msgs/String JSON; its "success" is the outcome when metadata has none')
    p.add_argument('--quiet', action='store_true', help='no progress bar')


def run(args) -> int:
    import sys
    from pathlib import Path

    from ros2_imitation.data.bag_dataset import ConvertConfig, convert_bags, parse_image_size, write_dataset
    from ros2_imitation.data.bag_reading import ARM_JOINTS
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        print(f'ros2-imitation bag2dataset: {out} exists (use --overwrite to replace it)', file=sys.stderr)
        return 2
    try:
        joints = tuple(j.strip() for j in args.joints.split(',') if j.strip()) if args.joints else ARM_JOINTS
        config = ConvertConfig(
            rate=args.rate, image_size=parse_image_size(args.image_size), max_age=args.max_age,
            action_source=args.action_source, joint_names=joints,
            topics={'joint_states': args.joint_states_topic, 'image': args.image_topic,
                    'chunk': args.chunk_topic, 'label': args.label_topic, 'task_state': args.task_state_topic})
    except ValueError as exc:
        print(f'ros2-imitation bag2dataset: {exc}', file=sys.stderr)
        return 2
    result = convert_bags(args.bags, config, only_success=args.only_success, progress=not args.quiet)
    for ep in result.episodes:
        for warning in ep.info['warnings']:
            print(f'warning: {ep.info["name"]}: {warning}', file=sys.stderr)
    steps = sum(len(ep) for ep in result.episodes)
    print(f'converted {len(result.episodes)} episodes ({steps} steps, {steps / config.rate:.1f} s), '
          f'failed {len(result.failures)}, skipped {len(result.skipped)}')
    for _, message in result.failures:
        print(f'  failed: {message}')
    for bag, reason in result.skipped:
        print(f'  skipped: {bag}: {reason}')
    if not result.episodes:
        print(f'ros2-imitation bag2dataset: no episodes to write; {out} not written', file=sys.stderr)
        return 1
    write_dataset(out, result, config, overwrite=args.overwrite)
    print(f'wrote {out}')
    return 1 if result.failures else 0
