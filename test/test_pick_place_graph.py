"""pick_place through the ROS graph over real DDS: the expert's 8-column chunks (arm + panda_gripper)
close the sim's fingers through the controller; record-demos bags -> bag2dataset give the keys, shapes
and units sim-dataset writes; a tiny two-camera gripper policy in policy_node publishes 8-column chunks."""
import json
import os
import sys
import time

import numpy as np
import pytest
import yaml
import zarr
from conftest import GraphRun, Process, next_domain_id, wait_for
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from ros2_imitation import cli
from ros2_imitation.qos import COMMAND_QOS, STATE_QOS

ARM = [f'panda_joint{i}' for i in range(1, 8)]
NAMES = ARM + ['panda_gripper']          # config/robots/panda.yaml gripper.command_name
WRIST = '/wrist_camera/camera/color/image_raw'


@pytest.fixture(scope='module')
def sim_zarr(tmp_path_factory):
    """One in-process pick_place episode (sim-dataset), the reference for names and units."""
    path = tmp_path_factory.mktemp('pick_sim') / 'sim.zarr'
    assert cli.main(['sim-dataset', '--task', 'pick_place', '--episodes', '1', '--seed', '3',
                     '--out', str(path)]) == 0
    return path


def test_expert_chunks_close_the_fingers_around_the_cube_through_the_controller(tmp_path):
    t0 = time.monotonic()
    with GraphRun(tmp_path / 'bringup.log', 'expert_demo', '--arg', 'task=pick_place') as run:
        chunks = run.record(JointTrajectory, '/ros2_imitation/action_chunk', COMMAND_QOS)
        widths = run.record(Float64MultiArray, '/gripper_controller/commands', COMMAND_QOS)
        states = run.record(String, '/sim/task_state', STATE_QOS)

        def state():
            return json.loads(states.messages[-1].data) if states.messages else {}
        try:
            wait_for(lambda: state().get('grasped') and state().get('time', 0) > 0, 60,
                     what='the fingers to close on the cube')
            grasp = state()
            wait_for(lambda: state().get('success'), 60, what='the cube placed and released')
        except AssertionError:
            print(run.output()[-3000:])
            raise
        final = state()
    print(f'pick_place expert through the graph: grasped at {grasp["time"]:.1f} s, success at '
          f'{final["time"]:.1f} s sim ({time.monotonic() - t0:.0f} s wall with start-up)')
    assert all(list(m.joint_names) == NAMES and len(m.points[0].positions) == 8 for m in chunks.messages)
    sent = np.array([m.data[0] for m in widths.messages])
    assert np.all((sent >= 0.0) & (sent <= 0.08)) and sent.max() > 0.07 and sent.min() < 0.01
    # the fingers rest on the 4.5 cm cube, both in contact, while the command squeezes further
    assert grasp['finger_contacts'] == [True, True] and 0.035 < grasp['gripper_width'] < 0.05


def _read_bag(bag):
    from rosbags.highlevel import AnyReader
    with AnyReader([bag]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        conns = [c for c in reader.connections if c.topic == '/ros2_imitation/action_chunk']
        chunk = next(reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns))
    return counts, chunk


def test_record_demos_bags_convert_to_the_keys_and_units_of_sim_dataset(tmp_path, sim_zarr):
    from ros2_imitation.data.bag_dataset import convert_bags, write_dataset
    from ros2_imitation.data.topic_map import build_config, load_topic_map

    env = dict(os.environ, ROS_DOMAIN_ID=str(next_domain_id()), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONUNBUFFERED='1')
    out = tmp_path / 'demos'
    t0 = time.monotonic()
    proc = Process([sys.executable, '-m', 'ros2_imitation.cli', 'record-demos', '--task', 'pick_place',
                    '--episodes', '1', '--seed', '3', '--timeout', '20', '--out', str(out), '--quiet'],
                   env, str(tmp_path / 'record.log'))
    try:
        wait_for(lambda: proc.proc.poll() is not None, 120, interval=0.5, what='record-demos to finish')
    finally:
        code = proc.stop()
    assert code == 0, proc.output()[-3000:]
    episode = json.loads((out / 'record_demos.jsonl').read_text().splitlines()[0])
    print(f'record-demos pick_place: 1 episode, success {episode["success"]}, {time.monotonic() - t0:.0f} s wall')
    bag = out / 'episode_0000'
    counts, chunk = _read_bag(bag)
    assert counts[WRIST] > 50 and counts['/wrist_camera/camera/color/camera_info'] > 50
    assert list(chunk.joint_names) == NAMES and len(chunk.points[0].positions) == 8

    config = build_config(load_topic_map('pick_place'))
    result = convert_bags([bag], config)
    assert not result.failures, result.failures
    write_dataset(tmp_path / 'bags.zarr', result, config)
    bags, sim = (zarr.open_group(str(p), mode='r') for p in (tmp_path / 'bags.zarr', sim_zarr))
    for key in ('state', 'action', 'image', 'wrist_image'):
        a, b = bags['data'][key], sim['data'][key]
        assert (a.shape[1:], a.dtype) == (b.shape[1:], b.dtype), key
    assert bags['data/state'].shape[1] == 8 and bags['data/image'].shape[1:] == (96, 96, 3)
    assert bags['meta'].attrs['joint_names'] == sim['meta'].attrs['joint_names'] == NAMES
    for group in (bags, sim):   # units: radians for the arm, metres of opening for the gripper
        state, action = group['data/state'][:], group['data/action'][:]
        assert np.all((state[:, 7] > 0.0) & (state[:, 7] <= 0.0805)) and state[:, 7].max() > 0.075
        assert state[:, 7].min() < 0.05                         # closed on the cube at some point
        assert np.all((action[:, 7] >= 0.0) & (action[:, 7] <= 0.08)) and action[:, 7].min() < 0.01
        assert np.abs(state[:, :7]).max() < 3.1
        assert np.median(np.abs(action[:, :7] - state[:, :7])) < 0.05   # a target one step ahead, in rad


@pytest.fixture(scope='module')
def two_camera_model(tmp_path_factory, sim_zarr):
    folder = tmp_path_factory.mktemp('pick_tiny')
    config = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), '..', 'config', 'policies',
                                              'pick_place.yaml')))
    config.update(down_dims=[16, 32], encoder_channels=[8, 16], num_keypoints=8, num_inference_steps=2,
                  training={'steps': 3, 'batch_size': 8, 'checkpoint_every': 3})
    (folder / 'tiny.yaml').write_text(yaml.safe_dump(config))
    assert cli.main(['train', '--dataset', str(sim_zarr), '--config', str(folder / 'tiny.yaml'),
                     '--out', str(folder / 'run')]) == 0
    return str(folder / 'run' / 'policy')


def test_two_camera_gripper_policy_publishes_arm_and_gripper_chunks(tmp_path, two_camera_model):
    with GraphRun(tmp_path / 'bringup.log', 'demo_pick_place', '--arg', f'model={two_camera_model}') as run:
        chunks = run.record(JointTrajectory, '/ros2_imitation/action_chunk', COMMAND_QOS)
        proprio = run.record(JointState, '/ros2_imitation/proprio')
        widths = run.record(Float64MultiArray, '/gripper_controller/commands', COMMAND_QOS)
        try:
            wait_for(lambda: len(chunks.messages) >= 3 and widths.messages, 90,
                     what='8-column chunks from the policy and gripper commands from the controller')
        except AssertionError:
            print(run.output()[-3000:])
            raise
    for msg in chunks.messages:
        assert list(msg.joint_names) == NAMES
        assert all(len(p.positions) == 8 and np.all(np.isfinite(p.positions)) for p in msg.points)
    state = proprio.messages[-1]
    assert list(state.name) == NAMES and 0.0 <= state.position[7] <= 0.0805   # the opening in metres
    assert all(0.0 <= m.data[0] <= 0.08 for m in widths.messages)   # through the gripper's safety layer
