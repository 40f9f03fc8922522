"""bringup's stop request survives a burst of signals: its handler takes no lock (graph/bringup.StopFlag).
A threading.Event there hung bringup on two quick SIGINTs (the second handler, run inside the first's
set(), waited on the Event's lock forever) and left the graph's nodes running."""
import os
import signal
import subprocess
import sys
import time

CHILD = """
import signal, sys, time
from ros2_imitation.graph.bringup import StopFlag
stop, count = StopFlag(), [0]
def handler(signum, frame):   # what bringup.run's handler does
    count[0] += 1
    stop.set()
signal.signal(signal.SIGINT, handler)
print('ready', flush=True)
end = time.monotonic() + 3.0
while time.monotonic() < end:
    stop.is_set()
print('done', count[0], stop.is_set(), flush=True)
"""


def test_the_stop_flag_survives_a_burst_of_sigints():
    child = subprocess.Popen([sys.executable, '-c', CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == 'ready'
        end = time.monotonic() + 1.5
        while time.monotonic() < end and child.poll() is None:
            os.kill(child.pid, signal.SIGINT)
        out, _ = child.communicate(timeout=30)
    finally:
        child.kill()
    words = out.split()
    assert child.returncode == 0 and words[0] == 'done' and words[2] == 'True', out
    assert int(words[1]) > 1                  # the handler ran more than once
