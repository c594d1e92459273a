"""``kanfast::kan_linear_triton``: the Triton backend of kanfast.ops.kan_linear.

The same algorithm as csrc/kan_linear/kan_linear_impl.h: per chunk of rows, Triton writes the
expanded features [act(x) | B_0(x) | ... ] (basis-major) and one GEMM (cuBLAS) applies the
combined weight; backward recomputes the features, so only x and the weights are saved.
"""

from __future__ import annotations

import torch

from ..ops._activations import ACTIVATIONS
from . import bspline

# GPU GEMMs need many rows to fill the machine; 64 MiB of features per chunk is still small
# next to device memory.
CHUNK_BYTES = 64 << 20


def _chunk_rows(rows: int, features: int, element_size: int, chunk_rows: int) -> int:
    if chunk_rows <= 0:
        chunk_rows = max(64, CHUNK_BYTES // max(1, features * element_size))
    return max(1, min(chunk_rows, rows))


def _combined_weight(base_weight, spline_weight, spline_scaler):
    # (out, F): [base_weight | spline block in basis-major order]
    spline = spline_weight if spline_scaler is None else spline_weight * spline_scaler.unsqueeze(-1)
    spline = spline.permute(0, 2, 1).reshape(spline.shape[0], -1)
    return spline.contiguous() if base_weight is None else torch.cat([base_weight, spline], 1)


def _features(tables, base_activation, has_base, x_chunk, feats):
    rows, in_features = x_chunk.shape
    base_cols = in_features if has_base else 0
    if has_base:
        feats[:, :in_features] = ACTIVATIONS[base_activation][0](x_chunk)
    spline = feats[:, base_cols:].view(rows, tables.num_bases, in_features)
    bspline.bases_forward(tables, x_chunk.unsqueeze(-1), spline.permute(0, 2, 1).unsqueeze(-1))


@torch.library.custom_op("kanfast::kan_linear_triton", mutates_args=())
def kan_linear_triton(
    x: torch.Tensor,
    grid: torch.Tensor,
    base_weight: torch.Tensor | None,
    spline_weight: torch.Tensor,
    spline_scaler: torch.Tensor | None,
    bias: torch.Tensor | None,
    spline_order: int,
    base_activation: str,
    chunk_rows: int,
) -> torch.Tensor:
    """x: (N, in) -> (N, out); argument shapes as in kanfast.ops.kan_linear."""
    rows, in_features = x.shape
    tables = bspline.KnotTables(grid, spline_order, x.dtype)
    has_base = base_weight is not None
    features = (has_base + tables.num_bases) * in_features
    y = x.new_empty(rows, spline_weight.shape[0])
    if rows == 0:
        return y
    weight_t = _combined_weight(base_weight, spline_weight, spline_scaler).t()
    step = _chunk_rows(rows, features, x.element_size(), chunk_rows)
    buffer = x.new_empty(step, features)
    x = x.contiguous()
    for r0 in range(0, rows, step):
        feats = buffer[: min(step, rows - r0)]
        _features(tables, base_activation, has_base, x[r0 : r0 + step], feats)
        if bias is None:
            torch.mm(feats, weight_t, out=y[r0 : r0 + step])
        else:
            torch.addmm(bias, feats, weight_t, out=y[r0 : r0 + step])
    return y


@torch.library.custom_op("kanfast::kan_linear_backward_triton", mutates_args=())
def kan_linear_backward_triton(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    grid: torch.Tensor,
    base_weight: torch.Tensor | None,
    spline_weight: torch.Tensor,
    spline_scaler: torch.Tensor | None,
    spline_order: int,
    base_activation: str,
    chunk_rows: int,
    output_mask: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients for (x, base_weight, spline_weight, spline_scaler); empty (0,) where not asked."""
    rows, in_features = x.shape
    out_features, _, num_bases = spline_weight.shape
    tables = bspline.KnotTables(grid, spline_order, x.dtype)
    has_base = base_weight is not None
    base_cols = in_features if has_base else 0
    features = base_cols + num_bases * in_features
    need_x = output_mask[0]
    need_base = output_mask[1] and has_base
    need_scaler = output_mask[3] and spline_scaler is not None
    need_weights = need_base or output_mask[2] or need_scaler
    x = x.contiguous()
    grad_out = grad_out.contiguous()

    grad_x = x.new_empty(rows, in_features) if need_x else None
    grad_weight = x.new_zeros(out_features, features) if need_weights else None
    if rows > 0 and (need_x or need_weights):
        weight = _combined_weight(base_weight, spline_weight, spline_scaler) if need_x else None
        step = _chunk_rows(rows, features, x.element_size(), chunk_rows)
        buffer = x.new_empty(step, features)
        for r0 in range(0, rows, step):
            x_chunk, g_chunk = x[r0 : r0 + step], grad_out[r0 : r0 + step]
            feats = buffer[: x_chunk.shape[0]]
            if need_weights:
                _features(tables, base_activation, has_base, x_chunk, feats)
                grad_weight.addmm_(g_chunk.t(), feats)
            if need_x:
                grad_feats = torch.mm(g_chunk, weight, out=feats)  # features consumed: reuse the buffer
                gx = grad_x[r0 : r0 + step]
                if has_base:
                    gx.copy_(ACTIVATIONS[base_activation][1](grad_feats[:, :in_features], x_chunk))
                spline = grad_feats[:, base_cols:].view(-1, num_bases, in_features)
                bspline.bases_backward(
                    tables, x_chunk.unsqueeze(-1), spline.permute(0, 2, 1).unsqueeze(-1), gx.unsqueeze(-1), has_base
                )

    # Distinct tensors: outputs must not alias each other. clone, not contiguous: at degenerate
    # shapes (one feature and one output) a block of grad_weight is contiguous already.
    grad_base, grad_spline, grad_scaler = (x.new_empty(0) for _ in range(3))
    if need_weights:
        if need_base:
            grad_base = grad_weight[:, :in_features].clone(memory_format=torch.contiguous_format)
        grad_scaled = grad_weight[:, base_cols:].view(out_features, num_bases, in_features).permute(0, 2, 1)
        if output_mask[2]:
            scaled = grad_scaled if spline_scaler is None else grad_scaled * spline_scaler.unsqueeze(-1)
            grad_spline = scaled.clone(memory_format=torch.contiguous_format)
        if need_scaler:
            grad_scaler = (grad_scaled * spline_weight).sum(-1)
    return (x.new_empty(0) if grad_x is None else grad_x), grad_base, grad_spline, grad_scaler


def _register() -> None:
    from ..ops.kan_linear import _fake_backward, _fake_forward, register_autograd

    kan_linear_triton.register_fake(_fake_forward)
    kan_linear_backward_triton.register_fake(_fake_backward)
    register_autograd(kan_linear_triton, kan_linear_backward_triton)


_register()
