"""LeRobot v3.0 both ways without the lerobot package: bag2dataset --format lerobot writes LeRobot's
layout (checked file by file against what lerobot's own writer produces), and train / dataset-report
read it back (and any v3.0 folder) into the same arrays as the zarr of the same bags."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from test_bag_dataset import IMG, MS, T0, T, _header, reference_events, write_bag

from ros2_imitation import cli
from ros2_imitation.data.lerobot_format import (
    DEFAULT_FEATURES,
    LeRobotEpisode,
    load_lerobot,
    resolve_features,
    write_lerobot,
)
from ros2_imitation.policy.dataset import ReplayBuffer

W, H = 64, 48
STATS = {'min', 'max', 'mean', 'std', 'count', 'q01', 'q10', 'q50', 'q90', 'q99'}
TINY_POLICY = {'down_dims': [32, 64], 'encoder_channels': [8, 16], 'num_keypoints': 8, 'horizon': 8,
               'n_action_steps': 4, 'num_inference_steps': 4,
               'training': {'steps': 3, 'batch_size': 8, 'checkpoint_every': 3}}


def frame(i, w=W, h=H):
    """A frame with structure a codec has to keep: gradients and a square that moves with i."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 255 // (w - 1)), (y * 255 // (h - 1)), np.full_like(x, (37 * i) % 256)], -1)
    img = img.astype(np.uint8)
    c = 2 + (i % (w - 10))
    img[6:14, c:c + 8] = (250, 250, 30)
    return img


def structured_events():
    """The reference episode of test_bag_dataset with W x H structured camera frames."""
    events = [e for e in reference_events() if e[1] != IMG]
    for i in range(20):
        t = 50 + 100 * i
        data = np.ascontiguousarray(frame(i)).reshape(-1)
        msg = T['sensor_msgs/msg/Image'](header=_header(T0 + t * MS), height=H, width=W, encoding='rgb8',
                                         is_bigendian=0, step=3 * W, data=data)
        events.append((T0 + (t + 60) * MS, IMG, 'sensor_msgs/msg/Image', msg))
    return events


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Two bags -> a zarr and a LeRobot folder with the same options."""
    root = tmp_path_factory.mktemp('lerobot')
    bags = root / 'bags'
    write_bag(bags / 'ep_a', structured_events(), custom={'outcome': 'success', 'task': 'push the cube'})
    write_bag(bags / 'ep_b', structured_events(), storage='sqlite3', custom={'outcome': 'failure'})
    common = [str(bags), '--image-size', f'{W}x{H}', '--quiet', '--task-state-topic', '']
    assert cli.main(['bag2dataset', *common, '--out', str(root / 'd.zarr')]) == 0
    assert cli.main(['bag2dataset', *common, '--out', str(root / 'lr'), '--format', 'lerobot',
                     '--robot-type', 'panda']) == 0
    return root


def test_layout_and_metadata(exported):
    lr = exported / 'lr'
    files = sorted(str(p.relative_to(lr)) for p in lr.rglob('*') if p.is_file())
    assert files == ['data/chunk-000/file-000.parquet', 'meta/episodes/chunk-000/file-000.parquet',
                     'meta/info.json', 'meta/ros2_imitation.json', 'meta/stats.json', 'meta/tasks.parquet',
                     'videos/observation.images.image/chunk-000/file-000.mp4']
    info = json.loads((lr / 'meta/info.json').read_text())
    assert info['codebase_version'] == 'v3.0' and info['fps'] == 10 and info['robot_type'] == 'panda'
    assert (info['total_episodes'], info['total_frames'], info['total_tasks']) == (2, 40, 2)
    assert info['chunks_size'] == 1000 and info['splits'] == {'train': '0:2'}
    assert info['data_path'] == 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet'
    assert info['video_path'] == 'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4'
    features = info['features']
    joints = [f'panda_joint{i}' for i in range(1, 8)]
    assert features['observation.state'] == {'dtype': 'float32', 'shape': [7], 'names': joints}
    assert features['action'] == {'dtype': 'float32', 'shape': [7], 'names': joints}
    video = features['observation.images.image']
    assert video['dtype'] == 'video' and video['shape'] == [H, W, 3]
    assert video['names'] == ['height', 'width', 'channels']
    assert video['info']['video.codec'] == 'av1' and video['info']['video.fps'] == 10
    assert video['info']['video.pix_fmt'] == 'yuv420p' and video['info']['has_audio'] is False
    for key, ft in DEFAULT_FEATURES.items():
        assert features[key] == ft

    stats = json.loads((lr / 'meta/stats.json').read_text())
    assert set(stats) == set(features)
    assert set(stats['action']) == STATS and np.shape(stats['action']['mean']) == (7,)
    assert np.shape(stats['observation.images.image']['mean']) == (3, 1, 1)
    image_stats = stats['observation.images.image']
    assert 0 <= np.min(image_stats['min']) <= np.max(image_stats['max']) <= 1
    assert stats['index']['count'] == [40] and stats['timestamp']['max'] == pytest.approx([1.9])

    tasks = pq.read_table(lr / 'meta/tasks.parquet')
    assert json.loads(tasks.schema.metadata[b'pandas'])['index_columns'] == ['__index_level_0__']
    assert tasks.column('__index_level_0__').to_pylist() == ['push the cube', 'task']
    assert tasks.column('task_index').to_pylist() == [0, 1]

    eps = pq.read_table(lr / 'meta/episodes/chunk-000/file-000.parquet').to_pylist()
    assert [e['episode_index'] for e in eps] == [0, 1] and [e['length'] for e in eps] == [20, 20]
    assert [e['tasks'] for e in eps] == [['push the cube'], ['task']]
    assert [(e['dataset_from_index'], e['dataset_to_index']) for e in eps] == [(0, 20), (20, 40)]
    key = 'videos/observation.images.image'
    assert [(e[f'{key}/from_timestamp'], e[f'{key}/to_timestamp']) for e in eps] == [(0.0, 2.0), (2.0, 4.0)]
    assert all(e['data/chunk_index'] == e['data/file_index'] == 0 for e in eps)
    assert np.shape(eps[0]['stats/observation.images.image/mean']) == (3, 1, 1)
    assert eps[1]['stats/index/min'] == [20]

    data = pq.read_table(lr / 'data/chunk-000/file-000.parquet')
    assert data.column_names == ['observation.state', 'action', 'timestamp', 'frame_index', 'episode_index',
                                 'index', 'task_index']
    assert str(data.schema.field('action').type) == 'fixed_size_list<element: float>[7]'
    assert str(data.schema.field('timestamp').type) == 'float' and str(data.schema.field('index').type) == 'int64'
    np.testing.assert_allclose(data.column('timestamp').to_numpy()[:20], np.arange(20) / 10, atol=1e-6)
    assert data.column('frame_index').to_pylist() == list(range(20)) * 2
    assert data.column('index').to_pylist() == list(range(40))
    assert data.column('task_index').to_pylist() == [0] * 20 + [1] * 20

    extra = json.loads((lr / 'meta/ros2_imitation.json').read_text())
    assert extra['episode_outcome'] == [1, 0] and extra['action_time_offset_steps'] == 1
    assert [e['name'] for e in extra['episodes']] == ['ep_a', 'ep_b']


def test_import_gives_the_zarr_arrays(exported):
    keys = ['state', 'action', 'image']
    zarr_buf = ReplayBuffer.open(exported / 'd.zarr', keys)
    lr_buf = ReplayBuffer.open(exported / 'lr', keys)
    assert lr_buf.feature_map == {'state': 'observation.state', 'action': 'action',
                                  'image': 'observation.images.image'}
    np.testing.assert_array_equal(lr_buf.episode_ends, zarr_buf.episode_ends)
    np.testing.assert_array_equal(lr_buf.data['state'], zarr_buf.data['state'])
    np.testing.assert_array_equal(lr_buf.data['action'], zarr_buf.data['action'])
    assert lr_buf.action_offset_steps == zarr_buf.action_offset_steps == 1
    decoded, original = lr_buf.data['image'].astype(int), zarr_buf.data['image'].astype(int)
    assert decoded.shape == original.shape == (40, H, W, 3) and lr_buf.data['image'].dtype == np.uint8
    np.testing.assert_array_equal(original[5], frame(5))           # the zarr holds the bag's frames
    # AV1 at LeRobot's CRF 30 with 4:2:0 chroma (96x96 frames: about 35 dB)
    psnr = 10 * np.log10(255 ** 2 / ((decoded - original) ** 2).mean())
    assert psnr > 30 and np.abs(decoded - original).mean() < 5, psnr
    # each row got its own frame, not a neighbour's (the square moves one pixel a frame)
    for row in (0, 7, 19, 20, 33):
        dist = [np.abs(decoded[row] - original[r]).mean() for r in range(20, 40)]
        assert int(np.argmin(dist)) == row % 20, row


def test_train_and_report_on_the_export(exported, tmp_path, capsys):
    config = tmp_path / 'tiny.yaml'
    config.write_text(yaml.safe_dump(TINY_POLICY))
    out = tmp_path / 'run'
    assert cli.main(['train', '--dataset', str(exported / 'lr'), '--config', str(config), '--out', str(out)]) == 0
    from ros2_imitation.policy import load_policy
    policy = load_policy(out / 'policy')
    assert policy.config.image_shape == (H, W, 3) and policy.config.action_offset_steps == 1
    assert 'image <- observation.images.image' in capsys.readouterr().err

    assert cli.main(['dataset-report', str(exported / 'lr'), '--out', str(tmp_path / 'report')]) == 0
    summary = json.loads((tmp_path / 'report' / 'report.json').read_text())
    assert summary['format'] == 'lerobot' and summary['episodes'] == 2 and summary['steps'] == 40
    assert (summary['success'], summary['failure']) == (1, 1)
    assert (tmp_path / 'report' / 'frames.png').stat().st_size > 0
    md = (tmp_path / 'report' / 'report.md').read_text()
    assert 'LeRobot dataset v3.0' in md and 'push the cube' in md and '| panda_joint1 |' in md


def test_files_roll_over_into_chunks_and_read_back(tmp_path):
    rng = np.random.default_rng(0)
    episodes = []
    for e in range(5):
        n = 12 + 3 * e
        state = rng.normal(size=(n, 3)).astype(np.float32)
        images = {'front': np.stack([frame(i + 3 * e, 32, 32) for i in range(n)]),
                  'wrist': np.stack([frame(i, 32, 32)[::-1] for i in range(n)])}
        episodes.append(LeRobotEpisode(state, state + 1, images, f'task {e % 2}'))
    out = write_lerobot(tmp_path / 'lr', episodes, fps=15, state_names=['a', 'b', 'c'], action_names=['a', 'b', 'c'],
                        vcodec='h264', chunks_size=2, data_files_size_in_mb=0.0004, video_files_size_in_mb=0.0005)
    data_files = sorted(str(p.relative_to(out)) for p in (out / 'data').rglob('*.parquet'))
    assert data_files[:3] == ['data/chunk-000/file-000.parquet', 'data/chunk-000/file-001.parquet',
                              'data/chunk-001/file-000.parquet'], data_files
    assert len(list((out / 'videos' / 'observation.images.front').rglob('*.mp4'))) > 1
    eps = pq.read_table(out / 'meta/episodes/chunk-000/file-000.parquet').to_pylist()
    assert eps[2]['data/chunk_index'] == 1 and eps[2]['data/file_index'] == 0
    assert eps[1]['videos/observation.images.front/from_timestamp'] == 0.0   # a new file each episode

    data = load_lerobot(out, ['observation.state', 'action', 'observation.images.front', 'observation.images.wrist'])
    np.testing.assert_array_equal(data.episode_ends, np.cumsum([12, 15, 18, 21, 24]))
    np.testing.assert_array_equal(data.arrays['observation.state'], np.concatenate([e.state for e in episodes]))
    np.testing.assert_array_equal(data.arrays['action'], np.concatenate([e.action for e in episodes]))
    for cam in ('front', 'wrist'):
        original = np.concatenate([e.images[cam] for e in episodes]).astype(int)
        decoded = data.arrays[f'observation.images.{cam}'].astype(int)
        assert np.abs(decoded - original).mean() < 8, cam      # h264 CRF 30 on 32x32 frames
        for row in range(1, len(original) - 1):                # every row got its own frame
            own = np.abs(decoded[row] - original[row]).mean()
            assert own < np.abs(decoded[row] - original[row - 1]).mean(), (cam, row)
            assert own < np.abs(decoded[row] - original[row + 1]).mean(), (cam, row)
    info = json.loads((out / 'meta/info.json').read_text())
    assert info['features']['observation.images.wrist']['info']['video.codec'] == 'h264'
    assert info['total_tasks'] == 2 and info['fps'] == 15


def test_features_map_to_the_policy_keys():
    cam = {'dtype': 'video', 'shape': [8, 8, 3]}
    vec = {'dtype': 'float32', 'shape': [6]}
    one_camera = {'observation.state': vec, 'action': vec, 'observation.images.top': cam}
    assert resolve_features(one_camera, ['state', 'action', 'image']) == {
        'state': 'observation.state', 'action': 'action', 'image': 'observation.images.top'}
    pusht = {'observation.state': vec, 'action': vec, 'observation.image': cam}
    assert resolve_features(pusht, ['state', 'action', 'image'])['image'] == 'observation.image'
    two = {**one_camera, 'observation.images.wrist': cam}
    with pytest.raises(KeyError, match=r"no feature for \['image'\].*--map image="):
        resolve_features(two, ['state', 'action', 'image'])
    assert resolve_features(two, ['state', 'action', 'image', 'wrist'], {'image': 'observation.images.top'}) == {
        'state': 'observation.state', 'action': 'action', 'image': 'observation.images.top',
        'wrist': 'observation.images.wrist'}
    with pytest.raises(KeyError, match='no such features'):
        resolve_features(two, ['state'], {'state': 'observation.joints'})


def test_refusals(exported, tmp_path, capsys):
    bags = exported / 'bags'
    assert cli.main(['bag2dataset', str(bags), '--out', str(tmp_path / 'x'), '--format', 'lerobot',
                     '--rate', '7.5', '--quiet']) == 2
    assert 'integer fps' in capsys.readouterr().err
    assert cli.main(['bag2dataset', str(bags), '--out', str(tmp_path / 'x'), '--format', 'lerobot',
                     '--image-size', '31x48', '--quiet']) == 2
    assert 'even width and height' in capsys.readouterr().err
    assert not (tmp_path / 'x').exists()
    assert cli.main(['train', '--dataset', str(exported / 'd.zarr'), '--out', str(tmp_path / 'r'),
                     '--map', 'image=observation.images.top']) == 2
    assert '--map is for LeRobot datasets' in capsys.readouterr().err
    old = tmp_path / 'old'
    (old / 'meta').mkdir(parents=True)
    (old / 'meta' / 'info.json').write_text(json.dumps({'codebase_version': 'v2.1', 'fps': 10, 'features': {}}))
    assert cli.main(['dataset-report', str(old)]) == 2
    err = capsys.readouterr().err
    assert 'v2.1' in err and 'convert_dataset_v21_to_v30' in err


def test_a_state_only_export(exported, tmp_path):
    out = tmp_path / 'no_cameras'
    common = [str(exported / 'bags'), '--image-topic', '', '--quiet', '--task-state-topic', '']
    assert cli.main(['bag2dataset', *common, '--out', str(out), '--format', 'lerobot']) == 0
    assert cli.main(['bag2dataset', *common, '--out', str(tmp_path / 'no_cameras.zarr')]) == 0
    info = json.loads((out / 'meta' / 'info.json').read_text())
    assert info['video_path'] is None and not (out / 'videos').exists()
    assert sorted(info['features']) == sorted(['observation.state', 'action', *DEFAULT_FEATURES])
    buf = ReplayBuffer.open(out, ['state', 'action'])
    zarr_buf = ReplayBuffer.open(tmp_path / 'no_cameras.zarr', ['state', 'action'])
    np.testing.assert_array_equal(buf.data['state'], zarr_buf.data['state'])
    np.testing.assert_array_equal(buf.data['action'], zarr_buf.data['action'])
    np.testing.assert_array_equal(buf.episode_ends, zarr_buf.episode_ends)
