"""``kanfast.ops.coupled_gather``: rebuild several tensors of a coupling group along each
one's coupled dim in one call (structural resize: prune, widen, net2net splits)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import _backend
from .. import reference
from ._checks import check_same_device, check_tensor

OP = "coupled_gather"


def _check_args(tensors, dims, index, scale, fresh) -> None:
    if not isinstance(tensors, Sequence) or isinstance(tensors, torch.Tensor):
        raise TypeError(f"{OP}: tensors must be a list of tensors, got {type(tensors).__name__}")
    if not isinstance(dims, Sequence) or len(dims) != len(tensors):
        raise ValueError(f"{OP}: dims must be a list with one int per tensor ({len(tensors)}), got {dims!r}")
    check_tensor(OP, "index", index, floating=False)
    if index.dim() != 1 or index.dtype != torch.int64:
        raise ValueError(f"{OP}: index must be a 1-dim int64 tensor (m,), got {index.dtype} of shape "
                         f"{tuple(index.shape)}")
    m = index.shape[0]
    for name, t, dtype in (("scale", scale, torch.float64), ("fresh", fresh, torch.bool)):
        if t is None:
            continue
        check_tensor(OP, name, t, floating=False)
        if t.shape != (m,) or t.dtype != dtype:
            raise ValueError(f"{OP}: {name} must be a {dtype} tensor of shape (m,) = ({m},), got {t.dtype} of "
                             f"shape {tuple(t.shape)}")
        check_same_device(OP, "index", index, **{name: t})
    smallest = None
    for i, (t, dim) in enumerate(zip(tensors, dims)):
        check_tensor(OP, f"tensors[{i}]", t)
        check_same_device(OP, "index", index, **{f"tensors[{i}]": t})
        if not isinstance(dim, int) or isinstance(dim, bool):
            raise TypeError(f"{OP}: dims[{i}] must be an int, got {type(dim).__name__}")
        if t.dim() == 0 or not -t.dim() <= dim < t.dim():
            raise ValueError(f"{OP}: dims[{i}] must be in [{-t.dim()}, {t.dim()}) for tensors[{i}] of shape "
                             f"{tuple(t.shape)}, got {dim}")
        n = t.shape[dim]
        if smallest is None or n < smallest[1]:
            smallest = (i, n)
    if m and smallest is not None and not torch.compiler.is_compiling():
        lo, hi = (int(v) for v in torch.aminmax(index))  # one sync on a GPU: resizing is rare
        if lo < 0 or hi >= smallest[1]:
            raise ValueError(f"{OP}: index values must be in [0, {smallest[1]}) (the size of tensors[{smallest[0]}] "
                             f"along dims[{smallest[0]}]), got values in [{lo}, {hi}]")


def coupled_gather(tensors: Sequence[torch.Tensor], dims: Sequence[int], index: torch.Tensor,
                   scale: torch.Tensor | None = None, fresh: torch.Tensor | None = None, *,
                   backend: str | None = None) -> list[torch.Tensor]:
    """Rebuild every tensor along its coupled dim: ``out[i].select(dims[i], k)`` =
    ``tensors[i].select(dims[i], index[k]) * scale[k]``, and 0 where ``fresh[k]``.

    tensors: floating-point, any shapes, dtypes and layouts, all on index's device, each at
    least index.max() + 1 long along its dim; index: (m,) int64 — m < n prunes, repeats
    replicate (net2net); scale: (m,) float64, converted to each tensor's dtype before the
    multiply (as torch would), or None; fresh: (m,) bool or None. scale and fresh apply to
    every tensor of the call: tensors that need different rules (incoming weights unscaled,
    outgoing ones scaled, optimizer moments zeroed where new) go in separate calls. Outputs
    are contiguous, new tensors. Not differentiable. ``backend`` overrides the choice.
    """
    _check_args(tensors, dims, index, scale, fresh)
    tensors, dims = [t.detach() for t in tensors], [int(d) for d in dims]
    if not tensors:
        return []
    name = _backend.choose(OP, index.device, backend)
    if name in ("cpp", "cuda"):
        return list(torch.ops.kanfast.coupled_gather(tensors, dims, index, scale, fresh))
    if name == "triton":
        from ..triton.coupled_gather import coupled_gather_triton

        return list(coupled_gather_triton(tensors, dims, index, scale, fresh))
    return reference.coupled_gather(tensors, dims, index, scale, fresh)


def fake_coupled_gather(tensors, dims, index, scale=None, fresh=None):
    """Output metadata of kanfast::coupled_gather (for FakeTensor / torch.compile)."""
    out = []
    for t, dim in zip(tensors, dims):
        shape = list(t.shape)
        shape[dim % t.dim()] = index.shape[0]
        out.append(t.new_empty(shape))
    return out


@_backend.after_library_load
def _register_compiled() -> None:
    torch.library.register_fake("kanfast::coupled_gather")(fake_coupled_gather)
