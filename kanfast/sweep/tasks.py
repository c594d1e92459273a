"""Tasks a sweep trains on: each returns (model, (x_train, y_train), (x_val, y_val), loss_fn).

Built in: ``digits-mlp`` (an MLP) and ``digits-kan`` (a small KAN MLP) on scikit-learn's
bundled 8×8 digits, flattened to 64 features in [-1, 1]; or any ``module:function`` taking
no arguments. The caller seeds torch first, so each repeat builds its own initial weights.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..search.data import load_dataset
from ..search.executor import resolve


def _digits() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    data = load_dataset("digits", seed=0)  # a fixed split: repeats differ in weights and data order only
    return (data.x_train.flatten(1), data.y_train), (data.x_val.flatten(1), data.y_val)


def digits_mlp():
    train, val = _digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return model, train, val, F.cross_entropy


def digits_kan():
    from ..nn import KANLinear

    train, val = _digits()
    return nn.Sequential(KANLinear(64, 32), KANLinear(32, 10)), train, val, F.cross_entropy


BUILTIN_TASKS: dict[str, Callable[[], Any]] = {"digits-mlp": digits_mlp, "digits-kan": digits_kan}


def build_task(spec: str, max_samples: int | None = None):
    """(model, train, val, loss_fn) of a built-in name or 'module:function'; ``max_samples``
    keeps the first that many samples of each split."""
    result = BUILTIN_TASKS[spec]() if spec in BUILTIN_TASKS else resolve(spec)()
    if not (isinstance(result, tuple) and len(result) == 4 and isinstance(result[0], nn.Module)):
        raise ValueError(f"task {spec!r} must return (model, (x_train, y_train), (x_val, y_val), loss_fn)")
    model, train, val, loss_fn = result
    if max_samples is not None:
        train, val = tuple(t[:max_samples] for t in train), tuple(t[:max_samples] for t in val)
    return model, train, val, loss_fn
