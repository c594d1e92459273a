"""Grid construction and spline refitting shared by the KAN layers."""

from __future__ import annotations

import torch

from ..ops._checks import check_grid_values


def uniform_grid(features: int, grid_size: int, spline_order: int, grid_range, *, device=None, dtype=None):
    """t_j = r0 + (j - K)·h, h = (r1 - r0)/G, j = 0..G+2K, for every feature -> (features, G+2K+1)."""
    r0, r1 = (float(v) for v in grid_range)
    if not r1 > r0:
        raise ValueError(f"grid_range must be increasing (low, high), got {tuple(grid_range)}")
    h = (r1 - r0) / grid_size
    knots = torch.arange(-spline_order, grid_size + spline_order + 1, device=device, dtype=torch.float64) * h + r0
    return knots.to(dtype or torch.get_default_dtype()).expand(features, -1).contiguous()


def adaptive_grid(samples: torch.Tensor, grid_size: int, spline_order: int, grid_eps: float, margin: float):
    """Knots from data: G+1 quantile knots blended with a uniform grid over the data range
    (weight grid_eps on the uniform one), extended by K uniform steps on both sides.

    samples: (batch, features) -> (features, G+2K+1), computed in float64.
    """
    x = samples.detach().to(torch.float64)
    if x.shape[0] < 2:
        raise ValueError(f"update_grid needs at least 2 samples, got {x.shape[0]}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("update_grid: x must be finite (found NaN or inf)")
    x_sorted = torch.sort(x, dim=0).values
    batch = x.shape[0]
    index = torch.linspace(0, batch - 1, grid_size + 1, device=x.device).round().long()
    grid_adaptive = x_sorted[index]  # (G+1, features)
    lo, hi = x_sorted[0], x_sorted[-1]
    step = (hi - lo + 2 * margin) / grid_size
    steps = torch.arange(grid_size + 1, device=x.device, dtype=torch.float64).unsqueeze(1)
    grid_uniform = steps * step + (lo - margin)
    grid = grid_eps * grid_uniform + (1 - grid_eps) * grid_adaptive
    outer = torch.arange(1, spline_order + 1, device=x.device, dtype=torch.float64).unsqueeze(1)
    grid = torch.cat([grid[:1] - step * outer.flip(0), grid, grid[-1:] + step * outer], dim=0)
    return grid.t().contiguous()


def fit_spline_coefficients(bases: torch.Tensor, targets: torch.Tensor, ridge: float = 1e-10) -> torch.Tensor:
    """Per feature, the coefficients C minimising |bases·C - targets|² + λ|C|², by a Cholesky
    solve of the regularised normal equations in float64: unlike lstsq it never fails on
    rank-deficient data (empty knot intervals), on any device.

    bases: (features, batch, num_bases); targets: (features, batch, out) -> (features, num_bases, out)
    """
    a = bases.to(torch.float64)
    gram = a.transpose(1, 2) @ a
    scale = gram.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-30)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    gram = gram + (ridge * scale)[:, None, None] * eye
    rhs = a.transpose(1, 2) @ targets.to(torch.float64)
    return torch.cholesky_solve(rhs, torch.linalg.cholesky(gram))


def validate_grid_buffer(name: str, grid: torch.Tensor, expected_shape: tuple[int, int]) -> None:
    """Checks a grid about to be installed (load_state_dict, update_grid), on any device."""
    if tuple(grid.shape) != expected_shape:
        raise ValueError(f"{name}: grid must have shape {expected_shape}, got {tuple(grid.shape)}")
    check_grid_values(name, grid.detach().cpu())
