HELP = 'run the full stack in the embedded simulation: seeded episodes, success, latency, video and plot'


def add_arguments(p):
    p.add_argument('--episodes', type=int, default=3)
    p.add_argument('--task', default=None,
                   help='push_cube (default of the graph), reach, pick_place or push_t (runs the GRAPH_TASK '
                        'variant when there is one: demo_pick_place, two cameras and the gripper; demo_push_t, '
                        'end-effector chunks)')
    p.add_argument('--model', default=None, help='policy checkpoint (default: the shipped model)')
    p.add_argument('--sigma', type=float, default=None, help='test-time noise injection sigma')
    p.add_argument('--graph', default='demo', help='node graph to run (default: demo, the policy; expert_demo: the scripted expert)')
    p.add_argument('--seed', type=int, default=1000, help='first episode seed (then +1 each)')
    p.add_argument('--timeout', type=float, default=None,
                   help="episode length limit (sim seconds; default the task's: 20, push_t 60)")
    p.add_argument('--out', default='demo_output', help='folder for the video, plot and JSON')
    p.add_argument('--json', default=None, metavar='OUT', help='also write the summary JSON here')
    p.add_argument('--headless', action='store_true',
                   help='never open windows (the demo opens none; accepted for scripts)')
    p.add_argument('--no-video', action='store_true', help='skip the mp4')
    p.add_argument('--view', action='store_true',
                   help='live view in the browser while it runs (Rerun; needs the [view] extra)')
    p.add_argument('--view-port', type=int, default=9090, help='web port of the live view')
    p.add_argument('--arg', action='append', metavar='NAME=VALUE',
                   help="a graph argument (e.g. runtime=auto, continuity=replan); see `ros2-imitation graphs`")
    p.add_argument('--set', action='append', metavar='NODE.PARAM=VALUE',
                   help='override one node parameter (e.g. policy.execute_steps=4)')
    p.add_argument('--view-hold', type=float, default=0.0,
                   help='keep the live view open this many seconds after the last episode')


def task_progress(state: dict) -> str:
    """How far the task got: the coverage for push_t, the object's distance to its goal otherwise."""
    if 'coverage' in state:
        return f'final coverage {state["coverage"]:.3f}'
    return f'final distance {state.get("distance", float("nan")):.3f} m'


def run(args) -> int:
    import json
    import sys
    import time
    from pathlib import Path

    import numpy as np

    from ros2_imitation.data.media import plot_episodes, write_video
    from ros2_imitation.graph.bringup import Bringup
    from ros2_imitation.graph.episodes import EpisodeRunner
    from ros2_imitation.graph.spec import load_graph, task_graph

    from ros2_imitation.commands import key_values
    values = {k: v for k, v in (('task', args.task), ('model', args.model), ('sigma', args.sigma))
              if v is not None}
    graph = load_graph(task_graph(args.graph, args.task), {**key_values(args.arg, '--arg'), **values}, key_values(args.set, '--set'))
    from ros2_imitation.sim.tasks import episode_timeout
    timeout = episode_timeout(graph.node('sim').parameters.get('task', 'push_cube'), args.timeout)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f'demo: graph {graph.name!r} ({", ".join(n.name for n in graph.nodes)}), '
          f'{args.episodes} episodes, output in {out}/', flush=True)
    results = []
    latency = {}   # the policy's own /diagnostics: obs stamp -> chunk published

    def on_diagnostics(msg):
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if 'latency_p50_ms' in values:
                latency.update(values)

    with Bringup(graph) as bringup:
        runner = EpisodeRunner(record_frames=not args.no_video)
        from diagnostic_msgs.msg import DiagnosticArray

        from ros2_imitation.qos import COMMAND_QOS
        runner.node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, COMMAND_QOS)
        if args.view:
            from ros2_imitation.viz.live_view import LiveView
            view = LiveView(runner.node, web_port=args.view_port, grpc_port=args.view_port + 786)
            print(f'live view: {view.url}', flush=True)
        try:
            runner.wait_for_state(timeout=120)
            for i in range(args.episodes):
                seed = args.seed + i
                t_wall = time.monotonic()
                result = runner.run(seed, timeout, also=tuple(graph.episode_resets))
                results.append(result)
                died = bringup.poll()
                if died:
                    print(f'demo: node {died[0]!r} exited with code {died[1]}', file=sys.stderr)
                    return 1
                lat = (f', policy latency p50 {latency["latency_p50_ms"]} ms p99 {latency["latency_p99_ms"]} ms'
                       if latency else '')
                print(f'episode {i + 1}/{args.episodes} seed {seed}: '
                      f'{"SUCCESS" if result.success else "failure"} after {result.duration:.1f} s sim '
                      f'({time.monotonic() - t_wall:.1f} s wall), {task_progress(result.final_state)}{lat}',
                      flush=True)
            if args.view and args.view_hold > 0:
                time.sleep(args.view_hold)
        finally:
            runner.close()
    successes = sum(r.success for r in results)
    summary = {
        'graph': graph.name, 'task': graph.nodes[0].parameters.get('task'),
        'success_rate': successes / len(results), 'episodes': len(results),
        'seeds': [r.seed for r in results],
        'latency_p50_ms': float(latency['latency_p50_ms']) if latency else None,
        'latency_p99_ms': float(latency['latency_p99_ms']) if latency else None,
        'inference_ms': float(latency['inference_ms']) if latency else None,
        'per_episode': [{'seed': r.seed, 'success': r.success, 'duration_s': r.duration,
                         'final_distance': r.final_state.get('distance'),
                         'final_coverage': r.final_state.get('coverage')} for r in results],
    }
    (out / 'summary.json').write_text(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    plot = plot_episodes(results, out / 'episodes.png', f'{graph.name}: {successes}/{len(results)} successful')
    if not args.no_video:
        video = write_video([(f'seed {r.seed} {"success" if r.success else "failure"}', r.frames, r.success)
                             for r in results], out / 'episodes.mp4')
        print(f'video: {video}')
    print(f'plot: {plot}\nsuccess rate {successes}/{len(results)} = {summary["success_rate"]:.0%}; '
          f'mean duration {np.mean([r.duration for r in results]):.1f} s')
    return 0
