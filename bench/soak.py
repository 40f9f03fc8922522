"""Soak: the demo graph for N minutes (default 10); per-node memory and policy latency over time.

Runs the `demo` graph (sim, proprioception, the shipped diffusion policy, controller: separate
processes over DDS, as `ros2-imitation demo` does) and drives seeded push_cube episodes back to back
(sim reset, policy and controller reset, 20 s of sim time or success) for the whole run. Every
`--interval` seconds it samples each node process's resident memory (VmRSS, /proc) and CPU time;
every second it reads the nodes' /diagnostics: the policy's latency of its newest chunk
(observation stamp -> chunk published) and the controller's loop period. Writes docs/soak.png and
the `soak` section of docs/benchmarks.md, and prints the figures. Flat = the memory of every node
grows by less than 2 MB/min over the second half of the run, and the policy latency of the last
third stays within 1.5x of the first third's (medians).

    python bench/soak.py                 # 10 minutes
    python bench/soak.py --quick         # about 1 minute
"""
import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PLOT = ROOT / 'docs' / 'soak.png'
PAGE = os.sysconf('SC_PAGE_SIZE')
TICKS = os.sysconf('SC_CLK_TCK')


def rss_mb(pid: int) -> float:
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float('nan')


def cpu_seconds(pid: int) -> float:
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, IndexError, ValueError):
        return float('nan')


def process_times() -> dict:
    """{pid: (CPU seconds, nice)} of every process on the machine."""
    out = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    fields = f.read().rsplit(')', 1)[1].split()
                out[int(entry)] = ((int(fields[11]) + int(fields[12])) / TICKS, int(fields[16]))
            except (OSError, IndexError, ValueError):
                pass
    return out


def other_load(before: dict, after: dict, ours: set, seconds: float) -> tuple:
    """(% of a core used by niced processes, by other processes) outside the graph and this one."""
    niced = other = 0.0
    for pid, (cpu_s, nice) in after.items():
        if pid in ours:
            continue
        used = cpu_s - before.get(pid, (0.0, 0))[0]
        if nice > 0:
            niced += used
        else:
            other += used
    return niced / seconds * 100.0, other / seconds * 100.0


def slope_per_min(t, y) -> float:
    t, y = np.asarray(t, float), np.asarray(y, float)
    ok = np.isfinite(y)
    if ok.sum() < 3:
        return float('nan')
    return float(np.polyfit(t[ok] / 60.0, y[ok], 1)[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--minutes', type=float, default=10.0)
    parser.add_argument('--quick', action='store_true', help='about 1 minute')
    parser.add_argument('--interval', type=float, default=5.0, help='memory sampling period, s')
    parser.add_argument('--model', default='', help="policy checkpoint ('' = models/push_cube)")
    parser.add_argument('--json', default=None, help='also write the samples here')
    parser.add_argument('--no-doc', action='store_true', help='print only; do not touch docs/')
    args = parser.parse_args()
    minutes = 1.0 if args.quick else args.minutes
    interval = min(args.interval, 2.0) if args.quick else args.interval

    from diagnostic_msgs.msg import DiagnosticArray

    from ros2_imitation.graph.bringup import Bringup
    from ros2_imitation.graph.episodes import EpisodeRunner
    from ros2_imitation.graph.spec import load_graph
    from ros2_imitation.qos import COMMAND_QOS

    graph = load_graph('demo', {'model': args.model})
    lock = threading.Lock()
    latency, loop_p99, memory, cpu = [], [], [], []     # (seconds since start, values...)
    episodes = []
    start = [None]
    load_before = Path('/proc/loadavg').read_text().split()[:3]

    def on_diagnostics(msg):
        if start[0] is None:
            return
        t = time.monotonic() - start[0]
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            with lock:
                if 'latency_last_ms' in values:
                    latency.append((t, float(values['latency_last_ms']), float(values['inference_ms']),
                                    int(values['chunks'])))
                if 'loop_period_p99_ms' in values:
                    loop_p99.append((t, float(values['loop_period_p99_ms'])))

    log = []
    with Bringup(graph, log=log.append) as bringup:
        pids = {node.name: node.process.pid for node in bringup.running}
        runner = EpisodeRunner()
        runner.node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, COMMAND_QOS)
        stop = threading.Event()

        def sample():
            last_cpu = {n: cpu_seconds(p) for n, p in pids.items()}
            last_t = time.monotonic()
            while not stop.wait(interval):
                now = time.monotonic()
                t = now - start[0]
                mem = {n: rss_mb(p) for n, p in pids.items()}
                cpu_now = {n: cpu_seconds(p) for n, p in pids.items()}
                use = {n: (cpu_now[n] - last_cpu[n]) / (now - last_t) * 100.0 for n in pids}
                last_cpu, last_t = cpu_now, now
                with lock:
                    memory.append((t, mem))
                    cpu.append((t, use))

        try:
            runner.wait_for_state(180)
            start[0] = time.monotonic()
            machine_before = process_times()
            memory.append((0.0, {n: rss_mb(p) for n, p in pids.items()}))
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            deadline = start[0] + minutes * 60.0
            seed = 5000
            while time.monotonic() < deadline:
                died = bringup.poll()
                if died:
                    raise RuntimeError(f'node {died[0]} exited with code {died[1]}')
                result = runner.run(seed, 20.0, also=tuple(graph.episode_resets))
                episodes.append((time.monotonic() - start[0], seed, result.success, result.duration))
                print(f'{episodes[-1][0]:6.0f} s  episode {seed}: success {result.success} '
                      f'({result.duration:.1f} s sim)', flush=True)
                seed += 1
            stop.set()
            sampler.join(timeout=interval + 1)
            exited = {n: bringup.running[i].process.poll() for i, n in enumerate(pids)}
            niced, others = other_load(machine_before, process_times(), set(pids.values()) | {os.getpid()},
                                       time.monotonic() - start[0])
        finally:
            stop.set()
            runner.close()
    elapsed = time.monotonic() - start[0]
    names = list(pids)
    t_mem = np.array([t for t, _ in memory])
    rss = {n: np.array([m[n] for _, m in memory]) for n in names}
    k_1min = min(int(np.searchsorted(t_mem, min(60.0, elapsed / 2))), len(t_mem) - 1)
    after_1min = {n: float(rss[n][k_1min]) for n in names}
    second_half = t_mem >= elapsed / 2
    slopes = {n: slope_per_min(t_mem[second_half], rss[n][second_half]) for n in names}
    lat = np.array([(t, v) for t, v, _, _ in latency]) if latency else np.zeros((0, 2))
    thirds = [lat[(lat[:, 0] >= k * elapsed / 3) & (lat[:, 0] < (k + 1) * elapsed / 3), 1] for k in range(3)]
    med = [float(np.median(x)) if x.size else float('nan') for x in thirds]
    p99 = [float(np.percentile(x, 99)) if x.size else float('nan') for x in thirds]
    mean_cpu = {n: float(np.nanmean([u[n] for _, u in cpu])) if cpu else float('nan') for n in names}
    memory_flat = all(not (s > 2.0) for s in slopes.values())
    latency_flat = med[2] <= 1.5 * med[0] if np.isfinite(med[0]) and np.isfinite(med[2]) else False
    successes = sum(1 for e in episodes if e[2])
    crashed = {n: c for n, c in exited.items() if c is not None}

    print(f'\n{elapsed / 60:.1f} min, {len(episodes)} episodes ({successes} successes), '
          f'{latency[-1][3] if latency else 0} chunks; load average before: {" ".join(load_before)}; '
          f'other processes meanwhile: {niced:.0f}% of a core niced, {others:.0f}% not')
    rows = '\n'.join(f'| {n} | {rss[n][0]:.0f} | {after_1min[n]:.0f} | {rss[n][-1]:.0f} | {slopes[n]:+.2f} | '
                     f'{mean_cpu[n]:.0f} |' for n in names)
    header = ('| node | RSS at start (MB) | after 1 min | at the end | slope over the 2nd half (MB/min) | '
              'CPU (% of a core) |\n|---|---|---|---|---|---|')
    print(header)
    print(rows)
    print(f'policy latency median by thirds: {med[0]:.0f} / {med[1]:.0f} / {med[2]:.0f} ms; '
          f'p99 {p99[0]:.0f} / {p99[1]:.0f} / {p99[2]:.0f} ms')
    print(f'memory {"flat" if memory_flat else "GROWING"}, latency {"flat" if latency_flat else "NOT flat"}'
          + (f'; nodes exited: {crashed}' if crashed else ''))

    if args.json:
        Path(args.json).write_text(json.dumps({'memory': memory, 'latency': latency, 'loop_p99': loop_p99,
                                               'cpu': cpu, 'episodes': episodes}, default=float))
    if args.no_doc:
        return 0 if memory_flat and latency_flat and not crashed else 1

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for n in names:
        axes[0].plot(t_mem / 60, rss[n], label=n)
    axes[0].set_ylabel('RSS (MB)')
    axes[0].legend(loc='center right', ncol=2, fontsize=8)
    axes[0].set_title(f'demo graph soak, {elapsed / 60:.1f} min, {len(episodes)} episodes')
    if latency:
        arr = np.array([(t, v, i) for t, v, i, _ in latency])
        axes[1].plot(arr[:, 0] / 60, arr[:, 1], '.', ms=2, label='obs -> chunk latency (newest chunk)')
        axes[1].plot(arr[:, 0] / 60, arr[:, 2], '-', lw=1, label='inference, median of last 200')
    axes[1].set_ylabel('policy (ms)')
    axes[1].legend(loc='upper left', fontsize=8)
    if loop_p99:
        arr = np.array(loop_p99)
        axes[2].plot(arr[:, 0] / 60, arr[:, 1], '.', ms=2)
    axes[2].set_ylabel('controller loop\nperiod p99 (ms)')
    axes[2].set_xlabel('minutes')
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=90)
    print(f'wrote {PLOT}')

    body = (
        f'The `demo` graph (sim, proprioception, the shipped policy, controller; separate processes over DDS) '
        f'for {elapsed / 60:.1f} min, driving seeded push_cube episodes back to back: {len(episodes)} episodes, '
        f'{successes} successes, {latency[-1][3] if latency else 0} chunks, '
        f'{"no node exited" if not crashed else f"nodes exited: {crashed}"}. Memory = VmRSS of each node '
        f'process every {interval:.0f} s; latency = the policy\'s own figure for its newest chunk '
        f'(observation stamp -> chunk published), read once a second from /diagnostics.\n\n'
        f'{header}\n{rows}\n\n(A node\'s first minute includes its warm-up (the policy '
        f'allocates most of its memory in its first inferences); flatness is judged on the second half.)\n\n'
        f'Policy latency, median by thirds of the run: {med[0]:.0f} / {med[1]:.0f} / {med[2]:.0f} ms '
        f'(p99 {p99[0]:.0f} / {p99[1]:.0f} / {p99[2]:.0f} ms). Memory: '
        f'{"flat" if memory_flat else "GROWING"} (every node < 2 MB/min over the 2nd half); latency: '
        f'{"flat" if latency_flat else "NOT flat"} (last third within 1.5x of the first).\n\n'
        f'The CPU was shared during this run: other processes used {niced:.0f}% of a core at low priority '
        f'(nice > 0: a training job) and {others:.0f}% at normal priority (load average '
        f'{" ".join(load_before)} before it started), so the latencies are higher than on an idle machine; '
        f'what this measures is that neither memory nor latency drifts.\n\n![soak](soak.png)')
    write_section('soak', f'Soak: the demo graph for {elapsed / 60:.0f} minutes', body)
    return 0 if memory_flat and latency_flat and not crashed else 1


if __name__ == '__main__':
    sys.exit(main())
