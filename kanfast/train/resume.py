"""A ``Trainer``'s complete state as a checkpoint payload, and its restoration on ``resume=``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import torch

from .. import resize
from ..resize.optim import replace_parameters
from . import checkpoint

if TYPE_CHECKING:
    from .trainer import Trainer


def training_state(trainer: Trainer) -> dict[str, Any]:
    """Everything a resumed run needs; live tensors (see ``checkpoint.snapshot`` to copy them)."""
    shaped = resize.state_dict_with_shapes(trainer.model)  # with each module's sizes: evolved models resume
    return {
        "model": shaped["state_dict"], "model_sizes": shaped["sizes"],
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        "ema": trainer.ema.state_dict() if trainer.ema is not None else None,
        "rng": checkpoint.rng_state(),
        "step": trainer.step, "epoch": trainer.epoch, "batch_in_epoch": trainer._batch_in_epoch,
        "epoch_rng_state": trainer.train_batches.epoch_rng_state if trainer._batch_in_epoch else None,
        # one host synchronisation for the unlogged step losses
        "window": torch.stack(trainer._window).tolist() if trainer._window else [],
        "epoch_loss": list(trainer._epoch_loss),
        "should_stop": trainer.should_stop,
        "callbacks": [callback.state_dict() for callback in trainer.callbacks],
        "early_stopping": trainer.early_stopper.state_dict() if trainer.early_stopper is not None else None,
        # JSON text: events and metrics may hold any JSON value, weights_only loads any string
        "events": json.dumps(trainer.events), "history": json.dumps(trainer.history),
    }


def restore(trainer: Trainer, state: dict[str, Any]) -> None:
    """Puts ``state`` (a loaded checkpoint) into ``trainer``; the RNGs are set when ``fit`` starts."""
    before = dict(trainer.model.named_parameters())
    resize.load_resized(trainer.model, {"format": resize.CHECKPOINT_FORMAT, "state_dict": state["model"],
                                        "sizes": state["model_sizes"]})
    # load_resized gives resized tensors new Parameter objects: the optimizer must hold those
    renamed = {before[n]: p for n, p in trainer.model.named_parameters() if n in before and before[n] is not p}
    if renamed:
        replace_parameters(trainer.optimizer, renamed, {})  # fresh optimizer: no state to carry
        trainer.recompile()  # a DDP wrapper holds the old parameters
        trainer.rebuild_ema()  # the EMA copy was made at the built shapes
    trainer.optimizer.load_state_dict(state["optimizer"])
    for name in ("scheduler", "scaler", "ema", "early_stopper"):
        own, saved = getattr(trainer, name), state["early_stopping" if name == "early_stopper" else name]
        if (own is None) != (saved is None):
            raise ValueError(f"resume: the checkpoint {'has' if saved is not None else 'has no'} {name} "
                             f"state but this trainer {'has none' if own is None else 'has one'}")
        if own is not None:
            own.load_state_dict(saved)
    if len(state["callbacks"]) != len(trainer.callbacks):
        raise ValueError(f"resume: the checkpoint holds the state of {len(state['callbacks'])} callbacks, "
                         f"this trainer has {len(trainer.callbacks)}")
    for callback, saved in zip(trainer.callbacks, state["callbacks"]):
        callback.load_state_dict(saved)
    trainer.step, trainer.epoch, trainer._batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
    trainer._resume_epoch_rng = state["epoch_rng_state"]
    trainer._window = [torch.tensor(loss, device=trainer.device) for loss in state["window"]]
    trainer._epoch_loss = list(state["epoch_loss"])
    trainer.should_stop = state["should_stop"]
    trainer.events, trainer.history = json.loads(state["events"]), json.loads(state["history"])
    trainer._pending_rng = state["rng"]
