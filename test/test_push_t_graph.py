"""An end-effector policy through the ROS graph over real DDS (demo_push_t): proprioception publishes
the tip pose (ee_state), policy_node publishes MultiDOFJointTrajectory tip chunks, and the controller
turns them into joints by IK (chunk_space ee) and moves the arm."""
import numpy as np
import pytest
import yaml
from conftest import GraphRun, wait_for
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import MultiDOFJointTrajectory

from ros2_imitation import cli
from ros2_imitation.control.ee_chunk import EE_COLUMNS
from ros2_imitation.qos import COMMAND_QOS
from ros2_imitation.robot import RobotProfile

ROBOT = RobotProfile.load('panda')


@pytest.fixture(scope='module')
def ee_model(tmp_path_factory):
    """A tiny end-effector policy (push_t's config, shrunk) trained for a few steps on one episode."""
    folder = tmp_path_factory.mktemp('push_t_tiny')
    assert cli.main(['sim-dataset', '--episodes', '1', '--seed', '10010', '--out', str(folder / 'd.zarr')]) == 0
    from ros2_imitation.paths import share_dir
    config = yaml.safe_load((share_dir() / 'config' / 'policies' / 'push_t.yaml').read_text())
    config.update(down_dims=[16, 32], encoder_channels=[8, 16], num_keypoints=8, num_inference_steps=2,
                  crop_shape=[88, 88], training={'steps': 3, 'batch_size': 8, 'checkpoint_every': 3})
    (folder / 'tiny.yaml').write_text(yaml.safe_dump(config))
    assert cli.main(['train', '--dataset', str(folder / 'd.zarr'), '--config', str(folder / 'tiny.yaml'),
                     '--out', str(folder / 'run')]) == 0
    return str(folder / 'run' / 'policy')


def controller_values(diagnostics) -> dict:
    values = {}
    for d in diagnostics.messages:
        for s in d.status:
            if 'chunk controller' in s.name:
                values = {kv.key: kv.value for kv in s.values}
    return values


def test_an_end_effector_policy_drives_the_arm_through_the_controller_ik(tmp_path, ee_model):
    with GraphRun(tmp_path / 'bringup.log', 'demo_push_t', '--arg', f'model={ee_model}') as run:
        chunks = run.record(MultiDOFJointTrajectory, '/ros2_imitation/ee_chunk', COMMAND_QOS)
        proprio = run.record(JointState, '/ros2_imitation/proprio')
        joints = run.record(JointState, '/joint_states')
        diagnostics = run.record(DiagnosticArray, '/diagnostics', COMMAND_QOS)
        try:
            wait_for(lambda: len(chunks.messages) >= 5
                     and int(controller_values(diagnostics).get('chunks_accepted', 0)) >= 3, 120,
                     what='tip chunks from the policy, accepted by the controller IK')
        except AssertionError:
            print(run.output()[-3000:])
            print(f'seen here: {len(chunks.messages)} tip chunks, {len(proprio.messages)} proprio, '
                  f'{len(joints.messages)} joint states; the controller says {controller_values(diagnostics)}')
            raise
        values = controller_values(diagnostics)
    assert values['chunk_space'] == 'ee'
    base, tip = ROBOT.kinematics.base_frame, ROBOT.kinematics.tip_frame
    for msg in chunks.messages:
        assert msg.header.frame_id == base and list(msg.joint_names) == [tip]
        assert len(msg.points) > 1
        q = msg.points[0].transforms[0].rotation
        assert abs(np.linalg.norm([q.x, q.y, q.z, q.w]) - 1.0) < 1e-3      # a rotation, from the 6D columns
    state = proprio.messages[-1]
    # the tip pose first (what the policy reads by name), then the sim's other joints
    assert list(state.name[:9]) == list(EE_COLUMNS) and np.all(np.isfinite(state.position[:9]))
    assert 0.0 < state.position[2] < 1.0                                   # the tip height in the base frame (m)
    first, last = (np.array(m.position[:7]) for m in (joints.messages[0], joints.messages[-1]))
    assert np.abs(last - first).max() > 1e-3                               # the arm followed the chunks
