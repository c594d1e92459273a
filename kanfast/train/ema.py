"""Exponential moving average of a model's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """``module`` is a frozen copy of the model whose parameters follow
    ``ema = decay · ema + (1 − decay) · param`` after every ``update``; buffers (BatchNorm
    statistics) are copied as they are. It starts from the model's current weights."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        _drop_hooks(self.module)  # a deep copy keeps the model's hooks: a scorer would see EMA forwards
        self._params, self._buffers = list(self.module.parameters()), list(self.module.buffers())
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        params, buffers = [p.detach() for p in model.parameters()], list(model.buffers())
        if len(params) != len(self._params) or len(buffers) != len(self._buffers):
            raise RuntimeError("the model's parameters changed since the EMA was made: call Trainer.rebuild_ema()")
        torch._foreach_lerp_(self._params, params, 1.0 - self.decay)
        if buffers:
            torch._foreach_copy_(self._buffers, buffers)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]


def _drop_hooks(module: nn.Module) -> None:
    for m in module.modules():
        for hooks in (m._forward_pre_hooks, m._forward_hooks, m._backward_pre_hooks, m._backward_hooks):
            hooks.clear()
