"""Bags from any robot: a topic map (YAML or flags) names the joint states, the cameras (Image or
CompressedImage), the action (a commanded JointTrajectory, a forward-controller Float64MultiArray,
or the next measured state) and the gripper. The bags here have the shape `ros2 bag record` gives on
a Franka and on a UR arm with realsense2_camera: other topic names, JPEG/PNG CompressedImage, joint
states with extra joints in another order."""
import json

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from test_bag_dataset import MS, T0, T, _header, chunk_msg, write_bag

from ros2_imitation import cli
from ros2_imitation.data.bag_dataset import convert_bag
from ros2_imitation.data.bag_reading import BagError
from ros2_imitation.data.lerobot_format import load_lerobot
from ros2_imitation.data.topic_map import TopicMapError, build_config, load_topic_map, parse_topic_map

FR3 = tuple(f'fr3_joint{i}' for i in range(1, 8))
UR = ('shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint', 'wrist_1_joint', 'wrist_2_joint',
      'wrist_3_joint')
CAM_W, CAM_H = 64, 48        # camera frames in the bag
W, H = 32, 24                # dataset frames


def q(t_ms, n=7):
    return 0.1 * np.arange(n) + t_ms / 1000.0


def g(t_ms):
    """Gripper finger position (m) at t_ms."""
    return 0.04 - 0.01 * t_ms / 1000.0


def camera_frame(i):
    """Smooth frames (JPEG-friendly) that differ from one frame to the next."""
    y, x = np.mgrid[0:CAM_H, 0:CAM_W]
    img = np.stack([x * 4, y * 5, np.full_like(x, 8 * i)], -1).clip(0, 255).astype(np.uint8)
    img[8:24, 4 + i % 40:20 + i % 40] = (220, 60, 60)
    return img


def expected_frame(i):
    return cv2.resize(camera_frame(i), (W, H), interpolation=cv2.INTER_AREA)


def joint_states(stamp_ns, names, positions):
    empty = np.zeros(0)
    return T['sensor_msgs/msg/JointState'](header=_header(stamp_ns), name=list(names),
                                           position=np.asarray(positions, float).copy(), velocity=empty, effort=empty)


def compressed(stamp_ns, rgb, fmt):
    ext = '.png' if 'png' in fmt else '.jpg'
    ok, data = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))   # image_transport: bgr8, then encode
    assert ok
    return T['sensor_msgs/msg/CompressedImage'](header=_header(stamp_ns), format=fmt,
                                                data=np.frombuffer(data.tobytes(), np.uint8).copy())


def raw_image(stamp_ns, rgb, encoding='bgr8'):
    pixels = rgb[..., ::-1] if encoding == 'bgr8' else rgb
    h, w = rgb.shape[:2]
    return T['sensor_msgs/msg/Image'](header=_header(stamp_ns), height=h, width=w, encoding=encoding,
                                      is_bigendian=0, step=3 * w, data=np.ascontiguousarray(pixels).reshape(-1))


def float_array(values):
    layout = T['std_msgs/msg/MultiArrayLayout'](dim=[], data_offset=0)
    return T['std_msgs/msg/Float64MultiArray'](layout=layout, data=np.asarray(values, float).copy())


def log_msg():
    return T['rcl_interfaces/msg/Log'](stamp=_header(T0).stamp, level=20, name='x', msg='hello', file='f',
                                       function='fn', line=1)


JS_MS = [3 + 10 * m for m in range(200)]          # /joint_states at 100 Hz
CAM_MS = [10 + 33 * i for i in range(60)]          # camera at 30 Hz
GRIP_MS = [5 + 33 * i for i in range(60)]          # gripper joint states at 30 Hz
TRAJ_RECV_MS = [40 + 250 * m for m in range(8)]    # a trajectory command every 0.25 s


def franka_events(with_trajectory=True, camera_topic='/camera/camera/color/image_raw/compressed'):
    """ros2 bag record on a Franka (franka_ros2 + realsense2_camera's compressed transport)."""
    arm_order = ['fr3_joint3', 'fr3_joint1', 'fr3_joint2', 'fr3_joint4', 'fr3_joint5', 'fr3_joint7', 'fr3_joint6']
    names = arm_order + ['fr3_base_extra_joint']
    events = [(T0 + 1 * MS, '/rosout', 'rcl_interfaces/msg/Log', log_msg())]
    for t in JS_MS:
        pos = q(t)
        values = [pos[FR3.index(n)] for n in arm_order] + [9.0]
        events.append((T0 + (t + 2) * MS, '/joint_states', 'sensor_msgs/msg/JointState',
                       joint_states(T0 + t * MS, names, values)))
    for i, t in enumerate(CAM_MS):
        events.append((T0 + (t + 15) * MS, camera_topic, 'sensor_msgs/msg/CompressedImage',
                       compressed(T0 + t * MS, camera_frame(i), 'rgb8; jpeg compressed bgr8')))
    for t in GRIP_MS:
        events.append((T0 + (t + 4) * MS, '/franka_gripper/joint_states', 'sensor_msgs/msg/JointState',
                       joint_states(T0 + t * MS, ['fr3_finger_joint1', 'fr3_finger_joint2'], [g(t), g(t)])))
    if with_trajectory:
        for r in TRAJ_RECV_MS:   # one point each, stamp 0 (start now), joints in another order
            target = q(r + 250)
            order = list(reversed(FR3))
            events.append((T0 + r * MS, '/fr3_arm_controller/joint_trajectory', 'trajectory_msgs/msg/JointTrajectory',
                           chunk_msg(0, [0.0], [[target[FR3.index(n)] for n in order]], order)))
    return events


def latest(stamps_ms, t_ms):
    return max(s for s in stamps_ms if s <= t_ms)


FRANKA_MAP = {
    'joint_states': '/joint_states',
    'joints': list(FR3),
    'cameras': {'front': '/camera/camera/color/image_raw/compressed'},
    'action': {'source': 'trajectory', 'topic': '/fr3_arm_controller/joint_trajectory'},
    'gripper': {'joint': 'fr3_finger_joint1', 'topic': '/franka_gripper/joint_states'},
    'task_state': '',
    'image_size': [W, H],
    'task': 'put the cube in the box',
    'robot_type': 'fr3',
}


def test_franka_bag_through_a_yaml_topic_map(tmp_path):
    bag = write_bag(tmp_path / 'bags' / 'franka_0', franka_events(), custom={'outcome': 'success'})
    ep = convert_bag(bag, build_config(parse_topic_map(FRANKA_MAP)))
    # grid: from the first trajectory (40 ms) to the last gripper sample minus one step (1952 - 100)
    grid = [40 + 100 * k for k in range(19)]
    assert len(ep) == len(grid) and ep.info['action_source'] == 'trajectory'
    np.testing.assert_allclose(ep.state[:, :7], [q(latest(JS_MS, t)) for t in grid], atol=1e-6)
    np.testing.assert_allclose(ep.state[:, 7], [g(latest(GRIP_MS, t)) for t in grid], atol=1e-6)
    # action: the latest trajectory received by t_k, its one point; gripper: measured at t_k + dt
    np.testing.assert_allclose(ep.action[:, :7], [q(latest(TRAJ_RECV_MS, t) + 250) for t in grid], atol=1e-6)
    np.testing.assert_allclose(ep.action[:, 7], [g(latest(GRIP_MS, t + 100)) for t in grid], atol=1e-6)
    assert set(ep.images) == {'front'} and ep.images['front'].shape == (19, H, W, 3)
    for k, t in enumerate(grid):
        want = expected_frame(CAM_MS.index(latest(CAM_MS, t))).astype(int)
        assert np.abs(ep.images['front'][k].astype(int) - want).mean() < 4, k   # JPEG, in RGB order

    # the same through the CLI into a LeRobot folder; next_state from a flag overrides the map
    (tmp_path / 'franka.yaml').write_text(yaml.safe_dump(FRANKA_MAP))
    out = tmp_path / 'lr'
    assert cli.main(['bag2dataset', str(tmp_path / 'bags'), '--topics', str(tmp_path / 'franka.yaml'),
                     '--format', 'lerobot', '--out', str(out), '--quiet', '--action-source', 'next_state']) == 0
    info = json.loads((out / 'meta' / 'info.json').read_text())
    assert info['robot_type'] == 'fr3' and set(info['features']) >= {'observation.images.front', 'observation.state'}
    assert info['features']['action']['names'] == [*FR3, 'fr3_finger_joint1']
    tasks = pq.read_table(out / 'meta' / 'tasks.parquet').column('__index_level_0__').to_pylist()
    assert tasks == ['put the cube in the box']
    data = load_lerobot(out, ['observation.state', 'action'])
    state, action = data.arrays['observation.state'], data.arrays['action']
    np.testing.assert_allclose(action[:-1, :7], state[1:, :7], atol=1e-6)      # next measured state
    extra = json.loads((out / 'meta' / 'ros2_imitation.json').read_text())
    assert extra['cameras'] == {'front': '/camera/camera/color/image_raw/compressed'}
    assert extra['gripper']['topic'] == '/franka_gripper/joint_states' and extra['action_source'] == 'next_state'


UR_JS_ORDER = ['elbow_joint', 'finger_joint', 'shoulder_lift_joint', 'shoulder_pan_joint', 'wrist_1_joint',
               'wrist_2_joint', 'wrist_3_joint']                # joint_state_broadcaster: alphabetical
CMD_MS = [20 * m for m in range(100)]                           # forward controller at 50 Hz
GRIP_CMD = [(300, 0.0), (1200, 0.8)]                            # sparse gripper commands


def ur_events():
    events = []
    for t in JS_MS:
        pos = dict(zip(UR, q(t, 6)))
        pos['finger_joint'] = 0.1 + t / 10000.0
        events.append((T0 + (t + 2) * MS, '/joint_states', 'sensor_msgs/msg/JointState',
                       joint_states(T0 + t * MS, UR_JS_ORDER, [pos[n] for n in UR_JS_ORDER])))
    for i, t in enumerate(CAM_MS):
        events.append((T0 + (t + 15) * MS, '/camera/color/image_raw/compressed', 'sensor_msgs/msg/CompressedImage',
                       compressed(T0 + t * MS, camera_frame(i), 'bgr8; png compressed bgr8')))
        events.append((T0 + (t + 5) * MS, '/wrist_camera/image_raw', 'sensor_msgs/msg/Image',
                       raw_image(T0 + t * MS, camera_frame(59 - i), 'bgr8')))
    for t in CMD_MS:
        events.append((T0 + t * MS, '/forward_position_controller/commands', 'std_msgs/msg/Float64MultiArray',
                       float_array(q(t + 500, 6) * -1)))
    for t, value in GRIP_CMD:
        events.append((T0 + t * MS, '/gripper_controller/commands', 'std_msgs/msg/Float64MultiArray',
                       float_array([value, 7.0])))
    return events


def test_ur_bag_through_flags_with_commands_two_cameras_and_a_gripper(tmp_path, capsys):
    write_bag(tmp_path / 'bags' / 'ur_0', ur_events(), custom={'outcome': 'success', 'task': 'stack'})
    out = tmp_path / 'ur.zarr'
    assert cli.main(['bag2dataset', str(tmp_path / 'bags'), '--out', str(out), '--quiet',
                     '--joints', ','.join(UR), '--task-state-topic', '', '--image-size', f'{W}x{H}',
                     '--camera', 'front=/camera/color/image_raw/compressed',
                     '--camera', 'wrist=/wrist_camera/image_raw',
                     '--action-source', 'command', '--action-topic', '/forward_position_controller/commands',
                     '--gripper-joint', 'finger_joint', '--gripper-command-topic', '/gripper_controller/commands']) == 0
    assert 'converted 1 episodes' in capsys.readouterr().out
    import zarr
    root = zarr.open_group(str(out), mode='r')
    state, action = root['data/state'][:], root['data/action'][:]
    grid = [10 + 100 * k for k in range(len(state))]          # from the first camera frame (10 ms)
    assert len(grid) == 20                                     # up to the last camera frame (1957 ms)
    np.testing.assert_allclose(state[:, :6], [q(latest(JS_MS, t), 6) for t in grid], atol=1e-6)
    np.testing.assert_allclose(state[:, 6], [0.1 + latest(JS_MS, t) / 10000.0 for t in grid], atol=1e-6)
    # the command in force at t_k + dt, in --joints order; the gripper's command, or where it is before one
    np.testing.assert_allclose(action[:, :6], [-q(latest(CMD_MS, t + 100) + 500, 6) for t in grid], atol=1e-6)
    want_grip = [dict(GRIP_CMD)[latest([c for c, _ in GRIP_CMD], t + 100)] if t + 100 >= 300 else state[k, 6]
                 for k, t in enumerate(grid)]
    np.testing.assert_allclose(action[:, 6], want_grip, atol=1e-6)
    assert root['data/front'].shape == root['data/wrist'].shape == (20, H, W, 3)
    k = 7
    i = CAM_MS.index(latest(CAM_MS, grid[k]))
    assert np.abs(root['data/front'][k].astype(int) - expected_frame(i)).max() <= 1          # PNG: lossless
    np.testing.assert_array_equal(root['data/wrist'][k], expected_frame(59 - i))           # raw bgr8
    attrs = root['meta'].attrs.asdict()
    assert attrs['joint_names'] == [*UR, 'finger_joint'] and attrs['cameras']['wrist'] == '/wrist_camera/image_raw'

    from ros2_imitation.policy.dataset import ReplayBuffer
    buf = ReplayBuffer.open(out, ['state', 'action', 'front', 'wrist'])
    assert buf.data['state'].shape == (20, 7)


def test_missing_and_mistyped_topics_name_the_topic_and_list_the_bag(tmp_path):
    bag = write_bag(tmp_path / 'franka', franka_events(with_trajectory=False))
    config = build_config(parse_topic_map(FRANKA_MAP))
    with pytest.raises(BagError) as err:
        convert_bag(bag, config)
    text = str(err.value)
    assert '/fr3_arm_controller/joint_trajectory: missing (required for the action (trajectory))' in text
    assert '/joint_states (sensor_msgs/msg/JointState)' in text and '/rosout (rcl_interfaces/msg/Log)' in text
    assert '/camera/camera/color/image_raw/compressed (sensor_msgs/msg/CompressedImage)' in text

    wrong = build_config(parse_topic_map({**FRANKA_MAP, 'action': 'next_state',
                                          'cameras': {'front': '/franka_gripper/joint_states'}}))
    with pytest.raises(BagError, match=r'/franka_gripper/joint_states: has message type sensor_msgs/msg/JointState, '
                                       r'expected sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage'):
        convert_bag(bag, wrong)
    no_gripper = build_config(parse_topic_map({**FRANKA_MAP, 'action': 'next_state',
                                               'gripper': {'joint': 'robotiq_knuckle'}}))
    with pytest.raises(BagError, match=r"/joint_states: no message has finite positions for all of .*"
                                       r"'robotiq_knuckle'.*names seen: .*fr3_base_extra_joint"):
        convert_bag(bag, no_gripper)
    auto = build_config(parse_topic_map({**FRANKA_MAP, 'action': 'auto'}))
    with pytest.raises(BagError, match=r'give the action source .*the bag has .*/franka_gripper/joint_states'):
        convert_bag(bag, auto)


def test_topic_map_checks(tmp_path, capsys):
    with pytest.raises(TopicMapError, match=r"unknown key \['camera'\]"):
        parse_topic_map({'camera': {'front': '/x'}})
    with pytest.raises(TopicMapError, match='action.source must be one of'):
        parse_topic_map({'action': {'source': 'teleop'}})
    with pytest.raises(TopicMapError, match="must start with /"):
        parse_topic_map({'joint_states': 'joint_states'})
    with pytest.raises(ValueError, match="camera name 'state' is taken"):
        build_config(parse_topic_map({'cameras': {'state': '/cam'}}))
    with pytest.raises(ValueError, match='command joints .* lack the joints'):
        build_config(joints=('a', 'b'), command_joints=('a',), action_source='command')
    with pytest.raises(TopicMapError, match='needs the action source'):
        build_config(action_source='next_state', action_topic='/x')
    defaults = build_config()
    assert defaults.camera_topics == {'image': '/camera/camera/color/image_raw'} and defaults.gripper is None
    assert build_config(image_topic='').camera_topics == {}
    bad = tmp_path / 'map.yaml'
    bad.write_text('joint_states: /joint_states\ncamras: {front: /x}\n')
    assert cli.main(['bag2dataset', str(tmp_path), '--topics', str(bad), '--out', str(tmp_path / 'o.zarr')]) == 2
    assert "unknown key ['camras']" in capsys.readouterr().err
    bad.write_text('cameras: !!python/object/apply:os.system ["true"]\n')
    assert cli.main(['bag2dataset', str(tmp_path), '--topics', str(bad), '--out', str(tmp_path / 'o.zarr')]) == 2
    assert 'not valid YAML' in capsys.readouterr().err


def test_the_shipped_pick_place_map_reads_the_panda_gripper_as_an_opening():
    config = build_config(load_topic_map('pick_place'))
    assert set(config.camera_topics) == {'image', 'wrist_image'}
    g = config.gripper
    assert g.joints == ('panda_finger_joint1', 'panda_finger_joint2') and g.column == 'panda_gripper'
    assert config.state_names[-1] == 'panda_gripper' and np.isclose(g.value(np.array([[0.02, 0.021]]))[0], 0.041)
    with pytest.raises(TopicMapError, match='profile'):
        build_config({'gripper': {'profile': 'panda'}}, gripper_command='/g')
