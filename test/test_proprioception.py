"""Proprioception: ROS-free mapping, velocity estimation and checks; then the node through real DDS."""
import math
import random
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ros2_imitation.nodes.throttle import ReasonLog
from ros2_imitation.robot import RobotProfile
from ros2_imitation.sensors.proprioception import (
    ERROR,
    OK,
    WARN,
    JointMapper,
    MappingError,
    ProprioTracker,
    RateMeter,
    VelocityEstimator,
)

PANDA = RobotProfile.load('panda')
ARM, GRIPPER = PANDA.arm_joints, PANDA.gripper_joints
JOINTS = ARM + GRIPPER


def shuffled(names, values, seed, extra=()):
    """names and values in a random order, with extra (name, value) joints mixed in."""
    pairs = list(zip(names, values)) + list(extra)
    random.Random(seed).shuffle(pairs)
    return [n for n, _ in pairs], [v for _, v in pairs]


# ---------------------------------------------------------------- mapping by name

@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), n_extra=st.integers(0, 3))
def test_mapping_by_name_any_order(seed, n_extra):
    q = np.arange(len(JOINTS), dtype=float) * 0.1 + 0.05
    extra = [(f'other_joint{i}', 99.0 + i) for i in range(n_extra)]
    names, values = shuffled(JOINTS, q, seed, extra)
    assert np.array_equal(JointMapper(JOINTS).map(names, values), q)


def test_mapping_reports_missing_renamed_and_malformed():
    mapper = JointMapper(JOINTS)
    renamed = ['fr3_joint1' if n == 'panda_joint1' else n for n in JOINTS]
    with pytest.raises(MappingError, match=r"missing joints \['panda_joint1'\] \(message has .*fr3_joint1"):
        mapper.map(renamed, np.zeros(len(JOINTS)))
    with pytest.raises(MappingError, match=r"missing joints \['panda_finger_joint1', 'panda_finger_joint2'\]"):
        mapper.map(ARM, np.zeros(len(ARM)))
    with pytest.raises(MappingError, match='8 values for 9 joint names'):
        mapper.map(JOINTS, np.zeros(8))
    with pytest.raises(MappingError, match='appears twice'):
        mapper.map(list(JOINTS) + ['panda_joint3'], np.zeros(len(JOINTS) + 1))
    with pytest.raises(ValueError, match='twice'):
        JointMapper(['a', 'b', 'a'])
    with pytest.raises(ValueError, match='no joints'):
        JointMapper([])


# ---------------------------------------------------------------- velocity

def test_velocity_estimate_tracks_a_sine():
    est = VelocityEstimator(tau=0.005)
    dt, w = 0.004, 2 * math.pi * 1.0
    errors = []
    for i in range(500):
        t = 10.0 + i * dt
        v = est.update(t, np.array([math.sin(w * t), 2.0 * t]))
        if i == 0:
            assert v is None, 'one sample is not a velocity'
        elif i > 50:
            errors.append(abs(v[0] - w * math.cos(w * t)))
            assert v[1] == pytest.approx(2.0)
    # lag of a first-order filter (tau) plus half a step of the backward difference
    assert max(errors) < w * w * (0.005 + dt / 2) * 1.3


def test_velocity_filter_smooths_noise_and_resets():
    rng = np.random.default_rng(1)
    raw_est, filt_est = VelocityEstimator(tau=0.0), VelocityEstimator(tau=0.02)
    raw, filt = [], []
    for i in range(400):
        t = i * 0.002
        q = np.array([0.5 * t + rng.normal(0, 1e-4)])
        a, b = raw_est.update(t, q), filt_est.update(t, q)
        if i > 50:
            raw.append(a[0])
            filt.append(b[0])
    assert np.std(filt) < 0.4 * np.std(raw)
    assert np.mean(filt) == pytest.approx(0.5, abs=0.02)
    est = VelocityEstimator(tau=0.0, max_gap=0.1)
    est.update(1.0, np.zeros(1))
    assert est.update(1.01, np.ones(1) * 0.01)[0] == pytest.approx(1.0)
    assert est.update(1.01, np.ones(1) * 0.01)[0] == pytest.approx(1.0), 'repeated stamp: same estimate'
    assert est.update(0.5, np.zeros(1)) is None, 'stamp went back (bag loop / sim reset): start again'
    assert est.update(0.51, np.ones(1) * 0.02)[0] == pytest.approx(2.0)
    assert est.update(2.0, np.zeros(1)) is None, 'gap longer than max_gap: start again'


# ---------------------------------------------------------------- the tracker

def message(t, q, seed=0, velocity=None, effort=None, drop=None, rename=None):
    names = list(JOINTS)
    if rename:
        names = [rename.get(n, n) for n in names]
    order = list(range(len(names)))
    random.Random(seed).shuffle(order)
    order = [i for i in order if names[i] != drop]
    return dict(stamp=t, names=[names[i] for i in order], position=[q[i] for i in order],
                velocity=[velocity[i] for i in order] if velocity is not None else [],
                effort=[effort[i] for i in order] if effort is not None else [])


def test_tracker_orders_estimates_and_keeps_stamps():
    tr = ProprioTracker(ARM, GRIPPER, stale_timeout=0.2, velocity_filter_tau=0.0)
    q0 = np.linspace(-1, 1, len(JOINTS))
    assert tr.status(0.0) == (WARN, 'no joint state received yet')
    assert tr.update(now=5.0, **message(100.0, q0, seed=1)) is None
    assert tr.current(5.0) is None and tr.status(5.0)[0] == WARN, 'no velocity yet from one sample'
    assert tr.update(now=5.01, **message(100.01, q0 + 0.01, seed=2)) is None
    s = tr.current(5.01)
    assert s.stamp == 100.01 and np.allclose(s.position, q0 + 0.01)
    assert np.allclose(s.velocity, 1.0) and s.estimated.all() and s.effort is None
    assert tr.status(5.01) == (OK, 'OK')
    # given velocities win where finite; a NaN velocity falls back to the estimate
    v = np.full(len(JOINTS), 0.3)
    v[2] = np.nan
    e = np.arange(len(JOINTS), dtype=float)
    tr.update(now=5.02, **message(100.02, q0 + 0.02, seed=3, velocity=v, effort=e))
    s = tr.current(5.02)
    assert s.velocity[0] == 0.3 and s.velocity[2] == pytest.approx(1.0) and s.estimated.tolist() == [
        i == 2 for i in range(len(JOINTS))]
    assert np.array_equal(s.effort, e)


def test_tracker_drops_nan_missing_and_renamed_and_recovers():
    tr = ProprioTracker(ARM, GRIPPER, stale_timeout=0.2)
    q = np.zeros(len(JOINTS))
    v = np.zeros(len(JOINTS))
    tr.update(now=1.0, **message(50.0, q, velocity=v))
    good = tr.current(1.0)
    assert good.stamp == 50.0
    bad_q = q.copy()
    bad_q[3] = np.nan
    reason = tr.update(now=1.01, **message(50.01, bad_q, velocity=v))
    assert reason == 'non-finite position: panda_joint4=nan'
    assert tr.current(1.01) is good, 'the last good sample, with its own stamp, stays current'
    assert tr.status(1.01) == (ERROR, 'rejecting joint states: non-finite position: panda_joint4=nan')
    reason = tr.update(now=1.02, **message(50.02, q, velocity=v, drop='panda_finger_joint2'))
    assert reason.startswith("missing joints ['panda_finger_joint2']")
    reason = tr.update(now=1.03, **message(50.03, q, velocity=v, rename={'panda_joint7': 'joint7'}))
    assert "missing joints ['panda_joint7']" in reason and "'joint7'" in reason
    assert tr.current(1.25) is None, 'no good message for longer than stale_timeout'
    assert tr.update(now=1.3, **message(50.3, q, velocity=v)) is None
    assert tr.current(1.3).stamp == 50.3 and tr.status(1.3)[0] == OK
    assert (tr.received, tr.rejected) == (5, 3)


def test_tracker_staleness_and_unstamped_sources():
    tr = ProprioTracker(ARM, GRIPPER, stale_timeout=0.1, velocity_filter_tau=0.0)
    q = np.zeros(len(JOINTS))
    tr.update(now=2.0, **message(0.0, q))             # stamp 0: estimate on receipt times
    tr.update(now=2.05, **message(0.0, q + 0.05))
    s = tr.current(2.05)
    assert s.stamp == 0.0 and np.allclose(s.velocity, 1.0)
    assert tr.current(2.14) is s
    level, text = tr.status(2.2)
    assert level == ERROR and text.startswith('stale: no joint state for 0.15 s')
    assert tr.current(2.2) is None and tr.age(2.2) == pytest.approx(0.15)
    with pytest.raises(ValueError):
        ProprioTracker(ARM, GRIPPER, stale_timeout=0.0)


def test_reason_log_and_rate_meter():
    log = ReasonLog(period=1.0)
    assert log.should_log('a', 0.0) == 'a'
    assert log.should_log('a', 0.5) is None and log.should_log('a', 0.6) is None
    assert log.should_log('a', 1.1) == 'a (2 more since the last report)'
    assert log.should_log('b', 1.2) == 'b', 'a new kind of problem is logged at once'
    assert log.should_log('nan in joint1', 2.0, kind='nan') == 'nan in joint1'
    assert log.should_log('nan in joint2', 2.1, kind='nan') is None, 'same kind, other text: throttled'
    assert log.should_log('a', 2.2) == 'a'
    meter = RateMeter(window=1.0)
    for i in range(100):
        meter.tick(i * 0.02)
    assert meter.rate(1.98) == pytest.approx(50.0, rel=0.05)
    assert meter.rate(10.0) == 0.0


# ---------------------------------------------------------------- the node through DDS

def test_node_orders_filters_and_reports_stale(ros_env, tmp_path, probe):
    from conftest import Process, wait_for
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from sensor_msgs.msg import JointState

    from ros2_imitation.nodes.common import to_sec, to_stamp
    from ros2_imitation.qos import SENSOR_QOS, STATE_QOS

    rate, stale = 50.0, 0.3
    proc = Process([sys.executable, '-m', 'ros2_imitation.nodes.proprioception_node', '--ros-args',
                    '-p', f'rate:={rate}', '-p', f'stale_timeout:={stale}', '-p', 'diagnostics_rate:=5',
                    '-p', 'log_throttle:=0.5'], ros_env, str(tmp_path / 'proprio.log'))
    out, diags = [], []
    probe.create_subscription(JointState, '/ros2_imitation/proprio',
                              lambda m: out.append((time.monotonic(), m)), SENSOR_QOS)
    probe.create_subscription(DiagnosticArray, '/diagnostics', lambda m: diags.append(m), SENSOR_QOS)
    pub = probe.create_publisher(JointState, '/joint_states', STATE_QOS)  # reliable, like the broadcaster
    wait_for(lambda: pub.get_subscription_count() > 0, 20, what=f'the node subscribing\n{proc.output()}')

    sent = {}          # stamp -> positions in JOINTS order, good messages only
    bad = set()
    stop = threading.Event()
    base = 1000.0      # a source clock unlike the test's own: the node must keep it

    def expected(t):
        return np.array([0.1 * i + 0.3 * math.sin(2 * math.pi * 0.5 * t + i) for i in range(len(JOINTS))])

    def publish_loop():
        k = 0
        while not stop.is_set():
            t = base + k * 0.01
            q = expected(t)
            kind = 'nan' if k % 10 == 7 else 'missing' if k == 55 else 'good'
            if kind == 'nan':
                q = q.copy()
                q[k % len(JOINTS)] = float('nan')
            m = message(t, q, seed=k, drop='panda_joint5' if kind == 'missing' else None)
            msg = JointState(name=m['names'], position=[float(x) for x in m['position']])
            msg.header.stamp = to_stamp(t)
            stamp = to_sec(msg.header.stamp)
            (sent.__setitem__(stamp, q) if kind == 'good' else bad.add(stamp))
            pub.publish(msg)
            k += 1
            time.sleep(0.01)

    thread = threading.Thread(target=publish_loop, daemon=True)
    thread.start()
    wait_for(lambda: len(out) > 10, 20, what=f'proprio output\n{proc.output()}')
    n0, t0 = len(out), time.monotonic()
    time.sleep(2.0)
    measured = (len(out) - n0) / (time.monotonic() - t0)
    stop.set()
    thread.join()
    t_stop = time.monotonic()
    assert abs(measured - rate) < 0.15 * rate, f'published at {measured:.1f} Hz'

    msgs = [m for _, m in out]
    assert all(list(m.name) == list(JOINTS) for m in msgs)
    stamps = [to_sec(m.header.stamp) for m in msgs]
    assert not set(stamps) & bad, 'a NaN or incomplete message was published'
    assert all(s in sent for s in stamps), 'stamps are source stamps'
    assert np.all(np.diff(stamps) >= 0)
    for m, s in zip(msgs, stamps):
        assert np.allclose(m.position, sent[s])
    # finite-difference velocity of the 0.5 Hz sine (amplitude 0.3): |v| <= 0.95 rad/s, smooth
    vel = np.array([m.velocity for m in msgs[5:]])
    assert np.all(np.isfinite(vel)) and np.max(np.abs(vel)) < 1.2
    analytic = 0.3 * 2 * math.pi * 0.5 * np.cos(2 * math.pi * 0.5 * stamps[-1] + np.arange(len(JOINTS)))
    assert np.allclose(vel[-1], analytic, atol=0.1)

    # stopped: stale reported, nothing more published
    wait_for(lambda: any(d.status[0].level == DiagnosticStatus.ERROR and 'stale' in d.status[0].message
                         for d in diags), 5, what='stale diagnostics')
    last_out = out[-1][0]
    assert last_out - t_stop < stale + 0.1, 'published past stale_timeout'

    def quiet():        # messages published before the stop may still be in delivery on a busy CPU
        n = len(out)
        time.sleep(0.3)
        return len(out) == n
    wait_for(quiet, 5, what='the proprio output to stop (a node still publishing never goes quiet)')
    n_after = len(out)
    time.sleep(0.5)
    assert len(out) == n_after
    ok = [d for d in diags if d.status[0].level == DiagnosticStatus.OK]
    assert ok, 'OK status while running'
    # each status covers 0.2 s (diagnostics_rate 5), one of which a loaded machine can stall: the rates
    # the node reported while running, as the median of its statuses
    reported = [{kv.key: kv.value for kv in d.status[0].values} for d in ok]
    input_rate = float(np.median([float(r['input_rate']) for r in reported]))
    publish_rate = float(np.median([float(r['publish_rate']) for r in reported]))
    assert abs(input_rate - 100.0) < 25 and abs(publish_rate - rate) < 10, (input_rate, publish_rate)
    assert float(reported[len(ok) // 2]['age_of_last_joint_state']) < 0.1
    log = proc.output()
    assert 'dropping joint state: non-finite position' in log
    assert "missing joints ['panda_joint5']" in log
    assert 'not publishing proprioception: stale' in log
    assert log.count('non-finite position') < 15, 'reasons are throttled'
    assert proc.stop() == 0


def test_node_waits_for_sim_clock(ros_env, tmp_path, probe):
    from conftest import Process, wait_for
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState

    from ros2_imitation.nodes.common import to_sec, to_stamp
    from ros2_imitation.qos import CLOCK_QOS, SENSOR_QOS

    proc = Process([sys.executable, '-m', 'ros2_imitation.nodes.proprioception_node', '--ros-args',
                    '-p', 'use_sim_time:=true', '-p', 'diagnostics_rate:=5'], ros_env, str(tmp_path / 'p.log'))
    out, diags = [], []
    probe.create_subscription(JointState, '/ros2_imitation/proprio', out.append, SENSOR_QOS)
    probe.create_subscription(DiagnosticArray, '/diagnostics', diags.append, SENSOR_QOS)
    pub = probe.create_publisher(JointState, '/joint_states', SENSOR_QOS)   # best effort also works
    clock = probe.create_publisher(Clock, '/clock', CLOCK_QOS)
    wait_for(lambda: pub.get_subscription_count() > 0, 20, what=f'the node subscribing\n{proc.output()}')
    sim_t = [0.0]

    def send(with_clock):
        sim_t[0] += 0.01
        if with_clock:
            clock.publish(Clock(clock=to_stamp(sim_t[0])))
        msg = JointState(name=list(JOINTS), position=[0.1] * len(JOINTS), velocity=[0.0] * len(JOINTS))
        msg.header.stamp = to_stamp(sim_t[0])
        pub.publish(msg)

    timer = probe.create_timer(0.01, lambda: send(False))
    wait_for(lambda: any('no /clock' in d.status[0].message for d in diags), 10, what='a no-clock diagnostic')
    assert diags[-1].status[0].level == DiagnosticStatus.WARN
    time.sleep(0.3)
    assert not out, 'nothing published before /clock'
    probe.destroy_timer(timer)
    timer = probe.create_timer(0.01, lambda: send(True))
    wait_for(lambda: len(out) > 5, 10, what=f'output once /clock runs\n{proc.output()}')
    probe.destroy_timer(timer)
    assert all(0 < to_sec(m.header.stamp) <= sim_t[0] + 1e-9 for m in out)
    # sim time stops with the clock: its staleness does not advance, diagnostics still come
    n = len(diags)
    wait_for(lambda: len(diags) > n + 2, 5, what='diagnostics while sim time stands still')
    assert proc.stop() == 0


def test_gripper_width_sample_is_the_profiles_finger_opening():
    from ros2_imitation.sensors.proprioception import gripper_width_sample
    tracker = ProprioTracker(ARM, GRIPPER)
    q = np.r_[np.linspace(-1, 1, 7), 0.02, 0.021]          # each Franka finger moves half the opening
    tracker.update(1.0, 1.0, JOINTS, q, velocity=np.r_[np.zeros(7), 0.01, 0.01], effort=np.r_[np.ones(7), 3, 5])
    sample = gripper_width_sample(tracker.current(1.0), len(ARM), PANDA.gripper)
    assert np.allclose(sample.position, np.r_[q[:7], 0.041]) and sample.position.shape == (8,)
    assert np.isclose(sample.velocity[7], 0.02) and np.isclose(sample.effort[7], 4.0)
    assert sample.stamp == 1.0 and not sample.estimated.any()
    assert tracker.update(2.0, 2.0, JOINTS, np.r_[q[:8], np.nan]) is not None   # a NaN finger is dropped


def test_ee_pose_sample_is_the_urdf_tip_pose_and_its_rate():
    """An end-effector policy's state: the tip pose by forward kinematics (position + 6D rotation),
    the gripper opening kept; the rate is the Jacobian's (checked against a finite difference)."""
    from ros2_imitation.control.kinematics import ArmKinematics
    from ros2_imitation.control.task_space import rotation_to_6d
    from ros2_imitation.sensors.proprioception import ee_pose_sample, gripper_width_sample
    kin = ArmKinematics.for_robot(PANDA)
    tracker = ProprioTracker(ARM, GRIPPER)
    q = PANDA.home + 0.1
    qd = np.linspace(-0.2, 0.3, 7)
    tracker.update(1.0, 1.0, JOINTS, np.r_[q, 0.02, 0.02], velocity=np.r_[qd, 0.0, 0.0])
    sample = ee_pose_sample(gripper_width_sample(tracker.current(1.0), len(ARM), PANDA.gripper), kin)
    p, r = kin.tip_pose(q)
    assert sample.position.shape == (10,) and np.allclose(sample.position[:3], p)
    assert np.allclose(sample.position[3:9], rotation_to_6d(r)) and np.isclose(sample.position[9], 0.04)
    h = 1e-6
    p2, r2 = kin.tip_pose(q + h * qd)
    numeric = np.r_[(p2 - p) / h, (rotation_to_6d(r2) - rotation_to_6d(r)) / h]
    assert np.allclose(sample.velocity[:9], numeric, atol=1e-4) and sample.effort is None
