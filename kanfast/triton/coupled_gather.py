"""``kanfast::coupled_gather_triton``: the Triton backend of kanfast.ops.coupled_gather, one
launch per tensor. Tensor i is viewed as contiguous (outer, n, inner); each program writes
BLOCK consecutive elements of the contiguous (outer, m, inner) output. The scale is
converted to the tensor's dtype by torch beforehand, so each element is one rounded product,
exactly as in the reference."""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

BLOCK = 1024

_SCHEMA = "(Tensor[] tensors, int[] dims, Tensor index, Tensor? scale, Tensor? fresh) -> Tensor[]"


@triton.jit
def _coupled_gather_kernel(src_ptr, dst_ptr, index_ptr, scale_ptr, fresh_ptr, n, m, inner, total,
                           HAS_SCALE: tl.constexpr, HAS_FRESH: tl.constexpr, NARROW: tl.constexpr,
                           BLOCK: tl.constexpr):
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = e < total
    j = e % inner
    row = e // inner
    k = row % m
    o = row // m
    src = tl.load(index_ptr + k, mask=mask, other=0)
    v = tl.load(src_ptr + (o * n + src) * inner + j, mask=mask, other=0.0)
    if HAS_SCALE:
        # In float32 for the half types: the product of two halves is exact there, so rounding
        # it once to the output dtype gives torch's result.
        s = tl.load(scale_ptr + k, mask=mask, other=1.0)
        v = (v.to(tl.float32) * s.to(tl.float32)).to(v.dtype) if NARROW else v * s
    if HAS_FRESH:
        v = tl.where(tl.load(fresh_ptr + k, mask=mask, other=0) != 0, 0.0, v).to(v.dtype)
    tl.store(dst_ptr + e, v, mask=mask)


@torch.library.custom_op("kanfast::coupled_gather_triton", mutates_args=(), schema=_SCHEMA)
def coupled_gather_triton(tensors, dims, index, scale, fresh):
    m = index.shape[0]
    index = index.contiguous()
    fresh_u8 = fresh.contiguous().view(torch.uint8) if fresh is not None else None
    # The scale in each tensor's dtype, converted by torch: the kernel then rounds one product.
    scales = {} if scale is None else {t.dtype: scale.to(t.dtype) for t in tensors}
    out = []
    for t, dim in zip(tensors, dims):
        dim = dim % t.dim()
        n = t.shape[dim]
        src = t.contiguous()
        shape = list(t.shape)
        shape[dim] = m
        dst = torch.empty(shape, dtype=t.dtype, device=t.device)
        total = dst.numel()
        if total:
            inner = math.prod(t.shape[dim + 1:])
            _coupled_gather_kernel[(triton.cdiv(total, BLOCK),)](
                src, dst, index, scales.get(t.dtype, index), fresh_u8 if fresh is not None else index,
                n, m, inner, total, HAS_SCALE=scale is not None, HAS_FRESH=fresh is not None,
                NARROW=t.dtype in (torch.float16, torch.bfloat16), BLOCK=BLOCK)
        out.append(dst)
    return out


@coupled_gather_triton.register_fake
def _(tensors, dims, index, scale, fresh):
    from ..ops.coupled_gather import fake_coupled_gather

    return fake_coupled_gather(tensors, dims, index, scale, fresh)
