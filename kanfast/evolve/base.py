"""``Strategy``: what every evolution strategy shares — the layers it may change, a trigger, a
NeuronScorer, the event log and the clean-up after a structural change."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .. import resize
from ..scoring import CRITERIA, NeuronScorer, select_weakest
from ..scoring.layers import why_unsupported
from ..train import Callback, Trainer
from .triggers import Every, Trigger


def check_rate(name: str, value, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (0 <= value if allow_zero else 0 < value)
    if not ok or value >= 1:
        raise ValueError(f"{name} must be a fraction in {'[0' if allow_zero else '(0'}, 1), got {value!r}")
    return float(value)


def check_init(init: str) -> str:
    if init not in ("net2net", "zeros"):
        raise ValueError(f"init must be 'net2net' or 'zeros' (both keep the function), got {init!r}")
    return init


class Strategy(Callback):
    """Base of the strategies. ``layers``: names of the layers it may change (default: every
    scoreable layer producing a resizable group, i.e. every hidden Linear / Conv / KAN layer
    whose units do not reach the model output); checked against the model at the first step.
    ``example_inputs``: a batch of inputs for the tracer. ``trigger``: a Trigger, or None for
    ``Every(interval)`` steps. ``criterion``: the NeuronScorer criterion ranking units (weakest
    first). ``monitor``: the epoch metric recorded before/after each event. ``bn_batches``:
    training batches used to recalibrate BatchNorm statistics after a change.

    Each event goes through ``trainer.log_event`` (so into ``trainer.events``, events.jsonl and
    checkpoints) with: step, epoch, strategy, kind, layer, units (indices), params_before,
    params_after, monitor, metric_before (the last epoch's value, None before the first) and
    metric_after, filled in at the next epoch end (``trainer.update_event``).

    Under DDP every rank runs the strategy: the scorer's statistics are all-reduced before each
    decision, so every rank takes the same one, and ``trainer.structure_changed()`` then gives
    every rank rank 0's weights (new units may start from random values).
    """

    def __init__(self, layers: list[str] | None = None, *, example_inputs: Any = None,
                 trigger: Trigger | None = None, interval: int | None = None, criterion: str = "mean_abs",
                 monitor: str = "val_loss", bn_batches: int = 8) -> None:
        if layers is not None and (isinstance(layers, str) or not layers
                                   or not all(isinstance(n, str) for n in layers)):
            raise ValueError(f"layers must be None or a non-empty list of module names, got {layers!r}")
        if trigger is not None and interval is not None:
            raise ValueError("give either trigger or interval, not both")
        if trigger is not None and not isinstance(trigger, Trigger):
            raise ValueError(f"trigger must be a kanfast.evolve Trigger, got {type(trigger).__name__}")
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
        if isinstance(bn_batches, bool) or not isinstance(bn_batches, int) or bn_batches < 1:
            raise ValueError(f"bn_batches must be an integer >= 1, got {bn_batches!r}")
        self.trigger = trigger if trigger is not None else Every(500 if interval is None else interval)
        self.requested_layers = None if layers is None else list(layers)
        self.example_inputs, self.criterion, self.monitor, self.bn_batches = example_inputs, criterion, monitor, bn_batches
        self.layers: list[str] = []  # resolved at the first step
        self._scorer: NeuronScorer | None = None
        self._due = False  # fired before the scorer had seen a batch: act at the next step
        self._awaiting: list[int] = []  # indices in trainer.events waiting for metric_after
        self._last_metric: float | None = None
        self._synced = False  # the scorer holds every rank's statistics of the data seen so far

    # ------------------------------------------------------------------ callback hooks
    def on_step_end(self, trainer: Trainer, step: int) -> None:
        self._synced = False  # the scorer has seen this rank's batch since
        self._bind(trainer)
        self.advance(trainer)
        if self.trigger.at_step(step) or self._due:
            self._act(trainer)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        self._synced = False  # and the validation batches
        self._bind(trainer)
        value = metrics.get(self.monitor)
        value = None if value is None else float(value)
        for i in self._awaiting:
            trainer.update_event(i, metric_after=value)
        self._awaiting = []
        self._last_metric = value
        entropy = None
        if self.trigger.needs_entropy:
            self._sync_scorer(trainer)
            layer_entropy = self._scorer.layer_entropy()
            entropy = math.fsum(layer_entropy.values()) / len(layer_entropy) if layer_entropy else math.nan
        fired = self.trigger.at_epoch(epoch, metrics, entropy)
        if fired or self._due:
            self._act(trainer)
        if self.trigger.needs_entropy:
            self._scorer.reset()  # the next epoch's entropy covers its own batches

    def state_dict(self) -> dict[str, Any]:
        return {"due": self._due, "awaiting": list(self._awaiting), "last_metric": self._last_metric,
                "trigger": self.trigger.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._due, self._awaiting = state["due"], list(state["awaiting"])
        self._last_metric = state["last_metric"]
        self.trigger.load_state_dict(state["trigger"])

    # ------------------------------------------------------------------ for subclasses
    def check_layers(self, model: nn.Module, widths: dict[str, int]) -> None:
        """Checks the strategy's settings against the layers' current widths."""

    needs_scores = True  # False: the strategy acts on widths alone

    def eligible(self) -> list[str]:
        """The layers the strategy may change now."""
        return self.layers

    def advance(self, trainer: Trainer) -> None:
        """Work done after every optimizer step (a fade in progress)."""

    def fire(self, trainer: Trainer, scores: dict[str, torch.Tensor]) -> bool:
        """The strategy's action on the eligible layers, given their scores; True when the
        structure or the weights changed."""
        raise NotImplementedError

    def weakest(self, scores: dict[str, torch.Tensor], layer: str, rate: float) -> torch.Tensor:
        """The weakest ``rate`` fraction of the layer's units, at least one, never all."""
        s = scores[layer]
        count = max(1, math.floor(rate * s.numel()))
        return select_weakest({layer: s}, count, higher_is_weaker=CRITERIA[self.criterion].higher_is_weaker)[layer]

    def log(self, trainer: Trainer, kind: str, layer: str, units, before: int, after: int, **extra) -> None:
        trainer.log_event({"strategy": type(self).__name__, "kind": kind, "layer": layer,
                           "units": [int(u) for u in units], "params_before": before, "params_after": after,
                           "monitor": self.monitor, "metric_before": self._last_metric, "metric_after": None,
                           **extra})
        self._awaiting.append(len(trainer.events) - 1)

    def pause_scorer(self) -> None:
        """Call before tracing or resizing: the tracer runs the model, whose hooks would score
        the example inputs (and fail once a width changed)."""
        self._scorer.detach()

    def resume_scorer(self, trainer: Trainer, changed: bool) -> None:
        """After ``pause_scorer``; ``changed``: the structure or weights changed, so everything
        depending on them is brought up to date first, with the scorer still off (recalibration
        must not feed it, and the EMA's deepcopy would copy its hooks)."""
        if not changed:
            self._scorer.attach()
            return
        trainer.structure_changed(bn_batches=self.bn_batches)
        self._scorer = self._new_scorer(trainer.model).attach()  # its layers hold the old widths

    # ------------------------------------------------------------------ internals
    def _bind(self, trainer: Trainer) -> None:
        if self._scorer is not None:
            return
        model = trainer.model
        deps = resize.dependencies(model, self.example_inputs)
        modules = dict(model.named_modules())
        if self.requested_layers is None:
            groups = [g for g in deps.groups if g.error is None and why_unsupported(modules[g.producers[0]]) is None]
            if not groups:
                raise ValueError(f"layers: {type(model).__name__} has no resizable hidden layer "
                                 "(every layer's units reach the model output or an untraceable op)")
            self.layers = [g.producers[0] for g in groups]
        else:
            seen: dict[int, str] = {}
            for name in self.requested_layers:
                if name not in modules:
                    raise ValueError(f"layers: {name!r} is not a module of {type(model).__name__}")
                try:
                    group = deps.group_of(name)
                except resize.ResizeError:
                    raise ValueError(f"layers: {name!r} ({type(modules[name]).__name__}) produces no "
                                     "resizable units") from None
                if group.error:
                    raise ValueError(f"layers: {name!r} cannot be resized: {group.error}")
                if why_unsupported(modules[name]) is not None:
                    raise ValueError(f"layers: {name!r} cannot be scored: {why_unsupported(modules[name])}")
                if id(group) in seen:
                    raise ValueError(f"layers: {seen[id(group)]!r} and {name!r} are resized together; name one")
                seen[id(group)] = name
            self.layers = list(self.requested_layers)
        self.check_layers(model, {name: deps.group_of(name).units for name in self.layers})
        self._scorer = self._new_scorer(model).attach()

    def _sync_scorer(self, trainer: Trainer) -> None:
        """Distributed: combines the ranks' statistics (once: combining them again would count
        each rank's share twice), so that every rank computes the same scores."""
        if trainer.distributed and not self._synced:
            self._scorer.all_reduce()
            self._synced = True

    def _new_scorer(self, model: nn.Module) -> NeuronScorer:
        criteria = (self.criterion,) + (("entropy",) if self.trigger.needs_entropy and self.criterion != "entropy"
                                        else ())
        return NeuronScorer(model, self.layers, criteria)

    def _act(self, trainer: Trainer) -> None:
        layers = self.eligible()
        if not layers:
            self._due = False
            return
        self._sync_scorer(trainer)
        all_scores = self._scorer.scores()
        for name in layers:
            if self.criterion not in all_scores[name]:
                raise ValueError(f"criterion: {self.criterion!r} does not apply to layer {name!r} "
                                 f"({type(dict(trainer.model.named_modules())[name]).__name__})")
        scores = {name: all_scores[name][self.criterion] for name in layers}
        if self.needs_scores and any(torch.isnan(s).any() for s in scores.values()):
            # the scorer has seen no batch yet (it starts at the first step end, and a resumed
            # run starts it afresh): decide at the next step instead
            self._due = True
            return
        self._due = False
        self.pause_scorer()
        changed = self.fire(trainer, scores)
        self._scorer.reset()  # the next decision rests on data seen after this one
        self.resume_scorer(trainer, changed)
