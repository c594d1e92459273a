"""``kanfast::coupled_gather_triton``: the Triton backend of kanfast.ops.coupled_gather, one
launch for all tensors of a dtype (one launch per call unless the call mixes dtypes: the
element type is part of the compiled kernel).

Tensor i is viewed as contiguous (outer, size, inner) around its coupled dim; each program
writes BLOCK consecutive elements of one tensor's contiguous (outer, size', inner) output. A
single int64 buffer carries the unit index, then a table row per tensor (addresses, sizes,
where its units sit, its scale / fresh rows), then the tensor of each program, so the launch
needs one host -> device copy. The scale is converted to the tensor's dtype by torch
beforehand, so each element is one rounded product, exactly as in the reference."""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ..reference.coupled_gather import as_table, spans, table_rows

BLOCK = 1024

_SCHEMA = ("(Tensor[] tensors, int[] dims, Tensor index, Tensor? scale, Tensor? fresh, int[]? offsets, "
           "int[]? blocks, int? units, int[]? scale_rows, int[]? fresh_rows) -> Tensor[]")

# A table row: src address, dst address, outer, size, inner, offset, block, units n,
# scale row, fresh row, first program.
FIELDS = tl.constexpr(11)


@triton.jit
def _coupled_gather_kernel(src_ptr, dst_ptr, index_ptr, scale_ptr, fresh_ptr, m, table, programs,
                           HAS_SCALE: tl.constexpr, HAS_FRESH: tl.constexpr, NARROW: tl.constexpr,
                           BLOCK: tl.constexpr):
    # src_ptr / dst_ptr only give the element type: every tensor's addresses are in its row.
    pid = tl.program_id(0)
    row_ptr = index_ptr + table + tl.load(index_ptr + programs + pid) * FIELDS
    src = tl.load(row_ptr + 0).to(tl.pointer_type(src_ptr.dtype.element_ty))
    dst = tl.load(row_ptr + 1).to(tl.pointer_type(dst_ptr.dtype.element_ty))
    outer = tl.load(row_ptr + 2)
    size = tl.load(row_ptr + 3)
    inner = tl.load(row_ptr + 4)
    offset = tl.load(row_ptr + 5)
    block = tl.load(row_ptr + 6)
    n = tl.load(row_ptr + 7)
    scale_row = tl.load(row_ptr + 8)
    fresh_row = tl.load(row_ptr + 9)
    first = tl.load(row_ptr + 10)
    out_size = size + (m - n) * block
    e = (pid - first) * BLOCK + tl.arange(0, BLOCK)
    mask = e < outer * out_size * inner
    j = e % inner
    r = e // inner
    p = r % out_size
    o = r // out_size
    # Output position p: before the units it is carried, inside it reads block position
    # rel % block of unit index[k], after them it is carried from m - n units further back.
    rel = p - offset
    inside = (rel >= 0) & (rel < m * block)
    k = tl.where(inside, rel // block, 0)
    unit = tl.load(index_ptr + k, mask=mask & inside, other=0)
    q = tl.where(inside, offset + unit * block + rel % block, tl.where(rel < 0, p, p - (m - n) * block))
    v = tl.load(src + (o * size + q) * inner + j, mask=mask, other=0.0)
    # The rows as blocks: the interpreter cannot combine a block mask with a scalar condition.
    no_row = tl.zeros_like(k)
    if HAS_SCALE:
        s = tl.load(scale_ptr + scale_row * m + k, mask=mask & inside & (no_row + scale_row >= 0), other=1.0)
        # In float32 for the half types: the product of two halves is exact there, so rounding
        # it once to the output dtype gives torch's result. Positions with no scale multiply by 1.
        v = (v.to(tl.float32) * s.to(tl.float32)).to(v.dtype) if NARROW else v * s
    if HAS_FRESH:
        f = tl.load(fresh_ptr + fresh_row * m + k, mask=mask & inside & (no_row + fresh_row >= 0), other=0)
        v = tl.where(f != 0, 0.0, v).to(v.dtype)
    tl.store(dst + e, v, mask=mask)


def _launch(jobs, index, scale, fresh_u8, m) -> None:
    """One launch for jobs [(src contiguous, dst, dim, offset, block, n, scale_row, fresh_row)] of one dtype."""
    dtype = jobs[0][0].dtype
    rows, per_tensor = [], []
    first = 0
    for src, dst, dim, offset, block, n, srow, frow in jobs:
        count = triton.cdiv(dst.numel(), BLOCK)
        rows += [src.data_ptr(), dst.data_ptr(), math.prod(src.shape[:dim]), src.shape[dim],
                 math.prod(src.shape[dim + 1:]), offset, block, n, srow, frow, first]
        per_tensor.append(count)
        first += count
    table = torch.tensor(rows, dtype=torch.int64)
    programs = torch.arange(len(jobs)).repeat_interleave(torch.tensor(per_tensor))
    meta = torch.cat([index, torch.cat([table, programs]).to(index.device)])
    has_scale = any(job[6] >= 0 for job in jobs)
    has_fresh = any(job[7] >= 0 for job in jobs)
    scale_t = scale.to(dtype).contiguous() if has_scale else jobs[0][1]
    _coupled_gather_kernel[(first,)](
        jobs[0][0], jobs[0][1], meta, scale_t, fresh_u8 if has_fresh else meta, m, m, m + table.numel(),
        HAS_SCALE=has_scale, HAS_FRESH=has_fresh, NARROW=dtype in (torch.float16, torch.bfloat16), BLOCK=BLOCK)


@torch.library.custom_op("kanfast::coupled_gather_triton", mutates_args=(), schema=_SCHEMA)
def coupled_gather_triton(tensors, dims, index, scale, fresh, offsets, blocks, units, scale_rows, fresh_rows):
    m = index.shape[0]
    scale, fresh = as_table(scale), as_table(fresh)
    fresh_u8 = fresh.contiguous().view(torch.uint8) if fresh is not None else None
    srows, frows = table_rows(scale_rows, scale, len(tensors)), table_rows(fresh_rows, fresh, len(tensors))
    by_dtype: dict[torch.dtype, list] = {}
    out = []
    for t, (dim, offset, block, n), srow, frow in zip(tensors, spans(tensors, dims, offsets, blocks, units),
                                                      srows, frows):
        shape = list(t.shape)
        shape[dim] += (m - n) * block
        dst = torch.empty(shape, dtype=t.dtype, device=t.device)
        if dst.numel():  # an empty output owns no program
            by_dtype.setdefault(t.dtype, []).append((t.contiguous(), dst, dim, offset, block, n, srow, frow))
        out.append(dst)
    for jobs in by_dtype.values():
        _launch(jobs, index, scale, fresh_u8, m)
    return out


@coupled_gather_triton.register_fake
def _(tensors, dims, index, scale, fresh, offsets, blocks, units, scale_rows, fresh_rows):
    from ..ops.coupled_gather import fake_coupled_gather

    return fake_coupled_gather(tensors, dims, index, scale, fresh, offsets, blocks, units, scale_rows, fresh_rows)
