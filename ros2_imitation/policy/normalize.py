"""Min-max normalization to [-1, 1], with statistics stored as buffers (so they go into the checkpoint).

A dimension whose range is (nearly) zero -- a locked joint, a gripper never used in the demos --
would divide by zero in the textbook formula and give NaN/inf actions. Here it gets scale 0: it
normalizes to 0 and unnormalizes back to its constant value exactly. Nothing divides at run time.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

# Ranges at or below this count as constant. Absolute, in robot units (rad, m): joint data that
# varies less than a micro-radian carries no signal worth amplifying by 1e6.
CONSTANT_RANGE = 1e-6


class MinMaxNormalizer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer('min', torch.full((dim,), -1.0))
        self.register_buffer('max', torch.full((dim,), 1.0))

    @property
    def dim(self) -> int:
        return self.min.shape[0]

    def set_stats(self, minimum, maximum) -> None:
        minimum = torch.as_tensor(np.asarray(minimum, dtype=np.float32))
        maximum = torch.as_tensor(np.asarray(maximum, dtype=np.float32))
        if minimum.shape != self.min.shape or maximum.shape != self.max.shape:
            raise ValueError(f'stats shapes {tuple(minimum.shape)}, {tuple(maximum.shape)} '
                             f'do not match dim {self.dim}')
        if not (torch.isfinite(minimum).all() and torch.isfinite(maximum).all()):
            raise ValueError('normalization stats contain NaN or inf')
        if (maximum < minimum).any():
            raise ValueError('normalization stats have max < min')
        self.min.copy_(minimum)
        self.max.copy_(maximum)

    def _affine(self):
        span = self.max - self.min
        constant = span <= CONSTANT_RANGE
        # For a constant dim, min == max (up to CONSTANT_RANGE), so offset = min reproduces it exactly.
        offset = torch.where(constant, self.min, (self.max + self.min) / 2)
        half_span = torch.where(constant, torch.zeros_like(span), span / 2)
        scale = torch.where(constant, torch.zeros_like(span), 1.0 / torch.where(constant, 1.0, half_span))
        return offset, scale, half_span

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        offset, scale, _ = self._affine()
        return (x - offset) * scale

    def unnormalize(self, y: torch.Tensor) -> torch.Tensor:
        offset, _, half_span = self._affine()
        return y * half_span + offset


def compute_stats(array: np.ndarray) -> dict[str, np.ndarray]:
    """Per-dimension min and max over all but the last axis."""
    flat = np.asarray(array, dtype=np.float64).reshape(-1, array.shape[-1])
    if flat.shape[0] == 0:
        raise ValueError('cannot compute normalization stats of an empty array')
    if not np.isfinite(flat).all():
        raise ValueError('data contains NaN or inf; clean it before computing stats')
    return {'min': flat.min(axis=0).astype(np.float32), 'max': flat.max(axis=0).astype(np.float32)}


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3), or float in [0, 1] -> float (..., 3, H, W) in [-1, 1]."""
    if images.dtype == torch.uint8:
        x = images.to(torch.float32) / 127.5 - 1.0
    else:
        x = images.float() * 2.0 - 1.0
    return x.movedim(-1, -3)
