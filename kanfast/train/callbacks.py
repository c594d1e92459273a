"""The callback protocol, and the early-stopping tracker the trainer runs after the callbacks."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .config import EarlyStopping

if TYPE_CHECKING:
    from .trainer import Trainer


class Callback:
    """Base class of the objects a Trainer calls; override what you need.

    ``on_step_end`` runs after each optimizer step (``step`` counts them from 1),
    ``on_epoch_end`` after validation, with the epoch's metrics: a callback may add entries to
    that dict (they are logged) or set ``trainer.should_stop``. Its ``state_dict()`` is saved in
    every checkpoint and handed back to ``load_state_dict`` on resume, so it must hold only
    tensors, numbers, strings and containers of them.
    """

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class EarlyStopper:
    def __init__(self, config: EarlyStopping) -> None:
        self.config = config
        self.best = math.inf if config.mode == "min" else -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0

    def update(self, epoch: int, metrics: dict[str, Any]) -> bool:
        """Records the epoch's value of the monitored metric; True when training should stop."""
        if self.config.monitor not in metrics:
            raise KeyError(f"early_stopping.monitor={self.config.monitor!r} is not among the epoch metrics "
                           f"{sorted(metrics)} (validation data gives val_loss / val_accuracy)")
        value = float(metrics[self.config.monitor])
        gain = self.best - value if self.config.mode == "min" else value - self.best
        if gain > self.config.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.config.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
