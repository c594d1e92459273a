"""Implicit-GEMM forward of the KAN convolution (1-D and 2-D) in Triton.

Each program computes a BLOCK_M × BLOCK_N tile of the output (sites × output channels of one
group). For every kernel offset and block of input channels it loads the input tile, generates
act(x) and the B-spline bases in registers (the recursion of bspline.py), zeroes the features
of padded or out-of-range sites — zero padding pads the *expanded* channels — and multiplies
each feature slice with its weight tile on the tensor cores. Nothing of size N·C·(G+K+1)·H·W
is ever written to memory.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._backend import triton_interpreted
from . import bspline

# Activations the kernel evaluates itself; others use the chunked path of kan_conv.py.
ACT_CODES = {"identity": 0, "silu": 1, "relu": 2, "sigmoid": 3}
BLOCK_M, BLOCK_N, BLOCK_C = 64, 32, 16


@triton.jit
def _activation(x, ACT: tl.constexpr):
    if ACT == 1:
        return x * tl.sigmoid(x)
    elif ACT == 2:
        return tl.maximum(x, 0.0)
    elif ACT == 3:
        return tl.sigmoid(x)
    else:
        return x


@triton.jit
def _accumulate(acc, feature, w_ptr, c_local, o, wmask, slot, SLOTS: tl.constexpr, OG, IEEE: tl.constexpr,
                DOT_F32: tl.constexpr):
    # weight layout (group, kh, kw, c_local, slot, o) with the (group, kh, kw) offset in w_ptr
    w = tl.load(w_ptr + (c_local[:, None] * SLOTS + slot) * OG + o[None, :], mask=wmask, other=0.0)
    if DOT_F32:
        return acc + tl.dot(feature.to(tl.float32), w.to(tl.float32))
    if IEEE:
        return acc + tl.dot(feature.to(w.dtype), w, input_precision="ieee")
    return acc + tl.dot(feature.to(w.dtype), w)


@triton.jit
def _kan_conv2d_forward_kernel(
    x_ptr, w_ptr, bias_ptr, y_ptr, knots_ptr, recips_ptr,
    N, C, H, W, OUT, OH, OW, OG, CG, KH, KW,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    HAS_BASE: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr, IEEE: tl.constexpr, ACC64: tl.constexpr,
    DOT_F32: tl.constexpr,
    NK: tl.constexpr, K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):
    SLOTS: tl.constexpr = HAS_BASE + NK - 1 - K
    pid_m = tl.program_id(0)
    blocks_n = tl.cdiv(OG, BLOCK_N)
    group = tl.program_id(1) // blocks_n
    o = (tl.program_id(1) % blocks_n) * BLOCK_N + tl.arange(0, BLOCK_N)
    m = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    n = m // (OH * OW)
    oh = (m % (OH * OW)) // OW
    ow = m % OW
    if ACC64:  # float64 inputs accumulate in float64
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kh in range(KH):
        ih = oh * stride_h - pad_h + kh * dil_h
        for kw in range(KW):
            iw = ow * stride_w - pad_w + kw * dil_w
            site_ok = (m < N * OH * OW) & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            w_tap = w_ptr + ((group * KH + kh) * KW + kw) * CG * SLOTS * OG
            for c0 in range(0, CG, BLOCK_C):
                c_local = c0 + tl.arange(0, BLOCK_C)
                c_ok = c_local < CG
                c = group * CG + c_local
                ok = site_ok[:, None] & c_ok[None, :]
                wmask = c_ok[:, None] & (o[None, :] < OG)
                x_raw = tl.load(x_ptr + ((n[:, None] * C + c[None, :]) * H + ih[:, None]) * W + iw[:, None],
                                mask=ok, other=0.0)
                c_row = c[None, :]
                c_row_ok = c_ok[None, :]
                t_first = tl.load(knots_ptr + c_row, mask=c_row_ok, other=0.0)
                t_last = tl.load(knots_ptr + (NK - 1) * C + c_row, mask=c_row_ok, other=0.0)
                x = x_raw.to(t_first.dtype)
                if HAS_BASE:
                    act = tl.where(ok, _activation(x, ACT), 0.0)
                    acc = _accumulate(acc, act, w_tap, c_local, o, wmask, 0, SLOTS, OG, IEEE, DOT_F32)
                inside = (x >= t_first) & (x < t_last)
                next_B, next_left = bspline._first_state(x, K)
                next_step = tl.where(x >= t_last, 1.0, 0.0).to(x.dtype)
                for i in tl.static_range(NK - 1):
                    B, next_left, next_step = bspline._column(x, NK - 2 - i, next_step, next_B, next_left,
                                                              knots_ptr, recips_ptr, c_row, C, c_row_ok, NK, K)
                    if NK - 2 - i + K + 1 < NK:
                        feature = tl.where(ok, bspline._outside_to_zero(x, inside, B[K]), 0.0)
                        acc = _accumulate(acc, feature, w_tap, c_local, o, wmask, HAS_BASE + NK - 2 - i, SLOTS,
                                          OG, IEEE, DOT_F32)
                    next_B = bspline._below_order(B, K)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + group * OG + o, mask=o < OG, other=0.0).to(acc.dtype)[None, :]
    out_c = group * OG + o
    y = y_ptr + ((n[:, None] * OUT + out_c[None, :]) * OH + oh[:, None]) * OW
    tl.store(y + ow[:, None], acc.to(y_ptr.dtype.element_ty), mask=(m[:, None] < N * OH * OW) & (o[None, :] < OG))


def supported(x: torch.Tensor, base_activation: str) -> bool:
    """The kernel covers 1-D and 2-D convolutions with the activations of ACT_CODES."""
    return x.dim() in (3, 4) and base_activation in ACT_CODES


def kan_conv_implicit_forward(x, tables, base_weight, spline_weight, bias, base_activation, stride, padding, dilation,
                              groups):
    """x: (N, C, L) or (N, C, H, W) contiguous; padding flat (before, after) per dim -> y."""
    if x.dim() == 3:  # 1-D as a 2-D convolution of height 1
        y = kan_conv_implicit_forward(
            x.unsqueeze(2), tables, None if base_weight is None else base_weight.unsqueeze(2),
            spline_weight.unsqueeze(3), bias, base_activation, [1, *stride], [0, 0, *padding], [1, *dilation], groups)
        return y.squeeze(2)
    n, c, h, w = x.shape
    out_channels, cg, kh, kw = spline_weight.shape[0], spline_weight.shape[1], *spline_weight.shape[3:]
    og = out_channels // groups
    oh = (h + padding[0] + padding[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + padding[2] + padding[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y = x.new_empty(n, out_channels, oh, ow)
    if y.numel() == 0:
        return y
    weight = spline_weight if base_weight is None else torch.cat([base_weight.unsqueeze(2), spline_weight], 2)
    slots = weight.shape[2]
    # (group, kh, kw, c_local, slot, o): each program's weight tiles are contiguous along o
    weight = weight.view(groups, og, cg, slots, kh, kw).permute(0, 4, 5, 2, 3, 1).contiguous()
    grid = (triton.cdiv(n * oh * ow, BLOCK_M), groups * triton.cdiv(og, BLOCK_N))
    _kan_conv2d_forward_kernel[grid](
        x, weight, bias if bias is not None else weight, y, tables.knots, tables.recips,
        n, c, h, w, out_channels, oh, ow, og, cg, kh, kw, stride[0], stride[1], padding[0], padding[2], dilation[0], dilation[1],
        HAS_BASE=base_weight is not None, HAS_BIAS=bias is not None, ACT=ACT_CODES[base_activation],
        IEEE=x.dtype == torch.float32 and not torch.backends.cudnn.allow_tf32, ACC64=x.dtype == torch.float64,
        # the CPU interpreter multiplies bfloat16 tiles wrongly: give it float32 ones
        DOT_F32=x.dtype == torch.bfloat16 and triton_interpreted(),
        NK=tables.num_knots, K=tables.spline_order, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_C=BLOCK_C,
        **bspline.LAUNCH_OPTIONS,
    )
    return y
