"""The controller node against the simulated arm, separate processes over real DDS.

Acceptance of the control issue: sine-sweep chunks tracked in impedance and position modes, no jump
beyond the max step at chunk switches, the watchdogs, stop/resume and dry run.
"""
import os
import signal
import time

import numpy as np
import pytest
from conftest import GraphRun, call_service, starvation, started_pids, wait_for
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ros2_imitation.control.trajectory import Trajectory
from ros2_imitation.nodes.conversions import trajectory_to_msg
from ros2_imitation.qos import COMMAND_QOS, OUTPUT_QOS
from ros2_imitation.robot import RobotProfile

ROBOT = RobotProfile.load('panda')
ARM = ROBOT.arm_joints
AMP = np.array([0.2, 0.15, 0.2, 0.2, 0.2, 0.2, 0.2])
CHUNK_DT, CHUNK_LEN, EXECUTE = 0.1, 16, 8


def stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def arm(msg) -> np.ndarray:
    index = {n: i for i, n in enumerate(msg.name)}
    return np.array([msg.position[index[j]] for j in ARM])


class Sweep:
    """A sine sweep (0.2 -> 0.4 Hz) around a start pose, cut into 16-point chunks at 10 Hz."""

    def __init__(self, q0, t0):
        self.q0, self.t0 = q0, t0

    def __call__(self, t):
        s = np.clip(np.asarray(t) - self.t0, 0, None)
        phase = 2 * np.pi * (0.2 * s + 0.01 * s ** 2)
        return self.q0 + np.sin(phase)[..., None] * AMP

    def chunk(self, t_first) -> JointTrajectory:
        times = t_first + np.arange(CHUNK_LEN) * CHUNK_DT
        return trajectory_to_msg(Trajectory.from_absolute(ARM, times, self(times)))


def start(tmp_path, *args, relay=False):
    """With relay, the controller reads /relay/joint_states, which this test can cut."""
    if relay:
        args += ('--set', 'controller.joint_states_topic=/relay/joint_states')
    run = GraphRun(tmp_path / 'bringup.log', 'sim_control', *args)
    run.joints = run.record(JointState, '/joint_states')
    run.relaying = relay
    if relay:
        pub = run.node.create_publisher(JointState, '/relay/joint_states', COMMAND_QOS)
        run.node.create_subscription(JointState, '/joint_states',
                                     lambda m: run.relaying and pub.publish(m), COMMAND_QOS)
    run.chunks = run.node.create_publisher(JointTrajectory, '/ros2_imitation/action_chunk', COMMAND_QOS)
    run.diagnostics = run.record(DiagnosticArray, '/diagnostics', COMMAND_QOS)
    try:
        wait_for(lambda: len(run.joints.messages) > 10 and run.chunks.get_subscription_count() > 0, 60,
                 what='sim joint states and the controller subscription')
        wait_for(lambda: any(s.message.startswith(('holding', 'resting')) for d in run.diagnostics.messages
                             for s in d.status), 30, what='the controller to hold the arm')
    except AssertionError:
        run.close()
        raise
    return run


def stream(run, sweep, until):
    """Publish a chunk every EXECUTE steps of sim time, each starting just ahead of now."""
    next_pub = 0.0
    while True:
        now = stamp(run.joints.messages[-1])
        if now >= until:
            return
        if now >= next_pub:
            run.chunks.publish(sweep.chunk(now + 0.05))
            next_pub = now + EXECUTE * CHUNK_DT
        time.sleep(0.005)


@pytest.mark.parametrize('mode, command_topic', [
    ('impedance', '/effort_controller/commands'), ('position', '/position_controller/commands')])
def test_sine_sweep_tracked(tmp_path, mode, command_topic):
    with start(tmp_path, '--arg', f'mode={mode}') as run:
        commands = run.record(Float64MultiArray, command_topic, OUTPUT_QOS)
        t0 = stamp(run.joints.messages[-1]) + 0.1
        sweep = Sweep(arm(run.joints.messages[-1]), t0)
        stream(run, sweep, t0 + 8.0)
        errors = np.array([np.abs(arm(m) - sweep(stamp(m))) for m in run.joints.messages
                           if t0 + 0.5 <= stamp(m) <= t0 + 8.0])
        print(f'{mode}: max tracking error {errors.max():.4f} rad, mean {errors.mean():.4f} rad, '
              f'{len(errors)} joint states')
        assert len(errors) > 500
        # a stall of the controller loop or the physics lags the arm behind the sweep: a machine that
        # starved them reruns the test (conftest DEADLINE_ERRORS)
        p99 = np.percentile(errors.max(axis=1), 99)
        starved = starvation(run.diagnostics.messages, t0, t0 + 8.0)
        assert p99 <= 0.05 and errors.max() <= 0.1, \
            f'{mode}: joint error p99 {p99:.4f}, max {errors.max():.4f} rad {starved}'
        values = np.array([m.data for m in commands.messages])
        assert values.shape[1] == 7 and np.all(np.isfinite(values))
        if mode == 'position':
            # the largest step between two commands the controller sent (its own count: a test reader
            # may miss messages under load, which would look like a jump that never happened)
            sent = [float(dict((kv.key, kv.value) for kv in s.values)['max_command_step_rad'])
                    for d in run.diagnostics.messages for s in d.status if 'chunk controller' in s.name]
            print(f'position: largest command step {sent[-1]:.5f} rad (max step {ROBOT.limits.max_step})')
            assert sent[-1] <= ROBOT.limits.max_step + 1e-9
        else:
            assert np.all(np.abs(values) <= ROBOT.limits.effort)


def test_a_stalled_sim_does_not_shake_the_impedance_loop(tmp_path):
    """The sim process stopped three times for 0.45 s mid-sweep (SIGSTOP), with the shipped max_catch_up_effort:
    sim time slips and the arm goes on tracking. A sim that sprints through the missed time (as with
    max_catch_up_effort 0.5) applies the torque of one instant for tens of ms: 0.16-0.88 rad errors."""
    with start(tmp_path, '--arg', 'mode=impedance') as run:
        sim = [pid for pid in started_pids(run.output()) if f'sim (sim_node, pid {pid})' in run.output()]
        t0 = stamp(run.joints.messages[-1]) + 0.1
        sweep = Sweep(arm(run.joints.messages[-1]), t0)
        for t_stall in (1.5, 2.5, 3.5):
            stream(run, sweep, t0 + t_stall)
            os.kill(sim[0], signal.SIGSTOP)
            time.sleep(0.45)
            os.kill(sim[0], signal.SIGCONT)
        stream(run, sweep, t0 + 5.0)
        errors = np.array([np.abs(arm(m) - sweep(stamp(m))).max() for m in run.joints.messages
                           if t0 + 0.5 <= stamp(m) <= t0 + 5.0])
        print(f'sim stopped 3 x 0.45 s mid-sweep: max joint error {errors.max():.4f} rad')
        # the sim's stalls are this test's own; a starved controller reruns it (conftest DEADLINE_ERRORS)
        starved = starvation(run.diagnostics.messages, t0, t0 + 5.0, sources=('chunk controller',))
        assert len(errors) > 300 and errors.max() <= 0.05, f'max joint error {errors.max():.4f} rad {starved}'


def test_watchdogs_stop_and_dry_run(tmp_path):
    """Chunks stop -> hold, then rest; joint states stop -> commanding stops; stop/resume; dry run."""
    with start(tmp_path, '--arg', 'mode=impedance', '--set', 'controller.hold_timeout=1.0', relay=True) as run:
        efforts = run.record(Float64MultiArray, '/effort_controller/commands', OUTPUT_QOS)
        diagnostics = run.diagnostics
        t0 = stamp(run.joints.messages[-1]) + 0.1
        sweep = Sweep(arm(run.joints.messages[-1]), t0)
        stream(run, sweep, t0 + 2.0)
        # the chunk stream stops: the arm holds the last pose, then rests (damping only)
        t_last_end = t0 + 2.0 + 0.05 + (CHUNK_LEN - 1) * CHUNK_DT
        wait_for(lambda: stamp(run.joints.messages[-1]) > t_last_end + 0.3 + 1.0 + 0.5, 20,
                 what='hold and rest timeouts to pass')
        tail = [m for m in run.joints.messages if stamp(m) > stamp(run.joints.messages[-1]) - 0.3]
        speed = max(np.abs(np.array(m.velocity[:7])).max() for m in tail)
        assert speed < 0.02, f'arm still moving at {speed:.3f} rad/s after the watchdog'
        state = wait_for(lambda: [s for d in diagnostics.messages for s in d.status
                                  if 'resting' in s.message], 5, what='resting in /diagnostics')
        assert 'no chunk' in state[-1].message
        # joint states stop: commanding stops (after one zero torque)
        run.relaying = False
        time.sleep(1.0)
        silent_since = time.monotonic()
        time.sleep(1.0)
        late = efforts.since(silent_since)
        assert not late, f'{len(late)} commands sent without joint states'
        assert 'joint states stale' in run.output()
        # joint states back: stop service blocks chunks until resume
        run.relaying = True
        time.sleep(0.5)
        assert call_service(run.node, Trigger, '/controller/stop').success
        run.chunks.publish(Sweep(arm(run.joints.messages[-1]), 0).chunk(stamp(run.joints.messages[-1]) + 0.05))
        wait_for(lambda: 'controller is stopped' in run.output(), 5, what='chunk rejected while stopped')
        reply = call_service(run.node, Trigger, '/controller/resume')
        assert reply.success and reply.message == 'holding'


def test_dry_run_sends_nothing_to_the_arm(tmp_path):
    with start(tmp_path, '--arg', 'mode=position', '--arg', 'dry_run=true') as run:
        real = run.record(Float64MultiArray, '/position_controller/commands', COMMAND_QOS)
        dry = run.record(Float64MultiArray, '/controller/dry_run/position', COMMAND_QOS)
        q_start = arm(run.joints.messages[-1])
        t0 = stamp(run.joints.messages[-1]) + 0.1
        stream(run, Sweep(q_start, t0), t0 + 1.5)
        assert len(dry.messages) > 100 and not real.messages
        assert np.abs(arm(run.joints.messages[-1]) - q_start).max() < 0.01
        assert 'DRY RUN' in run.output()


def test_trajectory_passthrough_is_accepted_by_the_sims_jtc(tmp_path):
    """Mode `trajectory`: re-timed chunks go to the joint_trajectory_controller, which accepts them."""
    with start(tmp_path, '--arg', 'mode=trajectory') as run:
        sent = run.record(JointTrajectory, '/joint_trajectory_controller/joint_trajectory', OUTPUT_QOS)
        t0 = stamp(run.joints.messages[-1]) + 0.1
        sweep = Sweep(arm(run.joints.messages[-1]), t0)
        stream(run, sweep, t0 + 4.0)
        errors = np.array([np.abs(arm(m) - sweep(stamp(m))) for m in run.joints.messages
                           if t0 + 0.5 <= stamp(m) <= t0 + 4.0])
        print(f'trajectory: max tracking error {errors.max():.4f} rad over {len(sent.messages)} trajectories')
        assert len(sent.messages) >= 4
        assert 'rejected trajectory' not in run.output()
        assert errors.max() <= 0.05


def test_impedance_target_mode_publishes_joint_state_targets(tmp_path):
    with start(tmp_path, '--arg', 'mode=impedance_target') as run:
        targets = run.record(JointState, '/target_joint', OUTPUT_QOS)
        t0 = stamp(run.joints.messages[-1]) + 0.1
        stream(run, Sweep(arm(run.joints.messages[-1]), t0), t0 + 1.0)
        assert len(targets.messages) > 100
        last = targets.messages[-1]
        assert list(last.name) == list(ARM) and len(last.velocity) == 7
        assert np.all(np.isfinite(last.position))
