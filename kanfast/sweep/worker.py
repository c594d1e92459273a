"""One sweep run, executed in a worker process: build the task and the strategy, train, measure."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from ..resize.report import parameter_count
from ..train import TrainConfig, Trainer
from .config import build_strategy
from .tasks import build_task


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """The executor's evaluator: ``task`` holds the run (see config.expand), the shared training
    settings, ``out_dir`` and the worker's ``device``; returns the run's measurements."""
    out_dir = Path(task["out_dir"])
    shutil.rmtree(out_dir, ignore_errors=True)  # a rerun must not append to an earlier attempt's files
    torch.manual_seed(task["seed"])
    model, train, val, loss_fn = build_task(task["task"], task["max_samples"])
    strategy = build_strategy(task, example_inputs=train[0][:2])
    params_before = parameter_count(model)
    config = TrainConfig(epochs=task["epochs"], batch_size=task["batch_size"], seed=task["seed"], out_dir=out_dir,
                         device=task.get("device", "cpu"), progress=False, tensorboard=False)
    lr = task["lr"]
    trainer = Trainer(model, lambda params: torch.optim.AdamW(params, lr=lr), loss_fn, train, val, config,
                      callbacks=[] if strategy is None else [strategy])
    trainer.fit()
    final = trainer.history[-1]
    if not torch.isfinite(torch.tensor(final["val_loss"])):
        raise FloatingPointError(f"the validation loss is {final['val_loss']} after epoch {final['epoch']}")
    return {"val_loss": final["val_loss"], "val_accuracy": final.get("val_accuracy"),
            "train_loss": final["train_loss"], "epochs": final["epoch"], "params_before": params_before,
            "params_after": parameter_count(trainer.model), "events": len(trainer.events)}
