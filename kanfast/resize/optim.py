"""Keeping an optimizer consistent with resized parameters."""

from __future__ import annotations

import torch
from torch import nn

from .graph import ResizeError


def per_element_state(state: dict, shape: torch.Size, owner: str) -> list[str]:
    """The keys of a parameter's optimizer state that are per-element tensors (momentum, Adam
    moments, ...): they are gathered with the parameter, zero where a unit is new. Scalars
    (``step``) and None are kept as they are; any other shape has no rule and is an error."""
    keys = []
    for key, value in state.items():
        if torch.is_tensor(value) and value.shape == shape:
            keys.append(key)
        elif torch.is_tensor(value) and value.dim() > 0:
            raise ResizeError(f"optimizer: state {key!r} of {owner} has shape {tuple(value.shape)}, neither the "
                              f"parameter's {tuple(shape)} nor a scalar: no rule to resize it")
    return keys


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
