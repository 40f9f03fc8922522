"""Robot profiles load, validate and fail clearly."""
import numpy as np
import pytest
import yaml

from ros2_imitation.paths import share_dir
from ros2_imitation.robot import RobotProfile


def test_panda_profile():
    robot = RobotProfile.load('panda')
    assert robot.dof == 7 and robot.arm_joints[0] == 'panda_joint1'
    assert np.all(robot.limits.safe_lower < robot.home) and np.all(robot.home < robot.limits.safe_upper)
    assert np.all(robot.limits.effort > 0) and robot.limits.max_step > 0


@pytest.mark.parametrize('edit, message', [
    (lambda d: d['limits'].pop('velocity'), 'velocity'),
    (lambda d: d['limits'].update(effort=[1.0, 2.0]), 'effort must be 7'),
    (lambda d: d['limits'].update(position_margin=5.0), 'no room'),
    (lambda d: d['gains'].update(stiffness=[float('nan')] * 7), 'finite'),
])
def test_malformed_profile_fails_clearly(tmp_path, edit, message):
    raw = yaml.safe_load((share_dir() / 'config' / 'robots' / 'panda.yaml').read_text())
    edit(raw)
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=message):
        RobotProfile.load(str(path))


# ---- the gripper (robot.py: one width value in metres after the arm joints) ----
def profile_without(tmp_path, name, key='gripper'):
    raw = yaml.safe_load((share_dir() / 'config' / 'robots' / f'{name}.yaml').read_text())
    raw.pop(key)
    path = tmp_path / f'{name}_bare.yaml'
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize('name, model, dof, width, joints', [
    ('panda', 'franka_hand', 7, 0.08, ('panda_finger_joint1', 'panda_finger_joint2')),
    ('fr3', 'franka_hand', 7, 0.08, ('fr3_finger_joint1', 'fr3_finger_joint2')),
    ('ur5e', 'robotiq_2f_85', 6, 0.085, ('robotiq_85_left_knuckle_joint',)),
])
def test_shipped_profiles_carry_their_gripper(name, model, dof, width, joints):
    robot = RobotProfile.load(name)
    g = robot.gripper
    assert g.model == model and robot.action_dim == dof + 1 and robot.gripper_joints == joints
    assert (g.width_min, g.width_max) == (0.0, width) and g.max_speed > 0 and 0 < g.force <= g.max_force
    assert g.command_name not in robot.arm_joints + joints   # a column of its own: a width, not a joint
    for w in (0.0, width / 2, width):                          # the drivers' unit round-trips
        assert g.to_width(g.to_joint(w)) == pytest.approx(w)


def test_franka_fingers_move_half_the_width_and_the_robotiq_knuckle_closes_as_the_width_shrinks():
    hand, robotiq = RobotProfile.load('panda').gripper, RobotProfile.load('ur5e').gripper
    assert hand.to_joint(0.08) == pytest.approx(0.04)
    assert robotiq.to_joint(0.0) == pytest.approx(0.7929) and robotiq.to_joint(0.085) == pytest.approx(0.0, abs=1e-3)


def test_a_profile_without_a_gripper_section_is_an_arm_without_a_gripper(tmp_path):
    robot = RobotProfile.load(profile_without(tmp_path, 'ur5e'))
    assert robot.gripper is None and robot.gripper_joints == () and robot.action_dim == 6
    assert 'no gripper' in robot.describe_dims()


def test_an_older_profile_with_only_gripper_joints_still_names_its_finger_joints(tmp_path):
    raw = yaml.safe_load((share_dir() / 'config' / 'robots' / 'panda.yaml').read_text())
    raw.pop('gripper')
    raw['gripper_joints'] = ['panda_finger_joint1', 'panda_finger_joint2']
    path = tmp_path / 'old.yaml'
    path.write_text(yaml.safe_dump(raw))
    robot = RobotProfile.load(str(path))
    assert robot.gripper is None and robot.gripper_joints == ('panda_finger_joint1', 'panda_finger_joint2')


@pytest.mark.parametrize('edit, message', [
    (lambda g: g.pop('width'), r"missing key 'gripper\.width'"),
    (lambda g: g.update(width=[0.08, 0.0]), r'gripper\.width must be \[min, max\] with 0 <= min < max'),
    (lambda g: g.update(max_speed=0.0), r'gripper\.max_speed must be > 0'),
    (lambda g: g.update(max_speed='fast'), r'gripper\.max_speed must be a finite number'),
    (lambda g: g.update(force=200.0), r'gripper\.force 200.0 exceeds gripper\.max_force 70.0'),
    (lambda g: g.update(joints=[]), r'gripper\.joints must be finger joints'),
    (lambda g: g.update(joints='finger'), r'gripper\.joints must be a list of joint names'),
    (lambda g: g.update(joints=['panda_joint7']), r'gripper\.joints must be finger joints \(not arm joints\)'),
    (lambda g: g.update(command_name='panda_joint1'), r'gripper\.command_name .* is an arm joint'),
    (lambda g: g.update(output='pneumatic'), r'gripper\.output must be one of'),
    (lambda g: g.update(joint_scale=0), r'gripper\.joint_scale must not be 0'),
    (lambda g: g.pop('command_name'), r"missing key 'gripper\.command_name'"),
])
def test_a_malformed_gripper_section_fails_naming_the_file_and_the_field(tmp_path, edit, message):
    raw = yaml.safe_load((share_dir() / 'config' / 'robots' / 'panda.yaml').read_text())
    edit(raw['gripper'])
    path = tmp_path / 'bad_gripper.yaml'
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=message) as err:
        RobotProfile.load(str(path))
    assert str(path) in str(err.value)
