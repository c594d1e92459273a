"""Argument checks shared by every backend, so bad input fails the same way everywhere:
the error names the argument and the shape it expected."""

from __future__ import annotations

import torch

MAX_KNOTS = 128  # kMaxKnots in csrc/include/kanfast/bspline.h
MAX_SPLINE_ORDER = 7  # kMaxSplineOrder

BASE_ACTIVATION_NAMES = ("silu", "gelu", "gelu_tanh", "relu", "tanh", "sigmoid", "identity")


def check_tensor(op: str, name: str, t: object, *, floating: bool = True) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if floating and not t.is_floating_point():
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got {t.dtype}")
    return t


def check_same_device(op: str, ref_name: str, ref: torch.Tensor, **others: torch.Tensor | None) -> None:
    for name, t in others.items():
        if t is not None and t.device != ref.device:
            raise ValueError(f"{op}: {name} is on {t.device} but {ref_name} is on {ref.device}")


def check_grid_values(op: str, grid: torch.Tensor) -> None:
    """Knots finite and non-decreasing. Reads the values, so only where that is free (CPU);
    modules check their grids on CUDA when they change (update_grid, load_state_dict)."""
    if grid.device.type != "cpu" or torch.compiler.is_compiling() or grid.numel() == 0:
        return
    if not bool(torch.isfinite(grid).all()):
        raise ValueError(f"{op}: grid must hold finite knots")
    steps = grid[:, 1:] - grid[:, :-1]
    if bool((steps < 0).any()):
        row = int((steps < 0).any(dim=1).nonzero()[0, 0])
        raise ValueError(
            f"{op}: grid must be non-decreasing along dim 1 (one knot vector per feature); row {row} is "
            f"{grid[row].tolist()}"
        )


def check_bspline_args(op: str, x: torch.Tensor, grid: torch.Tensor, spline_order: int, *, feature_dim: int) -> int:
    """Validates x / grid / spline_order (the knot values: see check_knots); returns the number of
    bases G + K."""
    check_tensor(op, "x", x)
    check_tensor(op, "grid", grid)
    check_same_device(op, "x", x, grid=grid)
    if not isinstance(spline_order, int) or isinstance(spline_order, bool):
        raise TypeError(f"{op}: spline_order must be an int, got {type(spline_order).__name__}")
    if not 1 <= spline_order <= MAX_SPLINE_ORDER:
        raise ValueError(f"{op}: spline_order must be in [1, {MAX_SPLINE_ORDER}], got {spline_order}")
    if grid.dim() != 2:
        raise ValueError(
            f"{op}: grid must have shape (features, grid_size + 2*spline_order + 1), got {tuple(grid.shape)}"
        )
    if not spline_order + 2 <= grid.shape[1] <= MAX_KNOTS:
        raise ValueError(
            f"{op}: grid.shape[1] (knots per feature) must be in [spline_order + 2, {MAX_KNOTS}] = "
            f"[{spline_order + 2}, {MAX_KNOTS}], got {grid.shape[1]}"
        )
    dim = feature_dim % x.dim() if x.dim() > 0 else 0
    if x.dim() == 0 or x.shape[dim] != grid.shape[0]:
        raise ValueError(
            f"{op}: x.shape[{feature_dim}] must equal grid.shape[0] = {grid.shape[0]} (one knot vector per "
            f"feature), got x of shape {tuple(x.shape)}"
        )
    return grid.shape[1] - 1 - spline_order


def check_knots(op: str, grid: torch.Tensor, backend: str) -> None:
    """check_grid_values, except on the C++ CPU backend: its kernels check the knots as they
    copy them into their tables, at no extra cost (and raise the same ValueError)."""
    if backend != "cpp":
        check_grid_values(op, grid)


def check_base_activation(op: str, name: str) -> None:
    if name not in BASE_ACTIVATION_NAMES:
        raise ValueError(f"{op}: base_activation must be one of {', '.join(BASE_ACTIVATION_NAMES)}; got {name!r}")


def check_weight(op: str, name: str, t: torch.Tensor | None, shape: tuple[int, ...], meaning: str, x: torch.Tensor):
    if t is None:
        return
    check_tensor(op, name, t)
    if tuple(t.shape) != shape:
        raise ValueError(f"{op}: {name} must have shape {shape} = {meaning}, got {tuple(t.shape)}")
    if t.dtype != x.dtype:
        raise TypeError(f"{op}: {name} must have x's dtype {x.dtype}, got {t.dtype}")
    if t.device != x.device:
        raise ValueError(f"{op}: {name} is on {t.device} but x is on {x.device}")
