"""The ROS-free diffusion policy: shapes, normalization, noise injection, checkpoints, training."""
import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ros2_imitation.policy import (
    CheckpointError,
    DiffusionPolicy,
    MinMaxNormalizer,
    PolicyConfig,
    ReplayBuffer,
    WindowDataset,
    load_policy,
    save_encoder,
    save_policy,
    train,
    write_episodes,
)
from ros2_imitation.policy.checkpoint import CONFIG_FILE, MODEL_FILE, save_tensors
from ros2_imitation.runtime.chunking import soft_prefix_weights

# Tiny networks: the tests check behaviour, not capacity.
SMALL = dict(down_dims=(32, 64), diffusion_step_embed_dim=32, horizon=8, n_action_steps=4,
             encoder_channels=(8, 16), num_keypoints=8, state_dim=3, action_dim=2)
STATS = {'state': {'min': np.array([-1, -1, 0.5]), 'max': np.array([1, 1, 0.5])},
         'action': {'min': np.array([-1.0, -2.0]), 'max': np.array([1.0, 2.0])}}
OVERFIT_LOSS = 0.06     # epsilon-prediction MSE after 300 steps on 2 tiny episodes (untrained: ~1.0)
OVERFIT_MAE = 0.15      # mean |predicted - demonstrated| chunk, robot units (action ranges 2 and 4)


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def state_config(**kw):
    return PolicyConfig(**{**SMALL, 'image_keys': (), **kw})


def image_config(**kw):
    return PolicyConfig(**{**SMALL, 'image_shape': (32, 32, 3), **kw})


def make_policy(config):
    torch.manual_seed(0)
    policy = DiffusionPolicy(config)
    policy.set_stats(STATS)
    return policy.eval()


def episodes(n=2, length=30, images=False, seed=0):
    """Sinusoid joint targets; state = previous action + a constant dimension (gripper never used)."""
    rng, out = np.random.default_rng(seed), []
    for i in range(n):
        phase = np.pi * i / max(n, 1)
        t = np.arange(length + 1)
        act = np.stack([np.sin(0.25 * t + phase), 2 * np.cos(0.25 * t + phase)], -1).astype(np.float32)
        ep = {'state': np.concatenate([act[:-1], np.full((length, 1), 0.5, np.float32)], 1),
              'action': act[1:]}
        if images:
            ep['image'] = rng.integers(0, 255, (length, 32, 32, 3), dtype=np.uint8)
        out.append(ep)
    return out


def obs_for(policy, batch=None, seed=0):
    cfg, rng = policy.config, np.random.default_rng(seed)
    lead = () if batch is None else (batch,)
    obs = {'state': rng.uniform(-1, 1, (*lead, cfg.n_obs_steps, cfg.state_dim)).astype(np.float32)}
    for key in cfg.image_keys:
        obs[key] = rng.integers(0, 255, (*lead, cfg.n_obs_steps, *cfg.image_shape), dtype=np.uint8)
    return obs


# ---------------------------------------------------------------- shapes and API
@pytest.mark.parametrize('make_config', [state_config, image_config])
def test_predict_shapes(make_config):
    policy = make_policy(make_config())
    cfg = policy.config
    assert policy.predict(obs_for(policy), seed=0).shape == (cfg.horizon, cfg.action_dim)
    assert policy.predict(obs_for(policy, batch=3), seed=0).shape == (3, cfg.horizon, cfg.action_dim)
    one_frame = {k: v[-1] for k, v in obs_for(policy).items()}   # short history is padded
    assert policy.predict(one_frame, seed=0).shape == (cfg.horizon, cfg.action_dim)
    tensors, _ = policy._obs_tensors(obs_for(policy, batch=3))
    assert policy.condition(tensors, training=False).shape == (3, policy.cond_dim)
    assert policy.first_action_index == cfg.n_obs_steps - 1


def test_bad_observations_are_clear_errors():
    policy = make_policy(image_config())
    obs = obs_for(policy)
    with pytest.raises(KeyError, match='image'):
        policy.predict({'state': obs['state']})
    with pytest.raises(ValueError, match=r'\(32, 32, 3\)'):
        policy.predict({**obs, 'image': np.zeros((2, 16, 16, 3), np.uint8)})
    with pytest.raises(ValueError, match='NaN'):
        policy.predict({**obs, 'state': np.full_like(obs['state'], np.nan)})


def test_config_round_trip(tmp_path):
    cfg = image_config(noise_sigma=0.1, crop_shape=(28, 28))
    assert PolicyConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    cfg.save(tmp_path / 'p.yaml')
    assert PolicyConfig.load(tmp_path / 'p.yaml') == cfg
    with pytest.raises(ValueError, match='unknown'):
        PolicyConfig.from_dict({'nosie_sigma': 0.1})
    with pytest.raises(ValueError, match='noise_mode'):
        PolicyConfig(noise_mode='test_only')


def test_no_ros_import():
    import ros2_imitation.policy as package
    for path in Path(package.__file__).parent.glob('*.py'):
        for node in ast.walk(ast.parse(Path(path).read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, 'module', None) or '']
                assert not any(n.split('.')[0] == 'rclpy' for n in names), path


# ---------------------------------------------------------------- normalization
@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, (20, 4), elements=st.floats(-1e3, 1e3, width=32)))
def test_normalization_round_trip(data):
    norm = MinMaxNormalizer(4)
    norm.set_stats(data.min(0), data.max(0))
    x = torch.from_numpy(data)
    y = norm.normalize(x)
    assert torch.isfinite(y).all() and y.abs().max() <= 1 + 1e-5
    assert torch.allclose(norm.unnormalize(y), x, atol=1e-3, rtol=1e-5)


def test_constant_dimension_guard():
    data = np.stack([np.linspace(-3, 5, 50), np.full(50, 0.5), np.zeros(50), np.full(50, -1e4)], 1)
    data = data.astype(np.float32)
    norm = MinMaxNormalizer(4)
    norm.set_stats(data.min(0), data.max(0))
    y = norm.normalize(torch.from_numpy(data))
    assert torch.isfinite(y).all()
    assert (y[:, 1:] == 0).all()
    back = norm.unnormalize(y).numpy()
    assert np.array_equal(back[:, 1:], data[:, 1:])            # constants come back exactly
    assert np.allclose(back[:, 0], data[:, 0], atol=1e-5)
    out_of_range = norm.normalize(torch.tensor([[0.0, 0.7, 1.0, 3.0]]))   # unseen values: still finite
    assert torch.isfinite(out_of_range).all()


# ---------------------------------------------------------------- noise injection
@pytest.mark.parametrize('make_config,batch', [(state_config, 8192), (image_config, 256)])
def test_noise_statistics(make_config, batch):
    sigma = 0.1
    noisy = make_policy(make_config(noise_sigma=sigma, noise_mode='replica'))
    clean = make_policy(make_config(noise_sigma=sigma, noise_mode='off'))
    clean.load_state_dict(noisy.state_dict())
    obs, _ = noisy._obs_tensors(obs_for(noisy, batch=batch))
    reference = clean.condition(obs, training=True)
    assert torch.equal(reference, clean.condition(obs, training=False))        # off: never noise
    for training in (True, False):                                            # replica: both
        delta = noisy.condition(obs, training=training) - reference
        assert abs(delta.mean().item()) < 0.003
        assert delta.std().item() == pytest.approx(sigma, rel=0.03)
    first, second = noisy.condition(obs, training=False), noisy.condition(obs, training=False)
    assert not torch.equal(first, second)                                     # fresh draw per call
    same = [noisy.condition(obs, False, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(*same)                                                 # seeded: repeatable

    train_only = make_policy(make_config(noise_sigma=sigma, noise_mode='train_only'))
    train_only.load_state_dict(noisy.state_dict())
    assert torch.equal(train_only.condition(obs, training=False), reference)
    assert not torch.equal(train_only.condition(obs, training=True), reference)
    zero = make_policy(make_config(noise_sigma=0.0, noise_mode='replica'))
    zero.load_state_dict(noisy.state_dict())
    assert torch.equal(zero.condition(obs, training=True), reference)


@pytest.mark.parametrize('mode', ['replica', 'train_only'])
def test_uniform_paper_noise_is_u_0_sigma_as_the_papers_code(mode):
    """noise_distribution uniform_paper: U[0, sigma) per dimension of the normalized conditioning,
    in training and (replica only) at test: mean sigma/2, spread sigma/sqrt(12), never negative."""
    sigma = 0.2
    noisy = make_policy(state_config(noise_sigma=sigma, noise_mode=mode, noise_distribution='uniform_paper'))
    clean = make_policy(state_config(noise_sigma=sigma, noise_mode='off'))
    clean.load_state_dict(noisy.state_dict())
    obs, _ = noisy._obs_tensors(obs_for(noisy, batch=8192))
    reference = clean.condition(obs, training=True)
    delta = noisy.condition(obs, training=True) - reference
    assert delta.min().item() >= -1e-6 and delta.max().item() < sigma + 1e-6
    assert delta.mean().item() == pytest.approx(sigma / 2, rel=0.02)
    assert delta.std().item() == pytest.approx(sigma / np.sqrt(12), rel=0.03)
    at_test = noisy.condition(obs, training=False) - reference
    assert (at_test.abs().max().item() > 0) == (mode == 'replica')
    with pytest.raises(ValueError, match='noise_distribution'):
        state_config(noise_distribution='laplace')


# ---------------------------------------------------------------- predict and checkpoints
def test_predict_deterministic_under_seed():
    policy = make_policy(state_config(noise_sigma=0.1))
    obs = obs_for(policy)
    a, b, c = policy.predict(obs, seed=1), policy.predict(obs, seed=1), policy.predict(obs, seed=2)
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert np.isfinite(a).all()


def test_prefix_inpainting():
    policy = make_policy(state_config())
    obs = obs_for(policy)
    prefix = np.array([[0.1, -0.5], [0.2, -0.4], [0.3, -0.3]], np.float32)
    chunk = policy.predict_chunk(obs, seed=0, prefix=prefix)
    assert np.allclose(chunk[:3], prefix, atol=1e-5)
    weights = soft_prefix_weights(policy.config.horizon, prefix_len=3, frozen=1)
    assert weights[0] == 1 and 0 < weights[2] < weights[1] < 1 and (weights[3:] == 0).all()
    soft = policy.predict_chunk(obs, seed=0, prefix=prefix, prefix_weights=weights[:3])
    assert np.allclose(soft[0], prefix[0], atol=1e-5) and not np.allclose(soft[1:3], prefix[1:])


def test_checkpoint_round_trip(tmp_path):
    policy = make_policy(image_config(noise_sigma=0.05))
    save_policy(policy, tmp_path / 'ckpt')
    loaded = load_policy(tmp_path / 'ckpt')
    assert loaded.config == policy.config
    obs = obs_for(policy)
    assert np.array_equal(loaded.predict(obs, seed=3), policy.predict(obs, seed=3))
    ddpm = load_policy(tmp_path / 'ckpt' / MODEL_FILE, inference_scheduler='ddpm', num_inference_steps=20)
    assert ddpm.config.inference_scheduler == 'ddpm' and len(ddpm.inference_scheduler.timesteps) == 20


def _rewrite(directory, tensors):
    """Replace the weights with a well-formed file (manifest updated) to reach the shape checks."""
    entry = save_tensors(directory / MODEL_FILE, tensors)
    data = json.loads((directory / CONFIG_FILE).read_text())
    data['files'][MODEL_FILE] = entry
    (directory / CONFIG_FILE).write_text(json.dumps(data))


def _garbage_without_manifest(directory):
    """Without a manifest entry the hash check is skipped: the parser must catch it."""
    data = json.loads((directory / CONFIG_FILE).read_text())
    del data['files'][MODEL_FILE]
    (directory / CONFIG_FILE).write_text(json.dumps(data))
    (directory / MODEL_FILE).write_bytes(b'garbage, not a safetensors header')


def test_bad_checkpoints_fail_clearly(tmp_path):
    policy = make_policy(state_config())
    good = save_policy(policy, tmp_path / 'good')
    state = policy.state_dict()
    name = 'unet.final.1.weight'

    def broken(tag, edit):
        directory = save_policy(policy, tmp_path / tag)
        edit(directory)
        return directory

    def flip(d):
        raw = bytearray((d / MODEL_FILE).read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (d / MODEL_FILE).write_bytes(bytes(raw))

    cases = {
        'flipped': (flip, 'SHA-256'),
        'truncated': (lambda d: (d / MODEL_FILE).write_bytes((good / MODEL_FILE).read_bytes()[:1000]),
                      'truncated'),
        'unreadable': (_garbage_without_manifest, 'not a readable safetensors'),
        'wrong_shape': (lambda d: _rewrite(d, {**state, name: torch.zeros(3, 3)}), name),
        'missing': (lambda d: _rewrite(d, {k: v for k, v in state.items() if k != name}), 'missing'),
        'extra': (lambda d: _rewrite(d, {**state, 'bogus': torch.zeros(1)}), 'bogus'),
        'nan_stats': (lambda d: _rewrite(d, {**state, 'action_normalizer.min': torch.full((2,), np.nan)}),
                      'NaN'),
        'bad_config': (lambda d: (d / CONFIG_FILE).write_text('{"format": '), CONFIG_FILE),
    }
    for tag, (edit, message) in cases.items():
        directory = broken(tag, edit)
        with pytest.raises(CheckpointError, match=message) as info:
            load_policy(directory)
        assert str(directory) in str(info.value), tag
    with pytest.raises(CheckpointError, match='no such'):
        load_policy(tmp_path / 'absent')


# ---------------------------------------------------------------- data and training
def test_windowing_pads_episode_edges(tmp_path):
    cfg = state_config()     # To=2, Tp=8, Ta=4: windows start 1 step early and end 3 steps late
    data = [{'state': np.full((n, 3), 0, np.float32) + np.arange(s, s + n)[:, None],
             'action': np.zeros((n, 2), np.float32) + np.arange(s, s + n)[:, None]}
            for s, n in ((0, 5), (5, 7))]
    buffer = ReplayBuffer.open(write_episodes(tmp_path / 'd.zarr', data), ['state', 'action'])
    ds = WindowDataset(buffer, cfg)
    assert len(ds) == 2 + 4      # per episode: length - horizon + n_obs_steps + n_action_steps - 1
    assert ds.indices(0).tolist() == [0, 0, 1, 2, 3, 4, 4, 4]
    assert ds.indices(2).tolist() == [5, 5, 6, 7, 8, 9, 10, 11]
    assert ds.indices(5).tolist() == [7, 8, 9, 10, 11, 11, 11, 11]
    item = ds[0]
    assert item['state'][:, 0].tolist() == [0, 0] and item['action'][:, 0].tolist() == [0, 0, 1, 2, 3, 4, 4, 4]
    for i in range(len(ds)):
        rows = ds.indices(i)
        assert (rows < 5).all() or (rows >= 5).all()     # never across an episode boundary


def test_a_batch_is_one_gather_equal_to_its_windows(tmp_path):
    """WindowDataset.__getitems__ (what the DataLoader calls) gives exactly the stacked windows,
    images included, in the order asked."""
    from torch.utils.data import DataLoader, default_collate

    from ros2_imitation.policy.dataset import as_batch
    cfg = state_config().replace(image_keys=('image',), image_shape=(32, 32, 3))
    data = episodes(n=3, length=12, images=True)
    buffer = ReplayBuffer.open(write_episodes(tmp_path / 'd.zarr', data), ['state', 'action', 'image'])
    ds = WindowDataset(buffer, cfg)
    order = [5, 0, len(ds) - 1, 3, 3]
    batch = ds.__getitems__(order)
    reference = default_collate([{k: torch.from_numpy(
        buffer.data[k][ds.indices(i)[:cfg.n_obs_steps] if k != 'action' else ds.indices(i)].astype(
            np.float32 if k != 'image' else np.uint8)) for k in ('state', 'action', 'image')} for i in order])
    for key, value in reference.items():
        assert batch[key].dtype == value.dtype and torch.equal(batch[key], value), key
    loaded = next(iter(DataLoader(ds, batch_sampler=[order], collate_fn=as_batch)))
    assert all(torch.equal(loaded[k], batch[k]) for k in batch)


def test_overfit_tiny_dataset(tmp_path):
    data = episodes(n=2, length=30)
    path = write_episodes(tmp_path / 'd.zarr', data)
    cfg = PolicyConfig(image_keys=(), down_dims=(32, 64), diffusion_step_embed_dim=32, horizon=8,
                       n_action_steps=4)
    result = train(path, cfg, tmp_path / 'run', steps=300, batch_size=64, lr=5e-3, val_fraction=0,
                   checkpoint_every=None, log_every=50, progress=False)
    assert result.train_loss < OVERFIT_LOSS, result.history
    policy = load_policy(result.policy_dir, inference_scheduler='ddim', num_inference_steps=10)
    assert policy.config.state_dim == 3 and policy.config.action_dim == 2
    errors = []
    for ep, t in ((0, 3), (0, 10), (0, 17), (1, 5), (1, 12), (1, 19)):
        chunk = policy.predict({'state': data[ep]['state'][t - 1:t + 1]}, seed=t)
        demo = data[ep]['action'][t - 1:t - 1 + cfg.horizon]
        errors.append(np.abs(chunk - demo).mean())
    assert np.mean(errors) < OVERFIT_MAE, errors


def test_resume_continues_from_saved_step(tmp_path):
    path = write_episodes(tmp_path / 'd.zarr', episodes(n=3, length=20, images=True))
    cfg = image_config(state_dim=None, action_dim=None, image_shape=None, noise_sigma=0.1)
    calls = []
    kwargs = dict(steps=6, batch_size=8, checkpoint_every=3, val_fraction=0.34, progress=False,
                  eval_fn=lambda policy, step: calls.append(step) or {'ok': 1.0})
    first = train(path, cfg, tmp_path / 'run', **kwargs)
    assert first.step == 6 and calls == [3, 6] and first.val_loss is not None
    reference = load_policy(first.policy_dir).state_dict()
    ckpts = tmp_path / 'run' / 'checkpoints'
    assert sorted(p.name for p in ckpts.iterdir()) == ['step_0000003', 'step_0000006']
    import shutil
    shutil.rmtree(ckpts / 'step_0000006')      # as if the run had died after step 3
    resumed = train(path, cfg, tmp_path / 'run', resume=True, **kwargs)
    assert resumed.step == 6 and [r['step'] for r in resumed.history] == [6] and calls[-1] == 6
    again = load_policy(resumed.policy_dir).state_dict()
    assert all(torch.equal(reference[k], again[k]) for k in reference)   # bit-identical continuation


def test_frozen_pretrained_encoder(tmp_path):
    path = write_episodes(tmp_path / 'd.zarr', episodes(n=2, length=20, images=True))
    donor = make_policy(image_config())
    weights = save_encoder(donor, tmp_path / 'encoder.safetensors')
    cfg = image_config(state_dim=None, action_dim=None, image_shape=None, crop_shape=(28, 28),
                       encoder_weights=str(weights), freeze_encoder=True)
    result = train(path, cfg, tmp_path / 'run', steps=3, batch_size=8, val_fraction=0,
                   checkpoint_every=None, progress=False)
    trained = load_policy(result.policy_dir)
    for name, value in donor.encoders['image'].state_dict().items():
        assert torch.equal(trained.encoders['image'].state_dict()[name], value), name
    assert trained.param_count(trainable_only=True) < trained.param_count()
    assert trained.predict(obs_for(trained), seed=0).shape == (8, 2)
    with pytest.raises(CheckpointError, match='encoder.safetensors'):
        DiffusionPolicy(image_config(num_keypoints=4)).encoders['image'].load_pretrained(weights)


def test_the_action_space_is_joint_or_ee_with_an_ee_sized_action():
    from ros2_imitation.policy.config import PolicyConfig
    assert PolicyConfig().action_space == 'joint'                     # older checkpoints: joint actions
    assert PolicyConfig(action_space='ee', action_dim=10, action_key='action_ee').action_space == 'ee'
    with pytest.raises(ValueError, match='action_dim must be in'):
        PolicyConfig(action_space='ee', action_dim=7)
    with pytest.raises(ValueError, match="action_space='cartesian' not in"):
        PolicyConfig(action_space='cartesian')
