"""Image encoder: a small ResNet-style CNN with GroupNorm and spatial-softmax keypoints.

Plain torch (no torchvision on CPU here). GroupNorm rather than BatchNorm because batch statistics
interact badly with the EMA weights used at inference (Diffusion Policy's finding). The output is
the (x, y) expectation of each keypoint heat map, so every feature lies in [-1, 1]: the noise
injected on the conditioning then has a fixed scale relative to the signal, which a learnable
projection after the keypoints would let the network inflate away.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels // 2), channels)


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = _norm(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SpatialSoftmax(nn.Module):
    """(N, C, H, W) -> (N, 2K): expected (x, y) in [-1, 1] of K learned heat maps."""

    def __init__(self, channels: int, num_keypoints: int):
        super().__init__()
        self.to_maps = nn.Conv2d(channels, num_keypoints, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.to_maps(features)
        n, k, h, w = maps.shape
        attention = maps.flatten(2).softmax(dim=-1)                      # (N, K, H*W)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=maps.device),
                                torch.linspace(-1, 1, w, device=maps.device), indexing='ij')
        grid = torch.stack([xs.flatten(), ys.flatten()], dim=-1)          # (H*W, 2)
        return (attention @ grid).reshape(n, 2 * k)


class ImageEncoder(nn.Module):
    """float images (N, 3, H, W) in [-1, 1] -> keypoints (N, 2 * num_keypoints)."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64), blocks: int = 1,
                 num_keypoints: int = 32):
        super().__init__()
        # Stride-2 stem + max-pool as in ResNet: the early full-resolution layers dominate CPU cost.
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 5, 2, 2, bias=False), _norm(channels[0]),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], channels[0]
        for i, cout in enumerate(channels):
            for j in range(blocks):
                layers.append(ResidualBlock(cin, cout, stride=2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self.keypoints = SpatialSoftmax(cin, num_keypoints)
        self.out_dim = 2 * num_keypoints

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.keypoints(self.stages(self.stem(images)))

    def load_pretrained(self, path: str | Path) -> None:
        """Weights from a local safetensors file whose keys match this encoder's state_dict."""
        from .tensor_files import load_tensors
        state = load_tensors(path, expected=self.state_dict())
        self.load_state_dict(state)
