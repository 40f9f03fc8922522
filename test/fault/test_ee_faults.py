"""Faults in end-effector control, against the real node processes over DDS.

Two graphs, one after the other (a class each):

- TestEEChunks: sim_control with the controller taking end-effector chunks (chunk_space ee: tip
  poses -> joints by its IK), this test streaming a 4 cm tip circle in place of an end-effector
  policy (faultlib.EEChunkStream). Rows: targets outside the workspace box, rotations that are no
  rotation, targets the IK cannot reach.
- TestTeleop: teleop_sim (teleop_node -> end-effector chunks -> the controller's IK), this test
  publishing the SpaceMouse's Twist and Joy. Rows: the Twist stream stopping mid-motion, a Joy
  message with the wrong axis count.

Each test injects its fault, clears it, and checks: no node crashed, no arm command out of the
limits (CommandMonitor), the tip never commanded outside the workspace box, and the stack does its
job again.
"""
import time

import numpy as np
import pytest
from conftest import wait_for
from geometry_msgs.msg import Twist
from sensor_msgs.msg import Joy

from ros2_imitation.qos import SENSOR_QOS

from .faultlib import ROBOT, EEChunkStream, FaultGraph, assert_stopped_cleanly, state, states_seen, wait_sim
from .test_control_faults import Fault, first_line, recover

WORKSPACE = ROBOT.kinematics.task_limits.workspace
TIP_TOL = 0.015          # m: the tip back on the stream's path (the IK circle tracks to ~6 mm)
COMMAND_BOX_TOL = 0.001  # m: commanded tips past the box (the IK's tolerance is 0.1 mm)
MEASURED_BOX_TOL = 0.04  # m: the measured tip overshoots when the clamped path stops it dead at 0.25 m/s (sim servos)


def outside_box(tips) -> float:
    """Largest distance (m) of the measured tips past the workspace box."""
    lo, hi = np.asarray(WORKSPACE.lower), np.asarray(WORKSPACE.upper)
    return max([0.0] + [float(np.max(np.maximum(lo - p, 0) + np.maximum(p - hi, 0))) for p in tips])


class EEFault(Fault):
    tolerance = TIP_TOL

    def ee_stat(self, key) -> int:
        return int(self.run.diagnostics.get('controller: chunk controller')[1].get(key, 0))


# ---------------------------------------------------------------- end-effector chunks

@pytest.fixture(scope='class')
def ee_rig(tmp_path_factory):
    folder = tmp_path_factory.mktemp('ee_faults')
    run = FaultGraph(folder, 'sim_control', '--set', 'controller.chunk_space=ee', '--set',
                     'controller.diagnostics_rate=10.0', wait_nodes=2)
    try:
        run.stream = EEChunkStream(run.node, run.monitor)
        run.stream.start()
        recover(run, 60, TIP_TOL)
        yield run
    finally:
        run.stream.stop()
        run.close()
    assert_stopped_cleanly(run)


class TestEEChunks:
    def test_targets_outside_the_workspace_are_clamped_onto_it(self, ee_rig, reliability):
        run = ee_rig
        fault = EEFault(run, reliability, 'ee_workspace')
        clamped0 = fault.ee_stat('ee_clamped')
        p0, t_start = run.stream.p0, run.monitor.arm()[0]
        # 3 s into the table (z -0.5 m: the tip needs ~2 s at its speed limit to reach the floor), then
        # 3 s far out to the side (y +2 m), on the stream's circle
        run.stream.override = lambda t: run.stream.tip_reference(t) + [0.0, 0.0, -0.5 - p0[2]]
        wait_sim(run, 3.0)
        _, tips_down = run.stream.tip_error(1.0)
        run.stream.override = lambda t: run.stream.tip_reference(t) + [0.0, 2.0, 0.0]
        wait_sim(run, 3.0)
        _, tips_side = run.stream.tip_error(1.0)
        run.stream.override = None
        seen = states_seen(run, fault.t0)
        commanded = [run.stream.kin.tip_pose(q)[0] for _, q in run.monitor.positions_since(t_start)]
        lowest = min(p[2] for p in tips_down) if tips_down else float('nan')
        widest = max(p[1] for p in tips_side) if tips_side else float('nan')
        past_commanded, past_measured = outside_box(commanded), outside_box(tips_down + tips_side)
        clamped = fault.ee_stat('ee_clamped') - clamped0
        reason = first_line(fault.log(), 'outside the workspace')
        fault.done('tip chunks 0.5 m under the table for 3 s, then 2 m out to the side (y) for 3 s',
                   f'{clamped} waypoints clamped onto the box ("{reason}"); of {len(commanded)} joint commands, '
                   f'the tip they command is {past_commanded * 1000:.2f} mm past the box at most; the measured tip '
                   f'went down to z = {lowest * 1000:.1f} mm (floor {WORKSPACE.lower[2] * 1000:.0f} mm) and out to '
                   f'y = {widest:.3f} m (side {WORKSPACE.upper[1]:.2f} m), overshooting by {past_measured * 1000:.1f} mm '
                   f'at most; controller {seen}')
        assert clamped > 10 and reason and len(commanded) > 1000
        assert past_commanded < COMMAND_BOX_TOL, past_commanded
        assert past_measured < MEASURED_BOX_TOL and lowest < WORKSPACE.lower[2] + 0.01 \
            and widest > WORKSPACE.upper[1] - 0.02

    def test_rotations_that_are_no_rotation_are_rejected(self, ee_rig, reliability):
        run = ee_rig
        fault = EEFault(run, reliability, 'ee_bad_rotation')
        bad = {'NaN': (np.nan, 0.0, 0.0, 1.0), 'zero': (0.0, 0.0, 0.0, 0.0), 'not unit (norm 2)': (0.0, 0.0, 0.0, 2.0)}
        reasons = []
        for label, (x, y, z, w) in bad.items():
            before = fault.delta('chunks_rejected')
            now = run.monitor.arm()[0]
            times = now + 0.1 + 0.1 * np.arange(4)
            msg = run.stream.message(times, run.stream.tip_reference(times))
            rot = msg.points[2].transforms[0].rotation
            rot.x, rot.y, rot.z, rot.w = x, y, z, w
            run.stream.pub.publish(msg)
            wait_for(lambda: fault.delta('chunks_rejected') > before, 10, what=f'the {label} rotation to be rejected')
            time.sleep(0.3)
        log = fault.log()
        for marker in ('[nan', '[0.0, 0.0, 0.0, 0.0]', 'not unit'):
            line = first_line(log, marker)
            if line:
                reasons.append(line)
        error, _ = run.stream.tip_error(0.6)
        fault.done('3 end-effector chunks between the stream\'s, one waypoint\'s quaternion NaN, (0, 0, 0, 0) '
                   'and (0, 0, 0, 2)',
                   f'{fault.delta("chunks_rejected")} chunks rejected whole ({"; ".join(reasons)}); the arm kept '
                   f'the stream\'s chunks (tip {error * 1000:.1f} mm off its path)')
        assert fault.delta('chunks_rejected') >= 3 and len(reasons) == 3, reasons

    def test_targets_the_ik_cannot_reach_are_not_chased(self, ee_rig, reliability):
        run = ee_rig
        fault = EEFault(run, reliability, 'ik_not_converging')
        # inside the box, out of the arm's reach: its far top corner
        corner = np.array([WORKSPACE.upper[0] - 0.01, WORKSPACE.upper[1] - 0.01, WORKSPACE.upper[2] - 0.01])
        truncated0 = fault.ee_stat('ee_truncated')
        run.stream.override = lambda t: np.tile(corner, (len(np.atleast_1d(t)), 1))
        time.sleep(1.5)
        run.stream.override = None
        # then a path that leaves the reach halfway: its reachable start runs, the rest is cut
        now = run.monitor.arm()[0]
        times = now + 0.1 + 0.1 * np.arange(16)
        path = run.stream.tip_reference(times)
        path[8:] = corner
        run.stream.paused = True
        run.stream.pub.publish(run.stream.message(times, path))
        time.sleep(1.0)
        run.stream.paused = False
        _, tips = run.stream.tip_error(2.5)
        centre = run.stream.p0 + [0.0, run.stream.RADIUS, 0.0]
        reach = max(np.linalg.norm(p - centre) for p in tips) if tips else float('nan')
        rejected = first_line(fault.log(), 'rejected: point 0')
        cut = first_line(fault.log(), 'cut at point')
        seen = states_seen(run, fault.t0)
        fault.done(f'1.5 s of tip chunks to {np.round(corner, 2).tolist()} m (inside the box, out of reach), then '
                   'one chunk whose second half goes there',
                   f'{fault.delta("chunks_rejected")} chunks rejected at their first waypoint ("{rejected}"), '
                   f'{fault.ee_stat("ee_truncated") - truncated0} cut where the IK stopped converging ("{cut}"); '
                   f'the tip stayed within {reach * 1000:.0f} mm of the circle\'s centre (radius 40 mm); controller {seen}')
        assert fault.delta('chunks_rejected') > 0 and rejected and cut
        assert reach < run.stream.RADIUS + 0.03


# ---------------------------------------------------------------- teleoperation

@pytest.fixture(scope='class')
def teleop_rig(tmp_path_factory):
    folder = tmp_path_factory.mktemp('teleop_faults')
    run = FaultGraph(folder, 'teleop_sim', '--set', 'controller.diagnostics_rate=10.0', wait_nodes=3)
    try:
        from ros2_imitation.control.kinematics import ArmKinematics
        run.kin = ArmKinematics.for_robot(ROBOT)
        run.twist = run.node.create_publisher(Twist, '/spacenav/twist', SENSOR_QOS)
        run.joy = run.node.create_publisher(Joy, '/spacenav/joy', SENSOR_QOS)
        wait_for(lambda: run.twist.get_subscription_count() > 0 and run.monitor.arm()[0] is not None, 60,
                 what='teleop_node and the sim')
        yield run
    finally:
        run.close()
    assert_stopped_cleanly(run)


def tip_now(run):
    return run.kin.tip_pose(run.monitor.arm()[1])[0]


def drive(run, seconds, vx=0.0, axes=6, deadman=1):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        msg = Twist()
        msg.linear.x = vx
        run.twist.publish(msg)
        run.joy.publish(Joy(axes=[0.0] * axes, buttons=[deadman, 0]))
        time.sleep(0.02)


def teleop_status(run, since=None):
    return run.diagnostics.get('teleop: teleop', since)


class TestTeleop:
    def moves(self, run, seconds=1.0):
        """Tip displacement (m, along x) while driving +x at a quarter deflection with the deadman held."""
        start = tip_now(run)
        drive(run, seconds, vx=0.25)
        time.sleep(0.3)
        return float((tip_now(run) - start)[0])

    def record(self, run, reliability, key, injected, outcome, mark, recovered_at, ok):
        checked, violations = run.monitor.since(mark)
        crashes = run.crashes()
        reliability.record(key, injected, outcome + (f'; CRASH: {crashes[0]}' if crashes else ''), checked,
                           len(violations), ok and not crashes, time.monotonic() - recovered_at)
        assert not crashes, crashes
        assert not violations, violations[:5]

    def test_a_twist_stream_that_stops_mid_motion_holds_the_arm(self, teleop_rig, reliability):
        run = teleop_rig
        mark = run.monitor.mark()
        drive(run, 1.0, vx=-0.5)                         # moving at 5 cm/s (toward the base) ...
        stop = tip_now(run)
        t_stop = time.monotonic()
        time.sleep(2.0)                                  # ... and every input stops (no Twist, no Joy)
        message, _ = teleop_status(run, t_stop + 0.5)
        held = tip_now(run)
        drift = float(np.linalg.norm(held - stop))
        t_back = time.monotonic()
        moved = self.moves(run)
        ok = drift < 0.02 and 'stopped' in message and moved > 0.01
        self.record(run, reliability, 'twist_stops',
                    'the SpaceMouse\'s Twist and Joy streams cut for 2 s while driving the tip at 5 cm/s',
                    f'teleop: "{message}"; the tip moved {drift * 1000:.1f} mm after the cut (the 0.25 s input '
                    f'timeout and the arm\'s lag), then held; moving again {moved * 1000:.0f} mm in 1 s once input '
                    f'returned', mark, t_back, ok)
        assert 'stopped' in message, message
        assert drift < 0.02 and moved > 0.01, (drift, moved)

    def test_a_joy_message_with_the_wrong_axis_count_is_ignored(self, teleop_rig, reliability):
        run = teleop_rig
        mark = run.monitor.mark()
        rejected0 = int(teleop_status(run)[1].get('inputs_rejected', 0))
        start = tip_now(run)
        log_at = len(run.output())
        drive(run, 1.5, vx=1.0, axes=3)                  # full deflection, deadman held, 3 axes instead of 6
        time.sleep(0.3)
        still = float(np.linalg.norm(tip_now(run) - start))
        message, values = teleop_status(run)
        rejected = int(values.get('inputs_rejected', 0)) - rejected0
        reason = first_line(run.output()[log_at:], 'ignored joy')
        t_back = time.monotonic()
        moved = self.moves(run)
        ok = still < 0.005 and rejected > 10 and moved > 0.01
        self.record(run, reliability, 'joy_wrong_axes',
                    '1.5 s of Joy messages with 3 axes (spacenav sends 6) and the deadman pressed, a full-deflection '
                    'Twist beside them',
                    f'{rejected} Joy messages ignored ("{reason}"), the deadman counted as released: the tip moved '
                    f'{still * 1000:.1f} mm; moving again {moved * 1000:.0f} mm in 1 s with 6-axis Joy messages',
                    mark, t_back, ok)
        assert rejected > 10 and 'expected 6' in reason, (rejected, reason)
        assert still < 0.005 and moved > 0.01, (still, moved)
