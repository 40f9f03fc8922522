"""Every benchmark, one after another, each writing its section of docs/benchmarks.md.

    python bench/run_all.py --quick    # < 15 min on a 2-core machine: every figure, smaller samples
    python bench/run_all.py            # the full figures (the noise study's grid alone takes many hours)

The noise study is resumable (runs/noise_grid/, runs/noise_study_quick/); the soak (bench/soak.py, 10 minutes) runs only
with --soak.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ('controller_loop', 'policy_latency', 'train_throughput', 'image_transport', 'e2e_latency', 'continuity',
           'denoise_steps', 'noise_study')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--only', nargs='+', choices=BENCHES + ('soak',), help='run just these')
    parser.add_argument('--soak', action='store_true', help='also the soak benchmark')
    args = parser.parse_args()
    names = list(args.only or BENCHES) + (['soak'] if args.soak and not args.only else [])
    timings, failed = [], []
    start = time.monotonic()
    for name in names:
        cmd = [sys.executable, str(HERE / f'{name}.py')] + (['--quick'] if args.quick else [])
        print(f'== {" ".join(cmd)}', flush=True)
        t = time.monotonic()
        code = subprocess.call(cmd)
        timings.append((name, time.monotonic() - t, code))
        if code:
            failed.append(name)
    print('\n| benchmark | seconds | exit |\n|---|---|---|')
    for name, seconds, code in timings:
        print(f'| {name} | {seconds:.0f} | {code} |')
    print(f'total {time.monotonic() - start:.0f} s' + (f'; FAILED: {", ".join(failed)}' if failed else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
