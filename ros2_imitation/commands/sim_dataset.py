HELP = ('scripted demonstrations straight to a zarr dataset, in-process (sim + chunk controller + expert, '
        'no DDS): the fast path for training data; record-demos is the graph path')


def add_arguments(p):
    p.add_argument('--task', default='push_cube')
    p.add_argument('--episodes', type=int, required=True)
    p.add_argument('--seed', type=int, default=10000, help='first episode seed (keep apart from eval seeds 0..)')
    p.add_argument('--out', required=True, help='zarr dataset to write')
    p.add_argument('--timeout', type=float, default=None,
                   help="episode length limit (sim seconds; default the task's: 20, push_t 60)")
    p.add_argument('--image-size', default='96x96', help='WIDTHxHEIGHT of the camera')
    p.add_argument('--mode', default='position', help='controller mode')
    p.add_argument('--wrist-camera', choices=('auto', 'enabled', 'disabled'), default='auto',
                   help="also record the hand camera as wrist_image (auto: the task's default, on for "
                        "pick_place; as sim_node's wrist_camera parameter)")
    p.add_argument('--expert-style', default=None,
                   help="how the scripted expert decides (default its first style; push_t: phased or reactive, "
                        "sim/experts_push_t.py)")
    p.add_argument('--keep-failures', action='store_true', help='also keep episodes the expert failed')
    p.add_argument('--overwrite', action='store_true')


def run(args) -> int:
    import json
    import sys

    from tqdm import tqdm

    from ros2_imitation.policy.dataset import write_replay_buffer
    from ros2_imitation.sim import PandaSim
    from ros2_imitation.sim.experts import make_expert
    from ros2_imitation.sim.rollout import ExpertAgent, Rollout
    from ros2_imitation.sim.tasks import episode_timeout

    width, height = (int(v) for v in args.image_size.lower().split('x'))
    wrist = PandaSim.WRIST_CAMERA[args.wrist_camera]
    rollout = Rollout(task=args.task, mode=args.mode, camera_size=(width, height), wrist_camera=wrist)
    try:
        agent = ExpertAgent(make_expert(args.task, rollout.sim.model, style=args.expert_style))
    except ValueError as exc:      # no expert for the task, or not that style
        print(f'ros2-imitation sim-dataset: {exc}', file=sys.stderr)
        return 2
    episodes, outcomes, bar = [], [], tqdm(range(args.seed, args.seed + args.episodes), unit='episode')
    for seed in bar:
        result = rollout.run(agent, seed, episode_timeout(args.task, args.timeout), record=True)
        outcomes.append({'seed': seed, 'success': result.success, 'mode': agent.expert.mode,
                         'steps': len(result.data.get('action', []))})
        if (result.success or args.keep_failures) and result.data:
            episodes.append(result.data)
        bar.set_postfix(kept=len(episodes))
    if not episodes:
        print('no episode to write')
        return 1
    import numpy as np

    from ros2_imitation.data.ee_streams import ee_names, ee_streams
    data = {k: np.concatenate([ep[k] for ep in episodes]) for k in episodes[0]}
    data.update(ee_streams(data, rollout.robot))     # the same demonstrations for end-effector policies
    ends = np.cumsum([len(ep['action']) for ep in episodes])
    path = write_replay_buffer(args.out, data, ends, overwrite=args.overwrite)
    import zarr
    meta = zarr.open_group(str(path), mode='a')['meta']
    robot = rollout.robot
    names = list(robot.arm_joints) + ([robot.gripper.command_name] if rollout.gripper else [])
    meta.attrs.update({'source': 'sim-dataset', 'task': args.task, 'rate': 1.0 / rollout.timing.dt,
                       'joint_names': names, 'arm_joint_names': list(robot.arm_joints),   # as bag2dataset's
                       'ee_names': ee_names(robot, bool(rollout.gripper)),
                       'ee_frames': [robot.kinematics.base_frame, robot.kinematics.tip_frame],
                       'action_time_offset_steps': 1, 'episodes': outcomes, 'expert_style': agent.expert.style,
                       'action_definition': 'the position the active expert chunk commands for t + dt'})
    wins = sum(o['success'] for o in outcomes)
    print(json.dumps({'dataset': str(path), 'episodes_written': len(episodes), 'expert_success': wins,
                      'episodes_run': len(outcomes), 'frames': int(ends[-1])}))
    return 0
