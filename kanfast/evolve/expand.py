"""``Expand``: add depth when capacity runs short — an identity-initialised layer inserted by
kanfast.resize.deepen, so training continues from the same function with more parameters."""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from .. import resize
from ..resize.deepen import KINDS
from ..train import Trainer
from .base import Strategy

EVENT_KIND = "deepen"


class Expand(Strategy):
    """At every trigger (e.g. ``Plateau`` on val_loss), inserts one layer right after ``after``
    (default: the last of the strategy's ``layers``) with kanfast.resize.deepen — ``kind`` and
    ``kan_options`` as there — and the trainer's optimizer, which then trains the new
    parameters too; stops after ``max_depth_added`` insertions.

    Events: kind "deepen", layer (``after`` as named before the call), units [] (no unit changes),
    params_before / params_after from the DeepenReport, inserted (the new modules' names),
    renamed (modules that moved, old -> new), deepen_kind and kan_options (what
    ``replay_deepen`` needs). Renamed modules are followed in this strategy's own layer names;
    other strategies in the same trainer keep theirs, so give them layers before ``after``.

    Resume: a checkpoint of a deepened model holds the inserted layers' weights under their
    new names, so it loads only into a model deepened the same way. Build the original model,
    call ``replay_deepen(model, events)`` with the checkpoint's events, then make the Trainer
    with ``resume=``.
    """

    def __init__(self, *, after: str | None = None, kind: str | None = None, max_depth_added: int = 1,
                 kan_options: dict | None = None, interval: int | None = None, **options: Any) -> None:
        if after is not None and (not isinstance(after, str) or not after):
            raise ValueError(f"after must be None or a module name, got {after!r}")
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind must be None or one of {', '.join(KINDS)}, got {kind!r}")
        if isinstance(max_depth_added, bool) or not isinstance(max_depth_added, int) or max_depth_added < 1:
            raise ValueError(f"max_depth_added must be an integer >= 1, got {max_depth_added!r}")
        if kan_options is not None and not isinstance(kan_options, dict):
            raise ValueError(f"kan_options must be None or a dict of KAN layer arguments, got {kan_options!r}")
        self.after, self.kind, self.max_depth_added = after, kind, max_depth_added
        self.kan_options = None if kan_options is None else dict(kan_options)
        self.added = 0
        super().__init__(interval=interval, **options)

    needs_scores = False  # depth is added on the trigger alone

    def check_layers(self, model: nn.Module, widths: dict[str, int]) -> None:
        if self.after is None:
            self.after = self.layers[-1]
        elif self.after not in dict(model.named_modules()):
            raise ValueError(f"after: {self.after!r} is not a module of {type(model).__name__}")

    def eligible(self) -> list[str]:
        return self.layers if self.added < self.max_depth_added else []

    def fire(self, trainer: Trainer, scores: dict[str, torch.Tensor]) -> bool:
        report = resize.deepen(trainer.model, self.after, kind=self.kind, kan_options=self.kan_options,
                               example_inputs=self.example_inputs, optimizer=trainer.optimizer)
        # indexed Sequentials shift their later children: keep following the same modules
        self.layers = [report.renamed.get(name, name) for name in self.layers]
        self.after = report.renamed.get(self.after, self.after)
        self.added += 1
        _order_like_model(trainer.optimizer, trainer.model)
        self.log(trainer, EVENT_KIND, report.layer, [], report.params_before, report.params_after,
                 inserted=list(report.inserted), renamed=dict(report.renamed), deepen_kind=self.kind,
                 kan_options=self.kan_options)
        return True

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "added": self.added, "after": self.after, "layers": list(self.layers)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.added, self.after = state["added"], state["after"]
        if state["layers"]:  # the names in the deepened model, checked against it at the first step
            self.requested_layers = list(state["layers"])


def _order_like_model(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """deepen appends the new parameters to their group; a resumed run builds its optimizer
    from model.parameters(), and optimizer state is matched by position, so keep that order."""
    position = {id(p): i for i, p in enumerate(model.parameters())}
    for group in optimizer.param_groups:
        group["params"].sort(key=lambda p: position.get(id(p), len(position)))


def replay_deepen(model: nn.Module, events: list[dict[str, Any]], *, example_inputs: Any = None) -> nn.Module:
    """Repeats on a freshly built ``model`` the insertions that ``Expand`` logged in ``events``
    (``trainer.events``, or the "events" of a checkpoint, as JSON text or a list), in order, so
    that the checkpoint's weights load into it. Returns the model."""
    if isinstance(events, str):
        events = json.loads(events)
    for event in events:
        if event.get("kind") == EVENT_KIND and event.get("strategy") == Expand.__name__:
            resize.deepen(model, event["layer"], kind=event["deepen_kind"], kan_options=event["kan_options"],
                          example_inputs=example_inputs)
    return model
