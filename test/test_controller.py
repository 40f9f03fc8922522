"""ChunkController, ROS-free: whatever arrives, every command is finite and inside the limits."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ros2_imitation.control.controller import ChunkController
from ros2_imitation.control.trajectory import Trajectory
from ros2_imitation.robot import RobotProfile

ROBOT = RobotProfile.load('panda')
ARM = ROBOT.arm_joints
LIM = ROBOT.limits
RATE = 500.0
DT = 1.0 / RATE


def make(mode='position', **kw):
    ctrl = ChunkController(ROBOT, mode, RATE, **kw)
    ctrl.on_joint_state(ARM, ROBOT.home, np.zeros(7), 0.0)
    return ctrl


def run(ctrl, t0, t1, q_follow=True):
    """Cycle from t0 to t1 feeding back the commanded position as the measured one."""
    out = []
    for t in np.arange(t0, t1, DT):
        if q_follow and ctrl.q_cmd is not None:
            ctrl.on_joint_state(ARM, ctrl.q_cmd, np.zeros(7), t)
        else:
            ctrl.on_joint_state(ARM, ROBOT.home, np.zeros(7), t)
        cmd = ctrl.update(t)
        if cmd is not None:
            out.append((t, cmd))
    return out


def check_command(cmd, prev):
    if cmd.kind in ('position', 'target'):
        assert np.all(np.isfinite(cmd.values))
        assert np.all(cmd.values >= LIM.lower) and np.all(cmd.values <= LIM.upper)
        if prev is not None:
            assert np.all(np.abs(cmd.values - prev) <= np.minimum(LIM.velocity * DT, LIM.max_step) + 1e-12)
    elif cmd.kind == 'effort':
        assert np.all(np.isfinite(cmd.values)) and np.all(np.abs(cmd.values) <= LIM.effort)
    elif cmd.kind == 'trajectory':
        tr = cmd.trajectory
        assert np.all(np.isfinite(tr.positions))
        assert np.all(tr.positions >= LIM.safe_lower - 1e-12) and np.all(tr.positions <= LIM.safe_upper + 1e-12)
        assert np.all(np.diff(tr.times) > 0) and tr.times[0] > 0


def sine(t, amp=0.3):
    return ROBOT.home + amp * np.sin(2 * np.pi * 0.25 * np.asarray(t))[..., None] * np.ones(7)


def sine_chunk(t_start, n=16, dt=0.1, names=ARM):
    times = t_start + np.arange(n) * dt
    return Trajectory.from_absolute(names, times, sine(times))


def test_tracks_chunks_without_jumps():
    """10 Hz chunks of 16 points, a new one every 0.8 s: the command follows the sine."""
    ctrl = make('position')
    prev, t, errors = None, 0.0, []
    for k in range(10):
        assert ctrl.on_chunk(sine_chunk(t + 0.05), t) is None
        for tc, cmd in run(ctrl, t, t + 0.8):
            check_command(cmd, prev)
            prev = cmd.values
            if tc > 0.2:
                errors.append(np.max(np.abs(cmd.values - sine(tc))))
        t += 0.8
    assert ctrl.state == 'tracking'
    assert max(errors) < 0.01, f'command strays {max(errors):.4f} rad from the chunks'


@pytest.mark.parametrize('bad, reason', [
    (lambda: Trajectory.from_arrays(ARM[:6], 0.0, [0.1], [ROBOT.home[:6]]), 'panda_joint7'),
    (lambda: Trajectory.from_arrays(ARM, 0.0, [0.2, 0.1], [ROBOT.home, ROBOT.home]), 'increas'),
    (lambda: Trajectory.from_arrays(ARM, 0.0, [], []), 'point'),
    (lambda: Trajectory.from_arrays(ARM, 0.0, [0.1], [[np.nan] * 7]), 'finite'),
    (lambda: Trajectory.from_arrays([*ARM[:6], 'elbow'], 0.0, [0.1], [ROBOT.home]), 'elbow'),
])
def test_malformed_chunks_rejected_with_reason(bad, reason):
    ctrl = make()
    ctrl.update(0.0)
    why = ctrl.on_chunk(bad(), 0.0)
    assert why is not None and reason in why
    assert ctrl.stats['chunks_rejected'] == 1


def test_chunk_stream_stops_hold_then_rest():
    ctrl = make('impedance', chunk_timeout=0.2, hold_timeout=0.5)
    ctrl.update(0.0)
    ctrl.on_chunk(sine_chunk(0.05, n=4), 0.0)
    run(ctrl, 0.0, 0.4)
    assert ctrl.state == 'tracking'
    run(ctrl, 0.4, 0.6)
    assert ctrl.state == 'holding'
    run(ctrl, 0.6, 1.5)
    assert ctrl.state == 'resting'
    ctrl.on_joint_state(ARM, ROBOT.home, np.full(7, 0.5), 1.5)
    tau = ctrl.update(1.5).values
    assert np.all(tau < 0), 'damping only: torque opposes the motion'
    # a fresh chunk resumes tracking from where the arm is
    assert ctrl.on_chunk(sine_chunk(1.6), 1.5) is None and ctrl.state == 'tracking'


def test_stale_joint_states_stop_commanding():
    for mode in ('position', 'impedance'):
        ctrl = make(mode, joint_state_timeout=0.05)
        assert ctrl.update(0.01) is not None
        first = ctrl.update(0.2)   # stale: effort mode sends one zero torque, then nothing
        if mode == 'impedance':
            assert first.kind == 'effort' and np.all(first.values == 0)
        else:
            assert first is None
        assert ctrl.update(0.3) is None and ctrl.state == 'waiting'
        assert 'stale' in ctrl.reason
        assert ctrl.on_chunk(sine_chunk(0.35), 0.3) is not None


def test_stop_and_resume():
    ctrl = make('position')
    ctrl.update(0.0)
    ctrl.on_chunk(sine_chunk(0.05), 0.0)
    run(ctrl, 0.0, 0.3)
    ctrl.stop(0.3)
    assert 'stopped' in ctrl.on_chunk(sine_chunk(0.35), 0.3)
    held = [c.values for _, c in run(ctrl, 0.3, 0.6, q_follow=False)]
    assert np.allclose(held[-1], held[0])
    ctrl.resume(0.6)
    assert ctrl.on_chunk(sine_chunk(0.65), 0.6) is None


@pytest.mark.parametrize('mode', ['impedance', 'trajectory', 'position', 'impedance_target'])
def test_shutdown_leaves_the_arm_holding(mode):
    """The node's last command when it stops: no torque left on (effort), a hold that replaces the
    chunk a joint_trajectory_controller is executing (trajectory); the other modes' last command
    already holds. Afterwards the controller is stopped and sends nothing more."""
    ctrl = make(mode)
    assert ctrl.shutdown(0.0) is None          # nothing commanded yet: nothing to undo
    ctrl = make(mode)
    ctrl.update(0.0)
    ctrl.on_chunk(sine_chunk(0.05), 0.0)
    run(ctrl, 0.0, 0.3)
    last = ctrl.shutdown(0.3)
    if mode == 'impedance':
        assert last.kind == 'effort' and np.all(last.values == 0.0)
    elif mode == 'trajectory':
        assert last.kind == 'trajectory'
        check_command(last, None)
        assert np.allclose(last.trajectory.positions, ctrl.q[None, :]) and len(last.trajectory.times) == 1
    else:
        assert last is None
    assert ctrl.state == 'stopped' and ctrl.on_chunk(sine_chunk(0.35), 0.3) is not None
    if mode == 'trajectory':
        assert ctrl.update(0.31) is None           # the hold is the last trajectory sent


def test_joint_states_mapped_by_name_and_bad_ones_ignored():
    ctrl = make()
    order = list(reversed(ARM)) + ['panda_finger_joint1']
    q = np.arange(8) * 0.1
    assert ctrl.on_joint_state(order, q, [], 0.0) is None
    assert np.allclose(ctrl.q, q[:7][::-1])
    assert 'lacks' in ctrl.on_joint_state(ARM[:6], q[:6], [], 0.0)
    assert 'non-finite' in ctrl.on_joint_state(ARM, [np.nan] * 7, [], 0.0)
    assert 'match' in ctrl.on_joint_state(ARM, [0.0] * 3, [], 0.0)
    assert np.allclose(ctrl.q, q[:7][::-1])


floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
names = st.one_of(st.just(list(ARM)), st.permutations(list(ARM)),
                  st.lists(st.sampled_from([*ARM, 'wrist', '']), max_size=9))


@st.composite
def chunks(draw):
    joint_names = draw(names)
    n = draw(st.integers(0, 6))
    times = draw(st.lists(st.one_of(floats, st.floats(0, 2)), min_size=n, max_size=n))
    rows = draw(st.lists(st.lists(st.one_of(floats, st.floats(-4, 4)), min_size=len(joint_names),
                                  max_size=len(joint_names)), min_size=n, max_size=n))
    stamp = draw(st.one_of(st.just(0.0), st.floats(0, 3)))
    return Trajectory.from_arrays(joint_names, stamp, times, rows)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(['position', 'impedance', 'impedance_target', 'trajectory']),
       sequence=st.lists(st.tuples(chunks(), st.floats(0.0, 0.2)), min_size=1, max_size=5),
       measured=st.lists(st.floats(-4, 4), min_size=7, max_size=7))
def test_any_input_gives_commands_inside_limits(mode, sequence, measured):
    ctrl = ChunkController(ROBOT, mode, RATE)
    t, prev = 0.0, None
    ctrl.on_joint_state(ARM, np.clip(measured, LIM.lower, LIM.upper), np.zeros(7), t)
    for chunk, wait in sequence:
        reason = ctrl.on_chunk(chunk, t)
        assert reason is None or isinstance(reason, str) and reason
        for step in range(max(1, int(wait / DT))):
            ctrl.on_joint_state(ARM, np.clip(measured, LIM.lower, LIM.upper), np.zeros(7), t)
            cmd = ctrl.update(t)
            if cmd is not None:
                check_command(cmd, prev if cmd.kind == 'position' else None)
                if cmd.kind == 'position':
                    prev = cmd.values
            t += DT


def test_joint_state_jump_reanchors_instead_of_pulling_back():
    """A sim reset teleports the arm: the controller must hold the new pose, not the old one."""
    ctrl = make('position')
    ctrl.on_chunk(sine_chunk(0.05), 0.0)
    run(ctrl, 0.0, 0.5)
    teleported = ROBOT.home - 0.5   # the sine had the arm near home + 0.2
    assert ctrl.on_joint_state(ARM, teleported, np.zeros(7), 0.5) is None
    assert 'jumped' in ctrl.reason and ctrl.state == 'holding'
    cmd = ctrl.update(0.502)
    assert np.allclose(cmd.values, teleported)


def test_reset_holds_where_the_arm_is():
    ctrl = make('impedance')
    ctrl.on_chunk(sine_chunk(0.05), 0.0)
    run(ctrl, 0.0, 0.3)
    ctrl.reset(0.3)
    assert ctrl.state == 'holding' and ctrl.follower.end_time == 0.3
    assert np.allclose(ctrl.q_cmd, ctrl.q)


def test_end_effector_chunks_become_joint_commands_inside_every_limit():
    """chunk_space ee: a tip path through IK into the same follower and safety filter; the other
    kind of chunk, and a path under the table, are handled with a reason."""
    from ros2_imitation.control.ee_chunk import EE_COLUMNS, EEChunkConverter, ee_columns
    from ros2_imitation.control.ik import DifferentialIK
    robot = RobotProfile.load('panda')
    ik = DifferentialIK.for_robot(robot)
    ctrl = ChunkController(robot, 'position', 250.0, ee=EEChunkConverter(ik, robot.kinematics.task_limits))
    q = robot.home.copy()
    ctrl.on_joint_state(robot.arm_joints, q, np.zeros(7), 0.0)
    ctrl.update(0.0)
    p0, r0 = ik.kin.tip_pose(q)
    path = p0 + np.linspace(0.01, 0.06, 10)[:, None] * np.array([1.0, 0.5, -0.5])
    names = EE_COLUMNS + ('panda_gripper',)
    cols = np.concatenate([ee_columns(path, [r0] * 10), np.full((10, 1), 0.03)], axis=1)
    assert ctrl.on_chunk(Trajectory(names, 0.0, 0.1 * np.arange(1, 11), cols), 0.0) is None
    assert ctrl.ee_note is None and ctrl.state == 'tracking'
    t, cmd = 0.0, None
    while t < 1.2:
        t += 0.004
        ctrl.on_joint_state(robot.arm_joints, q, np.zeros(7), t)
        cmd = ctrl.update(t)
        assert np.all(cmd.values >= robot.limits.safe_lower) and np.all(cmd.values <= robot.limits.safe_upper)
        q = cmd.values                     # a perfect position-controlled arm
    assert np.linalg.norm(ik.kin.tip_pose(q)[0] - path[-1]) < 1e-3
    assert ctrl.gripper.widths is not None and len(ctrl.gripper.widths) == 10
    # a joint chunk to an end-effector controller is refused with a reason; so is the reverse
    joint = Trajectory(robot.arm_joints, 0.0, np.array([0.1]), q[None])
    assert 'takes end-effector chunks' in ctrl.on_chunk(joint, t)
    plain = ChunkController(robot, 'position', 250.0)
    plain.on_joint_state(robot.arm_joints, q, np.zeros(7), t)
    assert 'takes joint chunks' in plain.on_chunk(Trajectory(names, 0.0, 0.1 * np.arange(1, 11), cols), t)
    # under the table: clamped onto the workspace box, and said so
    low = np.concatenate([ee_columns(np.tile(p0 - [0, 0, 1.0], (3, 1)), [r0] * 3), np.full((3, 1), 0.03)], axis=1)
    assert ctrl.on_chunk(Trajectory(names, 0.0, 2.0 * np.arange(1, 4), low), t) is None
    assert 'outside the workspace on z' in ctrl.ee_note
    # a garbage rotation rejects the whole chunk
    bad = cols.copy()
    bad[4, 3:9] = 0.0
    assert 'first column is zero' in ctrl.on_chunk(Trajectory(names, 0.0, 0.1 * np.arange(1, 11), bad), t)


def test_cartesian_target_mode_streams_filtered_poses_without_ik():
    """mode cartesian_target: the chunk's poses per cycle (slerp between points) for an external
    Cartesian impedance controller, capped at the tip speeds and the workspace box; it holds, then
    rests (sends nothing) when chunks stop."""
    from ros2_imitation.control.ee_chunk import EE_COLUMNS, EEChunkConverter, ee_columns
    from ros2_imitation.control.task_space import rotation_vector
    robot = RobotProfile.load('panda')
    conv = EEChunkConverter.for_robot(robot)
    limits = robot.kinematics.task_limits
    ctrl = ChunkController(robot, 'cartesian_target', 250.0, hold_timeout=2.0, ee=conv)
    q = robot.home.copy()
    ctrl.on_joint_state(robot.arm_joints, q, np.zeros(7), 0.0)
    first = ctrl.update(0.0)
    p0, r0 = conv.ik.kin.tip_pose(q)
    assert first.kind == 'pose' and np.allclose(first.pose[0], p0)            # holds where the tip is
    yaw = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])     # a quarter turn about z
    path = np.array([p0 + [0.02, 0, 0], p0 + [0.04, 0, 0], p0 + [0.3, 0, -1.0]])  # the last: fast, under the table
    cols = ee_columns(path, [r0, yaw @ r0, yaw @ r0])
    assert ctrl.on_chunk(Trajectory(EE_COLUMNS, 0.0, np.array([0.2, 0.4, 0.6]), cols), 0.0) is None
    poses, t = [first.pose], 0.0
    while t < 4.0:
        t += 0.004
        ctrl.on_joint_state(robot.arm_joints, q, np.zeros(7), t)
        cmd = ctrl.update(t)
        if cmd is None:
            break
        poses.append(cmd.pose)
    assert 2.8 < t < 3.0          # rested 0.3 s + 2.0 s after the chunk's end at 0.6 s
    steps = [np.linalg.norm(b[0] - a[0]) for a, b in zip(poses, poses[1:])]
    turns = [np.linalg.norm(rotation_vector(b[1] @ a[1].T)) for a, b in zip(poses, poses[1:])]
    assert max(steps) <= limits.max_linear_speed * 0.004 + 1e-9
    assert max(turns) <= limits.max_angular_speed * 0.004 + 1e-9
    assert min(p[0][2] for p in poses) >= limits.workspace.lower[2] - 1e-9
    assert ctrl.pose_filter.counts['workspace'] > 0 and ctrl.pose_filter.counts['linear_speed'] > 0
    assert np.allclose(poses[-1][1], yaw @ r0, atol=1e-6)                     # the turn was completed
    assert ctrl.state == 'resting' and cmd is None                            # then nothing is sent
    bad = cols.copy()
    bad[1, 3:9] = np.nan
    assert 'non-finite' in ctrl.on_chunk(Trajectory(EE_COLUMNS, 0.0, np.array([0.2, 0.4, 0.6]), bad), t)
    with pytest.raises(ValueError, match='cartesian_target takes end-effector chunks'):
        ChunkController(robot, 'cartesian_target', 250.0)
