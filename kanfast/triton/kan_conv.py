"""``kanfast::kan_conv_triton``: the Triton backend of kanfast.ops.kan_conv.

The algorithm of csrc/kan_conv/kan_conv_impl.h: per chunk of images Triton writes the
expanded channels (act and bases, computed once per input element) and cuDNN convolves them;
backward recomputes the features, so only x and the weights are saved.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ops._activations import ACTIVATIONS
from ..ops.kan_conv import input_memory_format
from . import bspline, kan_conv_implicit

# As in kan_conv_impl.h: GPU convolutions need many images to fill the device.
CHUNK_BYTES = 256 << 20
aten = torch.ops.aten


def _layout(x, spline_weight, has_base, chunk_rows):
    batch, channels = x.shape[:2]
    sites = x[0, 0].numel() if batch else int(torch.tensor(x.shape[2:]).prod())
    slots = int(has_base) + spline_weight.shape[2]
    if chunk_rows <= 0:
        chunk_rows = CHUNK_BYTES // max(1, channels * slots * sites * x.element_size())
    return slots, sites, max(1, min(chunk_rows, batch))


def _combined_weight(base_weight, spline_weight):
    w = spline_weight if base_weight is None else torch.cat([base_weight.unsqueeze(2), spline_weight], 2)
    return w.flatten(1, 2)


def _symmetric(padding):
    """Flat (before, after) pairs -> conv padding and the F.pad remainder (last dim first)."""
    pairs = list(zip(padding[0::2], padding[1::2]))
    sym = [min(p) for p in pairs]
    extra = [v for (b, a), s in reversed(list(zip(pairs, sym))) for v in (b - s, a - s)]
    return sym, extra if any(extra) else None


def _features(tables, act, has_base, x_chunk, feats):
    n, channels = x_chunk.shape[:2]
    x3 = x_chunk.reshape(n, channels, -1)
    f4 = feats.view(n, channels, -1, x3.shape[2])
    if has_base:
        f4[:, :, 0] = ACTIVATIONS[act][0](x3)
    bspline.bases_forward(tables, x3, f4[:, :, int(has_base):])


@torch.library.custom_op("kanfast::kan_conv_triton", mutates_args=())
def kan_conv_triton(
    x: torch.Tensor,
    grid: torch.Tensor,
    base_weight: torch.Tensor | None,
    spline_weight: torch.Tensor,
    bias: torch.Tensor | None,
    spline_order: int,
    base_activation: str,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    chunk_rows: int,
) -> torch.Tensor:
    """x: (N, C, *spatial) -> (N, out, *out_spatial) in input_memory_format(x); arguments as
    kanfast::kan_conv."""
    return _forward(x.contiguous(), grid, base_weight, spline_weight, bias, spline_order, base_activation, stride,
                    padding, dilation, groups, chunk_rows).contiguous(memory_format=input_memory_format(x))


def _forward(x, grid, base_weight, spline_weight, bias, spline_order, base_activation, stride, padding, dilation,
             groups, chunk_rows):
    """x contiguous. 1-D and 2-D convolutions run the implicit-GEMM kernel (bases generated
    while loading the input tile); 3-D ones, and activations that kernel does not evaluate,
    expand the features per chunk of images and call the vendor convolution."""
    tables = bspline.KnotTables(grid, spline_order, x.dtype)
    if kan_conv_implicit.supported(x, base_activation if base_weight is not None else "identity"):
        return kan_conv_implicit.kan_conv_implicit_forward(
            x, tables, base_weight, spline_weight, bias, base_activation, stride, padding, dilation, groups)
    has_base = base_weight is not None
    slots, sites, step = _layout(x, spline_weight, has_base, chunk_rows)
    weight = _combined_weight(base_weight, spline_weight)
    sym, extra = _symmetric(padding)
    buffer = x.new_empty(step, x.shape[1] * slots, *x.shape[2:])
    chunks = []
    for r0 in range(0, max(x.shape[0], 1), step):
        x_chunk = x[r0 : r0 + step]
        feats = buffer[: x_chunk.shape[0]]
        if x_chunk.shape[0]:
            _features(tables, base_activation, has_base, x_chunk, feats)
        padded = F.pad(feats, extra) if extra else feats
        chunks.append(aten.convolution(padded, weight, bias, stride, sym, dilation, False, [0] * len(stride), groups))
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


@torch.library.custom_op("kanfast::kan_conv_backward_triton", mutates_args=())
def kan_conv_backward_triton(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    grid: torch.Tensor,
    base_weight: torch.Tensor | None,
    spline_weight: torch.Tensor,
    spline_order: int,
    base_activation: str,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    chunk_rows: int,
    output_mask: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients for (x, base_weight, spline_weight); empty (0,) where not asked for."""
    tables = bspline.KnotTables(grid, spline_order, x.dtype)
    has_base = base_weight is not None
    slots, sites, step = _layout(x, spline_weight, has_base, chunk_rows)
    weight = _combined_weight(base_weight, spline_weight)
    sym, extra = _symmetric(padding)
    need_x = output_mask[0]
    need_base = output_mask[1] and has_base
    need_weights = need_base or output_mask[2]
    grad_x_format = input_memory_format(x)
    x = x.contiguous()
    grad_out = grad_out.contiguous()
    grad_x = torch.empty_like(x) if need_x else None
    grad_weight = torch.zeros_like(weight) if need_weights else None
    if x.shape[0] and (need_x or need_weights):
        buffer = x.new_empty(step, x.shape[1] * slots, *x.shape[2:])
        for r0 in range(0, x.shape[0], step):
            x_chunk = x[r0 : r0 + step]
            n = x_chunk.shape[0]
            feats = buffer[:n]
            _features(tables, base_activation, has_base, x_chunk, feats)
            padded = F.pad(feats, extra) if extra else feats
            grad_padded, grad_w, _ = aten.convolution_backward(
                grad_out[r0 : r0 + step], padded, weight, None, stride, sym, dilation, False, [0] * len(stride),
                groups, [need_x, need_weights, False])
            if need_weights:
                grad_weight += grad_w
            if not need_x:
                continue
            grad_feats = grad_padded
            if extra:
                for d, size in enumerate(x.shape[2:]):
                    before = extra[2 * (len(stride) - 1 - d)]
                    grad_feats = grad_feats.narrow(2 + d, before, size)
            grad_feats = grad_feats.contiguous().view(n, x.shape[1], slots, sites)
            x3 = x_chunk.view(n, x.shape[1], sites)
            gx = grad_x[r0 : r0 + step].view(n, x.shape[1], sites)
            if has_base:
                gx.copy_(ACTIVATIONS[base_activation][1](grad_feats[:, :, 0], x3))
            bspline.bases_backward(tables, x3, grad_feats[:, :, int(has_base):], gx, has_base)
    grad_base, grad_spline = x.new_empty(0), x.new_empty(0)
    if need_weights:
        per_slot = grad_weight.view(weight.shape[0], -1, slots, *weight.shape[2:])
        if need_base:
            grad_base = per_slot[:, :, 0].clone(memory_format=torch.contiguous_format)
        if output_mask[2]:
            grad_spline = per_slot[:, :, int(has_base):].clone(memory_format=torch.contiguous_format)
    grad_x = x.new_empty(0) if grad_x is None else grad_x.contiguous(memory_format=grad_x_format)
    return grad_x, grad_base, grad_spline


def _register() -> None:
    from ..ops.kan_conv import _fake_backward, _fake_forward, register_autograd

    kan_conv_triton.register_fake(_fake_forward)
    kan_conv_backward_triton.register_fake(_fake_backward)
    register_autograd(kan_conv_triton, kan_conv_backward_triton)


_register()
