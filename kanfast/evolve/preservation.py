"""``FunctionalPreservation``: dying units fade out over many steps before they are reborn, so
the rest of the network can take over their function instead of losing it at once."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import resize
from ..resize.report import parameter_count
from ..resize.slots import slots
from ..train import Trainer
from .base import Strategy, check_rate


class FunctionalPreservation(Strategy):
    """At every trigger, picks the weakest ``prune_rate`` fraction (at least one unit) of each
    layer without a fade in progress and fades their outgoing weights (every consumer's input
    slice of them, found through kanfast.resize.dependencies) linearly to zero over
    ``preservation_steps`` optimizer steps; then reinitialises them (kanfast.resize.reinit) and
    adds noise of relative size ``mutation_strength`` (times the mean |w| of each fresh row) to
    their incoming weights. Events: "fade" when a fade starts, "apoptosis" when it ends.
    """

    def __init__(self, prune_rate: float, *, interval: int | None = None, preservation_steps: int = 50,
                 mutation_strength: float = 0.0, **options: Any) -> None:
        self.prune_rate = check_rate("prune_rate", prune_rate)
        if isinstance(preservation_steps, bool) or not isinstance(preservation_steps, int) or preservation_steps < 1:
            raise ValueError(f"preservation_steps must be an integer >= 1, got {preservation_steps!r}")
        if not (isinstance(mutation_strength, (int, float)) and mutation_strength >= 0):
            raise ValueError(f"mutation_strength must be a number >= 0, got {mutation_strength!r}")
        self.preservation_steps, self.mutation_strength = preservation_steps, float(mutation_strength)
        super().__init__(interval=interval, **options)
        self.fading: dict[str, dict[str, Any]] = {}  # layer -> {"units": [...], "done": steps faded}
        self._slices: dict[str, list[tuple[nn.Module, torch.Tensor]]] = {}  # cache, keyed by model shapes
        self._shapes: tuple | None = None

    def eligible(self) -> list[str]:
        return [layer for layer in self.layers if layer not in self.fading]  # one fade at a time per layer

    def fire(self, trainer: Trainer, scores: dict[str, torch.Tensor]) -> bool:
        for layer in scores:
            idx = self.weakest(scores, layer, self.prune_rate)
            self.fading[layer] = {"units": idx.tolist(), "done": 0}
            count = parameter_count(trainer.model)
            self.log(trainer, "fade", layer, idx, count, count, steps=self.preservation_steps)
        return False  # nothing changed shape yet

    def advance(self, trainer: Trainer) -> None:
        if not self.fading:
            return
        self.pause_scorer()
        finished = []
        for layer, fade in self.fading.items():
            fade["done"] += 1
            left = self.preservation_steps - fade["done"]
            if left > 0:
                # weights at k/P of their start after each step: w ← w · left / (left + 1)
                self._scale(trainer.model, layer, fade["units"], left / (left + 1))
            else:
                finished.append(layer)
        for layer in finished:
            units = self.fading.pop(layer)["units"]
            report = resize.reinit(trainer.model, layer, units, example_inputs=self.example_inputs,
                                   optimizer=trainer.optimizer)
            self._mutate(trainer.model, layer, units)
            self.log(trainer, "apoptosis", layer, units, report.params_before, report.params_after)
        self.resume_scorer(trainer, bool(finished))

    def outgoing_slices(self, model: nn.Module, layer: str) -> list[tuple[nn.Module, torch.Tensor]]:
        """(consumer, positions of each unit in the consumer's input), per consumer of layer."""
        shapes = tuple(p.shape for p in model.parameters())
        if shapes != self._shapes:  # another strategy may have moved the slices
            self._slices, self._shapes = {}, shapes
        if layer not in self._slices:
            modules = dict(model.named_modules())
            group = resize.dependencies(model, self.example_inputs).group_of(layer)
            self._slices[layer] = [
                (modules[m.module], m.offset + m.block * torch.arange(group.units)[:, None] + torch.arange(m.block))
                for m in group.members if m.role == "in"]
        return self._slices[layer]

    @torch.no_grad()
    def _scale(self, model: nn.Module, layer: str, units: list[int], factor: float) -> None:
        for consumer, positions in self.outgoing_slices(model, layer):
            where = positions[units].flatten()
            for slot in slots(consumer, "in"):
                if slot.kind == "outgoing":
                    weight = getattr(consumer, slot.attr)
                    index = where.to(weight.device)
                    weight.index_copy_(slot.dim, index, weight.index_select(slot.dim, index) * factor)

    @torch.no_grad()
    def _mutate(self, model: nn.Module, layer: str, units: list[int]) -> None:
        if self.mutation_strength == 0:
            return
        module = dict(model.named_modules())[layer]
        for slot in slots(module, "out"):
            weight = getattr(module, slot.attr)
            if not isinstance(weight, nn.Parameter):
                continue  # running statistics are not weights
            index = torch.tensor(units, device=weight.device)
            rows = weight.index_select(slot.dim, index)
            scale = rows.abs().flatten(1).mean(1) if rows.dim() > 1 else rows.abs()
            noise = torch.randn_like(rows) * (self.mutation_strength * scale).reshape(-1, *[1] * (rows.dim() - 1))
            weight.index_copy_(slot.dim, index, rows + noise)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "fading": {k: dict(v) for k, v in self.fading.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.fading = {k: dict(v) for k, v in state["fading"].items()}
