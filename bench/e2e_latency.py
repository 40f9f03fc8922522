"""End-to-end latency of the full graph: observation stamp -> chunk published, and tracking error.

Runs the `demo` graph (sim, proprioception, policy, controller as separate processes over DDS) for a
few seeded episodes and reads the nodes' own /diagnostics: the policy's latency (p50/p99 over its last
200 chunks), inference time and dropped actions; the controller's tracking error. Writes the
`e2e_latency` section of docs/benchmarks.md.
"""
import argparse
import sys
import threading
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--episodes', type=int, default=3)
    parser.add_argument('--model', default='')
    parser.add_argument('--continuity', default='inpaint')
    parser.add_argument('--quick', action='store_true', help='one episode')
    args = parser.parse_args()
    from diagnostic_msgs.msg import DiagnosticArray

    from ros2_imitation.graph.bringup import Bringup
    from ros2_imitation.graph.episodes import EpisodeRunner
    from ros2_imitation.graph.spec import load_graph
    from ros2_imitation.qos import COMMAND_QOS

    standalone = standalone_ms(args.model)
    print(f'standalone torch eager, batch 1: {standalone:.1f} ms per chunk')
    graph = load_graph('demo', {'model': args.model, 'continuity': args.continuity})
    episodes = 1 if args.quick else args.episodes
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

    with Bringup(graph, log=lambda *_: None):
        runner = EpisodeRunner()
        runner.node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, COMMAND_QOS)
        try:
            runner.wait_for_state(120)
            for i in range(episodes):
                results.append(runner.run(2000 + i, 20.0, also=tuple(graph.episode_resets)))
                print(f'episode {i}: success {results[-1].success}')
        finally:
            runner.close()
    last = policy_diag[-1]
    row = {'p50': float(last['latency_p50_ms']), 'p99': float(last['latency_p99_ms']),
           'inference': float(last['inference_ms']), 'dropped': int(last['dropped_actions']),
           'chunks': int(last['chunks']),
           'tracking_max': max(controller_errors) if controller_errors else float('nan'),
           'tracking_median': float(np.median(controller_errors)) if controller_errors else float('nan'),
           'success': sum(r.success for r in results)}
    stages = {k[:-3]: float(v) for k, v in last.items() if k.endswith('_ms') and not k.startswith(('latency', 'inference'))}
    print(row, stages)
    body = (f'`demo` graph, {episodes} push_cube episodes (seeds 2000+), continuity `{args.continuity}`, '
            'sim at real-time factor 1 on the same CPU as the policy. Latency = policy publish time - '
            'the observation\'s header.stamp (sim clock); tracking error = max |q_cmd - q| over the arm '
            'joints as the controller reports it each 0.5 s while tracking.\n\n'
            '| obs -> chunk p50 (ms) | p99 (ms) | inference (ms) | chunks | overtaken actions dropped | '
            'tracking error median / max (rad) | successes |\n|---|---|---|---|---|---|---|\n'
            f"| {row['p50']:.0f} | {row['p99']:.0f} | {row['inference']:.0f} | {row['chunks']} | {row['dropped']} | "
            f"{row['tracking_median']:.4f} / {row['tracking_max']:.4f} | {row['success']}/{episodes} |")
    order = ['wait', 'decode', 'preprocess', 'encode', 'denoise', 'schedule', 'publish']
    names = [n for n in order if n in stages]
    body += ('\n\nWhere the time goes (medians over the last 200 chunks, policy_node\'s /diagnostics): wait = '
             'observation stamp -> the query starts (transport, intake, the inference thread picking it up); '
             'decode = an image message to the policy\'s array (per frame, in the node); preprocess / encode / '
             'denoise = inside the policy call; schedule / publish = after it. Standalone = the same model, '
             'torch eager, batch 1, in this process before the graph starts.\n\n'
             '| standalone (ms) | p50 / standalone | p99 / standalone | ' + ' | '.join(f'{n} (ms)' for n in names) +
             ' |\n|' + '---|' * (3 + len(names)) + '\n'
             f"| {standalone:.1f} | {row['p50'] / standalone:.2f} | {row['p99'] / standalone:.2f} | " +
             ' | '.join(f'{stages[n]:.2f}' for n in names) + ' |\n')
    write_section('e2e_latency', 'End-to-end latency (full graph in sim)', body)


def standalone_ms(model: str) -> float:
    """Median time of one chunk of `model` (default: the shipped one) in this process, torch eager."""
    from ros2_imitation.runtime.runner import chunk_time_ms, load_runtime_policy
    return chunk_time_ms(load_runtime_policy(model, 'cpu')[0], repeats=30)


if __name__ == '__main__':
    main()
