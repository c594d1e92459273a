"""KANConv2d benchmark cases and providers: kanfast (a backend), the in-project reference, and
the dense floor — one F.conv2d over C·(G+K+1) precomputed channels (DESIGN.md §5), in NCHW
("floor", the inputs' layout) and in channels-last ("floor_channels_last": the CPU kernels
convolve channels-last features internally, so this is the floor they compete with)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from kanfast import ops
from kanfast.nn._spline_grid import uniform_grid


@dataclasses.dataclass(frozen=True)
class Case:
    batch: int = 16
    in_channels: int = 16
    out_channels: int = 32
    size: int = 32
    kernel: int = 3
    grid_size: int = 5
    spline_order: int = 3

    @property
    def label(self) -> str:
        return (f"N={self.batch} {self.in_channels}->{self.out_channels} {self.size}x{self.size} "
                f"k={self.kernel} G={self.grid_size} K={self.spline_order}")


HEADLINE = Case()
# One axis at a time around the headline case.
SWEEP = {
    "batch": [Case(batch=b) for b in (4, 16, 64)],
    "channels": [Case(in_channels=c, out_channels=2 * c) for c in (8, 16, 32, 64)],
    "image size": [Case(size=s) for s in (8, 16, 32, 64)],
    "grid size": [Case(grid_size=g) for g in (3, 5, 10)],
}
QUICK_CASES = [Case(batch=2, in_channels=3, out_channels=4, size=6)]


class Problem:
    def __init__(self, case: Case, dtype=torch.float32, seed=0):
        gen = torch.Generator().manual_seed(seed)
        c = case
        self.case = c
        nb = c.grid_size + c.spline_order

        def rand(*shape, scale=1.0):
            return (torch.randn(*shape, generator=gen, dtype=dtype) * scale).requires_grad_()

        self.x = rand(c.batch, c.in_channels, c.size, c.size)
        self.grid = uniform_grid(c.in_channels, c.grid_size, c.spline_order, (-1, 1), dtype=dtype)
        self.base_weight = rand(c.out_channels, c.in_channels, c.kernel, c.kernel, scale=0.1)
        self.spline_weight = rand(c.out_channels, c.in_channels, nb, c.kernel, c.kernel, scale=0.1)
        self.bias = rand(c.out_channels)
        self.features = rand(c.batch, c.in_channels * (nb + 1), c.size, c.size)
        self.floor_weight = rand(c.out_channels, c.in_channels * (nb + 1), c.kernel, c.kernel, scale=0.1)
        channels_last = torch.channels_last
        self.features_cl = self.features.detach().contiguous(memory_format=channels_last).requires_grad_()
        self.floor_weight_cl = self.floor_weight.detach().contiguous(memory_format=channels_last).requires_grad_()
        self.padding = c.kernel // 2
        out_size = c.size + 2 * self.padding - c.kernel + 1
        self.grad_out = torch.randn(c.batch, c.out_channels, out_size, out_size, generator=gen, dtype=dtype)
        self.grad_out_cl = self.grad_out.contiguous(memory_format=channels_last)

    @property
    def parameters(self):
        return [self.base_weight, self.spline_weight, self.bias, self.floor_weight, self.floor_weight_cl, self.grid]

    def input_bytes(self) -> int:
        return self.x.numel() * self.x.element_size()

    def forward(self, provider: str) -> torch.Tensor:
        if provider == "floor":
            return F.conv2d(self.features, self.floor_weight, self.bias, padding=self.padding)
        if provider == "floor_channels_last":
            return F.conv2d(self.features_cl, self.floor_weight_cl, self.bias, padding=self.padding)
        return ops.kan_conv(self.x, self.grid, self.base_weight, self.spline_weight, self.bias,
                            spline_order=self.case.spline_order, padding=self.padding, backend=provider)

    def run(self, provider: str, backward: bool):
        def forward_only():
            with torch.no_grad():
                self.forward(provider)

        def forward_backward():
            self.forward(provider).backward(self.grad_out_cl if provider == "floor_channels_last" else self.grad_out)
            for t in (self.x, self.features, self.features_cl, *self.parameters):
                t.grad = None

        return forward_backward if backward else forward_only
