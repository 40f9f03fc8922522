"""`ros2-imitation record-demos`: scripted-expert demonstrations in sim, one rosbag2 per episode.

Starts config/graphs/record_sim.yaml (record_sim_pick_place.yaml for pick_place; sim + controller + expert + recorder, one process each,
talking over DDS) and drives it from this process, per episode:

  expert ~/pause, controller ~/stop + ~/resume   the arm goes compliant (hold_timeout 0)
  sim seed + ~/reset                              seeded initial state
  recorder ~/start, expert ~/reset                new mode draw, the expert acts
  ... until the task succeeds or --timeout sim seconds pass ...
  recorder ~/stop_success | ~/stop_failure        outcome in the bag's custom_data
                                                  (or ~/discard with --discard-failures)

--attach drives a record_sim graph started elsewhere (`ros2 launch ros2_imitation record.launch.py`):
the recorder's `output_dir` is set to --out first, so the bags land next to record_demos.jsonl
whatever folder the launch was started from; the summary names the folders the recorder reported.

Physical arms (--source kinesthetic | leader | teleop): only the recorder (and, for leader, the
leader_arm bridge; for teleop, teleop_node: SpaceMouse or gamepad -> end-effector chunks) are started; the robot's drivers, camera and controller run as they do on that
robot. Episodes are started and ended from the keyboard, with the outcome the operator gives.
"""
import json
import os
import sys
import time
from pathlib import Path

from ros2_imitation.commands._record_physical import PHYSICAL_TOPICS, record_interactive
from ros2_imitation.graph.session import GraphDied, log_episode

HELP = 'record demonstrations, one rosbag2 per episode: scripted expert in sim, leader arm, kinesthetic, teleop'


class AttachError(RuntimeError):
    """The running graph refused what --attach needs of it."""


def add_arguments(p):
    p.add_argument('--source', choices=('expert', 'leader', 'kinesthetic', 'teleop'), default='expert',
                   help='expert: scripted expert in sim (default); leader: a leader arm publishing JointState '
                        'drives the arm through the chunk controller; kinesthetic: the arm is moved by hand '
                        '(controller not commanding), joint states are the demonstration; teleop: a SpaceMouse '
                        '(spacenav Twist + Joy) or gamepad drives the end effector (teleop_node -> the '
                        'controller\'s IK: run it with chunk_space:=ee); convert its bags with bag2dataset '
                        '--action-source next_state --ee-robot ROBOT')
    p.add_argument('--task', default='push_cube',
                   help='push_cube, reach or pick_place (default push_cube); pick_place runs record_sim_pick_place '
                        '(the wrist camera recorded, 8-column chunks: arm + panda_gripper)')
    p.add_argument('--episodes', type=int, default=10, help='number of episodes (default 10)')
    p.add_argument('--out', required=True, help='folder for the bags (created; existing bags are kept)')
    p.add_argument('--seed', type=int, default=0, help='seed of the first episode; episode i uses seed+i')
    p.add_argument('--expert-seed', type=int, default=None,
                   help='seed of the expert mode draws (default: --seed)')
    p.add_argument('--timeout', type=float, default=None,
                   help="episode length limit, sim seconds (default the task's: 20, push_t 60)")
    p.add_argument('--real-time-factor', type=float, default=1.0,
                   help='sim speed (default 1.0; above 1 only if the controller keeps its loop rate)')
    p.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap', help='bag storage (default mcap)')
    p.add_argument('--discard-failures', action='store_true',
                   help='discard failed episodes instead of keeping them marked outcome=failure')
    p.add_argument('--headless', action='store_true',
                   help='no display needed: render with EGL (the default when no DISPLAY is set)')
    p.add_argument('--arg', action='append', metavar='NAME=VALUE', help='another record_sim graph argument')
    p.add_argument('--set', action='append', metavar='NODE.PARAM=VALUE', help='override one node parameter')
    p.add_argument('--startup-timeout', type=float, default=90.0, help='seconds to wait for the graph')
    p.add_argument('--attach', action='store_true',
                   help='drive a record_sim graph that is already running (e.g. `ros2 launch ros2_imitation '
                        'record.launch.py`) instead of starting one: its recorder is told to write into --out; '
                        'its other arguments (task, storage) apply')
    p.add_argument('--quiet', action='store_true', help='no progress bar or per-episode lines (the summary is printed)')
    g = p.add_argument_group('physical arms (--source leader | kinesthetic | teleop)')
    g.add_argument('--topics', nargs='+', default=None, metavar='TOPIC',
                   help=f'topics to record (default {PHYSICAL_TOPICS}, plus the chunk topics for leader)')
    g.add_argument('--leader-topic', default='/leader/joint_states', help='leader arm JointState topic')
    g.add_argument('--leader-joints', default='', help='comma-separated leader joint names, in follower order '
                                                       '(default: the follower names)')
    g.add_argument('--twist-topic', default='/spacenav/twist',
                   help='--source teleop: geometry_msgs/Twist of the SpaceMouse (spacenav)')
    g.add_argument('--joy-topic', default='/spacenav/joy',
                   help='--source teleop: sensor_msgs/Joy with the deadman (button 0) and gripper (button 1)')
    g.add_argument('--sim', action='store_true',
                   help='also start the sim and controller (sim_control) to try a source without a robot')


def record(args, log=print) -> dict:
    """Run the whole recording; returns the summary (also printed)."""
    from ros2_imitation.commands import key_values
    from ros2_imitation.graph.bringup import Bringup
    from ros2_imitation.graph.episodes import EpisodeRunner
    from ros2_imitation.graph.session import GraphSession, liveness
    from ros2_imitation.graph.spec import load_graph, task_graph

    if args.episodes < 1:
        raise SystemExit('record-demos: --episodes must be >= 1')
    from ros2_imitation.sim.tasks import episode_timeout
    args.timeout = episode_timeout(args.task, args.timeout)
    if args.headless or not os.environ.get('DISPLAY'):
        os.environ.setdefault('MUJOCO_GL', 'egl')
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    graph_args = key_values(args.arg, '--arg')
    graph_args.update(task=args.task, output_dir=str(out), storage=args.storage,
                      real_time_factor=float(args.real_time_factor),
                      expert_seed=int(args.seed if args.expert_seed is None else args.expert_seed))
    overrides = key_values(args.set, '--set')
    graph = load_graph(task_graph('record_sim', args.task), graph_args, overrides)
    # The expert waits for ~/reset; auto-reset would also react to the sim reset on its own.
    graph.node('expert').parameters.update(auto_reset=False)
    topics = graph.node('recorder').parameters['topics']
    domain = os.environ.get('ROS_DOMAIN_ID')

    results = []
    t_start = time.monotonic()
    bringup = _Attached() if args.attach else Bringup(graph, log=(lambda m: None) if args.quiet else log)
    with bringup:
        runner = EpisodeRunner(domain_id=int(domain) if domain else None)
        try:
            calls = GraphSession(runner.node, liveness(bringup))
            runner.wait_for_state(args.startup_timeout)
            calls.wait_services(['/expert/reset', '/expert/pause', '/controller/stop', '/controller/resume',
                        '/recorder/start', '/recorder/stop_success', '/recorder/stop_failure',
                        '/recorder/discard'], args.startup_timeout)
            if args.attach:
                _write_into(runner, out)
                if not args.quiet:
                    log(f'[record-demos] attached: the recorder writes the bags into {out}')
            missing = calls.wait_recorder_ready(topics, args.startup_timeout)
            if missing:
                log(f'[record-demos] warning: no publisher for {missing}; recording without them')
            t_ready = time.monotonic()
            progress = _progress(args)
            for i in range(args.episodes):
                seed = args.seed + i
                result = _episode(runner, calls, seed, args)
                results.append(result)
                log_episode(out, result)
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(success=f'{sum(r["success"] for r in results)}/{len(results)}')
                elif not args.quiet:
                    log(f'[record-demos] episode {i + 1}/{args.episodes} seed {seed}: '
                        f'{"success" if result["success"] else "failure"} in {result["duration"]:.1f} s '
                        f'({result.get("mode")})')
            if progress is not None:
                progress.close()
        finally:
            runner.close()
    wall = time.monotonic() - t_start
    summary = _summary(results, wall, time.monotonic() - t_ready if results else 0.0, out)
    if any(folder != str(out) for folder in summary['bag_folders']):
        log(f'[record-demos] warning: the recorder wrote the bags into {summary["bag_folders"]}, not {out} '
            '(a recorder on another machine or in a container writes to its own file system)')
    log(json.dumps(summary, indent=2))
    return summary


def _write_into(runner, out: Path) -> None:
    """--attach: set the running recorder's output_dir to `out` (an absolute path)."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(out))
    reply = runner.call(SetParameters, '/recorder/set_parameters',
                        SetParameters.Request(parameters=[Parameter(name='output_dir', value=value)]))
    if not reply.results[0].successful:
        raise AttachError(f'the recorder refused output_dir {out}: {reply.results[0].reason}')


class _Attached:
    """Stands in for Bringup with --attach: the graph runs elsewhere."""

    def poll(self):
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _episode(runner, calls, seed: int, args) -> dict:
    # 1. the expert stops acting; the controller holds where the arm is and, with hold_timeout 0,
    #    goes compliant chunk_timeout (0.3 s) later: the reset then moves a compliant arm.
    calls('/expert/pause')
    calls('/controller/stop')
    calls('/controller/resume')
    t0 = runner.state()['time']
    wall = max(30.0, 20.0 / max(args.real_time_factor, 0.05))
    calls.wait_for(runner.state, lambda s: s['time'] >= t0 + 0.4 or s['time'] < t0, wall,
                   'the controller to release the arm')
    # 2. seeded reset, then the recorder and the expert start on it
    reset = runner.reset(seed)
    episode = reset['episode']
    calls.wait_for(runner.state, lambda s: s.get('episode') == episode, wall, f'task state of episode {episode}')
    started = json.loads(calls('/recorder/start').message)
    expert = json.loads(calls('/expert/reset').message)
    # 3. until success or the time limit (sim seconds)
    wall_limit = max(60.0, 10.0 * args.timeout / max(args.real_time_factor, 0.05))
    state = calls.wait_for(runner.state, lambda s: s.get('episode') == episode and (
        s['success'] or s['time'] >= args.timeout), wall_limit, f'episode {episode} (seed {seed}) to end')
    success = bool(state['success'])
    if success or not args.discard_failures:
        saved = json.loads(calls('/recorder/stop_success' if success else '/recorder/stop_failure').message)
        path = saved['path']
        messages = saved['message_count']
    else:
        calls('/recorder/discard')
        path, messages = None, 0
    return dict(seed=seed, success=success, duration=float(state['time']), distance=state.get('distance'),
                bag=path, messages=messages, mode=expert.get('mode'),
                missing_topics=started.get('missing_topics', []))


def _progress(args):
    if args.quiet or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=args.episodes, desc=f'record-demos {args.task}', unit='episode')


def _summary(results, wall: float, episodes_wall: float, out: Path) -> dict:
    n = len(results)
    modes = {}
    for r in results:
        modes[r['mode']] = modes.get(r['mode'], 0) + 1
    # where the recorder says it put the bags (absolute paths on its own machine)
    folders = sorted({str(Path(r['bag']).parent) for r in results if r['bag']})
    return dict(out=str(out), bag_folders=folders, episodes=n, successes=sum(r['success'] for r in results),
                kept=sum(r['bag'] is not None for r in results), modes=modes,
                mean_episode_sim_s=round(sum(r['duration'] for r in results) / max(n, 1), 2),
                wall_s=round(wall, 1), wall_per_episode_s=round(episodes_wall / max(n, 1), 2))


def run(args) -> int:
    try:
        if args.source != 'expert':
            record_interactive(args)
            return 0
        summary = record(args)
    except (GraphDied, TimeoutError, AttachError) as exc:
        print(f'ros2-imitation record-demos: {exc}', file=sys.stderr)
        return 1
    return 0 if summary['episodes'] == args.episodes else 1
