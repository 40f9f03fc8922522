HELP = ('convert rosbag2 episodes (one bag each) into a Diffusion Policy zarr replay buffer or a '
        'LeRobot v3.0 dataset')


def add_arguments(p):
    from ros2_imitation.data.bag_reading import ACTION_SOURCES, DEFAULT_TOPICS
    from ros2_imitation.data.lerobot_format import DEFAULT_VCODEC, VIDEO_CODECS
    p.add_argument('bags', nargs='+', metavar='BAG',
                   help='bag folders (or a folder of bag folders); one bag = one episode')
    p.add_argument('--out', required=True, metavar='DATASET',
                   help='output: a zarr folder (e.g. demos.zarr) or, with --format lerobot, a LeRobot folder')
    p.add_argument('--format', choices=('zarr', 'lerobot'), default='zarr',
                   help='zarr: Diffusion Policy replay buffer (default); lerobot: LeRobotDataset v3.0 '
                        '(parquet + mp4 videos)')
    p.add_argument('--overwrite', action='store_true', help='replace DATASET if it exists')
    p.add_argument('--topics', default=None, metavar='MAP.yaml',
                   help='topic map: which topics are the joint states, cameras, action and gripper '
                        '(docs/training.md), a file or a shipped one by name (pick_place: two cameras and '
                        'the gripper); the flags below override it')
    p.add_argument('--rate', type=float, default=None, help='policy rate of the resampling grid, Hz (10)')
    p.add_argument('--image-size', default=None, metavar='WxH', help='image WIDTHxHEIGHT (96x96)')
    p.add_argument('--max-age', type=float, default=None,
                   help='oldest joint_states / image sample a grid step may use, s (0.15); '
                        'the episode ends at the first step with an older one')
    p.add_argument('--action-source', choices=ACTION_SOURCES, default=None,
                   help='auto (default): expert_label if the bag has it, else action_chunk; trajectory: a '
                        'commanded trajectory_msgs/JointTrajectory (--action-topic); command: a '
                        'forward_command_controller std_msgs/Float64MultiArray (--action-topic, '
                        '--command-joints); next_state (= joint_states): the measured position one step '
                        'later, when no command was recorded (kinesthetic / leader-arm demos)')
    p.add_argument('--action-topic', default=None, metavar='TOPIC',
                   help=f"topic of the action source (trajectory: {DEFAULT_TOPICS['trajectory']}, command: "
                        f"{DEFAULT_TOPICS['command']})")
    p.add_argument('--command-joints', default=None, metavar='J1,J2,...',
                   help='joint order of the command array (default: --joints)')
    p.add_argument('--only-success', action='store_true',
                   help='keep only episodes whose outcome is success (unknown outcome is dropped)')
    p.add_argument('--joints', default=None, metavar='J1,J2,...',
                   help='arm joints of state/action, in order, mapped by name (default: the panda profile\'s '
                        '7 arm joints)')
    p.add_argument('--image-topic', default=None,
                   help=f"the camera named 'image' ('' for a dataset without images) ({DEFAULT_TOPICS['image']})")
    p.add_argument('--camera', action='append', default=None, metavar='NAME=TOPIC',
                   help='a camera (sensor_msgs/Image or CompressedImage) and its dataset key; repeat for '
                        'several; replaces the topic map\'s cameras')
    p.add_argument('--joint-states-topic', default=None, help=f"({DEFAULT_TOPICS['joint_states']})")
    p.add_argument('--chunk-topic', default=None, help=f"({DEFAULT_TOPICS['chunk']})")
    p.add_argument('--label-topic', default=None, help=f"({DEFAULT_TOPICS['label']})")
    p.add_argument('--task-state-topic', default=None,
                   help=f"std_msgs/String JSON; its \"success\" is the outcome when metadata has none "
                        f"({DEFAULT_TOPICS['task_state']}; '' for none)")
    p.add_argument('--gripper-joint', default=None, metavar='NAME',
                   help='append this joint to state and action (the gripper)')
    p.add_argument('--gripper-profile', default=None, metavar='ROBOT',
                   help="append a robot profile's gripper (e.g. panda): state = the finger-to-finger opening (m) "
                        "from its finger joints, action = the chunks' gripper column (pick_place bags; "
                        "--topics pick_place sets it with the wrist camera)")
    p.add_argument('--gripper-topic', default=None, metavar='TOPIC',
                   help='sensor_msgs/JointState topic with the gripper joint (default: the joint states topic)')
    p.add_argument('--gripper-command-topic', default=None, metavar='TOPIC',
                   help='std_msgs/Float64MultiArray gripper command (default: the next measured position)')
    p.add_argument('--gripper-command-index', type=int, default=None, metavar='I',
                   help='which value of the gripper command (0)')
    p.add_argument('--task', default=None, metavar='TEXT',
                   help='the task in words, for LeRobot\'s tasks (default: the bag\'s custom_data task)')
    p.add_argument('--robot-type', default=None, help='LeRobot info.json robot_type (e.g. panda, fr3, ur5e)')
    p.add_argument('--ee-robot', default=None, metavar='ROBOT',
                   help='zarr: also write state_ee and action_ee, the tip pose by forward kinematics of this '
                        "robot profile's URDF (position + 6D rotation, then the gripper column), for "
                        'end-effector policies')
    p.add_argument('--vcodec', choices=VIDEO_CODECS, default=DEFAULT_VCODEC,
                   help=f'LeRobot video codec ({DEFAULT_VCODEC}: AV1, as LeRobot writes; h264 for older players)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')


def config_from_args(args):
    """ConvertConfig from the topic map file (if any) and the flags; raises ValueError."""
    from ros2_imitation.data.topic_map import build_config, load_topic_map, parse_camera_flags

    def names(text):
        return tuple(j.strip() for j in text.split(',') if j.strip()) if text else None
    file_map = load_topic_map(args.topics) if args.topics else None
    return build_config(
        file_map, joint_states=args.joint_states_topic, joints=names(args.joints),
        cameras=parse_camera_flags(args.camera) if args.camera else None, image_topic=args.image_topic,
        action_source=args.action_source, action_topic=args.action_topic,
        command_joints=names(args.command_joints), chunk_topic=args.chunk_topic, label_topic=args.label_topic,
        task_state=args.task_state_topic, gripper_joint=args.gripper_joint, gripper_topic=args.gripper_topic,
        gripper_command=args.gripper_command_topic, gripper_index=args.gripper_command_index,
        gripper_profile=args.gripper_profile,
        rate=args.rate, image_size=args.image_size, max_age=args.max_age, task=args.task,
        robot_type=args.robot_type)


def run(args) -> int:
    import sys
    import time
    from pathlib import Path

    from ros2_imitation.data.bag_dataset import convert_bags, write_dataset, write_lerobot_dataset
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        print(f'ros2-imitation bag2dataset: {out} exists (use --overwrite to replace it)', file=sys.stderr)
        return 2
    try:
        config = config_from_args(args)
        if args.format == 'lerobot' and int(config.rate) != config.rate:
            raise ValueError(f'LeRobot datasets have an integer fps; --rate {config.rate:g} is not one')
        if args.format == 'lerobot' and config.camera_topics and any(v % 2 for v in config.image_size):
            raise ValueError(f'LeRobot videos (yuv420p) need an even width and height; --image-size is '
                             f'{config.image_size[0]}x{config.image_size[1]}')
        ee_robot = None
        if args.ee_robot:
            from ros2_imitation.robot import RobotProfile
            ee_robot = RobotProfile.load(args.ee_robot)
            if ee_robot.kinematics is None:
                raise ValueError(f'--ee-robot {args.ee_robot}: the profile has no kinematics section')
            if tuple(config.joint_names) != tuple(ee_robot.arm_joints):
                raise ValueError(f'--ee-robot {args.ee_robot}: its arm joints {list(ee_robot.arm_joints)} are not '
                                 f'the dataset\'s {list(config.joint_names)}')
            if args.format == 'lerobot':
                raise ValueError('--ee-robot writes zarr datasets only')
    except (ValueError, FileNotFoundError) as exc:
        print(f'ros2-imitation bag2dataset: {exc}', file=sys.stderr)
        return 2
    started = time.monotonic()
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
    read = time.monotonic()
    if args.format == 'lerobot':
        write_lerobot_dataset(out, result, config, overwrite=args.overwrite, vcodec=args.vcodec)
    else:
        write_dataset(out, result, config, overwrite=args.overwrite, ee_robot=ee_robot)
    done = time.monotonic()
    print(f'wrote {out} ({args.format}; reading {read - started:.1f} s, writing {done - read:.1f} s, '
          f'{(done - started) / len(result.episodes):.2f} s per episode)')
    return 1 if result.failures else 0
