"""``Apoptosis``, ``GrowthOnly`` and ``Hybrid``: one structural change per layer and trigger."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .. import resize
from ..train import Trainer
from .base import Strategy, check_init, check_rate


class Apoptosis(Strategy):
    """At every trigger, replaces the weakest ``prune_rate`` fraction (at least one unit) of
    each layer: fresh incoming weights, zero outgoing weights, zero optimizer state
    (kanfast.resize.reinit). The width stays. Events: kind "apoptosis", units the indices."""

    def __init__(self, prune_rate: float, *, interval: int | None = None, criterion: str = "mean_abs",
                 **options: Any) -> None:
        self.prune_rate = check_rate("prune_rate", prune_rate)
        super().__init__(interval=interval, criterion=criterion, **options)

    def fire(self, trainer: Trainer, scores: dict[str, torch.Tensor]) -> bool:
        for layer in self.layers:
            idx = self.weakest(scores, layer, self.prune_rate)
            report = resize.reinit(trainer.model, layer, idx, example_inputs=self.example_inputs,
                                   optimizer=trainer.optimizer)
            self.log(trainer, "apoptosis", layer, idx, report.params_before, report.params_after)
        return True


class GrowthOnly(Strategy):
    """At every trigger, widens each layer by ``growth_rate`` of its width (at least one unit)
    up to ``max_width``, keeping the function: ``init="net2net"`` splits random units (their
    copies stay twins under training unless ``noise`` > 0), ``"zeros"`` adds units with zero
    outgoing weights. Events: kind "grow", units the new indices, width_before / width_after."""

    def __init__(self, growth_rate: float, *, max_width: int, interval: int | None = None,
                 init: str = "net2net", noise: float = 0.0, **options: Any) -> None:
        if not (isinstance(growth_rate, (int, float)) and not isinstance(growth_rate, bool) and growth_rate > 0):
            raise ValueError(f"growth_rate must be a number > 0, got {growth_rate!r}")
        if isinstance(max_width, bool) or not isinstance(max_width, int) or max_width < 1:
            raise ValueError(f"max_width must be an integer >= 1, got {max_width!r}")
        if not (isinstance(noise, (int, float)) and noise >= 0):
            raise ValueError(f"noise must be a number >= 0, got {noise!r}")
        self.growth_rate, self.max_width, self.init, self.noise = float(growth_rate), max_width, check_init(init), noise
        super().__init__(interval=interval, **options)

    needs_scores = False

    def check_layers(self, model: nn.Module, widths: dict[str, int]) -> None:
        for layer, width in widths.items():
            if width > self.max_width:
                raise ValueError(f"max_width={self.max_width} is below the current width {width} of {layer!r}")

    def fire(self, trainer: Trainer, scores: dict[str, torch.Tensor]) -> bool:
        grew = False
        for layer in self.layers:
            width = scores[layer].numel()
            new_width = min(self.max_width, width + max(1, math.floor(self.growth_rate * width)))
            if new_width == width:
                continue
            report = resize.widen(trainer.model, layer, new_width, init=self.init, noise=self.noise,
                                  example_inputs=self.example_inputs, optimizer=trainer.optimizer)
            self.log(trainer, "grow", layer, range(width, new_width), report.params_before, report.params_after,
                     width_before=width, width_after=new_width)
            grew = True
        return grew


class Hybrid(Strategy):
    """Births equal deaths: at every trigger, prunes the weakest ``turnover`` fraction (at least
    one unit) of each layer and widens it back to its width in the same event (``init``:
    "net2net" copies surviving units, "zeros" adds fresh units with zero outgoing weights).
    Events: kind "replace", units the removed indices (the new units are appended last)."""

    def __init__(self, turnover: float = 0.05, *, interval: int | None = None, init: str = "net2net",
                 **options: Any) -> None:
        self.turnover, self.init = check_rate("turnover", turnover), check_init(init)
        super().__init__(interval=interval, **options)

    def fire(self, trainer: Trainer, scores: dict[str, torch.Tensor]) -> bool:
        for layer in self.layers:
            width = scores[layer].numel()
            dying = self.weakest(scores, layer, self.turnover)
            keep = torch.ones(width, dtype=torch.bool)
            keep[dying] = False
            pruned = resize.prune(trainer.model, layer, keep, example_inputs=self.example_inputs,
                                  optimizer=trainer.optimizer)
            grown = resize.widen(trainer.model, layer, width, init=self.init, example_inputs=self.example_inputs,
                                 optimizer=trainer.optimizer)
            self.log(trainer, "replace", layer, dying, pruned.params_before, grown.params_after)
        return True
