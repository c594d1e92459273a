"""Pure-PyTorch B-spline bases: the truth every backend is tested against (DESIGN.md §2).

The arithmetic is spelled exactly as in ``csrc/include/kanfast/bspline.h`` (same operands,
same association, precomputed reciprocal knot spans), so the compiled kernels reproduce it
bit for bit; the recursion itself runs over all bases at once, order by order, while the
kernels stream it interval by interval.
"""

from __future__ import annotations

import torch


def knot_span_reciprocals(grid: torch.Tensor, spline_order: int) -> list[torch.Tensor]:
    """``r[k][:, j] = 1 / (t_{j+k} - t_j)`` for k = 1..K (index 0 unused), 0 for an empty span.

    grid: (features, num_knots) -> r[k]: (features, num_knots - k)
    """
    recips = [grid.new_empty(0)]
    for k in range(1, spline_order + 1):
        width = grid[:, k:] - grid[:, :-k]
        recips.append(torch.where(width > 0, torch.reciprocal(width), torch.zeros_like(width)))
    return recips


def _order0(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    # x: (*, features, 1) -> (*, features, num_knots - 1): 1 on the half-open [t_j, t_{j+1})
    return ((x >= grid[:, :-1]) & (x < grid[:, 1:])).to(x.dtype)


def _raise_order(x, grid, recip_k, k, bases):
    # bases: order k-1, (*, features, num_knots - k) -> order k, (*, features, num_knots - k - 1):
    # B_{j,k} = l_j·B_{j,k-1} + (1 - l_{j+1})·B_{j+1,k-1},  l_j = (x - t_j)·r(k, j)
    left = (x - grid[:, : grid.shape[1] - k]) * recip_k
    return left[..., :-1] * bases[..., :-1] + (1 - left[..., 1:]) * bases[..., 1:]


def _outside_to_zero(x: torch.Tensor, grid: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    # 0 outside [t_0, t_last), NaN for NaN x (the recursion alone gives NaN for x = ±inf)
    inside = (x >= grid[:, :1]) & (x < grid[:, -1:])
    outside = torch.where(torch.isnan(x), x, torch.zeros_like(x))
    return torch.where(inside, values, outside)


def _check(x: torch.Tensor, grid: torch.Tensor, spline_order: int) -> torch.Tensor:
    if grid.dim() != 2 or x.dim() < 1 or x.shape[-1] != grid.shape[0]:
        raise ValueError(
            f"x (*, features) and grid (features, num_knots) disagree: x {tuple(x.shape)}, grid {tuple(grid.shape)}"
        )
    if not 1 <= spline_order <= grid.shape[1] - 2:
        raise ValueError(f"spline_order must be in [1, grid.size(1) - 2], got {spline_order}")
    return grid.to(x.dtype)


def bspline_basis(x: torch.Tensor, grid: torch.Tensor, spline_order: int) -> torch.Tensor:
    """x: (*, features), grid: (features, G + 2K + 1) -> (*, features, G + K)."""
    grid = _check(x, grid, spline_order)
    xe = x.unsqueeze(-1)
    recips = knot_span_reciprocals(grid, spline_order)
    bases = _order0(xe, grid)
    for k in range(1, spline_order + 1):
        bases = _raise_order(xe, grid, recips[k], k, bases)
    return _outside_to_zero(xe, grid, bases)


def bspline_basis_derivative(x: torch.Tensor, grid: torch.Tensor, spline_order: int) -> torch.Tensor:
    """dB_j/dx = K·(B_{j,K-1}/(t_{j+K} - t_j) - B_{j+1,K-1}/(t_{j+K+1} - t_{j+1})); same shapes as above."""
    grid = _check(x, grid, spline_order)
    xe = x.unsqueeze(-1)
    recips = knot_span_reciprocals(grid, spline_order)
    bases = _order0(xe, grid)
    for k in range(1, spline_order):
        bases = _raise_order(xe, grid, recips[k], k, bases)
    rk = recips[spline_order]
    deriv = spline_order * (bases[..., :-1] * rk[:, :-1] - bases[..., 1:] * rk[:, 1:])
    return _outside_to_zero(xe, grid, deriv)
