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
