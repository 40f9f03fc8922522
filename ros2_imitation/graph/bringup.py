"""Start a node graph as one process per node, supervise it, and stop it cleanly.

What `ros2 launch` does on a ROS machine, for machines without the ROS launch system: each node
runs with this interpreter in its own process group (so its children die with it), gets its
parameters through a --params-file, and a node that dies takes the graph down with its name in the
error, unless it is marked `required: false`.
"""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from ros2_imitation.graph.spec import Graph, params_folder

STOP_TIMEOUT_S = 8.0
DISCOVERY_RANGE = 'ROS_AUTOMATIC_DISCOVERY_RANGE'


def isolate(env) -> dict:
    """Keep a graph on this machine unless the user chose otherwise: ROS_AUTOMATIC_DISCOVERY_RANGE
    defaults to LOCALHOST when neither it nor the older ROS_LOCALHOST_ONLY is set. `env` (a dict or
    os.environ) is changed in place and returned. ROS_DOMAIN_ID is left alone (ROS' default is 0).
    """
    if not env.get(DISCOVERY_RANGE) and 'ROS_LOCALHOST_ONLY' not in env:
        env[DISCOVERY_RANGE] = 'LOCALHOST'
    return env


@dataclass
class Running:
    name: str
    process: subprocess.Popen
    required: bool
    reported: bool = False


class Bringup:
    """Starts a graph's nodes. With env=None they get this process' environment, where the
    discovery range is defaulted to LOCALHOST first (isolate()), so that nodes created in this
    process afterwards (an EpisodeRunner, a probe) discover the graph the same way."""

    def __init__(self, graph: Graph, log=print, env: dict | None = None):
        self.graph = graph
        self.log = log
        self.env = dict(isolate(os.environ) if env is None else isolate(dict(env)))
        self.env.setdefault('PYTHONUNBUFFERED', '1')
        self.running: list[Running] = []
        self._folder = None

    def start(self, stop=None):
        """Start every node (`stop`: a StopFlag or threading.Event; once set, no further node is started)."""
        self._folder = params_folder()
        try:
            for spec in self.graph.nodes:
                if stop is not None and stop.is_set():
                    break
                cmd = [sys.executable, '-m', spec.module,
                       *spec.ros_arguments(spec.write_params_file(self._folder))]
                process = subprocess.Popen(cmd, env=self.env, start_new_session=True)
                self.running.append(Running(spec.name, process, spec.required))
                self.log(f'[bringup] started {spec.name} ({spec.executable}, pid {process.pid})')
        except Exception:
            self.stop()
            raise

    def poll(self) -> tuple[str, int] | None:
        """(name, exit code) of the first required node that has exited, else None.

        A node that is not required is reported once and the graph keeps running (the controller
        then holds the arm when its chunk source dies).
        """
        for node in self.running:
            code = node.process.poll()
            if code is None:
                continue
            if node.required:
                node.reported = True
                return node.name, code
            if not node.reported:
                node.reported = True
                self.log(f'[bringup] node {node.name!r} exited with code {code}; it is not required, '
                         f'the rest of the graph keeps running')
        return None

    def wait(self, timeout: float | None = None, stop=None) -> int:
        """Block until a required node exits, the timeout passes or `stop` (a StopFlag or threading.Event) is
        set; return bringup's exit code."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (deadline is None or time.monotonic() < deadline) and not (stop is not None and stop.is_set()):
            died = self.poll()
            if died:
                name, code = died
                self.log(f'[bringup] node {name!r} exited with code {code}; stopping the graph')
                return 1 if code == 0 else code if code > 0 else 128 - code
            time.sleep(0.1)
        return 0

    def stop(self):
        for node in self.running:
            _signal_group(node.process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for node in self.running:
            try:
                code = node.process.wait(max(0.0, deadline - time.monotonic()))
                if code not in (0, -signal.SIGTERM, -signal.SIGINT) and not node.reported:
                    # a node that dies on the way out has a bug worth seeing
                    self.log(f'[bringup] node {node.name!r} exited with code {code} while stopping')
            except subprocess.TimeoutExpired:
                self.log(f'[bringup] {node.name} ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s; killing it')
            # the group may still hold grandchildren even when the node itself has exited
            _signal_group(node.process, signal.SIGKILL)
            node.process.wait()
        self.running = []
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self):
        # a SIGTERM to the process using the graph must stop the graph too: its nodes run in
        # sessions of their own, so nothing else would reach them
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, _terminate)
        self.start()
        return self

    def __exit__(self, *exc):
        # a second Ctrl-C (or SIGTERM) must not interrupt stopping the graph half-way: the nodes not
        # yet stopped would be left running
        ignored = {}
        if threading.current_thread() is threading.main_thread():
            ignored = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.stop()
        finally:
            for sig, handler in ignored.items():
                signal.signal(sig, handler)
            if self._previous is not None:
                signal.signal(signal.SIGTERM, self._previous)


class StopFlag:
    """A stop request that a signal handler may set. threading.Event.set takes a lock: a second
    signal whose handler runs inside the first one's set() (Python runs handlers between any two
    bytecodes) waits on that lock forever, and the graph's nodes are never stopped."""

    def __init__(self):
        self._set = False

    def set(self):
        self._set = True

    def is_set(self) -> bool:
        return self._set


def _terminate(signum, _frame):
    raise KeyboardInterrupt(f'signal {signum}')


def _signal_group(process: subprocess.Popen, sig: int):
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run(graph: Graph, duration: float | None = None) -> int:
    """Run until SIGINT/SIGTERM, a required node's death, or `duration` seconds.

    Signals never interrupt anything here: the first SIGINT or SIGTERM is noted (a node being started
    is still recorded, so it is stopped too), the graph is stopped in order, and any further signal,
    a second Ctrl-C or `timeout -s INT`'s one to the process group, is ignored until that is done.
    Exit code 0 after a signal.
    """
    bringup = Bringup(graph)
    stop = StopFlag()      # set from a signal handler: no lock (see StopFlag)
    received = []

    def request_stop(signum, _frame):
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        bringup.start(stop)
        code = bringup.wait(duration, stop)
        if received:
            bringup.log(f'[bringup] {signal.Signals(received[0]).name} received; stopping '
                        f'{len(bringup.running)} nodes')
    finally:
        bringup.stop()
        # asked to stop: ignore any further signal until the process has exited (SIG_IGN, which
        # Python keeps through its teardown; its own handlers revert to the default there)
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if received else handler)
    return code
