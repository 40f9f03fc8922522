"""Optional: LeRobot's own code opens our export, and a dataset LeRobot's writer made trains here.

lerobot (PyPI 0.4.4) pulls a CUDA torch and torchvision, so it lives in a venv of its own and these
tests drive it through a subprocess; they are skipped when that interpreter (LEROBOT_PYTHON, default
.venv-lerobot/bin/python in the repository, which `make lerobot-venv` builds) is missing or cannot
import lerobot. Building it on CPU wheels only (what the Makefile target does):

    python3 -m venv .venv-lerobot && P=.venv-lerobot/bin/pip
    $P install torch==2.13.0                       # the project's CPU torch
    $P install --no-deps lerobot==0.4.4
    $P install -c <(echo torch==2.13.0) 'datasets>=4,<5' 'huggingface-hub>=0.34.2,<0.36' 'av>=15,<16' \\
        torchvision==0.28.0 accelerate draccus==0.10.0 einops deepdiff jsonlines termcolor pandas pyarrow \\
        fsspec pillow 'packaging<26' 'opencv-python-headless<4.13' 'diffusers<0.36' 'gymnasium<2'
    $P install --no-deps torchcodec==0.12.0        # LeRobot's video decoder (CPU wheel, torch >= 2.11)
    apt-get install -y --no-install-recommends libavdevice59 libavfilter8 libavformat59 libavcodec59 \\
        libavutil57 libswscale6 libswresample4     # the shared FFmpeg torchcodec loads

The only CUDA-built wheel is torchvision 0.28 (PyPI has no CPU build): its C++ ops do not load
against the CPU torch, and lerobot only needs its Python transforms, so the scripts below declare the
two op schemas torchvision's import registers fake kernels for (torchvision::nms, ::qnms) first.
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_bag_dataset import write_bag
from test_lerobot_format import TINY_POLICY, H, W, structured_events

from ros2_imitation import cli

LEROBOT_PYTHON = os.environ.get('LEROBOT_PYTHON', str(Path(__file__).resolve().parent.parent / '.venv-lerobot'
                                                      / 'bin' / 'python'))

PRELUDE = '''
import json, sys
import numpy as np
import torch
for op in ('nms', 'qnms'):   # torchvision's CUDA wheel cannot load its ops on the CPU torch
    try:
        torch.library.define(f'torchvision::{op}', '(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    except Exception:
        pass
from lerobot.datasets.lerobot_dataset import LeRobotDataset
'''

OPEN = PRELUDE + '''
root, rows = sys.argv[1], [int(r) for r in sys.argv[2].split(',')]
ds = LeRobotDataset('local/ros2_imitation_export', root=root)
out = {'episodes': ds.num_episodes, 'frames': ds.num_frames, 'fps': ds.fps, 'features': ds.features,
       'total_tasks': ds.meta.total_tasks, 'video_keys': ds.meta.video_keys,
       'lengths': [int(e['length']) for e in ds.meta.episodes], 'backend': ds.video_backend, 'rows': {}}
for row in rows:
    item = ds[row]
    out['rows'][row] = {
        'image': (item['observation.images.image'] * 255).round().to(torch.uint8).permute(1, 2, 0).tolist(),
        'state': item['observation.state'].tolist(), 'action': item['action'].tolist(),
        'timestamp': float(item['timestamp']), 'episode_index': int(item['episode_index']),
        'frame_index': int(item['frame_index']), 'task': item['task']}
print('RESULT ' + json.dumps(out, default=list))
'''

CREATE = PRELUDE + '''
root, episodes, length, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
names = [f'joint_{i}' for i in range(6)]
features = {
    'observation.state': {'dtype': 'float32', 'shape': (6,), 'names': names},
    'action': {'dtype': 'float32', 'shape': (6,), 'names': names},
    'observation.images.top': {'dtype': kind, 'shape': (48, 64, 3), 'names': ['height', 'width', 'channels']},
}
ds = LeRobotDataset.create('local/made_by_lerobot', fps=10, root=root, features=features, robot_type='so100',
                           use_videos=kind == 'video')
for e in range(episodes):
    for k in range(length):
        y, x = np.mgrid[0:48, 0:64]
        img = np.stack([x * 4, y * 5, np.full_like(x, 8 * k)], -1).clip(0, 255).astype(np.uint8)
        img[8:24, 4 + k:20 + k] = (220, 60 + 40 * e, 60)
        state = (np.arange(6) * 0.1 + 0.01 * k + e).astype(np.float32)
        ds.add_frame({'observation.state': state, 'action': state + 0.05, 'observation.images.top': img,
                      'task': f'task {e % 2}'})
    ds.save_episode()
ds.finalize()
print('RESULT ' + json.dumps({'episodes': ds.meta.total_episodes, 'frames': ds.meta.total_frames}))
'''


@pytest.fixture(scope='module')
def lerobot(tmp_path_factory):
    """Run a script with the lerobot venv's python; skip the module when there is none."""
    if not Path(LEROBOT_PYTHON).is_file():
        pytest.skip(f'no lerobot venv at {LEROBOT_PYTHON} (set LEROBOT_PYTHON)')
    home = tmp_path_factory.mktemp('hf_home')
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'HF_HOME': str(home),
           'HF_LEROBOT_HOME': str(home / 'lerobot'), 'SVT_LOG': '1'}
    env.pop('PYTHONPATH', None)

    def run(script: str, *args) -> dict:
        proc = subprocess.run([LEROBOT_PYTHON, '-c', script, *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=600, cwd=str(home))
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
        assert proc.returncode == 0 and lines, proc.stderr[-4000:]
        return json.loads(lines[-1][len('RESULT '):])

    probe = subprocess.run([LEROBOT_PYTHON, '-c', PRELUDE], capture_output=True, text=True, env=env, timeout=300)
    if probe.returncode != 0:
        pytest.skip(f'{LEROBOT_PYTHON} cannot import lerobot: {probe.stderr.strip().splitlines()[-1:]}')
    return run


def test_lerobot_opens_our_export(lerobot, tmp_path):
    bags = tmp_path / 'bags'
    write_bag(bags / 'ep_a', structured_events(), custom={'outcome': 'success', 'task': 'push the cube'})
    write_bag(bags / 'ep_b', structured_events(), custom={'outcome': 'failure', 'task': 'push the cube'})
    common = [str(bags), '--image-size', f'{W}x{H}', '--quiet', '--task-state-topic', '']
    assert cli.main(['bag2dataset', *common, '--out', str(tmp_path / 'd.zarr')]) == 0
    assert cli.main(['bag2dataset', *common, '--out', str(tmp_path / 'lr'), '--format', 'lerobot']) == 0
    import zarr
    root = zarr.open_group(str(tmp_path / 'd.zarr'), mode='r')
    bag_frames, states, actions = root['data/image'][:], root['data/state'][:], root['data/action'][:]
    from ros2_imitation.data.lerobot_format import load_lerobot
    ours = load_lerobot(tmp_path / 'lr', ['observation.images.image']).arrays['observation.images.image']

    rows = [0, 7, 19, 20, 33]
    got = lerobot(OPEN, tmp_path / 'lr', ','.join(map(str, rows)))
    info = json.loads((tmp_path / 'lr' / 'meta' / 'info.json').read_text())
    assert (got['episodes'], got['frames'], got['fps'], got['total_tasks']) == (2, 40, 10, 1)
    assert got['lengths'] == [20, 20] and got['video_keys'] == ['observation.images.image']
    assert {k: (v['dtype'], list(v['shape'])) for k, v in got['features'].items()} == \
        {k: (v['dtype'], v['shape']) for k, v in info['features'].items()}
    for row in rows:
        item = got['rows'][str(row)]
        assert item['episode_index'] == row // 20 and item['frame_index'] == row % 20
        assert item['timestamp'] == pytest.approx((row % 20) / 10, abs=1e-6) and item['task'] == 'push the cube'
        np.testing.assert_array_equal(np.float32(item['state']), states[row])
        np.testing.assert_array_equal(np.float32(item['action']), actions[row])
        image = np.array(item['image'], dtype=int)
        assert image.shape == (H, W, 3)
        # LeRobot's decoder (torchcodec) and ours (PyAV) give the same pixels
        assert np.abs(image - ours[row].astype(int)).max() <= 2, row
        # and that is the bag's frame (as in the zarr) up to AV1 at CRF 30, GOP 2: 28-40 dB on 64x48
        err = image - bag_frames[row].astype(int)
        psnr = 10 * np.log10(255 ** 2 / (err ** 2).mean())
        assert psnr > 26 and np.abs(err).mean() < 6, (row, psnr)


@pytest.mark.parametrize('kind', ['video', 'image'])   # cameras as mp4, or as PNGs inside the parquet
def test_a_dataset_made_by_lerobot_trains_here(lerobot, tmp_path, kind):
    made = tmp_path / 'made_by_lerobot'
    assert lerobot(CREATE, made, 3, 30, kind) == {'episodes': 3, 'frames': 90}
    assert (made / 'videos').is_dir() == (kind == 'video')
    from ros2_imitation.data.lerobot_format import load_lerobot
    data = load_lerobot(made, ['observation.state', 'action', 'observation.images.top'])
    np.testing.assert_array_equal(data.episode_ends, [30, 60, 90])
    k = np.arange(30)
    want = np.concatenate([(np.arange(6) * 0.1 + 0.01 * k[:, None] + e) for e in range(3)]).astype(np.float32)
    np.testing.assert_array_equal(data.arrays['observation.state'], want)
    frames = data.arrays['observation.images.top']
    assert frames.shape == (90, 48, 64, 3)
    assert abs(int(frames[35, 12, 12 + 5, 1]) - 100) < 20     # episode 1, frame 5: the square's green
    if kind == 'image':                                         # PNG: lossless
        assert tuple(frames[35, 12, 12 + 5]) == (220, 100, 60)

    config = tmp_path / 'tiny.yaml'
    config.write_text(yaml.safe_dump(TINY_POLICY))
    out = tmp_path / 'run'
    assert cli.main(['train', '--dataset', str(made), '--config', str(config), '--out', str(out)]) == 0
    from ros2_imitation.policy import load_policy
    policy = load_policy(out / 'policy')
    assert policy.config.state_dim == 6 and policy.config.image_shape == (48, 64, 3)
    assert cli.main(['dataset-report', str(made), '--out', str(tmp_path / 'report')]) == 0
    summary = json.loads((tmp_path / 'report' / 'report.json').read_text())
    assert summary['episodes'] == 3 and summary['format'] == 'lerobot'
