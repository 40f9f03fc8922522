"""End-to-end latency of the full graph: observation stamp -> chunk published, and tracking error.

Runs the `demo` graph (sim, proprioception, policy, controller as separate processes over DDS) for a
few seeded episodes and reads the nodes' own /diagnostics: the policy's latency (p50/p99 over its last
200 chunks), inference time and dropped actions; the controller's tracking error. Writes the
`e2e_latency` section of docs/benchmarks.md.
"""
import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--episodes', type=int, default=3, help='episodes per configuration')
    parser.add_argument('--model', default='')
    parser.add_argument('--continuity', default='inpaint')
    parser.add_argument('--runtime', action='append', default=None,
                        help='policy runtime(s) to run the graph with (repeatable; default: torch)')
    parser.add_argument('--execute-steps', type=int, action='append', default=None,
                        help="actions executed per chunk (repeatable; default: the checkpoint's)")
    parser.add_argument('--quick', action='store_true', help='one episode')
    args = parser.parse_args()
    standalone = standalone_ms(args.model)
    print(f'standalone torch eager, batch 1: {standalone:.1f} ms per chunk')
    episodes = 1 if args.quick else args.episodes
    rows = []
    for runtime in args.runtime or ['torch']:
        for execute in args.execute_steps or [0]:
            rows.append(run_graph(args.model, args.continuity, runtime, execute, episodes))
            print(rows[-1])
    body = (f'`demo` graph, {episodes} push_cube episodes per row (seeds 2000+), continuity `{args.continuity}`, '
            'sim at real-time factor 1 on the same CPU as the policy (policy_node with 1 torch thread, as '
            'config/graphs/demo.yaml runs it). Latency = policy publish time - the observation\'s header.stamp '
            '(sim clock); tracking error = max |q_cmd - q| over the arm joints as the controller reports it '
            'each 0.5 s while tracking. Standalone = the same model, torch eager, batch 1, 2 threads, in the '
            'bench process before the graphs start (the issue\'s reference).\n\n'
            '| runtime | executed per chunk | obs -> chunk p50 (ms) | p99 (ms) | p50 / standalone | '
            'p99 / standalone | inference (ms) | chunks | overtaken actions dropped | '
            'tracking error median / max (rad) | successes |\n|---|---|---|---|---|---|---|---|---|---|---|\n')
    for r in rows:
        body += (f"| {r['runtime']} | {r['execute']} | {r['p50']:.0f} | {r['p99']:.0f} | {r['p50'] / standalone:.2f} | "
                 f"{r['p99'] / standalone:.2f} | {r['inference']:.0f} | {r['chunks']} | {r['dropped']} | "
                 f"{r['tracking_median']:.4f} / {r['tracking_max']:.4f} | {r['success']}/{episodes} |\n")
    order = ['wait', 'decode', 'preprocess', 'encode', 'denoise', 'schedule', 'publish']
    names = [n for n in order if any(n in r['stages'] for r in rows)]
    body += ('\nWhere the time goes (medians over the last 200 chunks, policy_node\'s /diagnostics): wait = '
             'observation stamp -> the query starts (transport, intake, the inference thread picking it up); '
             'decode = an image message to the policy\'s array (per frame, in the node); preprocess / encode / '
             'denoise = inside the policy call; schedule / publish = after it.\n\n'
             f'Standalone torch eager: {standalone:.1f} ms per chunk.\n\n'
             '| runtime | executed per chunk | ' + ' | '.join(f'{n} (ms)' for n in names) +
             ' |\n|' + '---|' * (2 + len(names)) + '\n')
    for r in rows:
        body += (f"| {r['runtime']} | {r['execute']} | " +
                 ' | '.join(f"{r['stages'].get(n, float('nan')):.2f}" for n in names) + ' |\n')
    nodes = sorted({n for r in rows for n in r['cpu']})
    body += (f'\nWhere the CPU goes ({os.cpu_count()} cores = {100 * os.cpu_count()} %): each node process\'s '
             'CPU time over the episodes / their wall time (/proc/<pid>/stat).\n\n| runtime | executed per chunk | ' +
             ' | '.join(f'{n} (%)' for n in nodes) + ' | total (%) |\n|' + '---|' * (3 + len(nodes)) + '\n')
    for r in rows:
        body += (f"| {r['runtime']} | {r['execute']} | " + ' | '.join(f"{100 * r['cpu'].get(n, float('nan')):.0f}" for n in nodes)
                 + f" | {100 * sum(r['cpu'].values()):.0f} |\n")
    if args.execute_steps:      # the sweep keeps its own section beside the runtimes'
        write_section('e2e_execute_steps', 'Actions executed per chunk in the graph', body)
    else:
        write_section('e2e_latency', 'End-to-end latency (full graph in sim)', body)


def run_graph(model: str, continuity: str, runtime: str, execute: int, episodes: int) -> dict:
    """One bringup of the demo graph with these policy settings; the policy's and controller's own
    /diagnostics after `episodes` seeded episodes."""
    from diagnostic_msgs.msg import DiagnosticArray

    from ros2_imitation.graph.bringup import Bringup
    from ros2_imitation.graph.episodes import EpisodeRunner
    from ros2_imitation.graph.spec import load_graph
    from ros2_imitation.qos import COMMAND_QOS

    overrides = {'policy.execute_steps': execute} if execute else {}
    graph = load_graph('demo', {'model': model, 'continuity': continuity, 'runtime': runtime}, overrides)
    policy_diag, controller_errors, results = [], [], []
    lock = threading.Lock()

    def on_diagnostics(msg):
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            with lock:
                if 'latency_p50_ms' in values:
                    policy_diag.append(values)
                if 'tracking_error_rad' in values and values.get('state') == 'tracking':
                    controller_errors.append(float(values['tracking_error_rad']))

    with Bringup(graph, log=lambda *_: None) as bringup:
        runner = EpisodeRunner()
        runner.node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, COMMAND_QOS)
        try:
            runner.wait_for_state(180)
            pids = {node.name: node.process.pid for node in bringup.running}
            cpu0, wall0 = cpu_seconds(pids), time.monotonic()
            for i in range(episodes):
                results.append(runner.run(2000 + i, 20.0, also=tuple(graph.episode_resets)))
                print(f'{runtime} execute {execute or "default"} episode {i}: success {results[-1].success}',
                      flush=True)
            time.sleep(1.5)     # one more diagnostics period after the last chunk
            wall = time.monotonic() - wall0
            cpu = {k: (v - cpu0.get(k, 0.0)) / wall for k, v in cpu_seconds(pids).items()}
        finally:
            runner.close()
    with lock:
        last = policy_diag[-1]
    return {'runtime': last.get('runtime', runtime), 'execute': int(last.get('execute_steps', execute)),
            'p50': float(last['latency_p50_ms']), 'p99': float(last['latency_p99_ms']),
            'inference': float(last['inference_ms']), 'dropped': int(last['dropped_actions']),
            'chunks': int(last['chunks']),
            'tracking_max': max(controller_errors) if controller_errors else float('nan'),
            'tracking_median': float(np.median(controller_errors)) if controller_errors else float('nan'),
            'success': sum(r.success for r in results), 'cpu': cpu,
            'stages': {k[:-3]: float(v) for k, v in last.items()
                       if k.endswith('_ms') and not k.startswith(('latency', 'inference'))}}


def cpu_seconds(pids: dict) -> dict:
    """CPU time (user + system, s) of each node process so far, from /proc/<pid>/stat."""
    tick, out = os.sysconf('SC_CLK_TCK'), {}
    for name, pid in pids.items():
        try:
            with open(f'/proc/{pid}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return out


def standalone_ms(model: str) -> float:
    """Median time of one chunk of `model` (default: the shipped one) in this process, torch eager."""
    from ros2_imitation.runtime.runner import chunk_time_ms, load_runtime_policy
    return chunk_time_ms(load_runtime_policy(model, 'cpu')[0], repeats=30)


if __name__ == '__main__':
    main()
