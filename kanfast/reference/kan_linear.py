"""Pure-PyTorch KANLinear (DESIGN.md §2): the truth for kanfast.ops.kan_linear.

``y = act(x) @ base_weightᵀ + B(x).reshape(N, in·(G+K)) @ (spline_weight·spline_scaler)ᵀ + bias``
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ops._activations import ACTIVATIONS
from .bspline_basis import bspline_basis


def kan_linear(
    x: torch.Tensor,
    grid: torch.Tensor,
    base_weight: torch.Tensor | None,
    spline_weight: torch.Tensor,
    spline_scaler: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    spline_order: int,
    base_activation: str = "silu",
) -> torch.Tensor:
    """x: (N, in), grid: (in, G+2K+1), base_weight: (out, in) | None, spline_weight: (out, in, G+K),
    spline_scaler: (out, in) | None, bias: (out,) | None -> (N, out)."""
    bases = bspline_basis(x, grid, spline_order)
    weight = spline_weight if spline_scaler is None else spline_weight * spline_scaler.unsqueeze(-1)
    y = F.linear(bases.reshape(x.shape[0], -1), weight.reshape(weight.shape[0], -1))
    if base_weight is not None:
        y = y + F.linear(ACTIVATIONS[base_activation][0](x), base_weight)
    if bias is not None:
        y = y + bias
    return y
