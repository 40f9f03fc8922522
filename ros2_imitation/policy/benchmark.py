"""Time budget figures of a policy config on this machine: params, latencies, training throughput.

    python -m ros2_imitation.policy.benchmark [--state-only] [--image 96] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from .config import PolicyConfig
from .model import DiffusionPolicy


def _best_ms(fn, repeats: int) -> float:
    """Best of `repeats`: the least-disturbed run on a shared machine."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def measure(config: PolicyConfig, device: str = 'cpu', batch_size: int = 64, repeats: int = 5,
            samplers=(('ddim', 10), ('ddpm', 100))) -> dict:
    torch.manual_seed(0)
    policy = DiffusionPolicy(config).to(device)
    cfg, rng = policy.config, np.random.default_rng(0)
    obs = {cfg.state_key: rng.standard_normal((cfg.n_obs_steps, cfg.state_dim)).astype(np.float32)}
    for key in cfg.image_keys:
        obs[key] = rng.integers(0, 255, (cfg.n_obs_steps, *cfg.image_shape), dtype=np.uint8)
    tensors, _ = policy._obs_tensors(obs)
    policy.eval()
    out = {'params': policy.param_count(),
           'params_unet': sum(p.numel() for p in policy.unet.parameters()),
           'params_encoders': sum(p.numel() for p in policy.encoders.parameters()),
           'cond_dim': policy.cond_dim, 'threads': torch.get_num_threads(), 'device': device}
    with torch.no_grad():
        cond = policy.condition(tensors, training=False)
        x = torch.randn(1, cfg.horizon, cfg.action_dim, device=device)
        t = torch.tensor([10], device=device)
        out['unet_forward_ms'] = _best_ms(lambda: policy.unet(x, t, cond), repeats * 4)
        out['condition_ms'] = _best_ms(lambda: policy.condition(tensors, training=False), repeats * 4)
    for kind, steps in samplers:
        policy.set_inference(kind, steps)
        out[f'predict_{kind}{steps}_ms'] = _best_ms(lambda: policy.predict(obs, seed=0),
                                                    repeats if steps <= 16 else max(2, repeats // 3))
    ms = train_step_ms(policy, obs, batch_size, repeats)
    out['train_step_ms'] = ms
    out['train_samples_per_s'] = batch_size / ms * 1e3
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}


def train_step_ms(policy: DiffusionPolicy, obs: dict[str, np.ndarray], batch_size: int, repeats: int) -> float:
    """Best time (ms) of one AdamW step on `batch_size` copies of the observation history `obs`
    and random actions. The batch stays in host memory and moves to the policy's device inside the
    step, as a data loader's batch does. The policy's weights change."""
    cfg = policy.config
    batch = {k: torch.from_numpy(np.repeat(v[None], batch_size, 0)) for k, v in obs.items()}
    batch[cfg.action_key] = torch.randn(batch_size, cfg.horizon, cfg.action_dim)
    policy.train()
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-4)

    def step():
        loss = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return _best_ms(step, repeats)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--state-only', action='store_true')
    parser.add_argument('--image', type=int, default=96, help='square image side')
    parser.add_argument('--state-dim', type=int, default=7)
    parser.add_argument('--action-dim', type=int, default=7)
    parser.add_argument('--config', help='PolicyConfig .yaml/.json (shapes still come from the flags)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--threads', type=int, help='torch intra-op threads (default: torch decides)')
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = PolicyConfig.load(args.config) if args.config else PolicyConfig()
    config = config.replace(state_dim=args.state_dim, action_dim=args.action_dim,
                            image_keys=() if args.state_only else config.image_keys or ('image',),
                            image_shape=None if args.state_only else (args.image, args.image, 3))
    print(json.dumps(measure(config, args.device, args.batch_size, args.repeats), indent=2))


if __name__ == '__main__':
    main()
