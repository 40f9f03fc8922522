"""Shared fixtures: isolated ROS graphs (own domain id, localhost only) and a probe node; the `ros` marker."""
import ast
import functools
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault('MUJOCO_GL', 'egl')
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'

# ---------------------------------------------------------------- the `ros` marker
# Tests that use ROS 2 itself (rclpy, message and service types, node processes over DDS) are marked `ros`,
# so `pytest -m ros` runs just them: CI runs most of those again on the ROS 2 Jazzy wheels (make test-jazzy-ci).
# A test is one when it takes a fixture that gives it a ROS domain, or when its module imports, anywhere
# in it, a ROS package or the graph helpers below (conftest's processes and graphs, fault/faultlib).
ROS_FIXTURES = {'ros_env', 'probe', 'spawn'}
GRAPH_HELPERS = {'Process', 'GraphRun', 'Recorder', 'call_service', 'next_domain_id'}


def is_ros_package(module: str) -> bool:
    """rclpy, rcl_interfaces, rosidl_*, rmw*, and every *_msgs / *_srvs / *_interfaces package."""
    top = module.split('.')[0]
    return top == 'rclpy' or top.startswith(('rcl_', 'rosidl', 'rmw')) or \
        top.endswith(('_msgs', '_srvs', '_interfaces'))


@functools.cache
def module_uses_ros(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            if any(is_ros_package(a.name) or a.name.split('.')[-1] == 'faultlib' for a in node.names):
                return True
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ''
            if (node.level == 0 and is_ros_package(module)) or module.split('.')[-1] == 'faultlib':
                return True
            if module == 'conftest' and any(a.name in GRAPH_HELPERS for a in node.names):
                return True
    return False


def pytest_configure(config):
    config.addinivalue_line('markers', 'ros: uses rclpy, ROS message types or nodes over DDS (set by conftest.py)')


# Deadlines: the `ros` tests run real node processes over DDS against wall-clock deadlines (a graph up
# and publishing within 120 s, recovery from a fault within 20 s). On a slow 2-core machine one test in
# ~50 now and then misses one (a different test each run, each passing alone), so a `ros` test that
# failed on a deadline, and only on one, runs again, at most twice (pytest-rerunfailures; the summary
# counts the reruns). So does a tracking test that missed its bound while the machine starved the graph:
# the controller loop or the physics stalled past STARVED_S, as their own /diagnostics say (starvation()
# below). Any other failure, a command outside the limits above all, fails at once.
DEADLINE_ERRORS = [r'timed out after [0-9.]+ s waiting', r'no recovery[;:] controller', r'starved: ']
STARVED_S = 0.05


def pytest_collection_modifyitems(config, items):
    reruns = config.pluginmanager.hasplugin('rerunfailures')
    for item in items:
        if ROS_FIXTURES & set(getattr(item, 'fixturenames', ())) or module_uses_ros(Path(item.path)):
            item.add_marker(pytest.mark.ros)
            if reruns:
                item.add_marker(pytest.mark.flaky(reruns=2, reruns_delay=2, only_rerun=DEADLINE_ERRORS))
    # the tests without ROS first (no node processes, no wall-clock deadlines), each group in file order:
    # CI installs the Jazzy venv beside them at the lowest priority, never beside a deadline (.ci/run)
    items[:] = sorted(items, key=lambda item: item.get_closest_marker('ros') is not None)


# Teardown watchdog: a `ros` test's teardown destroys DDS participants in this process, which once hung a
# CI run for minutes inside Fast DDS with the GIL held (see ros2_imitation/graph/client.py), where no
# Python timeout can act. faulthandler's watchdog is a C thread: past TEARDOWN_WATCHDOG_S it writes every
# thread's stack to the real stderr and ends the run (exit 1), so a hang fails with its cause at once.
TEARDOWN_WATCHDOG_S = float(os.environ.get('ROS2_IMITATION_TEARDOWN_WATCHDOG_S', 180.0))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    if item.get_closest_marker('ros') is None:
        yield
        return
    import faulthandler
    try:   # pytest's faulthandler plugin keeps a copy of the terminal's stderr, out of reach of capture
        from _pytest.faulthandler import fault_handler_stderr_fd_key
        fd = item.config.stash.get(fault_handler_stderr_fd_key, 2)
    except ImportError:
        fd = 2
    faulthandler.dump_traceback_later(TEARDOWN_WATCHDOG_S, exit=True, file=fd)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


# Domain ids 1..101 are valid on every rmw; offset by pid so parallel test runs rarely share one.
_domains = itertools.count()


def next_domain_id() -> int:
    return 1 + (os.getpid() * 7 + next(_domains)) % 100


@pytest.fixture
def ros_env():
    env = dict(os.environ)
    env['ROS_DOMAIN_ID'] = str(next_domain_id())
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['PYTHONUNBUFFERED'] = '1'
    return env


_started = []


@pytest.fixture(scope='session', autouse=True)
def _stop_leftover_processes():
    """A test that fails half-way through start-up must not leave a graph running."""
    yield
    for proc in _started:
        proc.stop()


@pytest.fixture(scope='module')
def one_torch_thread():
    """One intra-op torch thread for a module's tests (pytestmark = usefixtures): on a 2-core machine
    shared with other jobs, two spinning threads ran the training tests ~7x slower than one; the
    tests measure behaviour, not speed."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _stop_processes_of_each_test():
    """What a test started (itself or through its function-scoped fixtures) stops when it ends, passed
    or failed: a graph left running after a failure would starve every test after it on a small
    machine. Processes of module- and session-scoped fixtures, set up before this one, are left to
    their fixtures, and so are those a test hands over to one (`outlives_test`, e.g. a node restarted
    into the fault suite's module-wide graph)."""
    first = len(_started)
    yield
    for proc in _started[first:]:
        if not getattr(proc, 'outlives_test', False):
            proc.stop()


class Process:
    """A child started in its own process group, stopped with SIGTERM to the group."""

    def __init__(self, cmd, env, log_path, cwd=None):
        _started.append(self)
        self.log_path = log_path
        self._log = open(log_path, 'w')
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=cwd)

    @property
    def pid(self):
        return self.proc.pid

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self, timeout=15.0) -> int:
        if self._log.closed:
            return self.proc.returncode
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                try:     # bounded: a blocking wait once hung a whole CI run on a killed bringup
                    self.proc.wait(10.0)
                except subprocess.TimeoutExpired:
                    print(f'process {self.proc.pid} not reaped 10 s after SIGKILL', file=sys.stderr)
        self._kill_started_nodes()
        self._log.close()
        return self.proc.returncode

    def _kill_started_nodes(self):
        """A bringup stops its nodes (each in a session of its own) itself; if it failed to, a test has
        failed already, and its nodes must not run on into the tests after it."""
        for pid in started_pids(self.output()):
            try:
                os.killpg(pid, signal.SIGKILL)
                print(f'killed node group {pid}, left running by its bringup', file=sys.stderr)
            except (ProcessLookupError, PermissionError):
                pass


def started_pids(output: str) -> list:
    """The pids of the nodes a bringup started, from its "[bringup] started NAME (EXE, pid N)" lines."""
    return [int(line.rsplit('pid ', 1)[1].rstrip(')')) for line in output.splitlines()
            if line.startswith('[bringup] started ') and line.endswith(')') and 'pid ' in line]


@pytest.fixture
def spawn(tmp_path, ros_env):
    """spawn('bringup', 'sim', '--arg', ...) runs `ros2-imitation ...` in the test's ROS domain."""
    started = []

    def _spawn(*cli_args, env=None):
        log = tmp_path / f'proc{len(started)}.log'
        proc = Process([sys.executable, '-m', 'ros2_imitation.cli', *cli_args],
                       env or ros_env, str(log))
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        proc.stop()


class Recorder:
    """Keeps every message of a topic with its arrival time."""

    def __init__(self, node, msg_type, topic, qos=None):
        from ros2_imitation.qos import SENSOR_QOS
        self.messages, self.times = [], []
        self._sub = node.create_subscription(msg_type, topic, self._on, qos or SENSOR_QOS)

    def _on(self, msg):
        self.messages.append(msg)
        self.times.append(time.monotonic())

    def rate(self, window: float) -> float:
        t_end = self.times[-1]
        return sum(1 for t in self.times if t > t_end - window) / window

    def since(self, t: float) -> list:
        return [m for m, tm in zip(self.messages, self.times) if tm >= t]


class GraphRun:
    """`ros2-imitation bringup GRAPH ...` in its own domain, plus a spinning probe node on it."""

    def __init__(self, log_path, *cli_args):
        from ros2_imitation.graph.client import ClientNode
        self.env = dict(os.environ, ROS_DOMAIN_ID=str(next_domain_id()), PYTHONUNBUFFERED='1',
                        ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
        self.proc = Process([sys.executable, '-m', 'ros2_imitation.cli', 'bringup', *cli_args],
                            self.env, str(log_path))
        self._probe = ClientNode('probe', int(self.env['ROS_DOMAIN_ID']))
        self.node, self.context = self._probe.node, self._probe.context

    def record(self, msg_type, topic, qos=None) -> Recorder:
        return Recorder(self.node, msg_type, topic, qos)

    def output(self) -> str:
        return self.proc.output()

    def close(self):
        if self.proc._log.closed:
            return
        self._probe.close()
        self.proc.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture
def probe(ros_env):
    """An rclpy node in the test process, on the test's domain, spun in a background thread."""
    from ros2_imitation.graph.client import ClientNode
    with ClientNode('test_probe', int(ros_env['ROS_DOMAIN_ID'])) as client:
        yield client.node


def two_camera_policy(dim: int, recorded: list):
    """A tiny untrained policy with `image` and `wrist_image` inputs (state and action `dim` wide) that
    appends each observation it is queried with to `recorded`."""
    import numpy as np

    from ros2_imitation.policy import DiffusionPolicy, PolicyConfig
    config = PolicyConfig(image_keys=('image', 'wrist_image'), image_shape=(96, 96, 3), crop_shape=(88, 88),
                          encoder_channels=(8, 16), num_keypoints=8, down_dims=(16, 32), state_dim=dim,
                          action_dim=dim, num_inference_steps=2, diffusion_step_embed_dim=16)
    policy = DiffusionPolicy(config)
    policy.set_stats({'state': {'min': -np.ones(dim, np.float32), 'max': np.ones(dim, np.float32)},
                      'action': {'min': np.full(dim, -0.5, np.float32), 'max': np.full(dim, 0.5, np.float32)}})
    predict = policy.predict_chunk

    def recording(obs, **kwargs):
        recorded.append({k: np.array(v) for k, v in obs.items()})
        return predict(obs, **kwargs)
    policy.predict_chunk = recording
    return policy


def starvation(diagnostics: list, t_from: float, t_to: float,
               sources=('chunk controller', 'sim: physics')) -> str:
    """'' when none of `sources` (the controller loop, the physics) stalled past STARVED_S between the sim
    times t_from and t_to, as their DiagnosticArray messages say (loop_period_max_ms, behind_max_ms); else
    'starved: ' and what stalled. A status covers the time before its stamp, so those up to 1 s later count."""
    from ros2_imitation.nodes.common import to_sec
    worst = {}
    for d in diagnostics:
        if t_from <= to_sec(d.header.stamp) <= t_to + 1.0:
            for s in d.status:
                if any(source in s.name for source in sources):
                    for kv in s.values:
                        if kv.key in ('loop_period_max_ms', 'behind_max_ms'):
                            worst[s.name] = max(worst.get(s.name, 0.0), float(kv.value))
    stalls = [f'{name} stalled {ms:.0f} ms' for name, ms in worst.items() if ms > STARVED_S * 1e3]
    return f'starved: {", ".join(stalls)}' if stalls else ''


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = 'condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


def call_service(node, srv_type, name: str, request=None, timeout: float = 20.0):
    client = node.create_client(srv_type, name)
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            raise AssertionError(f'service {name} not available after {timeout} s')
        future = client.call_async(request or srv_type.Request())
        wait_for(future.done, timeout, what=f'reply from {name}')
        return future.result()
    finally:
        node.destroy_client(client)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False
