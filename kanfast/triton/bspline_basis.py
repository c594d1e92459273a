"""``kanfast::bspline_basis_triton``: the Triton backend of kanfast.ops.bspline_basis."""

from __future__ import annotations

import torch

from . import bspline


@torch.library.custom_op("kanfast::bspline_basis_triton", mutates_args=())
def bspline_basis_triton(x: torch.Tensor, grid: torch.Tensor, spline_order: int) -> torch.Tensor:
    """x: (*, features), grid: (features, num_knots) -> (*, features, num_bases)."""
    tables = bspline.KnotTables(grid, spline_order, x.dtype)
    out = x.new_empty((*x.shape, tables.num_bases))
    bspline.bases_forward(tables, x.reshape(-1, grid.shape[0], 1), out.view(-1, grid.shape[0], tables.num_bases, 1))
    return out


@torch.library.custom_op("kanfast::bspline_basis_backward_triton", mutates_args=())
def bspline_basis_backward_triton(
    grad_bases: torch.Tensor, x: torch.Tensor, grid: torch.Tensor, spline_order: int
) -> torch.Tensor:
    tables = bspline.KnotTables(grid, spline_order, x.dtype)
    grad_x = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    features = grid.shape[0]
    bspline.bases_backward(
        tables,
        x.reshape(-1, features, 1),
        grad_bases.reshape(-1, features, tables.num_bases, 1),
        grad_x.view(-1, features, 1),
        accumulate=False,
    )
    return grad_x


@bspline_basis_triton.register_fake
def _(x, grid, spline_order):
    return x.new_empty((*x.shape, grid.shape[1] - 1 - spline_order))


@bspline_basis_backward_triton.register_fake
def _(grad_bases, x, grid, spline_order):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _setup_context(ctx, inputs, output):
    x, grid, spline_order = inputs
    ctx.save_for_backward(x, grid)
    ctx.spline_order = spline_order


def _backward(ctx, grad):
    x, grid = ctx.saved_tensors
    grad_x = bspline_basis_backward_triton(grad, x, grid, ctx.spline_order) if ctx.needs_input_grad[0] else None
    return grad_x, None, None


bspline_basis_triton.register_autograd(_backward, setup_context=_setup_context)
