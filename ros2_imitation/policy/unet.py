"""Conditional 1-D temporal U-Net with FiLM conditioning (Diffusion Policy's ConditionalUnet1D).

diffusers' UNet1DModel has no global conditioning input, hence this small plain-torch version.
The U-Net sees the action chunk as a (B, A, T) sequence; the diffusion step embedding and the
observation conditioning vector modulate every residual block through a per-channel scale and bias.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalPosEmb(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * (-math.log(10000.0) / (half - 1)))
        angles = t.float()[:, None] * freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Conv1dBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel_size: int, n_groups: int):
        super().__init__(
            nn.Conv1d(cin, cout, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, cout),
            nn.Mish(),
        )


class ConditionalResidualBlock1D(nn.Module):
    def __init__(self, cin: int, cout: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.blocks = nn.ModuleList([Conv1dBlock(cin, cout, kernel_size, n_groups),
                                     Conv1dBlock(cout, cout, kernel_size, n_groups)])
        self.cout = cout
        # FiLM: scale and bias per channel, from the step embedding + observation conditioning.
        self.cond_encoder = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * cout))
        self.residual = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = self.blocks[0](x)
        scale, bias = self.cond_encoder(cond).unsqueeze(-1).chunk(2, dim=1)
        out = scale * out + bias
        out = self.blocks[1](out)
        return out + self.residual(x)


class ConditionalUnet1D(nn.Module):
    """eps/x0 predictor: (noisy chunk (B, T, A), timestep (B,), global_cond (B, C)) -> (B, T, A)."""

    def __init__(self, input_dim: int, global_cond_dim: int, diffusion_step_embed_dim: int = 64,
                 down_dims: tuple[int, ...] = (64, 128, 256), kernel_size: int = 5, n_groups: int = 8):
        super().__init__()
        dsed = diffusion_step_embed_dim
        self.step_encoder = nn.Sequential(
            SinusoidalPosEmb(dsed), nn.Linear(dsed, dsed * 4), nn.Mish(), nn.Linear(dsed * 4, dsed))
        cond_dim = dsed + global_cond_dim
        dims = [input_dim, *down_dims]

        def block(cin, cout):
            return ConditionalResidualBlock1D(cin, cout, cond_dim, kernel_size, n_groups)

        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            last = i == len(down_dims) - 1
            self.down.append(nn.ModuleList([
                block(cin, cout), block(cout, cout),
                nn.Conv1d(cout, cout, 3, stride=2, padding=1) if not last else nn.Identity()]))
        mid = down_dims[-1]
        self.mid = nn.ModuleList([block(mid, mid), block(mid, mid)])
        self.up = nn.ModuleList()
        for i, (cout, cin) in enumerate(reversed(list(zip(down_dims[:-1], down_dims[1:])))):
            self.up.append(nn.ModuleList([
                block(cin * 2, cout), block(cout, cout),
                nn.ConvTranspose1d(cout, cout, 4, stride=2, padding=1)]))
        self.final = nn.Sequential(Conv1dBlock(down_dims[0], down_dims[0], kernel_size, n_groups),
                                   nn.Conv1d(down_dims[0], input_dim, 1))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int,
                global_cond: torch.Tensor) -> torch.Tensor:
        x = sample.transpose(1, 2)    # (B, A, T): convolve over time
        if not torch.is_tensor(timestep) or timestep.ndim == 0:
            timestep = torch.as_tensor(timestep, device=x.device).reshape(1)
        timestep = timestep.to(x.device).expand(x.shape[0])
        cond = torch.cat([self.step_encoder(timestep), global_cond], dim=-1)

        skips = []
        for res1, res2, downsample in self.down:
            x = res2(res1(x, cond), cond)
            skips.append(x)
            x = downsample(x)
        for res in self.mid:
            x = res(x, cond)
        # Each up level takes the skip at its input resolution; as in Diffusion Policy, the
        # full-resolution skip goes unused.
        for (res1, res2, upsample), skip in zip(self.up, reversed(skips[1:])):
            x = res2(res1(torch.cat([x, skip], dim=1), cond), cond)
            x = upsample(x)
        return self.final(x).transpose(1, 2)
