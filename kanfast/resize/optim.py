"""Keeping an optimizer consistent with resized parameters."""

from __future__ import annotations

import torch
from torch import nn

from .graph import ResizeError


def gather_state(state: dict, shape: torch.Size, dim: int, index: torch.Tensor, new: torch.Tensor,
                 owner: str) -> dict:
    """A parameter's optimizer state after its ``dim`` is re-indexed by ``index``: per-element
    tensors (momentum, Adam moments, ...) are gathered, zero where ``new`` (broadcastable);
    scalars (``step``) and None are kept."""
    out = {}
    for key, value in state.items():
        if torch.is_tensor(value) and value.shape == shape:
            out[key] = value.index_select(dim, index.to(value.device)).masked_fill(new.to(value.device), 0)
        elif value is None or not torch.is_tensor(value) or value.dim() == 0:
            out[key] = value
        else:
            raise ResizeError(f"optimizer: state {key!r} of {owner} has shape {tuple(value.shape)}, neither the "
                              f"parameter's {tuple(shape)} nor a scalar: no rule to resize it")
    return out


def replace_parameters(optimizer: torch.optim.Optimizer, replaced: dict[nn.Parameter, nn.Parameter],
                       states: dict[nn.Parameter, dict]) -> None:
    """Swap old parameter objects for new ones in param_groups and re-key optimizer.state.
    Schedulers hold the optimizer, not the parameters, so they keep working."""
    for group in optimizer.param_groups:
        group["params"] = [replaced.get(p, p) for p in group["params"]]
    for old, new in replaced.items():
        had_state = optimizer.state.pop(old, None) is not None
        if had_state:
            optimizer.state[new] = states[new]
