"""The pieces of the 'half' inference runtime (runtimes.HalfRuntime): reduced-precision copies of
the policy's U-Net and image encoders, and their forwards replayed from CUDA graphs.

The copies are deep copies converted with `.to(dtype)`; the policy's own float32 modules are never
touched (training and eager inference keep them). Two parameter-light parts stay in float32 inside
the copies, because they need the range or the precision and cost next to nothing: the U-Net's
sinusoidal step embedding (angles up to ~1000 rad) and the encoders' spatial softmax (a softmax over
H*W positions and an expectation over the coordinate grid; it is also the encoder's output).

Callers hand in float32 tensors and get float32 tensors back: `Cast` converts on the way in and out,
`CudaGraphed` does the same through static buffers of a graph captured per input shape.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

PRECISIONS = {'fp16': torch.float16, 'bf16': torch.bfloat16}


class Float32Island(nn.Module):
    """Runs `module` in float32 inside a reduced-precision network; its output is cast to `out_dtype`."""

    def __init__(self, module: nn.Module, out_dtype: torch.dtype):
        super().__init__()
        self.module = module.float()
        self.out_dtype = out_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.float()).to(self.out_dtype)


def _frozen(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    return copy.deepcopy(module).to(dtype).eval().requires_grad_(False)


def half_unet(unet: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A `dtype` copy of a ConditionalUnet1D, its step embedding computed in float32."""
    out = _frozen(unet, dtype)
    out.step_encoder[0] = Float32Island(out.step_encoder[0], dtype)
    return out


def half_encoder(encoder: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A `dtype` copy of an ImageEncoder, its spatial-softmax keypoints computed (and returned) in float32."""
    out = _frozen(encoder, dtype)
    out.keypoints = Float32Island(out.keypoints, torch.float32)
    return out


def _static_like(x: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A buffer for input `x`: floating inputs in the network's dtype, integer ones (timesteps) as they are."""
    return torch.empty(x.shape, dtype=dtype if x.is_floating_point() else x.dtype, device=device)


class Cast:
    """module(*inputs) with floating inputs cast to `dtype` and the output cast back to float32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        self.module, self.dtype = module, dtype

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        inputs = [x.to(self.dtype) if x.is_floating_point() else x for x in inputs]
        return self.module(*inputs).float()


class CudaGraphed:
    """module(*inputs) replayed from a CUDA graph, one per input shapes, captured on first use.

    Capture: static input buffers on the device, a few warm-up forwards on a side stream (cuDNN
    picks its algorithms, the allocator settles), then torch.cuda.CUDAGraph capture. Each call
    copies (and casts) the inputs into the static buffers, replays, and returns a float32 clone of
    the static output: the next replay overwrites the output buffer. Every graph has its own memory
    pool, since the shapes are replayed in any order. Not thread-safe (shared buffers).
    """

    def __init__(self, module: nn.Module, dtype: torch.dtype, device: torch.device, warmup: int = 3):
        if device.type != 'cuda':
            raise ValueError(f'CUDA graphs need a CUDA device, not {device}')
        self.module, self.dtype, self.device, self.warmup = module, dtype, device, warmup
        self.graphs: dict[tuple, tuple[list[torch.Tensor], torch.Tensor, torch.cuda.CUDAGraph]] = {}

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        key = tuple((tuple(x.shape), x.dtype) for x in inputs)
        with torch.no_grad(), torch.cuda.device(self.device):
            entry = self.graphs.get(key)
            if entry is None:
                entry = self.graphs[key] = self._capture(inputs)
            static_in, static_out, graph = entry
            for buffer, x in zip(static_in, inputs):
                buffer.copy_(x, non_blocking=True)
            graph.replay()
            return static_out.to(torch.float32, copy=True)

    def _capture(self, inputs):
        static_in = [_static_like(x, self.dtype, self.device).copy_(x) for x in inputs]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.module(*static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.module(*static_in)
        return static_in, static_out, graph
