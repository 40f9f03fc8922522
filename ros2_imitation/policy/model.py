"""DiffusionPolicy: observation encoders + conditional U-Net + diffusers schedulers, ROS-free.

Data flow: obs history -> `condition()` (normalized state, image keypoints, + injected noise) ->
DDPM/DDIM denoising of a (horizon, action_dim) chunk in [-1, 1] -> unnormalized joint targets.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from .config import PolicyConfig
from .encoder import ImageEncoder
from .normalize import MinMaxNormalizer, normalize_images
from .unet import ConditionalUnet1D


def make_scheduler(config: PolicyConfig, kind: str = 'ddpm'):
    cls = {'ddpm': DDPMScheduler, 'ddim': DDIMScheduler}[kind]
    return cls(num_train_timesteps=config.num_train_timesteps, beta_schedule=config.beta_schedule,
               clip_sample=config.clip_sample, prediction_type=config.prediction_type)


class DiffusionPolicy(nn.Module):
    def __init__(self, config: PolicyConfig):
        super().__init__()
        config.validate()
        missing = [n for n in ('state_dim', 'action_dim') if getattr(config, n) is None]
        if config.image_keys and config.image_shape is None:
            missing.append('image_shape')
        if missing:
            raise ValueError(f'PolicyConfig needs {missing} (train() fills them in from the dataset)')
        bad = [k for k in config.image_keys if '.' in k]
        if bad:
            raise ValueError(f'image keys may not contain dots: {bad}')
        self.config = config
        self.last_timing = {}
        self.encoders = nn.ModuleDict({
            key: ImageEncoder(config.encoder_channels, config.encoder_blocks, config.num_keypoints)
            for key in config.image_keys})
        if config.freeze_encoder:
            self.encoders.requires_grad_(False)
        self.state_normalizer = MinMaxNormalizer(config.state_dim)
        self.action_normalizer = MinMaxNormalizer(config.action_dim)
        self.obs_feature_dim = config.state_dim + 2 * config.num_keypoints * len(config.image_keys)
        self.cond_dim = self.obs_feature_dim * config.n_obs_steps
        self.unet = ConditionalUnet1D(config.action_dim, self.cond_dim, config.diffusion_step_embed_dim,
                                      config.down_dims, config.kernel_size, config.n_groups)
        self.train_scheduler = make_scheduler(config, 'ddpm')
        self.set_inference()
        self._runtime = None    # None: eager torch; else a runtimes.py backend running unet/encoders at inference

    # ---------------------------------------------------------------- setup
    @property
    def device(self) -> torch.device:
        return self.action_normalizer.min.device

    @property
    def first_action_index(self) -> int:
        """Chunk index aligned with the newest observation: chunk[i] applies at t_obs + (i - this) * dt."""
        return self.config.n_obs_steps - 1

    def set_stats(self, stats: dict[str, dict[str, np.ndarray]]) -> None:
        """stats = {'state': {'min', 'max'}, 'action': {'min', 'max'}} in robot units."""
        self.state_normalizer.set_stats(stats['state']['min'], stats['state']['max'])
        self.action_normalizer.set_stats(stats['action']['min'], stats['action']['max'])

    def set_inference(self, scheduler: str | None = None, num_inference_steps: int | None = None) -> None:
        """Pick the sampler and step count (e.g. DDIM 10 on CPU; DDPM 100 = the training chain)."""
        self.config = self.config.replace(
            inference_scheduler=scheduler or self.config.inference_scheduler,
            num_inference_steps=num_inference_steps or self.config.num_inference_steps)
        self.inference_scheduler = make_scheduler(self.config, self.config.inference_scheduler)
        self.inference_scheduler.set_timesteps(self.config.num_inference_steps)

    def set_runtime(self, name: str = 'torch', **options) -> str:
        """Run predict_chunk()'s U-Net and image encoders on 'torch' | 'compile' | 'half' |
        'onnxruntime' | 'openvino' | 'auto' (see runtimes.py for `options`). Returns the runtime in
        use: torch when the asked one is unavailable (the reason is logged). Call again after
        changing the weights."""
        from .runtimes import make_runtime
        self._runtime = make_runtime(self, name, **options)
        return self.runtime

    @property
    def runtime(self) -> str:
        return 'torch' if self._runtime is None else self._runtime.name

    def param_count(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ---------------------------------------------------------------- conditioning
    def noise_active(self, training: bool) -> bool:
        return self.config.noise_at_train if training else self.config.noise_at_test

    def _crop(self, images: torch.Tensor, training: bool, generator) -> torch.Tensor:
        if self.config.crop_shape is None:
            return images
        (ch, cw), (h, w) = self.config.crop_shape, images.shape[-2:]
        if not training:
            top, left = (h - ch) // 2, (w - cw) // 2
            return images[..., top:top + ch, left:left + cw]
        n, where = images.shape[0], generator.device if generator is not None else 'cpu'
        tops = torch.randint(0, h - ch + 1, (n,), generator=generator, device=where).tolist()
        lefts = torch.randint(0, w - cw + 1, (n,), generator=generator, device=where).tolist()
        return torch.stack([img[:, t:t + ch, l:l + cw] for img, t, l in zip(images, tops, lefts)])

    def condition(self, obs: dict[str, torch.Tensor], training: bool | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """Global conditioning vector (B, cond_dim) from an obs history batch.

        obs[state_key]: (B, To, S) robot units; obs[image_key]: (B, To, H, W, 3) uint8.
        The noise-injection step lives here so it can be inspected: N(0, sigma^2) (or, with
        noise_distribution uniform_paper, U[0, sigma)) on every (normalized) component, a fresh draw
        per call, when the mode says so for `training`.
        """
        training = self.training if training is None else training
        state = obs[self.config.state_key].to(self.device, torch.float32)
        feats = [self.state_normalizer.normalize(state)]
        b, to = state.shape[:2]
        fast = self._runtime is not None and not training and not torch.is_grad_enabled()
        for key, encoder in self.encoders.items():
            images = normalize_images(obs[key].to(self.device)).flatten(0, 1)   # (B*To, 3, H, W)
            images = self._crop(images, training, generator)
            feats.append((self._runtime.encode(key, images) if fast else encoder(images)).reshape(b, to, -1))
        cond = torch.cat(feats, dim=-1).reshape(b, -1)
        if self.noise_active(training):
            draw = torch.rand if self.config.noise_distribution == 'uniform_paper' else torch.randn
            cond = cond + self.config.noise_sigma * draw(
                cond.shape, generator=generator, device=cond.device, dtype=cond.dtype)
        return cond

    # ---------------------------------------------------------------- training
    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None,
                training: bool | None = None) -> torch.Tensor:
        """Denoising loss on a batch of windows (what DDP wraps). `training` picks the noise mode;
        default: the module's train/eval state."""
        actions = self.action_normalizer.normalize(batch[self.config.action_key].to(self.device))
        cond = self.condition(batch, training, generator)
        b = actions.shape[0]
        noise = torch.randn(actions.shape, generator=generator, device=self.device)
        t = torch.randint(0, self.config.num_train_timesteps, (b,), generator=generator, device=self.device)
        noisy = self.train_scheduler.add_noise(actions, noise, t)
        pred = self.unet(noisy, t, cond)
        target = {'epsilon': noise, 'sample': actions}.get(self.config.prediction_type)
        if target is None:
            target = self.train_scheduler.get_velocity(actions, noise, t)
        return F.mse_loss(pred, target)

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator | None = None,
               prefix: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Normalized chunk (B, Tp, A). With `prefix` (B, K, A) normalized and `weights` (K,), the
        first K steps are inpainted: at every denoising level the chunk is blended towards the
        prefix noised to that level, and finally towards the clean prefix."""
        cfg, sched = self.config, self.inference_scheduler
        shape = (cond.shape[0], cfg.horizon, cfg.action_dim)
        x = torch.randn(shape, generator=generator, device=cond.device)
        if prefix is not None:
            k = prefix.shape[1]
            w = torch.zeros(cfg.horizon, 1, device=cond.device)
            w[:k, 0] = weights.to(cond.device)
            known = torch.zeros(shape, device=cond.device)
            known[:, :k] = prefix.clamp(-1, 1)   # the model never produces values outside [-1, 1]

        unet = self.unet if self._runtime is None else self._runtime.unet
        for t in sched.timesteps:
            if prefix is not None:
                eps = torch.randn(shape, generator=generator, device=cond.device)
                x = w * sched.add_noise(known, eps, t.reshape(1)) + (1 - w) * x
            out = unet(x, t.to(cond.device), cond)
            x = sched.step(out, t, x, generator=generator).prev_sample
        if prefix is not None:
            x = w * known + (1 - w) * x
        return x

    def _obs_tensors(self, obs: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], bool]:
        """numpy obs (history, optional batch dim) -> batched tensors with exactly To steps.
        A shorter history is padded at the front by repeating its oldest frame, as training windows
        are at episode starts; a longer one keeps its newest To frames. On a CUDA device the arrays
        go through pinned host memory, copied asynchronously (ordered on the current stream)."""
        cfg = self.config
        keys = [cfg.state_key, *cfg.image_keys]
        missing = [k for k in keys if k not in obs]
        if missing:
            raise KeyError(f'observation lacks {missing}; the policy needs {keys}')
        out, batched = {}, None
        for key in keys:
            value = np.asarray(obs[key])
            frame_ndim = 1 if key == cfg.state_key else 3
            frame_shape = (cfg.state_dim,) if key == cfg.state_key else tuple(cfg.image_shape)
            if value.ndim not in (frame_ndim, frame_ndim + 1, frame_ndim + 2):
                raise ValueError(f'obs[{key!r}] has shape {value.shape}; expected (To, *{frame_shape}), '
                                 f'optionally with a leading batch dim')
            if value.shape[value.ndim - frame_ndim:] != frame_shape:
                raise ValueError(f'obs[{key!r}] frames have shape {value.shape[value.ndim - frame_ndim:]}, '
                                 f'the policy was trained on {frame_shape}')
            if value.ndim == frame_ndim:
                value = value[None]
            is_batched = value.ndim == frame_ndim + 2
            if batched is not None and batched != is_batched:
                raise ValueError('observation entries disagree on having a batch dimension')
            batched = is_batched
            if not batched:
                value = value[None]
            if key == cfg.state_key and not np.isfinite(value).all():
                raise ValueError(f'obs[{key!r}] contains NaN or inf')
            value = value[:, -cfg.n_obs_steps:]
            if value.shape[1] < cfg.n_obs_steps:
                pad = np.repeat(value[:, :1], cfg.n_obs_steps - value.shape[1], axis=1)
                value = np.concatenate([pad, value], axis=1)
            dtype = np.float32 if key == cfg.state_key else value.dtype
            tensor = torch.from_numpy(np.ascontiguousarray(value, dtype=dtype))
            if self.device.type == 'cuda':
                tensor = tensor.pin_memory().to(self.device, non_blocking=True)
            else:
                tensor = tensor.to(self.device)
            out[key] = tensor
        return out, batched

    def predict_chunk(self, obs: dict[str, np.ndarray], seed: int | None = None,
                      prefix: np.ndarray | None = None, prefix_weights: np.ndarray | None = None
                      ) -> np.ndarray:
        """Action chunk (Tp, A) -- or (B, Tp, A) for batched obs -- in robot units.

        prefix: (K, A) or (B, K, A) actions, robot units, that the new chunk's indices 0..K-1 should
        continue (real-time chunking: the part of the previous chunk that overlaps this one, aligned
        so prefix[i] is due at the same time as chunk[i]). prefix_weights: (K,) in [0, 1], default
        all 1 (hard inpainting); see runtime.chunking.soft_prefix_weights().

        Deterministic for a given seed -- including the injected observation noise, so a deployed
        policy must not reuse one fixed seed: pass None (fresh draws) or a new seed per query.
        Not thread-safe (shared scheduler); call it from one thread. `last_timing` keeps the call's
        stages in seconds: preprocess (arrays to tensors), encode (conditioning), denoise.
        """
        t0 = time.perf_counter()
        batch, batched = self._obs_tensors(obs)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
        prefix_t = weights_t = None
        if prefix is not None:
            prefix_t = torch.as_tensor(np.asarray(prefix, dtype=np.float32), device=self.device)
            if prefix_t.ndim == 2:
                prefix_t = prefix_t[None]
            b = batch[self.config.state_key].shape[0]
            k = prefix_t.shape[1]
            if prefix_t.shape[2] != self.config.action_dim or k > self.config.horizon:
                raise ValueError(f'prefix shape {tuple(prefix_t.shape)}: need (K <= {self.config.horizon}, '
                                 f'{self.config.action_dim})')
            prefix_t = self.action_normalizer.normalize(prefix_t.expand(b, -1, -1))
            weights_t = torch.ones(k) if prefix_weights is None else torch.as_tensor(
                np.asarray(prefix_weights, dtype=np.float32))
            if weights_t.shape != (k,):
                raise ValueError(f'prefix_weights shape {tuple(weights_t.shape)} != ({k},)')
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                t1 = time.perf_counter()
                cond = self.condition(batch, training=False, generator=generator)
                t2 = time.perf_counter()
                chunk = self.action_normalizer.unnormalize(self.sample(cond, generator, prefix_t, weights_t))
        finally:
            self.train(was_training)
        chunk = chunk.cpu().numpy()
        self.last_timing = {'preprocess': t1 - t0, 'encode': t2 - t1, 'denoise': time.perf_counter() - t2}
        return chunk if batched else chunk[0]

    def predict(self, obs: dict[str, np.ndarray], seed: int | None = None) -> np.ndarray:
        """Action chunk (Tp, A) in robot units (float32); see predict_chunk()."""
        return self.predict_chunk(obs, seed=seed)
