"""KANLinear benchmark cases and providers: kanfast (a backend), the in-project reference,
and the dense floor — one F.linear over in·(G+K+1) precomputed features (DESIGN.md §5)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from kanfast import ops
from kanfast.nn._spline_grid import uniform_grid


@dataclasses.dataclass(frozen=True)
class Case:
    batch: int
    in_features: int
    out_features: int
    grid_size: int = 5
    spline_order: int = 3

    @property
    def label(self) -> str:
        return (f"N={self.batch} {self.in_features}->{self.out_features} "
                f"G={self.grid_size} K={self.spline_order}")


# The headline case first, then other shapes with G up to 10.
CASES = [
    Case(4096, 256, 256),
    Case(4096, 256, 256, grid_size=10),
    Case(1024, 512, 512),
    Case(8192, 128, 128, grid_size=8),
    Case(4096, 256, 256, grid_size=3, spline_order=1),
    Case(4096, 64, 64),
]
QUICK_CASES = [Case(64, 16, 8)]


class Problem:
    """Inputs and parameters of one case; `run(provider, backward)` returns a callable."""

    def __init__(self, case: Case, dtype=torch.float32, seed=0):
        gen = torch.Generator().manual_seed(seed)
        c = case
        self.case = c
        self.x = (torch.rand(c.batch, c.in_features, generator=gen, dtype=dtype) * 2 - 1).requires_grad_()
        self.grid = uniform_grid(c.in_features, c.grid_size, c.spline_order, (-1, 1), dtype=dtype)
        nb = c.grid_size + c.spline_order

        def param(*shape):
            return (torch.randn(*shape, generator=gen, dtype=dtype) * 0.1).requires_grad_()

        self.base_weight = param(c.out_features, c.in_features)
        self.spline_weight = param(c.out_features, c.in_features, nb)
        self.spline_scaler = param(c.out_features, c.in_features)
        self.bias = param(c.out_features)
        # the floor's input: in·(G+K+1) precomputed features, and its weight
        self.features = torch.rand(c.batch, c.in_features * (nb + 1), generator=gen, dtype=dtype).requires_grad_()
        self.floor_weight = param(c.out_features, c.in_features * (nb + 1))
        self.grad_out = torch.randn(c.batch, c.out_features, generator=gen, dtype=dtype)

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [self.base_weight, self.spline_weight, self.spline_scaler, self.bias, self.floor_weight, self.grid]

    def forward(self, provider: str) -> torch.Tensor:
        if provider == "floor":
            return F.linear(self.features, self.floor_weight)
        backend = "reference" if provider == "reference" else provider
        return ops.kan_linear(self.x, self.grid, self.base_weight, self.spline_weight, self.spline_scaler, self.bias,
                              spline_order=self.case.spline_order, backend=backend)

    def input_bytes(self) -> int:
        return self.x.numel() * self.x.element_size()

    def run(self, provider: str, backward: bool):
        def forward_only():
            with torch.no_grad():
                self.forward(provider)

        def forward_backward():
            self.forward(provider).backward(self.grad_out)
            for t in (self.x, self.features, *self.parameters):
                t.grad = None

        return forward_backward if backward else forward_only
