"""``kanfast.ops.bspline_basis``: the B-spline bases of DESIGN.md §2, differentiable in x."""

from __future__ import annotations

import torch

from .. import _backend
from .. import reference
from ._checks import check_bspline_args, check_knots


def bspline_basis(x: torch.Tensor, grid: torch.Tensor, spline_order: int, *, backend: str | None = None) -> torch.Tensor:
    """Order-``spline_order`` B-spline bases of every element of x on its feature's knots.

    x: (*, features); grid: (features, G + 2K + 1), non-decreasing -> (*, features, G + K).
    Outside [grid[:, 0], grid[:, -1]) all bases are 0; NaN in x gives NaN bases. The gradient
    flows to x only (the grid is data, not a parameter). ``backend`` overrides the choice.
    """
    check_bspline_args("bspline_basis", x, grid, spline_order, feature_dim=-1)
    name = _backend.choose("bspline_basis", x.device, backend)
    check_knots("bspline_basis", grid, name)
    if name in ("cpp", "cuda"):
        return torch.ops.kanfast.bspline_basis(x, grid, spline_order)
    if name == "triton":
        from ..triton.bspline_basis import bspline_basis_triton

        return bspline_basis_triton(x, grid, spline_order)
    return reference.bspline_basis(x, grid, spline_order)


@_backend.after_library_load
def _register_compiled() -> None:
    torch.library.register_fake("kanfast::bspline_basis")(
        lambda x, grid, spline_order: x.new_empty((*x.shape, grid.shape[1] - 1 - spline_order))
    )
    torch.library.register_fake("kanfast::bspline_basis_backward")(
        lambda grad_bases, x, grid, spline_order: torch.empty_like(x)
    )

    def setup_context(ctx, inputs, output):
        x, grid, spline_order = inputs
        ctx.save_for_backward(x, grid)
        ctx.spline_order = spline_order

    def backward(ctx, grad):
        x, grid = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.kanfast.bspline_basis_backward(grad.contiguous(), x, grid, ctx.spline_order)
        return grad_x, None, None

    torch.library.register_autograd("kanfast::bspline_basis", backward, setup_context=setup_context)
