"""``kanfast.ops.coupled_gather``: rebuild every tensor of a coupling group along its coupled
dim in one call (structural resize: prune, widen, net2net splits, re-initialisation), whatever
its rule (moved, scaled, zeroed where new) and wherever the units sit along that dim."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import _backend
from .. import reference
from ..reference.coupled_gather import spans
from ._checks import check_same_device, check_tensor

OP = "coupled_gather"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_int_list(name: str, values, count: int, low: int, high: int | None = None) -> None:
    """None, or a list of ``count`` ints in [low, high) (no upper bound if high is None)."""
    if values is None:
        return
    if not isinstance(values, Sequence) or len(values) != count:
        raise ValueError(f"{OP}: {name} must be a list with one int per tensor ({count}), got {values!r}")
    for i, v in enumerate(values):
        if not _is_int(v):
            raise TypeError(f"{OP}: {name}[{i}] must be an int, got {type(v).__name__}")
        if v < low or (high is not None and v >= high):
            bound = f"[{low}, {high})" if high is not None else f">= {low}"
            raise ValueError(f"{OP}: {name}[{i}] must be {'in ' if high is not None else ''}{bound}, got {v}")


def _check_table(name: str, t, dtype: torch.dtype, m: int, index: torch.Tensor) -> int:
    """A (rows, m) or (m,) table of dtype on index's device; returns its row count (0 if None)."""
    if t is None:
        return 0
    check_tensor(OP, name, t, floating=False)
    if t.dim() not in (1, 2) or t.shape[-1] != m or t.dtype != dtype:
        raise ValueError(f"{OP}: {name} must be a {dtype} tensor of shape (m,) or (rows, m) with m = {m}, got "
                         f"{t.dtype} of shape {tuple(t.shape)}")
    check_same_device(OP, "index", index, **{name: t})
    return 1 if t.dim() == 1 else t.shape[0]


def _check_args(tensors, dims, index, scale, fresh, offsets, blocks, units, scale_rows, fresh_rows) -> None:
    if not isinstance(tensors, Sequence) or isinstance(tensors, torch.Tensor):
        raise TypeError(f"{OP}: tensors must be a list of tensors, got {type(tensors).__name__}")
    count = len(tensors)
    if not isinstance(dims, Sequence) or len(dims) != count:
        raise ValueError(f"{OP}: dims must be a list with one int per tensor ({count}), got {dims!r}")
    check_tensor(OP, "index", index, floating=False)
    if index.dim() != 1 or index.dtype != torch.int64:
        raise ValueError(f"{OP}: index must be a 1-dim int64 tensor (m,), got {index.dtype} of shape "
                         f"{tuple(index.shape)}")
    m = index.shape[0]
    scale_count = _check_table("scale", scale, torch.float64, m, index)
    fresh_count = _check_table("fresh", fresh, torch.bool, m, index)
    _check_int_list("offsets", offsets, count, 0)
    _check_int_list("blocks", blocks, count, 1)
    _check_int_list("scale_rows", scale_rows, count, -1, scale_count)
    _check_int_list("fresh_rows", fresh_rows, count, -1, fresh_count)
    if units is not None and (not _is_int(units) or units < 0):
        raise ValueError(f"{OP}: units must be None or an int >= 0, got {units!r}")
    smallest = None  # (tensor position, n) with the fewest units: the bound of the index values
    for i, (t, dim) in enumerate(zip(tensors, dims)):
        check_tensor(OP, f"tensors[{i}]", t)
        check_same_device(OP, "index", index, **{f"tensors[{i}]": t})
        if not _is_int(dim):
            raise TypeError(f"{OP}: dims[{i}] must be an int, got {type(dim).__name__}")
        if t.dim() == 0 or not -t.dim() <= dim < t.dim():
            raise ValueError(f"{OP}: dims[{i}] must be in [{-t.dim()}, {t.dim()}) for tensors[{i}] of shape "
                             f"{tuple(t.shape)}, got {dim}")
        size = t.shape[dim]
        offset = 0 if offsets is None else offsets[i]
        block = 1 if blocks is None else blocks[i]
        if units is None and (offset > size or (size - offset) % block):
            raise ValueError(f"{OP}: with units=None, tensors[{i}] of shape {tuple(t.shape)} must hold whole units "
                             f"after offsets[{i}] = {offset} along dims[{i}] ({size} - {offset} must be a multiple "
                             f"of blocks[{i}] = {block})")
        if units is not None and offset + units * block > size:
            raise ValueError(f"{OP}: offsets[{i}] + units * blocks[{i}] = {offset} + {units} * {block} exceeds the "
                             f"size {size} of tensors[{i}] (shape {tuple(t.shape)}) along dims[{i}]")
        n = units if units is not None else (size - offset) // block
        if smallest is None or n < smallest[1]:
            smallest = (i, n)
    if m and smallest is not None and not torch.compiler.is_compiling():
        lo, hi = torch.stack(torch.aminmax(index)).tolist()  # one sync on a GPU: resizing is rare
        if lo < 0 or hi >= smallest[1]:
            where = "units" if units is not None else f"the units of tensors[{smallest[0]}] along dims[{smallest[0]}]"
            raise ValueError(f"{OP}: index values must be in [0, {smallest[1]}) ({where}), got values in "
                             f"[{lo}, {hi}]")


def coupled_gather(tensors: Sequence[torch.Tensor], dims: Sequence[int], index: torch.Tensor,
                   scale: torch.Tensor | None = None, fresh: torch.Tensor | None = None, *,
                   offsets: Sequence[int] | None = None, blocks: Sequence[int] | None = None,
                   units: int | None = None, scale_rows: Sequence[int] | None = None,
                   fresh_rows: Sequence[int] | None = None, backend: str | None = None) -> list[torch.Tensor]:
    """Rebuild every tensor along its coupled dim, all in one kernel call.

    Along ``dims[i]``, tensor i holds ``units`` units of ``blocks[i]`` consecutive positions
    starting at ``offsets[i]`` (a concat offset; a block > 1 after flattening conv channels
    into features); positions before and after them are carried unchanged. The output holds
    m = index.numel() units there instead: new unit k is old unit ``index[k]`` times
    ``scale[scale_rows[i], k]``, and 0 where ``fresh[fresh_rows[i], k]``. A row of -1 means
    unscaled / never zeroed, so the tensors of one coupling group with different rules
    (a unit's own weights moved, consumers' weights scaled, optimizer moments zeroed where a
    unit is new) share one call.

    tensors: floating-point, any shapes, dtypes and layouts, all on index's device; index: (m,)
    int64 in [0, n) — m < n prunes, repeats replicate (net2net); scale: (R, m) float64 (or
    (m,), one row), converted to each tensor's dtype before the multiply (as torch would);
    fresh: (F, m) bool (or (m,)). Defaults: offsets 0, blocks 1, units None (each tensor's
    dim holds whole units from its offset to its end), scale_rows / fresh_rows 0 for every
    tensor when the table is given. Outputs are contiguous, new tensors. Not differentiable.
    ``backend`` overrides the choice.
    """
    _check_args(tensors, dims, index, scale, fresh, offsets, blocks, units, scale_rows, fresh_rows)
    tensors, dims = [t.detach() for t in tensors], [int(d) for d in dims]
    if not tensors:
        return []
    lists = [None if v is None else [int(x) for x in v] for v in (offsets, blocks, scale_rows, fresh_rows)]
    args = (tensors, dims, index, scale, fresh, lists[0], lists[1], units, lists[2], lists[3])
    name = _backend.choose(OP, index.device, backend)
    if name in ("cpp", "cuda"):
        return list(torch.ops.kanfast.coupled_gather(*args))
    if name == "triton":
        from ..triton.coupled_gather import coupled_gather_triton

        return list(coupled_gather_triton(*args))
    return reference.coupled_gather(*args)


def fake_coupled_gather(tensors, dims, index, scale=None, fresh=None, offsets=None, blocks=None, units=None,
                        scale_rows=None, fresh_rows=None):
    """Output metadata of kanfast::coupled_gather (for FakeTensor / torch.compile)."""
    m = index.shape[0]
    out = []
    for t, (dim, _, block, n) in zip(tensors, spans(tensors, dims, offsets, blocks, units)):
        shape = list(t.shape)
        shape[dim] += (m - n) * block
        out.append(t.new_empty(shape))
    return out


@_backend.after_library_load
def _register_compiled() -> None:
    torch.library.register_fake("kanfast::coupled_gather")(fake_coupled_gather)
