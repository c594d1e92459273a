"""Pure-PyTorch ``coupled_gather``: per tensor, one index_select over a position map, then a
multiply and a masked_fill with the tensor's scale and fresh rows spread to positions."""

from __future__ import annotations

import torch


def along(vec: torch.Tensor, dim: int, ndim: int) -> torch.Tensor:
    """A 1-dim ``vec`` shaped to broadcast along ``dim`` of an ``ndim``-dim tensor."""
    shape = [1] * ndim
    shape[dim] = -1
    return vec.reshape(shape)


def spans(tensors, dims, offsets=None, blocks=None, units=None) -> list[tuple[int, int, int, int]]:
    """Per tensor (dim >= 0, offset, block, n): the defaults of coupled_gather filled in. With
    units None the units fill each tensor's dim from its offset to its end."""
    out = []
    for i, t in enumerate(tensors):
        dim = dims[i] % t.dim()
        offset = 0 if offsets is None else offsets[i]
        block = 1 if blocks is None else blocks[i]
        n = (t.shape[dim] - offset) // block if units is None else units
        out.append((dim, offset, block, n))
    return out


def table_rows(rows, table: torch.Tensor | None, count: int) -> list[int]:
    """Per tensor, the row of a scale / fresh table it uses (-1: none); default row 0 if a table is given."""
    if rows is not None:
        return list(rows)
    return [0 if table is not None else -1] * count


def as_table(t: torch.Tensor | None) -> torch.Tensor | None:
    """A (rows, m) table; a 1-dim (m,) tensor is one row."""
    return t[None] if t is not None and t.dim() == 1 else t


def unit_positions(units: torch.Tensor, offset: int, block: int, n: int, size: int) -> torch.Tensor:
    """For each output position of a dim of ``size`` positions holding n units of ``block``
    positions from ``offset``: the input position it reads. New unit k reads unit units[k]'s
    block; positions before and after the units are carried."""
    device = units.device
    inside = (offset + units[:, None] * block + torch.arange(block, device=device)).reshape(-1)
    return torch.cat([torch.arange(offset, device=device), inside,
                      torch.arange(offset + n * block, size, device=device)])


def per_position(per_unit: torch.Tensor, offset: int, block: int, n: int, size: int, fill) -> torch.Tensor:
    """Per-unit values (m,) -> per output position of the dim (``fill`` outside the units)."""
    before = per_unit.new_full((offset,), fill)
    after = per_unit.new_full((size - offset - n * block,), fill)
    return torch.cat([before, per_unit.repeat_interleave(block), after])


def coupled_gather(tensors: list[torch.Tensor], dims: list[int], index: torch.Tensor,
                   scale: torch.Tensor | None = None, fresh: torch.Tensor | None = None,
                   offsets: list[int] | None = None, blocks: list[int] | None = None, units: int | None = None,
                   scale_rows: list[int] | None = None, fresh_rows: list[int] | None = None) -> list[torch.Tensor]:
    """tensors[i] whose dims[i] holds n units of blocks[i] positions from offsets[i]; index:
    (m,) int64 in [0, n); scale: (R, m) float64 or (m,) or None; fresh: (F, m) bool or (m,)
    or None -> tensors[i] with m units there: new unit k is unit index[k] times
    scale[scale_rows[i], k] (the scale in the tensor's dtype), 0 where fresh[fresh_rows[i], k];
    positions outside the units are carried unchanged."""
    scale, fresh = as_table(scale), as_table(fresh)
    srows, frows = table_rows(scale_rows, scale, len(tensors)), table_rows(fresh_rows, fresh, len(tensors))
    out = []
    for t, (dim, offset, block, n), srow, frow in zip(tensors, spans(tensors, dims, offsets, blocks, units),
                                                      srows, frows):
        size = t.shape[dim]
        o = t.index_select(dim, unit_positions(index, offset, block, n, size))
        if srow >= 0:
            o = o * along(per_position(scale[srow].to(t.dtype), offset, block, n, size, 1), dim, t.dim())
        if frow >= 0:
            o = o.masked_fill(along(per_position(fresh[frow], offset, block, n, size, False), dim, t.dim()), 0)
        out.append(o.contiguous())
    return out
