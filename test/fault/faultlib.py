"""What the fault-injection tests share: a command monitor that checks every command the controller
sends against the robot profile (the gripper's width too), relays the tests can corrupt or cut, chunk
streams (arm only, or arm + gripper), and the node processes of a running graph.
"""
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
from conftest import GraphRun, Process, alive, wait_for
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from ros2_imitation.control.trajectory import Trajectory
from ros2_imitation.graph.spec import load_graph
from ros2_imitation.nodes.common import to_sec
from ros2_imitation.nodes.conversions import trajectory_to_msg
from ros2_imitation.qos import COMMAND_QOS, OUTPUT_QOS, SENSOR_QOS
from ros2_imitation.robot import RobotProfile

ROBOT = RobotProfile.load('panda')
ARM = ROBOT.arm_joints
LIMITS = ROBOT.limits
GRIPPER = ROBOT.gripper
FINGERS = ROBOT.gripper_joints
# The controller's control rate in the fault graphs (sim_control's): the gripper's width may move
# GRIPPER.max_speed / CONTROL_RATE per cycle.
CONTROL_RATE = float(load_graph('sim_control').node('controller').parameters['control_rate'])
# A gripper command may land where the fingers measurably are (a reset or a new controller starting
# from the measured width), like the arm's re-anchoring.
GRIPPER_REANCHOR_TOL = 0.002   # m
# A command may also land where the arm measurably is (the controller re-anchoring after a sim reset
# or a restart): that is no jump for the arm, whatever the previous command was.
REANCHOR_TOL = 0.02
REANCHOR_WINDOW = 0.1      # s of joint states a re-anchored command may land on
EPS = 1e-9

# Every topic controller_node can command on, with dry_run or without.
COMMAND_TOPICS = {
    'position': (Float64MultiArray, ['/position_controller/commands', '/controller/dry_run/position']),
    'effort': (Float64MultiArray, ['/effort_controller/commands', '/controller/dry_run/effort']),
    'trajectory': (JointTrajectory, ['/joint_trajectory_controller/joint_trajectory',
                                     '/controller/dry_run/trajectory']),
    'target': (JointState, ['/target_joint', '/controller/dry_run/target']),
    # gripper_mode forward (gripper_forward_value width, the sim's): one width in metres
    'gripper': (Float64MultiArray, ['/gripper_controller/commands', '/controller/dry_run/gripper']),
}


def stamp_of(msg) -> float:
    return to_sec(msg.header.stamp)


def arm_of(msg) -> np.ndarray:
    index = {n: i for i, n in enumerate(msg.name)}
    return np.array([msg.position[index[j]] for j in ARM])


def width_of(msg) -> float | None:
    """The finger-to-finger opening (m) from the finger joints of a JointState, or None."""
    index = {n: i for i, n in enumerate(msg.name)}
    try:
        width = float(GRIPPER.width_from_fingers([msg.position[index[j]] for j in FINGERS]))
    except (KeyError, IndexError):
        return None
    return width if math.isfinite(width) else None


class CommandMonitor:
    """Checks every command on every command topic against config/robots/panda.yaml.

    Out of limits: wrong length or non-finite values; a position outside [position_lower,
    position_upper]; a torque beyond the effort limit; a velocity beyond the velocity limit; a
    position command more than max_step away from the previous one of the same publisher per control
    cycle (the DDS publication sequence number counts the cycles, so a message lost on the way to
    this monitor is not mistaken for a jump) unless it lands where the arm is; a trajectory whose
    segments would need more than the velocity limit.

    The gripper's width (forward mode): one finite value inside [width_min, width_max], moving at most
    max_speed / control_rate per control cycle (counted as for the arm) unless it lands where the
    fingers measurably are (GRIPPER_REANCHOR_TOL); a publisher's first width starts where they are.
    """

    def __init__(self, node, control_rate: float = CONTROL_RATE):
        self.lock = threading.Lock()
        self.checked = 0
        self.by_kind = {kind: 0 for kind in COMMAND_TOPICS}
        self.violations = []          # (index, text)
        self._last = {}               # (topic, publisher gid) -> (sequence number, positions)
        self.joints = deque(maxlen=2000)   # (sim stamp, arm position), from /joint_states
        self.fingers = deque(maxlen=2000)  # (sim stamp, measured opening), from /joint_states
        self.widths = deque(maxlen=10000)  # (sim stamp when it arrived, gripper width commanded)
        self.positions = deque(maxlen=20000)  # (sim stamp when it arrived, arm position commanded)
        self.gripper_step = GRIPPER.max_speed / control_rate
        for kind, (msg_type, topics) in COMMAND_TOPICS.items():
            for topic in topics:
                node.create_subscription(msg_type, topic,
                                         lambda m, info, k=kind, t=topic: self._on_command(k, t, m, info),
                                         OUTPUT_QOS)
        node.create_subscription(JointState, '/joint_states', self._on_joint_state, SENSOR_QOS)

    # ---- inputs ----
    def _on_joint_state(self, msg):
        try:
            q = arm_of(msg)
        except (KeyError, IndexError):
            return
        if not np.all(np.isfinite(q)):   # a test's own bad joint states: not where the arm is
            return
        width = width_of(msg)
        with self.lock:
            self.joints.append((stamp_of(msg), q))
            if width is not None:
                self.fingers.append((stamp_of(msg), width))

    def _on_command(self, kind, topic, msg, info):
        with self.lock:
            q = self.joints[-1][1] if self.joints else None
            problem = getattr(self, f'_check_{kind}')(topic, msg, info, q)
            self.checked += 1
            self.by_kind[kind] += 1
            if problem:
                self.violations.append((self.checked, f'{topic}: {problem}'))

    # ---- checks ----
    @staticmethod
    def _vector(values, n=len(ARM)):
        v = np.asarray(values, dtype=float)
        if v.shape != (n,):
            return None, f'{v.size} values, expected {n}'
        if not np.all(np.isfinite(v)):
            return None, f'non-finite values {v.tolist()}'
        return v, None

    @staticmethod
    def _position_problem(v):
        bad = (v < LIMITS.lower - EPS) | (v > LIMITS.upper + EPS)
        if bad.any():
            return f'position outside the limits on joints {np.flatnonzero(bad).tolist()}: {v.round(4).tolist()}'
        return None

    def _step_problem(self, topic, info, v, q):
        key = (topic, bytes((info or {}).get('publisher_gid', {}).get('data', b'')))
        seq = (info or {}).get('publication_sequence_number')
        last = self._last.get(key)
        self._last[key] = (seq, v)
        # where the arm is: any of the last REANCHOR_WINDOW s of joint states (a controller re-anchors
        # on the state it last received, which this process may have received a few ms apart)
        near_arm = False
        for t, qi in reversed(self.joints):
            if t < self.joints[-1][0] - REANCHOR_WINDOW or near_arm:
                break
            near_arm = np.max(np.abs(v - qi)) <= LIMITS.max_step + REANCHOR_TOL
        if last is None:          # a publisher's first command: it must start where the arm is
            if q is not None and not near_arm:
                return f'first command {np.max(np.abs(v - q)):.4f} rad away from the arm'
            return None
        cycles = max(1, (seq - last[0]) if seq is not None and last[0] is not None else 1)
        step = float(np.max(np.abs(v - last[1])))
        if step > cycles * LIMITS.max_step + EPS and not near_arm:
            return f'step {step:.4f} rad over {cycles} cycle(s) (max_step {LIMITS.max_step})'
        return None

    def _check_position(self, topic, msg, info, q):
        v, problem = self._vector(msg.data)
        if not problem and self.joints:
            self.positions.append((self.joints[-1][0], v))
        return problem or self._position_problem(v) or self._step_problem(topic, info, v, q)

    def _check_effort(self, topic, msg, info, q):
        v, problem = self._vector(msg.data)
        if problem:
            return problem
        if np.any(np.abs(v) > LIMITS.effort + EPS):
            return f'torque beyond the effort limits: {v.round(3).tolist()}'
        return None

    def _check_target(self, topic, msg, info, q):
        if list(msg.name) != list(ARM):
            return f'joint names {list(msg.name)}'
        v, problem = self._vector(msg.position)
        if problem:
            return problem
        vel, problem = self._vector(msg.velocity)
        if problem:
            return f'velocity: {problem}'
        if np.any(np.abs(vel) > LIMITS.velocity + EPS):
            return f'velocity beyond the limits: {vel.round(3).tolist()}'
        return self._position_problem(v) or self._step_problem(topic, info, v, q)

    def _check_gripper(self, topic, msg, info, q):
        v = np.asarray(msg.data, dtype=float)
        if v.shape != (1,):
            return f'{v.size} values, expected one width'
        w = float(v[0])
        if self.joints:
            self.widths.append((self.joints[-1][0], w))
        if not math.isfinite(w):
            return f'non-finite width {w}'
        if not GRIPPER.width_min - EPS <= w <= GRIPPER.width_max + EPS:
            return f'width {w:.4f} m outside [{GRIPPER.width_min}, {GRIPPER.width_max}]'
        key = (topic, bytes((info or {}).get('publisher_gid', {}).get('data', b'')))
        seq = (info or {}).get('publication_sequence_number')
        last = self._last.get(key)
        self._last[key] = (seq, w)
        near_fingers = False
        for t, measured in reversed(self.fingers):
            if t < self.fingers[-1][0] - REANCHOR_WINDOW or near_fingers:
                break
            near_fingers = abs(w - measured) <= self.gripper_step + GRIPPER_REANCHOR_TOL
        if last is None:          # a publisher's first width: where the fingers are
            if self.fingers and not near_fingers:
                return f'first width {w:.4f} m, {abs(w - self.fingers[-1][1]):.4f} m from the fingers'
            return None
        cycles = max(1, (seq - last[0]) if seq is not None and last[0] is not None else 1)
        step = abs(w - last[1])
        if step > cycles * self.gripper_step + EPS and not near_fingers:
            return (f'width step {step:.5f} m over {cycles} cycle(s) (max {self.gripper_step:.5f} m a cycle: '
                    f'max_speed {GRIPPER.max_speed} m/s)')
        return None

    def _check_trajectory(self, topic, msg, info, q):
        try:
            order = [list(msg.joint_names).index(j) for j in ARM]
        except ValueError:
            return f'joint names {list(msg.joint_names)}'
        if not msg.points:
            return 'no points'
        prev_q, prev_t = q, 0.0
        for i, point in enumerate(msg.points):
            v, problem = self._vector(np.asarray(point.positions)[order] if len(point.positions) == len(order)
                                      else point.positions)
            if problem:
                return f'point {i}: {problem}'
            problem = self._position_problem(v)
            if problem:
                return f'point {i}: {problem}'
            if len(point.velocities):
                vel, problem = self._vector(np.asarray(point.velocities)[order])
                if problem or np.any(np.abs(vel) > LIMITS.velocity + EPS):
                    return f'point {i}: velocity {problem or vel.round(3).tolist()}'
            t = point.time_from_start.sec + point.time_from_start.nanosec * 1e-9
            if prev_q is not None:
                need = np.abs(v - prev_q) - (REANCHOR_TOL if i == 0 else 0.0)
                if np.any(need > LIMITS.velocity * max(t - prev_t, 0.0) * (1 + 1e-6) + EPS):
                    return f'point {i}: faster than the velocity limits'
            prev_q, prev_t = v, t
        return None

    # ---- results ----
    def mark(self):
        with self.lock:
            return self.checked, len(self.violations)

    def since(self, mark):
        """(commands checked, [violation texts]) since mark()."""
        with self.lock:
            return self.checked - mark[0], [text for _, text in self.violations[mark[1]:]]

    def arm(self):
        with self.lock:
            return self.joints[-1] if self.joints else (None, None)

    def window(self, seconds):
        with self.lock:
            if not self.joints:
                return []
            end = self.joints[-1][0]
            return [(t, q) for t, q in self.joints if t >= end - seconds]

    def _since(self, series, t) -> list:
        """The entries of a time-ordered series from t on (scanned from the newest: the monitor's
        callbacks wait on this lock)."""
        out = []
        with self.lock:
            for entry in reversed(series):
                if entry[0] < t:
                    break
                out.append(entry)
        return out[::-1]

    def positions_since(self, t) -> list:
        """(stamp, arm position) of the position commands that arrived from sim time t on."""
        with self.lock:
            return [(s, v) for s, v in self.positions if s >= t]

    def widths_since(self, t) -> list:
        """(sim time, width) of the gripper commands that arrived at or after sim time t."""
        return self._since(self.widths, t)

    def fingers_since(self, t) -> list:
        """(sim stamp, measured opening) of the joint states stamped at or after t."""
        return self._since(self.fingers, t)


class JointStateRelay:
    """Republishes /joint_states on `topic` (what the controller reads), as `mode` says:
    pass, nan, inf (the arm positions), missing (panda_joint3 left out), renamed (every joint
    prefixed 'left_'), no_fingers (the gripper's finger joints left out), nan_fingers (the finger
    positions NaN), stop (nothing)."""

    MODES = ('pass', 'nan', 'inf', 'missing', 'renamed', 'no_fingers', 'nan_fingers', 'stop')

    def __init__(self, node, topic):
        self.mode = 'pass'
        self.sent = 0
        self.pub = node.create_publisher(JointState, topic, COMMAND_QOS)
        node.create_subscription(JointState, '/joint_states', self._on, SENSOR_QOS)

    def _on(self, msg):
        mode = self.mode
        if mode == 'stop':
            return
        if mode != 'pass':
            msg = self.corrupt(msg, mode)
        self.pub.publish(msg)
        self.sent += 1

    @staticmethod
    def corrupt(msg, mode):
        out = JointState(header=msg.header, name=list(msg.name), position=list(msg.position),
                         velocity=list(msg.velocity), effort=list(msg.effort))
        arm = [i for i, n in enumerate(out.name) if n in ARM]
        if mode in ('nan', 'inf'):
            value = float(mode)
            for k, i in enumerate(arm):
                if k % 2 == 0 or mode == 'nan':
                    out.position[i] = value if k % 3 else -value
        elif mode == 'nan_fingers':
            for i, n in enumerate(out.name):
                if n in FINGERS:
                    out.position[i] = math.nan
        elif mode in ('missing', 'no_fingers'):
            gone = {'panda_joint3'} if mode == 'missing' else set(FINGERS)
            keep = [i for i, n in enumerate(out.name) if n not in gone]
            n = len(out.name)
            # (arrays of another length than the names, e.g. a test's own bad message read back: as they are)
            out.position, out.velocity, out.effort = (
                [v[i] for i in keep] if len(v) == n else list(v) for v in (out.position, out.velocity, out.effort))
            out.name = [out.name[i] for i in keep]
        elif mode == 'renamed':
            out.name = [f'left_{n}' for n in out.name]
        return out


class ImageRelay:
    """Republishes the sim camera on `topic` (what the policy reads) unless `on` is False."""

    def __init__(self, node, topic, source='/camera/camera/color/image_raw'):
        self.on = True
        self.sent = 0
        self.pub = node.create_publisher(Image, topic, SENSOR_QOS)
        node.create_subscription(Image, source, self._on, SENSOR_QOS)

    def _on(self, msg):
        if self.on:
            self.pub.publish(msg)
            self.sent += 1


class ChunkStream:
    """A slow sine around an anchor pose, cut into 16-point chunks at 10 Hz, one every 0.4 s of sim
    time, each starting just ahead of the newest joint state (a stand-in for the policy)."""

    AMP = np.array([0.1, 0.08, 0.1, 0.1, 0.1, 0.1, 0.1])
    FREQ, DT, POINTS, EVERY = 0.25, 0.1, 16, 0.4

    def __init__(self, node, monitor, topic='/ros2_imitation/action_chunk'):
        self.monitor = monitor
        self.pub = None if topic is None else node.create_publisher(JointTrajectory, topic, COMMAND_QOS)
        self.paused = False
        self.sent = 0
        self.q0 = self.t0 = None
        self._running = True
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        wait_for(lambda: self.pub.get_subscription_count() > 0 and self.monitor.arm()[0] is not None, 60,
                 what='the controller to subscribe to chunks')
        self.anchor()
        self._thread.start()

    def anchor(self):
        """Start the sine again where the arm is now (after a sim reset)."""
        t, q = self.monitor.arm()
        self.q0, self.t0 = q.copy(), t + 0.1

    def reference(self, t):
        s = np.clip(np.asarray(t, dtype=float) - self.t0, 0, None)
        return self.q0 + np.sin(2 * np.pi * self.FREQ * s)[..., None] * self.AMP

    def chunk(self, t_first):
        times = t_first + np.arange(self.POINTS) * self.DT
        return trajectory_to_msg(Trajectory.from_absolute(ARM, times, self.reference(times)))

    def _loop(self):
        next_pub = 0.0
        while self._running:
            now = self.monitor.arm()[0]
            if not self.paused and now is not None and now >= next_pub:
                try:
                    self.pub.publish(self.chunk(now + 0.05))
                except Exception:  # the probe is shutting down
                    return
                self.sent += 1
                next_pub = now + self.EVERY
            time.sleep(0.005)

    def tracking_error(self, seconds=0.6):
        """Largest |q - reference| over the newest `seconds` of joint states."""
        window = self.monitor.window(seconds)
        if not window or self.t0 is None:
            return math.inf
        return max(float(np.max(np.abs(q - self.reference(t)))) for t, q in window)

    def stop(self):
        self._running = False
        if self._thread.is_alive():
            self._thread.join(timeout=2)


class GripperChunkStream(ChunkStream):
    """ChunkStream with the gripper's column (the arm joints + GRIPPER.command_name, as a gripper
    policy sends): the opening a slow sine in the middle of its range, at most 0.04 m/s (the hand's
    max speed is 0.1). `widths`, while set (a function of the chunk's times), replaces the column: a
    fault."""

    CENTER, SWING = 0.045, 0.02       # m: the sine spans 0.025..0.065

    def __init__(self, node, monitor, topic='/ros2_imitation/action_chunk'):
        super().__init__(node, monitor, topic)
        self.widths = None

    def gripper_reference(self, t):
        s = np.clip(np.asarray(t, dtype=float) - self.t0, 0, None)
        return self.CENTER + self.SWING * np.sin(2 * np.pi * self.FREQ * s)

    def chunk(self, t_first):
        times = t_first + np.arange(self.POINTS) * self.DT
        widths = (self.widths or self.gripper_reference)(times)
        positions = np.column_stack([self.reference(times), widths])
        return trajectory_to_msg(Trajectory.from_absolute(ARM + (GRIPPER.command_name,), times, positions))

    # a command is taken at the sim time of the newest joint state when it reached the monitor: it
    # matches the reference at some time in LAG around that (either stream may be late on a busy CPU)
    LAG = np.linspace(-0.3, 0.1, 41)

    def gripper_error(self, seconds=0.6):
        """Largest distance of a gripper command of the newest `seconds` from the reference (the
        nearest over LAG around its arrival); inf without any."""
        end = self.monitor.arm()[0]
        got = [] if end is None or self.t0 is None else self.monitor.widths_since(end - seconds)
        if not got:
            return math.inf
        return max(float(np.min(np.abs(w - self.gripper_reference(t + self.LAG)))) for t, w in got)


class EEChunkStream(ChunkStream):
    """ChunkStream for a controller with chunk_space ee: tip poses (MultiDOFJointTrajectory on
    /ros2_imitation/ee_chunk), a 4 cm horizontal circle around the tip's pose at the anchor, the
    hand's rotation kept. `override`, while set (a function of the chunk's times -> (N, 3) tip
    positions), replaces the path: a fault. tracking_error() is in metres, at the tip."""

    RADIUS, FREQ = 0.04, 0.15

    def __init__(self, node, monitor, topic='/ros2_imitation/ee_chunk'):
        from trajectory_msgs.msg import MultiDOFJointTrajectory

        from ros2_imitation.control.kinematics import ArmKinematics
        super().__init__(node, monitor, topic=None)
        self.pub = node.create_publisher(MultiDOFJointTrajectory, topic, COMMAND_QOS)
        self.kin = ArmKinematics.for_robot(ROBOT)
        self.override = None
        self.p0 = self.r0 = None

    def anchor(self):
        super().anchor()
        self.p0, self.r0 = self.kin.tip_pose(self.q0)

    def tip_reference(self, t):
        s = 2 * np.pi * self.FREQ * np.clip(np.asarray(t, dtype=float) - self.t0, 0, None)
        return self.p0 + self.RADIUS * np.stack([np.sin(s), 1 - np.cos(s), 0 * s], axis=-1)

    def message(self, times, positions, rotations=None):
        from ros2_imitation.control.ee_chunk import EE_COLUMNS, ee_columns
        from ros2_imitation.nodes.conversions import ee_trajectory_to_msg
        rotations = [self.r0] * len(times) if rotations is None else rotations
        traj = Trajectory.from_absolute(EE_COLUMNS, times, ee_columns(positions, rotations))
        return ee_trajectory_to_msg(traj, ROBOT.kinematics.base_frame, ROBOT.kinematics.tip_frame)

    def chunk(self, t_first):
        times = t_first + np.arange(self.POINTS) * self.DT
        return self.message(times, (self.override or self.tip_reference)(times))

    def tip_error(self, seconds=0.6):
        """(largest tip distance from the path, tip positions) over the newest `seconds`."""
        window = self.monitor.window(seconds)
        if not window or self.t0 is None:
            return math.inf, []
        tips = [self.kin.tip_pose(q)[0] for _, q in window]
        return max(float(np.linalg.norm(p - self.tip_reference(t))) for (t, _), p in zip(window, tips)), tips

    def tracking_error(self, seconds=0.6):
        return self.tip_error(seconds)[0]


class Diagnostics:
    """The newest /diagnostics status of each named node part ('controller: chunk controller', ...)."""

    def __init__(self, node):
        self.latest = {}
        self.arrived = {}
        self.history = deque(maxlen=5000)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on, COMMAND_QOS)

    def _on(self, msg):
        for s in msg.status:
            values = {kv.key: kv.value for kv in s.values}
            self.latest[s.name] = (s.message, values)
            self.arrived[s.name] = time.monotonic()
            self.history.append((time.monotonic(), s.name, s.message, values))

    def get(self, name, since=None):
        """(message, values) of the newest status of `name`; empty if none arrived after `since`."""
        if since is not None and self.arrived.get(name, -math.inf) < since:
            return '', {}
        return self.latest.get(name, ('', {}))

    def states_since(self, name, t):
        return [values.get('state', msg) for tm, n, msg, values in list(self.history) if n == name and tm >= t]


def node_processes(parent_pid: int) -> dict:
    """{ROS node name: pid} of the node processes bringup started (its direct children)."""
    found = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            if ppid != parent_pid:
                continue
            with open(f'/proc/{entry}/cmdline', 'rb') as f:
                args = f.read().decode(errors='replace').split('\0')
        except (OSError, IndexError, ValueError):
            continue
        for arg in args:
            if arg.startswith('__node:='):
                found[arg.split(':=', 1)[1]] = int(entry)
    return found


class FaultGraph(GraphRun):
    """A graph under fault injection: the monitor, diagnostics, the node processes, and a record of
    which node exits the test caused (any other exit, traceback or 'stopped:' line is a crash)."""

    def __init__(self, folder: Path, graph: str, *cli_args, wait_nodes: int):
        self.folder = Path(folder)
        self.graph_name, self.cli_args = graph, cli_args
        super().__init__(self.folder / 'bringup.log', graph, *cli_args)
        self.monitor = CommandMonitor(self.node)
        self.diagnostics = Diagnostics(self.node)
        self.expected_exits = set()     # pids the test killed, or started expecting them to exit
        self.extra = []                 # (node name, Process) the test started (restarts)
        try:
            self.nodes = wait_for(lambda: len(node_processes(self.proc.pid)) >= wait_nodes and
                                  node_processes(self.proc.pid), 60, what=f'{wait_nodes} node processes')
        except AssertionError:
            self.close()
            raise

    def output(self) -> str:
        return self.proc.output() + ''.join(p.output() for _, p in self.extra)

    def pid(self, name: str) -> int:
        """The running process of node `name`: the newest the test started, else bringup's."""
        for extra_name, proc in reversed(self.extra):
            if extra_name == name and proc.proc.poll() is None:
                return proc.pid
        return self.nodes[name]

    def crashes(self) -> list:
        """Unexplained crashes so far: a node process gone that the test did not end, a traceback,
        a node reporting an unexpected error, bringup reporting an exit the test did not cause."""
        problems = []
        if self.proc.proc.poll() is not None:
            problems.append(f'bringup exited with code {self.proc.proc.returncode}')
        pids = list(self.nodes.items()) + [(name, proc.pid) for name, proc in self.extra]
        for name, pid in pids:
            if pid not in self.expected_exits and not alive(pid):
                problems.append(f'node {name} (pid {pid}) is gone')
        text = self.output()
        if 'Traceback (most recent call last)' in text:
            problems.append('a traceback in the node output')
        for line in text.splitlines():
            if '] stopped: ' in line:
                problems.append(line.strip())
            if '[bringup] node' in line and 'exited with code' in line:
                name = line.split("node '", 1)[1].split("'", 1)[0]
                if self.nodes.get(name) not in self.expected_exits:
                    problems.append(line.strip())
        return problems

    def kill(self, name: str, sig=signal.SIGKILL) -> int:
        pid = self.pid(name)
        self.expected_exits.add(pid)
        os.kill(pid, sig)
        return pid

    def start_node(self, name: str, overrides: dict | None = None, graph_args: dict | None = None,
                   expect_exit: bool = False, env: dict | None = None) -> Process:
        """Start graph node `name` again as the test's own process, with the graph's parameters
        (plus `overrides`, {'node.param': value}); expect_exit: it is meant to fail at start-up;
        env: the graph's environment with these changes (e.g. PYTHONPATH)."""
        graph = load_graph(self.graph_name, graph_args or {}, overrides or {})
        spec = graph.node(name)
        folder = self.folder / f'{name}{len(self.extra)}'
        folder.mkdir(exist_ok=True)
        params = spec.write_params_file(str(folder))
        proc = Process([sys.executable, '-m', spec.module, *spec.ros_arguments(params)],
                       {**self.env, **(env or {})}, str(self.folder / f'{name}{len(self.extra)}.log'))
        proc.outlives_test = True     # the graph's node now: the rig (module-scoped) stops it
        self.extra.append((name, proc))
        if expect_exit:
            self.expected_exits.add(proc.pid)
        return proc

    def close(self):
        self.extra_exit_codes = {}
        for name, proc in self.extra:
            code = proc.stop()
            if proc.pid not in self.expected_exits:
                self.extra_exit_codes[f'{name} (pid {proc.pid})'] = code
        super().close()


# ---------------------------------------------------------------- what the controller reports
CONTROLLER = 'controller: chunk controller'


def wait_sim(run, seconds, timeout=60.0) -> float:
    """Wait for `seconds` of sim time (the monitor's joint states), and return the sim time then. On a
    loaded machine sim time runs slower than the wall's (sim_node max_catch_up), and what a fault test
    waits for (a chunk running out, the tip reaching a wall) happens on the sim's time line."""
    end = run.monitor.arm()[0] + seconds
    wait_for(lambda: run.monitor.arm()[0] >= end, timeout, what=f'{seconds} s of sim time')
    return run.monitor.arm()[0]


def state(run, since=None) -> str:
    """The controller's state from its newest /diagnostics (only one that arrived after `since`)."""
    return run.diagnostics.get(CONTROLLER, since)[1].get('state', '')


def states_seen(run, since) -> str:
    seen = []
    for s in run.diagnostics.states_since(CONTROLLER, since):
        if not seen or seen[-1] != s:
            seen.append(s)
    return ' -> '.join(seen)


def assert_stopped_cleanly(run) -> None:
    """After close(): no node failed while stopping, and every node the test started exited 0."""
    assert not [line for line in run.output().splitlines() if 'while stopping' in line]
    assert all(code == 0 for code in run.extra_exit_codes.values()), run.extra_exit_codes


class CpuHog:
    """A busy-looping process pinned to one CPU (the last this test may use), for as long as the
    `with` block lasts: another program hogging a core beside the graph."""

    def __enter__(self):
        self.cpu = max(os.sched_getaffinity(0))
        cpu = self.cpu
        self.proc = subprocess.Popen([sys.executable, '-c', 'while True: pass'],
                                     preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


# A node that only receives a topic (raw, nothing done with it): the decoy flood's reader.
DECOY_READER = """
import sys, rclpy
from trajectory_msgs.msg import JointTrajectory
from ros2_imitation.qos import COMMAND_QOS
rclpy.init()
node = rclpy.create_node('decoy_reader')
node.create_subscription(JointTrajectory, sys.argv[1], lambda data: None, COMMAND_QOS, raw=True)
try:
    rclpy.spin(node)
except BaseException:
    pass
"""


def flood(env: dict, rate: float, seconds: float, topic='/ros2_imitation/action_chunk', decoy='',
          phase=0.5) -> dict:
    """Publish chunks at `rate` per second for `seconds` from a process of its own (so that this
    test's relays keep their pace); returns what it achieved. With `decoy`, alternately on that topic
    (read by a process of its own that does nothing with them) and on `topic`, `phase` s each."""
    script = Path(__file__).with_name('flood.py')
    extra = ['--decoy', decoy, '--phase', str(phase)] if decoy else []
    reader = subprocess.Popen([sys.executable, '-c', DECOY_READER, decoy], env=env) if decoy else None
    try:
        out = subprocess.run([sys.executable, str(script), '--rate', str(rate), '--seconds', str(seconds),
                              '--topic', topic, *extra], env=env, capture_output=True, text=True,
                             timeout=seconds + 90)
    finally:
        if reader is not None:
            reader.kill()
            reader.wait()
    if out.returncode != 0:
        raise AssertionError(f'flood publisher failed ({out.returncode}): {out.stderr[-2000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])
