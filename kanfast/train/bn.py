"""``recalibrate_bn``: recompute BatchNorm running statistics for the current weights."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .data import LoaderBatches, TensorBatches


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: Any, max_batches: int | None = None,
                   autocast: torch.dtype | None = None, batch_size: int = 256) -> nn.Module:
    """Resets the running mean / variance of every BatchNorm layer of ``model`` and re-estimates
    them on ``data`` (a DataLoader, an ``(x, y)`` pair or an input tensor; batches of tensors
    ``batch_size`` long), e.g. after a structural change or an EMA/weight update made them stale.

    Only the BatchNorm layers are put in train mode: dropout and everything else stay in eval,
    so the statistics are those of the activations evaluation sees. ``momentum`` is None while
    recalibrating (a cumulative average over the batches, not an EMA dominated by the last
    ones). ``autocast``: the dtype evaluation runs under (None: no autocast). Every module's
    training flag and every momentum are restored afterwards. Returns ``model``.
    """
    if max_batches is not None and (not isinstance(max_batches, int) or max_batches < 1):
        raise ValueError(f"max_batches must be None or an integer >= 1, got {max_batches!r}")
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not layers:
        return model
    device = next(model.parameters()).device
    if isinstance(data, torch.utils.data.DataLoader):
        batches = LoaderBatches(data, device).epoch(0)
    else:
        x, y = data if isinstance(data, (tuple, list)) else (data, data)
        batches = TensorBatches(x, y, batch_size=batch_size, shuffle=False, seed=0, device=device).epoch(0)
    flags = {module: module.training for module in model.modules()}
    momenta = {layer: layer.momentum for layer in layers}
    try:
        model.eval()
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None
            layer.train()
        context = contextlib.nullcontext if autocast is None else (
            lambda: torch.autocast(device.type, dtype=autocast))
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            with context():
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    finally:
        for layer, momentum in momenta.items():
            layer.momentum = momentum
        for module, training in flags.items():
            module.train(training)
    return model
