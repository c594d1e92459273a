"""Sweeps: a grid of evolution-strategy configs trained on one task, with repeats over seeds,
run in parallel through the search's executors, resumable, summarised by final validation
loss (``python -m kanfast.sweep CONFIG`` or ``run(config, out=...)``)."""

from .config import load as load_config
from .runner import SweepResult, run

__all__ = ["SweepResult", "load_config", "run"]
