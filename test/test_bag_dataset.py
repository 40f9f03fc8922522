"""bag2dataset: synthetic rosbag2 episodes with hand-picked stamps -> exact zarr contents."""
import json

import numpy as np
import pytest
import zarr
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from ros2_imitation import cli
from ros2_imitation.data.bag_dataset import ConvertConfig, convert_bag, convert_bags
from ros2_imitation.data.bag_reading import ARM_JOINTS
from ros2_imitation.sensors.images import image_to_rgb

TS = get_typestore(Stores.ROS2_JAZZY)
T = TS.types
T0 = 1_000_000_000_000          # 1000 s, in ns: stamps are absolute
MS = 1_000_000
FINGERS = ['panda_finger_joint1', 'panda_finger_joint2']
JS, IMG = '/joint_states', '/camera/camera/color/image_raw'
CHUNK, LABEL = '/ros2_imitation/action_chunk', '/ros2_imitation/expert_label'


def q(t_ms):
    """Arm position at t_ms after T0: joint j = 0.1 j + t (s)."""
    return 0.1 * np.arange(7) + t_ms / 1000.0


def color(i):
    return np.array([10 * i, 100, 200 - i], np.uint8)


def _time(ns):
    return T['builtin_interfaces/msg/Time'](sec=ns // 10**9, nanosec=ns % 10**9)


def _header(ns):
    return T['std_msgs/msg/Header'](stamp=_time(ns), frame_id='')


def joint_msg(stamp_ns, pos):
    names = FINGERS + list(reversed(ARM_JOINTS))        # not the arm order: map by name
    values = np.concatenate([[0.04, 0.04], np.asarray(pos, float)[::-1]]).copy()
    empty = np.zeros(0)
    return T['sensor_msgs/msg/JointState'](header=_header(stamp_ns), name=names, position=values,
                                           velocity=empty, effort=empty)


def image_msg(stamp_ns, rgb, encoding='rgb8', width=12, height=10):
    pixel = np.asarray(rgb, np.uint8)[::-1] if encoding == 'bgr8' else np.asarray(rgb, np.uint8)
    data = np.ascontiguousarray(np.tile(pixel, width * height))
    return T['sensor_msgs/msg/Image'](header=_header(stamp_ns), height=height, width=width,
                                      encoding=encoding, is_bigendian=0, step=3 * width, data=data)


def chunk_msg(stamp_ns, tfs_s, points, joint_names=ARM_JOINTS):
    pts = []
    for t, p in zip(tfs_s, points):
        ns = int(round(t * 1e9))
        pts.append(T['trajectory_msgs/msg/JointTrajectoryPoint'](
            positions=np.ascontiguousarray(p, float), velocities=np.zeros(0), accelerations=np.zeros(0),
            effort=np.zeros(0), time_from_start=T['builtin_interfaces/msg/Duration'](sec=ns // 10**9,
                                                                                        nanosec=ns % 10**9)))
    return T['trajectory_msgs/msg/JointTrajectory'](header=_header(stamp_ns), joint_names=list(joint_names),
                                                    points=pts)


# Chunks of the reference episode: (receive ms, header.stamp ms or None for 0, time_from_start s, points)
J = 0.01 * np.arange(7)
CHUNKS = [
    (40, 100, [0.0, 0.2, 0.4], [1 + J, 2 + J, 3 + J]),
    (650, 700, [0.0, 0.1, 0.3], [-1 - J, -2 - J, -4 - J]),
    (1450, None, [0.15, 0.35], [5 + J, 7 + J]),           # stamp 0: starts when received
]


def reference_events(image_encoding='rgb8', image_gap=None, chunks=CHUNKS):
    """(receive ns, topic, msgtype, msg): joint_states every 20 ms from 5 ms (received 30 ms later),
    images every 100 ms from 50 ms (received 60 ms later), the chunks above."""
    events = []
    for m in range(100):
        t = 5 + 20 * m
        events.append((T0 + (t + 30) * MS, JS, 'sensor_msgs/msg/JointState', joint_msg(T0 + t * MS, q(t))))
    for i in range(20):
        t = 50 + 100 * i
        if image_gap and image_gap[0] <= t <= image_gap[1]:
            continue
        events.append((T0 + (t + 60) * MS, IMG, 'sensor_msgs/msg/Image',
                       image_msg(T0 + t * MS, color(i), image_encoding)))
    for recv, stamp, tfs, points in chunks:
        names = ARM_JOINTS if recv != 650 else tuple(reversed(ARM_JOINTS))
        pts = points if recv != 650 else [p[::-1] for p in points]
        events.append((T0 + recv * MS, CHUNK, 'trajectory_msgs/msg/JointTrajectory',
                       chunk_msg(0 if stamp is None else T0 + stamp * MS, tfs, pts, names)))
    return events


def write_bag(path, events, storage='mcap', custom=None):
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for recv, topic, msgtype, msg in sorted(events, key=lambda e: e[0]):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=TS)
            writer.write(conns[topic], recv, TS.serialize_cdr(msg, msgtype))
        for key, value in (custom or {}).items():
            writer.set_custom_data(key, value)
    return path


def expected_actions():
    """Target of step k (t_k = 50 + 100 k ms) for t_k + 100 ms, from the chunk definitions."""
    out = []
    for k in range(20):
        t = 50 + 100 * k
        recv, stamp, tfs, pts = [c for c in CHUNKS if c[0] <= t][-1]
        s = (t + 100 - (recv if stamp is None else stamp)) / 1000.0
        out.append([np.interp(s, tfs, [p[j] for p in pts]) for j in range(7)])
    return np.array(out)


CONFIG = ConvertConfig(image_size=(8, 6))


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_reference_episode_exact_grid_and_values(tmp_path, storage):
    bag = write_bag(tmp_path / f'ep_{storage}', reference_events(), storage,
                    custom={'outcome': 'success', 'noisy': 'false'})
    ep = convert_bag(bag, CONFIG)
    # grid: t_start = max(first joint 5, first image 50, first chunk received 40) = 50 ms;
    # last image at 1950 ms ends it
    assert len(ep) == 20
    np.testing.assert_array_equal(np.round((ep.timestamp - 1000.0) * 1000).astype(int), 50 + 100 * np.arange(20))
    # state: the latest joint_states by header.stamp (5 + 20 m ms) at or before t_k -> 45 + 100 k
    np.testing.assert_allclose(ep.state, np.array([q(45 + 100 * k) for k in range(20)]), atol=1e-6)
    # image: stamp 50 + 100 i equals t_k ("at or before"), resized to 8x6, RGB
    assert ep.image.shape == (20, 6, 8, 3) and ep.image.dtype == np.uint8
    for k in range(20):
        assert (ep.image[k] == color(k)).all()
    # actions: interpolation inside chunk A, A's last point after its end, chunk B from the step it
    # arrives at (650 ms = t_6), stamp-0 chunk C: first point before its first time_from_start
    want = expected_actions()
    np.testing.assert_allclose(ep.action, want, atol=1e-6)
    by_hand = {0: 1.25, 1: 1.75, 2: 2.25, 4: 3.0, 6: 3.0 - 4.5, 7: -2.5, 9: -4.0, 14: 5.0, 15: 5.5, 16: 6.5, 19: 7.0}
    for k, v in by_hand.items():
        sign = -1 if v < 0 else 1
        np.testing.assert_allclose(ep.action[k], v + sign * J, atol=1e-6, err_msg=f'step {k}')
    assert ep.info['outcome'] == 'success' and ep.info['noisy'] is False
    assert ep.info['action_source'] == 'chunk' and ep.info['storage'] == storage
    assert ep.info['clock'] == 'receive_time' and ep.info['steps_cut'] == 0


def test_batch_with_broken_bags_converts_the_good_ones(tmp_path, capsys):
    write_bag(tmp_path / 'a_good', reference_events(), custom={'outcome': 'success', 'noisy': 'true'})
    write_bag(tmp_path / 'b_gap', reference_events(image_gap=(1050, 1400)))
    truncated = write_bag(tmp_path / 'c_truncated', reference_events())
    mcap = next(truncated.glob('*.mcap'))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    write_bag(tmp_path / 'd_no_image', [e for e in reference_events() if e[1] != IMG])
    wrong = [e for e in reference_events() if e[1] != JS]
    wrong.append((T0, JS, 'std_msgs/msg/String', T['std_msgs/msg/String'](data='not joints')))
    write_bag(tmp_path / 'e_wrong_type', wrong)
    out = tmp_path / 'data.zarr'

    rc = cli.main(['bag2dataset', str(tmp_path), '--out', str(out), '--image-size', '8x6', '--quiet'])
    text = capsys.readouterr()
    report = text.out + text.err
    assert rc == 1
    assert 'converted 2 episodes' in report and 'failed 3' in report
    failed = [line for line in report.splitlines() if line.strip().startswith('failed:')]
    assert any('c_truncated' in line and ('truncated' in line or 'corrupt' in line) for line in failed), report
    assert any('d_no_image' in line and IMG in line and 'missing' in line for line in failed), report
    assert any('e_wrong_type' in line and JS in line and 'std_msgs/msg/String' in line for line in failed), report

    root = zarr.open_group(str(out), mode='r')
    ends = root['meta/episode_ends'][...]
    # the gap bag: the image at 950 ms is the last before the gap; t = 1150 ms sees it 0.2 s old
    np.testing.assert_array_equal(ends, [20, 20 + 11])
    assert root['data/image'].shape == (31, 6, 8, 3)
    assert root['data/state'].dtype == np.float32 and root['data/action'].shape == (31, 7)
    np.testing.assert_array_equal(root['meta/episode_outcome'][...], [1, -1])
    np.testing.assert_array_equal(root['meta/episode_noisy'][...], [1, -1])
    attrs = root['meta'].attrs.asdict()
    assert attrs['rate'] == 10.0 and attrs['joint_names'] == list(ARM_JOINTS)
    assert [e['name'] for e in attrs['episodes']] == ['a_good', 'b_gap']
    assert 'image' in attrs['episodes'][1]['end_reason'] or IMG in attrs['episodes'][1]['end_reason']
    assert len(attrs['failed_bags']) == 3
    json.dumps(attrs)


def test_joint_states_action_bgr8_and_only_success(tmp_path):
    no_chunks = [e for e in reference_events('bgr8') if e[1] != CHUNK]
    write_bag(tmp_path / 'ok', no_chunks, custom={'outcome': 'success'})
    write_bag(tmp_path / 'bad', no_chunks, storage='sqlite3', custom={'outcome': 'failure'})
    config = ConvertConfig(image_size=(12, 10), action_source='joint_states')
    result = convert_bags([tmp_path], config, only_success=True, progress=False)
    assert [s[0].split('/')[-1] for s in result.skipped] == ['bad'] and not result.failures
    (ep,) = result.episodes
    # no chunk: t_start = 50 ms; t_k + dt must still have joint data (last stamp 1985) -> 19 steps
    assert len(ep) == 19
    np.testing.assert_allclose(ep.state, [q(45 + 100 * k) for k in range(19)], atol=1e-6)
    np.testing.assert_allclose(ep.action, [q(145 + 100 * k) for k in range(19)], atol=1e-6)
    np.testing.assert_array_equal(ep.action[:-1], ep.state[1:])
    assert (ep.image[3] == color(3)).all()      # bgr8 bytes came back as RGB


def test_expert_label_preferred_and_clock_mismatch(tmp_path):
    """auto uses /expert_label when present; receive times on another clock are mapped."""
    events = reference_events()
    offset = 5_000 * 10**9    # recorder clock 5000 s ahead of the stamps
    shifted = [(r + offset, topic, typ, msg) for r, topic, typ, msg in events]
    for recv, stamp, tfs, points in CHUNKS[:1]:
        shifted.append((T0 + recv * MS + offset, LABEL, 'trajectory_msgs/msg/JointTrajectory',
                        chunk_msg(T0 + stamp * MS, tfs, [p + 10 for p in points])))
    ep = convert_bag(write_bag(tmp_path / 'labelled', shifted), CONFIG)
    assert ep.info['action_source'] == 'label' and ep.info['clock'] == 'mapped_via_joint_states'
    np.testing.assert_allclose(ep.action[0], 11.25 + J, atol=1e-6)   # label = chunk A + 10
    assert len(ep) == 20   # the label arrived before the first image: same grid
    chunk_ep = convert_bag(tmp_path / 'labelled', ConvertConfig(image_size=(8, 6), action_source='chunk'))
    np.testing.assert_allclose(chunk_ep.action[0], 1.25 + J, atol=1e-6)


def test_image_conversion_rejects_unknown_encodings():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.testing.assert_array_equal(image_to_rgb(rgb.tobytes(), 'rgb8', 2, 3, 9, None), rgb)
    np.testing.assert_array_equal(image_to_rgb(rgb[..., ::-1].tobytes(), 'bgr8', 2, 3, 9, None), rgb)
    padded = np.concatenate([rgb.reshape(2, 9), np.zeros((2, 3), np.uint8)], axis=1)   # step > width * 3
    np.testing.assert_array_equal(image_to_rgb(padded.tobytes(), 'rgb8', 2, 3, 12, None), rgb)
    with pytest.raises(ValueError, match='mono8'):
        image_to_rgb(b'\0' * 6, 'mono8', 2, 3, 3, None)


def test_ee_robot_adds_the_tip_pose_streams_by_forward_kinematics(tmp_path, capsys):
    """--ee-robot panda: state_ee/action_ee beside state/action, each row the URDF's tip pose of the
    joint row (position, 6D rotation); the same bags then train a joint or an end-effector policy."""
    import zarr

    from ros2_imitation.control.ee_chunk import EE_COLUMNS
    from ros2_imitation.control.kinematics import ArmKinematics
    from ros2_imitation.control.task_space import rotation_from_6d
    from ros2_imitation.robot import RobotProfile
    write_bag(tmp_path / 'bags' / 'a', reference_events(), custom={'outcome': 'success'})
    out = tmp_path / 'ee.zarr'
    assert cli.main(['bag2dataset', str(tmp_path / 'bags'), '--out', str(out), '--image-size', '8x6',
                     '--quiet', '--ee-robot', 'panda']) == 0
    root = zarr.open_group(str(out), mode='r')
    kin = ArmKinematics.for_robot(RobotProfile.load('panda'))
    for key in ('state', 'action'):
        joints, ee = root['data'][key][:], root['data'][f'{key}_ee'][:]
        assert ee.shape == (len(joints), 9)
        for row_q, row_ee in zip(joints[::5], ee[::5]):
            p, r = kin.tip_pose(row_q)
            assert np.allclose(row_ee[:3], p, atol=1e-5) and np.allclose(rotation_from_6d(row_ee[3:]), r, atol=1e-4)
    assert root['meta'].attrs['ee_names'] == list(EE_COLUMNS)
    assert root['meta'].attrs['ee_frames'] == ['panda_link0', 'panda_hand_tcp']
    # a profile whose arm joints are not the dataset's is refused before anything is read
    assert cli.main(['bag2dataset', str(tmp_path / 'bags'), '--out', str(tmp_path / 'ur.zarr'), '--quiet',
                     '--ee-robot', 'ur5e']) == 2
    assert 'are not the dataset' in capsys.readouterr().err
