"""``kanfast::channel_stats_triton``: the Triton backend of kanfast.ops.channel_stats.

x is viewed as a contiguous (outer, C, inner) tensor in memory order (no copy when it is
dense). Program (c, s) reduces split s of channel c's outer·inner elements in BLOCK lanes,
each lane keeping a Welford mean/M2 of its elements (stable, one read), and writes one
partial; the splits are merged in float64 with Chan's formula afterwards.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference.channel_stats import accumulate_dtype, empty_stats

BLOCK = 256
# Enough programs per channel to fill a GPU for few channels, few enough that the float64
# merge of the partials stays negligible.
TARGET_ELEMS_PER_PROGRAM = 1 << 16
MAX_SPLITS = 512

_SCHEMA = ("(Tensor x, int dim, Tensor? grad, int bins, float lo, float hi) -> "
           "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)")


@triton.jit
def _channel_stats_kernel(x_ptr, g_ptr, acc_ptr, cnt_ptr, hist_ptr, C, inner, elems, per_split, lo, scale, bins,
                          HAS_GRAD: tl.constexpr, HAS_HIST: tl.constexpr, ACC64: tl.constexpr,
                          BLOCK: tl.constexpr):
    # acc: (splits, 7, C) sum, abs_sum, m2, min, max, prod_sum, prod_abs_sum; cnt: (splits, 3, C)
    # count, zeros, nonpos; hist: (C, bins) int32, shared by all splits (atomics).
    DT = tl.float64 if ACC64 else tl.float32
    c = tl.program_id(0).to(tl.int64)
    s = tl.program_id(1).to(tl.int64)
    start = s * per_split
    stop = tl.minimum(start + per_split, elems)
    n = tl.zeros([BLOCK], tl.int32)
    mean = tl.zeros([BLOCK], DT)
    m2 = tl.zeros([BLOCK], DT)
    total = tl.zeros([BLOCK], DT)
    abs_total = tl.zeros([BLOCK], DT)
    lo_v = tl.full([BLOCK], float("inf"), DT)
    hi_v = tl.full([BLOCK], float("-inf"), DT)
    zeros = tl.zeros([BLOCK], tl.int32)
    nonpos = tl.zeros([BLOCK], tl.int32)
    prod = tl.zeros([BLOCK], DT)
    prod_abs = tl.zeros([BLOCK], DT)
    for e0 in range(start, stop, BLOCK):
        e = e0 + tl.arange(0, BLOCK)
        mask = e < stop
        offset = (e // inner) * C * inner + c * inner + e % inner
        v = tl.load(x_ptr + offset, mask=mask, other=0.0).to(DT)
        n += mask.to(tl.int32)
        delta = tl.where(mask, v - mean, 0.0)
        mean += delta / tl.maximum(n, 1).to(DT)
        m2 += delta * tl.where(mask, v - mean, 0.0)
        total += v
        abs_total += tl.abs(v)
        lo_v = tl.where(mask, tl.minimum(lo_v, v), lo_v)
        hi_v = tl.where(mask, tl.maximum(hi_v, v), hi_v)
        zeros += (mask & (v == 0.0)).to(tl.int32)
        nonpos += (mask & (v <= 0.0)).to(tl.int32)
        if HAS_GRAD:
            p = v * tl.load(g_ptr + offset, mask=mask, other=0.0).to(DT)
            prod += p
            prod_abs += tl.abs(p)
        if HAS_HIST:
            # Same rule as histogram_bin (csrc/include/kanfast/channel_stats.h): clamp, NaN dropped.
            t = (v - lo) * scale
            b = tl.minimum(tl.maximum(t, 0.0), bins - 1.0).to(tl.int32)
            tl.atomic_add(hist_ptr + c * bins + b, 1, mask=mask & (t == t))
    count = tl.sum(n, axis=0)
    nf = n.to(DT)
    global_mean = tl.sum(nf * mean, axis=0) / tl.maximum(count, 1).to(DT)
    spread = mean - global_mean
    m2_total = tl.sum(m2 + nf * spread * spread, axis=0)
    out = acc_ptr + s * 7 * C + c
    tl.store(out, tl.sum(total, axis=0))
    tl.store(out + C, tl.sum(abs_total, axis=0))
    tl.store(out + 2 * C, m2_total)
    tl.store(out + 3 * C, tl.min(lo_v, axis=0))
    tl.store(out + 4 * C, tl.max(hi_v, axis=0))
    tl.store(out + 5 * C, tl.sum(prod, axis=0))
    tl.store(out + 6 * C, tl.sum(prod_abs, axis=0))
    counts = cnt_ptr + s * 3 * C + c
    tl.store(counts, count)
    tl.store(counts + C, tl.sum(zeros, axis=0))
    tl.store(counts + 2 * C, tl.sum(nonpos, axis=0))


def channel_view(t: torch.Tensor, dim: int, order: list[int]) -> torch.Tensor:
    """t permuted into memory order and made contiguous (free when dense), as (outer, C, inner)."""
    p = t.permute(order).contiguous()
    pos = order.index(dim)
    return p.view(p.shape[:pos].numel(), t.shape[dim], p.shape[pos + 1:].numel())


def memory_order(t: torch.Tensor) -> list[int]:
    return sorted(range(t.dim()), key=lambda d: -t.stride(d))  # stable: ties keep their order


@torch.library.custom_op("kanfast::channel_stats_triton", mutates_args=(), schema=_SCHEMA)
def channel_stats_triton(x, dim, grad, bins, lo, hi):
    dim = dim % x.dim()
    C = x.shape[dim]
    elems = x.numel() // C if C else 0
    if elems == 0:
        return empty_stats(C, bins, grad is not None, x.device)
    order = memory_order(x)
    xv = channel_view(x, dim, order)
    gv = channel_view(grad, dim, order) if grad is not None else xv
    acc = accumulate_dtype(x.dtype)
    # Per-lane counts are int32: a split holds well under 2^31 elements per lane.
    splits = min(MAX_SPLITS, triton.cdiv(elems, TARGET_ELEMS_PER_PROGRAM))
    per_split = triton.cdiv(triton.cdiv(elems, splits), BLOCK) * BLOCK
    splits = triton.cdiv(elems, per_split)
    partial = torch.empty(splits, 7, C, dtype=acc, device=x.device)
    counts = torch.empty(splits, 3, C, dtype=torch.int32, device=x.device)
    hist = torch.zeros(C, bins, dtype=torch.int32, device=x.device)
    scale = bins / (hi - lo) if bins else 0.0
    _channel_stats_kernel[(C, splits)](
        xv, gv, partial, counts, hist, C, xv.shape[2], elems, per_split, lo, scale, bins,
        HAS_GRAD=grad is not None, HAS_HIST=bins > 0, ACC64=acc == torch.float64, BLOCK=BLOCK)
    partial, counts = partial.double(), counts.long()
    n = counts[:, 0]
    count = n.sum(0)
    mean = partial[:, 0].sum(0) / count.double()
    shift = partial[:, 0] / n.double().clamp_min(1) - mean
    m2 = (partial[:, 2] + n.double() * shift * shift).sum(0)
    if grad is not None:
        prods = (partial[:, 5].sum(0), partial[:, 6].sum(0))
    else:
        prods = (partial.new_zeros(0), partial.new_zeros(0))
    return (count, partial[:, 0].sum(0), partial[:, 1].sum(0), m2, counts[:, 1].sum(0), counts[:, 2].sum(0),
            partial[:, 3].amin(0), partial[:, 4].amax(0), hist.long(), *prods)


@channel_stats_triton.register_fake
def _(x, dim, grad, bins, lo, hi):
    from ..ops.channel_stats import fake_channel_stats

    return fake_channel_stats(x, dim % x.dim(), grad, bins, lo, hi)
