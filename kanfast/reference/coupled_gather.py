"""Pure-PyTorch ``coupled_gather``: one index_select, multiply and masked_fill per tensor."""

from __future__ import annotations

import torch


def _along(vec: torch.Tensor, dim: int, ndim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[dim] = -1
    return vec.reshape(shape)


def coupled_gather(tensors: list[torch.Tensor], dims: list[int], index: torch.Tensor,
                   scale: torch.Tensor | None = None, fresh: torch.Tensor | None = None) -> list[torch.Tensor]:
    """tensors[i] with dims[i] of any size n_i; index: (m,) int64 in [0, n_i); scale: (m,)
    float64 or None; fresh: (m,) bool or None -> tensors[i] with m along dims[i], slice k
    = slice index[k] · scale[k] (the scale in the tensor's dtype), 0 where fresh[k]."""
    out = []
    for t, dim in zip(tensors, dims):
        dim = dim % t.dim()
        o = t.index_select(dim, index)
        if scale is not None:
            o = o * _along(scale.to(t.dtype), dim, t.dim())
        if fresh is not None:
            o = o.masked_fill(_along(fresh, dim, t.dim()), 0)
        out.append(o.contiguous())
    return out
