"""End-effector kinematics on the Panda's URDF (pinocchio): the Jacobian against finite differences,
the 6D rotation and its guard, and the damped least-squares IK (limits, null space, workspace,
unreachable targets)."""
import numpy as np
import pytest

from ros2_imitation.control.ik import DifferentialIK, IKSettings
from ros2_imitation.control.kinematics import ArmKinematics
from ros2_imitation.control.task_space import (Workspace, quaternion_to_rotation, rotation_from_6d,
                                               rotation_problem, rotation_to_6d, rotation_to_quaternion)
from ros2_imitation.robot import RobotProfile

PANDA = RobotProfile.load('panda')


@pytest.fixture(scope='module')
def kin():
    return ArmKinematics.for_robot(PANDA)


def random_rotation(rng):
    q = rng.normal(size=4)
    return quaternion_to_rotation(q / np.linalg.norm(q))


def test_the_jacobian_matches_finite_differences_of_the_pose(kin):
    rng = np.random.default_rng(0)
    for _ in range(5):
        q = PANDA.home + rng.uniform(-0.4, 0.4, 7)
        jac = kin.tip_jacobian(q)
        p0, r0 = kin.tip_pose(q)
        for j in range(7):
            dq = np.zeros(7)
            dq[j] = 1e-6
            p1, r1 = kin.tip_pose(q + dq)
            assert np.allclose((p1 - p0) / 1e-6, jac[:3, j], atol=1e-4)
            assert np.allclose(kin.rotation_error(r0, r1) / 1e-6, jac[3:, j], atol=1e-4)


def test_6d_rotations_round_trip_and_any_six_numbers_make_a_rotation():
    rng = np.random.default_rng(1)
    for _ in range(20):
        r = random_rotation(rng)
        assert np.allclose(rotation_from_6d(rotation_to_6d(r)), r, atol=1e-9)
        assert rotation_problem(rotation_from_6d(rng.normal(size=6))) is None
        q = rotation_to_quaternion(r)
        assert np.allclose(quaternion_to_rotation(q), r, atol=1e-9)
    batch = np.stack([random_rotation(rng) for _ in range(4)])
    assert rotation_to_6d(batch).shape == (4, 6) and np.allclose(rotation_from_6d(rotation_to_6d(batch)), batch)
    for bad, match in (([np.nan] * 6, 'non-finite'), ([0, 0, 0, 1, 0, 0], 'first column is zero'),
                       ([1, 0, 0, 2, 0, 0], 'parallel')):
        with pytest.raises(ValueError, match=match):
            rotation_from_6d(bad)


@pytest.mark.parametrize('matrix, reason', [
    (np.full((3, 3), np.nan), 'non-finite'),
    (np.zeros((3, 3)), 'all zeros'),
    (2 * np.eye(3), 'not orthonormal'),
    (np.array([[1, 0.1, 0], [0, 1, 0], [0, 0, 1]]), 'not orthonormal'),
    (np.diag([1, 1, -1]), 'reflection'),
    (np.eye(2), 'must be 3x3'),
])
def test_the_rotation_guard_names_what_is_wrong(matrix, reason):
    assert reason in rotation_problem(matrix)
    assert rotation_problem(np.eye(3)) is None


def test_quaternions_that_are_no_rotation_are_refused():
    for q in ([0, 0, 0, 0], [np.nan, 0, 0, 1], [0, 0, 0, 2]):
        with pytest.raises(ValueError, match='quaternion'):
            quaternion_to_rotation(q)


def test_ik_reaches_poses_the_arm_can_take_inside_the_limits(kin):
    """Targets made by forward kinematics of random joints inside the limits: reached from home to
    0.1 mm and 0.06 deg, every solution inside the soft limits."""
    ik = DifferentialIK.for_robot(PANDA, kin, IKSettings(max_iterations=200))
    rng = np.random.default_rng(2)
    reached = 0
    for _ in range(20):
        q_goal = PANDA.home + rng.uniform(-0.5, 0.5, 7)
        q_goal = np.clip(q_goal, PANDA.limits.safe_lower, PANDA.limits.safe_upper)
        p, r = kin.tip_pose(q_goal)
        result = ik.solve(p, r, PANDA.home)
        assert np.all(result.q >= PANDA.limits.safe_lower - 1e-12) and np.all(result.q <= PANDA.limits.safe_upper + 1e-12)
        if result.converged:
            reached += 1
            p2, r2 = kin.tip_pose(result.q)
            assert np.linalg.norm(p2 - p) < 1e-4 and np.linalg.norm(kin.rotation_error(r2, r)) < 1e-3
    assert reached >= 19, f'{reached}/20 reachable poses solved'


def test_ik_tracks_a_small_move_in_a_few_iterations_and_keeps_the_elbow_near_home(kin):
    ik = DifferentialIK.for_robot(PANDA, kin)
    p, r = kin.tip_pose(PANDA.home)
    result = ik.solve(p + np.array([0.02, -0.01, 0.01]), r, PANDA.home)
    assert result.converged and result.iterations < 15, result.describe()
    # the null space pulls toward home: the redundant joint stays close to it
    assert np.max(np.abs(result.q - PANDA.home)) < 0.2


def test_an_unreachable_target_is_not_chased_and_the_joints_stay_in_limits(kin):
    ik = DifferentialIK.for_robot(PANDA, kin, IKSettings(max_iterations=40))
    _, r = kin.tip_pose(PANDA.home)
    result = ik.solve(np.array([3.0, 0.0, 0.5]), r, PANDA.home)     # 3 m away: beyond the reach
    assert not result.converged and 'unreachable' in result.reason and result.iterations == 40
    assert np.all(result.q >= PANDA.limits.safe_lower) and np.all(result.q <= PANDA.limits.safe_upper)
    assert np.all(np.isfinite(result.q))


def test_a_workspace_box_clamps_the_target_and_says_so(kin):
    box = Workspace((0.2, -0.4, 0.05), (0.7, 0.4, 0.6))
    ik = DifferentialIK.for_robot(PANDA, kin, workspace=box)
    _, r = kin.tip_pose(PANDA.home)
    result = ik.solve(np.array([0.5, 0.0, -0.3]), r, PANDA.home)    # under the table
    assert 'outside the workspace on z' in result.reason
    p, _ = kin.tip_pose(result.q)
    assert p[2] > 0.05 - 1e-3 and result.converged
    with pytest.raises(ValueError, match='below upper'):
        Workspace((0, 0, 0), (1, -1, 1))


@pytest.mark.parametrize('position, rotation, match', [
    ([np.nan, 0, 0.5], np.eye(3), 'finite'),
    ([0.5, 0, 0.5], np.zeros((3, 3)), 'all zeros'),
    ([0.5, 0, 0.5], 1.5 * np.eye(3), 'orthonormal'),
])
def test_a_target_that_is_no_pose_is_refused_before_solving(kin, position, rotation, match):
    ik = DifferentialIK.for_robot(PANDA, kin)
    with pytest.raises(ValueError, match=match):
        ik.solve(position, rotation, PANDA.home)


def dh_standard(q, d, a, alpha):
    """Standard Denavit-Hartenberg forward kinematics (4, 4)."""
    t = np.eye(4)
    for qi, di, ai, al in zip(q, d, a, alpha):
        ct, st, ca, sa = np.cos(qi), np.sin(qi), np.cos(al), np.sin(al)
        t = t @ np.array([[ct, -st * ca, st * sa, ai * ct], [st, ct * ca, -ct * sa, ai * st],
                          [0, sa, ca, di], [0, 0, 0, 1]])
    return t


def dh_modified(q, d, a, alpha):
    """Craig's modified DH (Franka's documentation uses it) (4, 4)."""
    t = np.eye(4)
    for qi, di, ai, al in zip(q, d, a, alpha):
        ct, st, ca, sa = np.cos(qi), np.sin(qi), np.cos(al), np.sin(al)
        t = t @ np.array([[ct, -st, 0, ai], [st * ca, ct * ca, -sa, -di * sa],
                          [st * sa, ct * sa, ca, di * ca], [0, 0, 0, 1]])
    return t


def test_the_ur5e_urdf_matches_its_dh_parameters():
    """config/urdf/ur5e.urdf's tool0 against the UR5e's published DH table (the DH base frame is
    base_link turned by pi about z, as in ur_description)."""
    ur = RobotProfile.load('ur5e')
    kin = ArmKinematics(ur.kinematics.urdf, ur.arm_joints, 'base_link', 'tool0')
    rng = np.random.default_rng(3)
    flip = np.diag([-1.0, -1.0, 1.0])
    for _ in range(10):
        q = rng.uniform(-np.pi, np.pi, 6)
        t = dh_standard(q, [0.1625, 0, 0, 0.1333, 0.0997, 0.0996], [0, -0.425, -0.3922, 0, 0, 0],
                        [np.pi / 2, 0, 0, np.pi / 2, -np.pi / 2, 0])
        p, r = kin.tip_pose(q)
        assert np.allclose(p, flip @ t[:3, 3], atol=1e-6) and np.allclose(r, flip @ t[:3, :3], atol=1e-6)
    tcp = ArmKinematics.for_robot(ur)
    p_tcp, _ = tcp.tip_pose(ur.home)
    p_tool, r_tool = kin.tip_pose(ur.home)
    assert np.allclose(p_tcp, p_tool + 0.1493 * r_tool[:, 2], atol=1e-9)


def test_the_fr3_and_panda_urdfs_match_franka_dh_parameters():
    """Both arms' flange (link8) against Franka's modified DH table; the FR3 and the Panda share it."""
    rng = np.random.default_rng(4)
    chains = [(PANDA, 'panda_link0', 'panda_link8'), (RobotProfile.load('fr3'), 'fr3_link0', 'fr3_link8')]
    for _ in range(10):
        q = rng.uniform(-1.5, 1.5, 7)
        t = dh_modified(list(q) + [0.0], [0.333, 0, 0.316, 0, 0.384, 0, 0, 0.107],
                        [0, 0, 0, 0.0825, -0.0825, 0, 0.088, 0],
                        [0, -np.pi / 2, np.pi / 2, np.pi / 2, -np.pi / 2, np.pi / 2, np.pi / 2, 0])
        for robot, base, flange in chains:
            p, r = ArmKinematics(robot.kinematics.urdf, robot.arm_joints, base, flange).tip_pose(q)
            assert np.allclose(p, t[:3, 3], atol=1e-5) and np.allclose(r, t[:3, :3], atol=1e-5), robot.name


@pytest.mark.parametrize('name', ['panda', 'fr3', 'ur5e'])
def test_every_profile_solves_ik_around_home(name):
    robot = RobotProfile.load(name)
    ik = DifferentialIK.for_robot(robot)
    p, r = ik.kin.tip_pose(robot.home)
    result = ik.solve(p + np.array([0.03, 0.02, -0.02]), r, robot.home)
    assert result.converged, result.describe()


def test_profiles_carry_their_task_space_limits_and_bad_ones_are_named(tmp_path):
    import yaml

    from ros2_imitation.paths import share_dir
    for name in ('panda', 'fr3', 'ur5e'):
        limits = RobotProfile.load(name).kinematics.task_limits
        assert limits is not None and limits.max_linear_speed > 0
        assert np.all(np.asarray(limits.workspace.lower) < np.asarray(limits.workspace.upper))
    raw = yaml.safe_load((share_dir() / 'config' / 'robots' / 'panda.yaml').read_text())
    raw['kinematics']['urdf'] = str(share_dir() / 'config' / 'gazebo' / 'panda.urdf')
    for change, match in (({'workspace_upper': [0.1, 0.5, 0.9]}, 'below upper'),
                          ({'max_linear_speed': 'fast'}, 'max_linear_speed must be a number'),
                          ({'max_angular_speed': -1.0}, 'must be > 0'),
                          ({'workspace_lowr': [0, 0, 0]}, "unknown keys \\['workspace_lowr'\\]")):
        bad = dict(raw, kinematics={**raw['kinematics'], **change})
        path = tmp_path / 'bad.yaml'
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(ValueError, match=match):
            RobotProfile.load(str(path))
    del raw['kinematics']['workspace_lower']
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match='workspace_lower is missing'):
        RobotProfile.load(str(path))
