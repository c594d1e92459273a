"""Triton kernels for B-spline bases, shared by every Triton op (bspline_basis, kan_linear, ...).

Same interface as the C++ kernels (csrc/bspline_basis/bspline_bases.h): elements viewed as
(rows, features, positions) with any strides, bases written to / read from a
(rows, features, num_bases, positions) view with any strides. Each program handles BLOCK
elements; the recursion streams interval by interval as in csrc/include/kanfast/bspline.h,
unrolled at compile time (num_knots and spline_order are constexpr), with the same arithmetic
so results match the reference bit for bit when FP fusion is off.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference.bspline_basis import knot_span_reciprocals

BLOCK = 128
# FMA contraction would change the last bits relative to the reference.
LAUNCH_OPTIONS = {"enable_fp_fusion": False}


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class KnotTables:
    """knots (num_knots, features) and recips (order+1, num_knots-1, features) in the compute
    dtype: transposed so that neighbouring elements (consecutive features) read neighbouring memory."""

    def __init__(self, grid: torch.Tensor, spline_order: int, dtype: torch.dtype) -> None:
        grid = grid.to(compute_dtype(dtype))
        features, num_knots = grid.shape
        self.num_knots = num_knots
        self.spline_order = spline_order
        self.num_bases = num_knots - 1 - spline_order
        self.knots = grid.t().contiguous()
        self.recips = grid.new_zeros(spline_order + 1, num_knots - 1, features)
        for k, r in enumerate(knot_span_reciprocals(grid, spline_order)):
            if k > 0:
                self.recips[k, : num_knots - k] = r.t()


@triton.jit
def _element_coords(pid, C, S, BLOCK: tl.constexpr):
    e = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    n = e // (C * S)
    rest = e % (C * S)
    return e, n, rest // S, rest % S


@triton.jit
def _recip(recips_ptr, k: tl.constexpr, j: tl.constexpr, c, C, mask, NK: tl.constexpr):
    return tl.load(recips_ptr + (k * (NK - 1) + j) * C + c, mask=mask, other=0.0)


@triton.jit
def _column(x, j: tl.constexpr, next_step, next_B, next_left, knots_ptr, recips_ptr, c, C, mask,
            NK: tl.constexpr, K: tl.constexpr):
    """Column j of the recursion (csrc/include/kanfast/bspline.h): B_{j,0..K} from column j+1."""
    t = tl.load(knots_ptr + j * C + c, mask=mask, other=0.0)
    step = tl.where(x >= t, 1.0, 0.0).to(x.dtype)
    offset = x - t
    B = (step - next_step,)
    left = (offset,)  # index 0 unused
    for k in tl.static_range(1, K + 1):
        lk = offset * _recip(recips_ptr, k, j, c, C, mask, NK)
        left = left + (lk,)
        B = B + (lk * B[k - 1] + (1.0 - next_left[k]) * next_B[k - 1],)
    return B, left, step


@triton.jit
def _first_state(x, K: tl.constexpr):
    zero = tl.zeros_like(x)
    next_B = ()
    for k in tl.static_range(K):
        next_B = next_B + (zero,)
    next_left = (zero,)
    for k in tl.static_range(K):
        next_left = next_left + (zero,)
    return next_B, next_left


@triton.jit
def _below_order(B, K: tl.constexpr):
    kept = ()
    for k in tl.static_range(K):
        kept = kept + (B[k],)
    return kept


@triton.jit
def _outside_to_zero(x, inside, value):
    return tl.where(inside, value, tl.where(x != x, x, 0.0))


@triton.jit
def _bases_forward_kernel(
    x_ptr, xs_n, xs_c, xs_s,
    out_ptr, os_n, os_c, os_j, os_s,
    knots_ptr, recips_ptr,
    R, C, S,
    NK: tl.constexpr, K: tl.constexpr, BLOCK: tl.constexpr,
):
    e, n, c, s = _element_coords(tl.program_id(0), C, S, BLOCK)
    mask = e < R * C * S
    t_first = tl.load(knots_ptr + c, mask=mask, other=0.0)
    t_last = tl.load(knots_ptr + (NK - 1) * C + c, mask=mask, other=0.0)
    x = tl.load(x_ptr + n * xs_n + c * xs_c + s * xs_s, mask=mask, other=0.0).to(t_first.dtype)
    inside = (x >= t_first) & (x < t_last)
    out = out_ptr + n * os_n + c * os_c + s * os_s
    next_B, next_left = _first_state(x, K)
    next_step = tl.where(x >= t_last, 1.0, 0.0).to(x.dtype)
    for i in tl.static_range(NK - 1):
        B, next_left, next_step = _column(x, NK - 2 - i, next_step, next_B, next_left, knots_ptr, recips_ptr, c, C,
                                          mask, NK, K)
        if NK - 2 - i + K + 1 < NK:
            value = _outside_to_zero(x, inside, B[K])
            tl.store(out + (NK - 2 - i) * os_j, value.to(out_ptr.dtype.element_ty), mask=mask)
        next_B = _below_order(B, K)


@triton.jit
def _bases_backward_kernel(
    x_ptr, xs_n, xs_c, xs_s,
    grad_ptr, gs_n, gs_c, gs_j, gs_s,
    gx_ptr, gxs_n, gxs_c, gxs_s,
    knots_ptr, recips_ptr,
    R, C, S,
    NK: tl.constexpr, K: tl.constexpr, ACCUMULATE: tl.constexpr, BLOCK: tl.constexpr,
):
    e, n, c, s = _element_coords(tl.program_id(0), C, S, BLOCK)
    mask = e < R * C * S
    t_first = tl.load(knots_ptr + c, mask=mask, other=0.0)
    t_last = tl.load(knots_ptr + (NK - 1) * C + c, mask=mask, other=0.0)
    x = tl.load(x_ptr + n * xs_n + c * xs_c + s * xs_s, mask=mask, other=0.0).to(t_first.dtype)
    inside = (x >= t_first) & (x < t_last)
    grad = grad_ptr + n * gs_n + c * gs_c + s * gs_s
    acc = tl.zeros_like(x)
    next_B, next_left = _first_state(x, K)
    next_step = tl.where(x >= t_last, 1.0, 0.0).to(x.dtype)
    for i in tl.static_range(NK - 1):
        B, next_left, next_step = _column(x, NK - 2 - i, next_step, next_B, next_left, knots_ptr, recips_ptr, c, C,
                                          mask, NK, K)
        if NK - 2 - i + K + 1 < NK:
            r0 = _recip(recips_ptr, K, NK - 2 - i, c, C, mask, NK)
            r1 = _recip(recips_ptr, K, NK - 1 - i, c, C, mask, NK)
            deriv = _outside_to_zero(x, inside, K * (B[K - 1] * r0 - next_B[K - 1] * r1))
            g = tl.load(grad + (NK - 2 - i) * gs_j, mask=mask, other=0.0).to(x.dtype)
            acc += g * deriv
        next_B = _below_order(B, K)
    gx = gx_ptr + n * gxs_n + c * gxs_c + s * gxs_s
    if ACCUMULATE:
        acc = tl.load(gx, mask=mask, other=0.0).to(x.dtype) + acc
    tl.store(gx, acc.to(gx_ptr.dtype.element_ty), mask=mask)


def _grid_size(x: torch.Tensor) -> tuple[int]:
    return (triton.cdiv(x.numel(), BLOCK),)


def bases_forward(tables: KnotTables, x: torch.Tensor, out: torch.Tensor) -> None:
    """x: (rows, features, positions); out: (rows, features, num_bases, positions) view."""
    if x.numel() == 0:
        return
    _bases_forward_kernel[_grid_size(x)](
        x, *x.stride(), out, *out.stride(), tables.knots, tables.recips, *x.shape,
        NK=tables.num_knots, K=tables.spline_order, BLOCK=BLOCK, **LAUNCH_OPTIONS,
    )


def bases_backward(
    tables: KnotTables, x: torch.Tensor, grad: torch.Tensor, grad_x: torch.Tensor, accumulate: bool
) -> None:
    """grad_x (+)= Σ_j grad[.., j, ..]·dB_j/dx; shapes as in bases_forward."""
    if x.numel() == 0:
        return
    _bases_backward_kernel[_grid_size(x)](
        x, *x.stride(), grad, *grad.stride(), grad_x, *grad_x.stride(), tables.knots, tables.recips, *x.shape,
        NK=tables.num_knots, K=tables.spline_order, ACCUMULATE=accumulate, BLOCK=BLOCK, **LAUNCH_OPTIONS,
    )
