"""Pure-PyTorch KANConvNd (DESIGN.md §2): the truth for kanfast.ops.kan_conv.

``convNd(act(x), base_weight) + convNd(Bc(x), spline_weight.reshape(out, in/groups·(G+K), *k)) + bias``
with ``Bc(x)[:, c·(G+K) + j] = B_j(x[:, c])``: the bases are computed once per input element.
Zero padding pads the *expanded* tensors (padded sites contribute nothing); the other modes
pad x first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ops._activations import ACTIVATIONS
from .bspline_basis import bspline_basis

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _pad_arg(pairs):
    # per-dim (before, after), first spatial dim first -> F.pad's last-dim-first order
    return [p for before_after in reversed(pairs) for p in before_after]


def kan_conv(
    x: torch.Tensor,
    grid: torch.Tensor,
    base_weight: torch.Tensor | None,
    spline_weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    spline_order: int,
    base_activation: str = "silu",
    stride: tuple[int, ...],
    padding: tuple[tuple[int, int], ...],
    dilation: tuple[int, ...],
    groups: int = 1,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """x: (N, C, *spatial); grid: (C, G+2K+1); base_weight: (out, C/groups, *k) | None;
    spline_weight: (out, C/groups, G+K, *k); bias: (out,) | None; padding: (before, after) per dim."""
    conv = _CONV[x.dim() - 2]
    pad = _pad_arg(padding)
    if padding_mode != "zeros":
        x = F.pad(x, pad, mode=padding_mode)
        pad = [0] * len(pad)
    n, c = x.shape[:2]
    bases = bspline_basis(x.movedim(1, -1), grid, spline_order)  # (N, *spatial, C, G+K)
    expanded = bases.flatten(-2).movedim(-1, 1)  # (N, C·(G+K), *spatial), channel c·(G+K) + j
    weight = spline_weight.flatten(1, 2)
    y = conv(F.pad(expanded, pad), weight, None, stride, 0, dilation, groups)
    if base_weight is not None:
        y = y + conv(F.pad(ACTIVATIONS[base_activation][0](x), pad), base_weight, None, stride, 0, dilation, groups)
    if bias is not None:
        y = y + bias.view(1, -1, *([1] * (x.dim() - 2)))
    return y
