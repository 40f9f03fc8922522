"""A policy runs only on a robot it fits: arm joints, plus one gripper width where the robot has a gripper."""
import re

import numpy as np
import pytest
import torch
import yaml

from ros2_imitation.paths import share_dir
from ros2_imitation.policy import DiffusionPolicy, PolicyConfig, save_policy
from ros2_imitation.robot import RobotProfile
from ros2_imitation.runtime.runner import check_policy_fits, load_runtime_policy, policy_joint_names


def bare(tmp_path, name):
    """The shipped profile without its gripper section: the same arm, no gripper."""
    raw = yaml.safe_load((share_dir() / 'config' / 'robots' / f'{name}.yaml').read_text())
    raw.pop('gripper')
    path = tmp_path / f'{name}.yaml'
    path.write_text(yaml.safe_dump(raw))
    return RobotProfile.load(str(path))


def tiny_policy(tmp_path, dim):
    torch.manual_seed(0)
    policy = DiffusionPolicy(PolicyConfig(image_keys=(), down_dims=(16, 32), diffusion_step_embed_dim=16,
                                          horizon=8, n_action_steps=4, state_dim=dim, action_dim=dim))
    lo, hi = -np.ones(dim), np.ones(dim)
    policy.set_stats({'state': {'min': lo, 'max': hi}, 'action': {'min': lo, 'max': hi}})
    return str(save_policy(policy.eval(), tmp_path / f'policy{dim}'))


def test_a_gripper_policy_loads_on_a_robot_with_a_gripper_and_names_its_gripper_column(tmp_path):
    robot = RobotProfile.load('panda')
    policy, _ = load_runtime_policy(tiny_policy(tmp_path, 8), device='cpu', robot=robot)
    assert policy.config.action_dim == 8
    assert policy_joint_names(robot, 8) == robot.arm_joints + ('panda_gripper',)
    assert policy_joint_names(robot, 7) == robot.arm_joints


def test_a_gripper_policy_is_refused_on_an_arm_without_a_gripper_naming_both(tmp_path):
    robot = bare(tmp_path, 'ur5e')
    with pytest.raises(ValueError) as err:
        load_runtime_policy(tiny_policy(tmp_path, 7), device='cpu', robot=robot)
    assert str(err.value).endswith('the policy acts on 7 values (6 joints + gripper) and sees 7 values '
                                   '(6 joints + gripper); robot ur5e has 6 arm joints and no gripper')


def test_an_arm_only_policy_runs_on_a_robot_with_a_gripper_which_it_leaves_alone():
    check_policy_fits(7, 7, RobotProfile.load('panda'))     # push_cube and reach on the panda


@pytest.mark.parametrize('action_dim, state_dim, message', [
    (8, 7, 'acts on 8 values (7 joints + gripper) and sees 7 values (7 joints); robot panda has 7 arm joints '
           'and a gripper (franka_hand)'),
    (9, 9, 'acts on 9 values and sees 9 values; robot panda'),
    (6, 6, 'acts on 6 values and sees 6 values; robot panda'),
])
def test_other_dimensions_are_refused_naming_both(action_dim, state_dim, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_policy_fits(action_dim, state_dim, RobotProfile.load('panda'))


def test_an_end_effector_policy_fits_a_robot_with_kinematics():
    from ros2_imitation.control.ee_chunk import EE_COLUMNS
    panda = RobotProfile.load('panda')
    check_policy_fits(10, 10, panda, 'ee')          # pose + gripper, sees pose + gripper
    check_policy_fits(10, 8, panda, 'ee')           # ... or sees the joints + gripper
    check_policy_fits(9, 7, panda, 'ee')
    assert policy_joint_names(panda, 10, 'ee') == EE_COLUMNS + ('panda_gripper',)
    assert policy_joint_names(panda, 9, 'ee') == EE_COLUMNS
    with pytest.raises(ValueError, match='end-effector policy acts on 10 values .* sees 7'):
        check_policy_fits(10, 7, panda, 'ee')
    with pytest.raises(ValueError, match='acts on 7 values'):
        check_policy_fits(7, 7, panda, 'ee')
