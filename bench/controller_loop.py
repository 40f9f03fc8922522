"""Controller loop rate and period jitter at 100, 250 and 500 Hz, in the sim graph over DDS.

Runs `sim_control` (sim + controller as separate processes), streams 10 Hz chunks of a slow sine for
each rate, and reads the controller's own /diagnostics: loop rate, and per 0.5 s window the p50 and
p99 of the wall-clock period between cycles. Writes docs/benchmarks.md section `controller_loop`.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402


def measure(rate: float, seconds: float, mode: str) -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from ros2_imitation.control.trajectory import Trajectory
    from ros2_imitation.graph.bringup import Bringup
    from ros2_imitation.graph.client import ClientNode
    from ros2_imitation.graph.spec import load_graph
    from ros2_imitation.nodes.common import to_sec
    from ros2_imitation.nodes.conversions import trajectory_to_msg
    from ros2_imitation.qos import COMMAND_QOS, SENSOR_QOS
    from ros2_imitation.robot import RobotProfile

    robot = RobotProfile.load('panda')
    graph = load_graph('sim_control', {'mode': mode}, {'controller.control_rate': float(rate),
                                                      'controller.diagnostics_rate': 2.0})
    windows, joints = [], []
    with Bringup(graph, log=lambda *_: None):
        client = ClientNode('bench_probe', spin=False)
        node, executor = client.node, client.executor
        node.create_subscription(DiagnosticArray, '/diagnostics', lambda m: windows.append(
            {kv.key: kv.value for kv in m.status[0].values}), COMMAND_QOS)
        node.create_subscription(JointState, '/joint_states', lambda m: joints.append(to_sec(m.header.stamp)),
                                 SENSOR_QOS)
        pub = node.create_publisher(JointTrajectory, '/ros2_imitation/action_chunk', COMMAND_QOS)
        deadline = time.monotonic() + 60
        while not joints or not any(w.get('state') == 'holding' for w in windows):
            executor.spin_once(timeout_sec=0.05)
            if time.monotonic() > deadline:
                raise RuntimeError(f'the sim_control graph did not come up in 60 s ({len(joints)} joint states, '
                                   f'controller states {sorted({w.get("state") for w in windows})})')
        windows.clear()
        end = time.monotonic() + seconds
        next_pub = 0.0
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.005)
            now = joints[-1]
            if now >= next_pub:
                times = now + 0.05 + np.arange(16) * 0.1
                q = robot.home + 0.15 * np.sin(2 * np.pi * 0.3 * times)[:, None]
                pub.publish(trajectory_to_msg(Trajectory.from_absolute(robot.arm_joints, times, q)))
                next_pub = now + 0.8
        client.close()
    usable = [w for w in windows if 'loop_period_p50_ms' in w][1:]  # the first window includes start-up
    return {
        'rate': rate,
        'achieved_hz': float(np.median([float(w['loop_rate_hz']) for w in usable])),
        'p50_ms': float(np.median([float(w['loop_period_p50_ms']) for w in usable])),
        'p99_ms': float(np.median([float(w['loop_period_p99_ms']) for w in usable])),
        'p99_worst_ms': float(np.max([float(w['loop_period_p99_ms']) for w in usable])),
        'overruns': int(usable[-1]['overruns']) if usable else -1,
        'windows': len(usable),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=10.0, help='measured streaming time per rate')
    parser.add_argument('--rates', type=float, nargs='+', default=[100.0, 250.0, 500.0])
    parser.add_argument('--mode', default='impedance')
    parser.add_argument('--quick', action='store_true', help='4 s per rate')
    args = parser.parse_args()
    seconds = 4.0 if args.quick else args.seconds
    rows = []
    for rate in args.rates:
        r = measure(rate, seconds, args.mode)
        rows.append(r)
        print(f"{rate:5.0f} Hz target: {r['achieved_hz']:6.1f} Hz achieved, period p50 {r['p50_ms']:.2f} ms, "
              f"p99 {r['p99_ms']:.2f} ms (worst window {r['p99_worst_ms']:.2f} ms), overruns {r['overruns']}")
    table = ['| target (Hz) | achieved (Hz) | period p50 (ms) | period p99 (ms) | worst window p99 (ms) | overruns |',
             '|---|---|---|---|---|---|']
    table += [f"| {r['rate']:.0f} | {r['achieved_hz']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['p99_worst_ms']:.2f} | {r['overruns']} |" for r in rows]
    body = (f'`controller_node` in `{args.mode}` mode against `sim_node` (real-time factor 1, 500 Hz physics), '
            f'separate processes over Fast DDS, {seconds:.0f} s of 10 Hz chunk streaming per rate. Period = wall '
            'time between control cycles (the loop wakes on sim time); p50/p99 are medians over 0.5 s windows '
            'of the controller\'s own /diagnostics. A Python loop is not a hard real-time loop: on a real arm '
            'run the 1 kHz loop in ros2_control (modes `trajectory` or `impedance_target`) or keep this one at '
            '250 Hz or below.\n\n' + '\n'.join(table))
    write_section('controller_loop', 'Controller loop rate and jitter', body)


if __name__ == '__main__':
    main()
