"""``kanfast.ops.kan_linear``: the fused KANLinear of DESIGN.md §2.

All backends compute, per chunk of rows, one GEMM over expanded features and recompute
them in backward, so autograd saves only x and the weights (never the bases).
"""

from __future__ import annotations

import torch

from .. import _backend
from .. import reference
from ._checks import check_base_activation, check_bspline_args, check_knots, check_weight


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
    chunk_rows: int | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """``act(x) @ base_weightᵀ + B(x) @ (spline_weight·spline_scaler)ᵀ + bias``.

    x: (*, in); grid: (in, G+2K+1); base_weight: (out, in) or None (no base path);
    spline_weight: (out, in, G+K); spline_scaler: (out, in) or None; bias: (out,) or None
    -> (*, out). ``base_activation`` names act (silu, gelu, gelu_tanh, relu, tanh, sigmoid,
    identity). ``chunk_rows`` bounds the rows expanded at once, per thread on the CPU (default
    there: 256 per thread while the combined weight fits in 4 MiB, else 1024 shared by all
    threads; fewer for very wide layers).
    """
    num_bases = check_bspline_args("kan_linear", x, grid, spline_order, feature_dim=-1)
    check_base_activation("kan_linear", base_activation)
    in_features = grid.shape[0]
    if spline_weight is None or spline_weight.dim() != 3:
        raise ValueError(
            "kan_linear: spline_weight must have shape (out_features, in_features, grid_size + spline_order), got "
            f"{None if spline_weight is None else tuple(spline_weight.shape)}"
        )
    out_features = spline_weight.shape[0]
    check_weight("kan_linear", "spline_weight", spline_weight, (out_features, in_features, num_bases),
                 "(out_features, in_features, grid_size + spline_order)", x)
    check_weight("kan_linear", "base_weight", base_weight, (out_features, in_features),
                 "(out_features, in_features)", x)
    check_weight("kan_linear", "spline_scaler", spline_scaler, (out_features, in_features),
                 "(out_features, in_features)", x)
    check_weight("kan_linear", "bias", bias, (out_features,), "(out_features,)", x)
    if chunk_rows is not None and (not isinstance(chunk_rows, int) or chunk_rows < 1):
        raise ValueError(f"kan_linear: chunk_rows must be a positive int or None, got {chunk_rows!r}")

    leading = x.shape[:-1]
    x2 = x.reshape(-1, in_features)
    name = _backend.choose("kan_linear", x.device, backend)
    check_knots("kan_linear", grid, name)
    args = (x2, grid, base_weight, spline_weight, spline_scaler, bias, spline_order, base_activation, chunk_rows or 0)
    if name in ("cpp", "cuda"):
        y = torch.ops.kanfast.kan_linear(*args)
    elif name == "triton":
        from ..triton.kan_linear import kan_linear_triton

        y = kan_linear_triton(*args)
    else:
        y = reference.kan_linear(
            x2, grid, base_weight, spline_weight, spline_scaler, bias,
            spline_order=spline_order, base_activation=base_activation,
        )
    return y.reshape(*leading, out_features)


def _fake_forward(x, grid, base_weight, spline_weight, spline_scaler, bias, spline_order, base_activation, chunk_rows):
    return x.new_empty(x.shape[0], spline_weight.shape[0])


def _fake_backward(grad_out, x, grid, base_weight, spline_weight, spline_scaler, spline_order, base_activation,
                   chunk_rows, output_mask):
    def like(t, wanted):
        return x.new_empty(t.shape) if wanted and t is not None else x.new_empty(0)  # contiguous, like the kernels

    return (like(x, output_mask[0]), like(base_weight, output_mask[1]), like(spline_weight, output_mask[2]),
            like(spline_scaler, output_mask[3]))


def register_autograd(forward_op, backward_op) -> None:
    """Autograd for the Triton kan_linear op through its backward op (the formula of
    csrc/kan_linear/kan_linear_autograd.cpp, which serves the compiled op)."""

    def setup_context(ctx, inputs, output):
        x, grid, base_weight, spline_weight, spline_scaler, bias, *options = inputs
        ctx.save_for_backward(x, grid, base_weight, spline_weight, spline_scaler)
        ctx.options = options  # spline_order, base_activation, chunk_rows

    def backward(ctx, grad):
        x, grid, base_weight, spline_weight, spline_scaler = ctx.saved_tensors
        needs = ctx.needs_input_grad
        mask = [needs[0], needs[2], needs[3], needs[4]]
        grads = [None] * 4
        if any(mask):
            grads = backward_op(grad.contiguous(), x, grid, base_weight, spline_weight, spline_scaler,
                                *ctx.options, mask)
            grads = [g if wanted else None for g, wanted in zip(grads, mask)]
        grad_x, grad_base, grad_spline, grad_scaler = grads
        grad_bias = grad.sum(0) if needs[5] else None
        return grad_x, None, grad_base, grad_spline, grad_scaler, grad_bias, None, None, None

    torch.library.register_autograd(forward_op, backward, setup_context=setup_context)


@_backend.after_library_load
def _register_compiled() -> None:
    torch.library.register_fake("kanfast::kan_linear")(_fake_forward)
    torch.library.register_fake("kanfast::kan_linear_backward")(_fake_backward)
    # Autograd of the compiled op is registered in C++ (csrc/kan_linear/kan_linear_autograd.cpp).
