"""``TrainConfig``: every setting of a ``Trainer``, checked when it is made."""

from __future__ import annotations

import dataclasses
from pathlib import Path

PRECISIONS = ("32", "bf16-mixed", "16-mixed")


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """Stop when ``monitor`` (a key of the epoch metrics) has not improved by more than
    ``min_delta`` for ``patience`` epochs in a row; ``mode`` "min" for losses, "max" for accuracies."""

    patience: int = 5
    min_delta: float = 0.0
    monitor: str = "val_loss"
    mode: str = "min"

    def __post_init__(self) -> None:
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"early_stopping.patience must be an integer >= 1, got {self.patience!r}")
        if not self.min_delta >= 0:
            raise ValueError(f"early_stopping.min_delta must be >= 0, got {self.min_delta!r}")
        if self.mode not in ("min", "max"):
            raise ValueError(f"early_stopping.mode must be 'min' or 'max', got {self.mode!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run.

    - ``epochs``: total epochs (a resumed run continues up to this number).
    - ``batch_size``, ``shuffle``, ``num_workers``: used when the trainer batches tensors or
      builds the DataLoader of a Dataset itself; ignored for a DataLoader given to it.
      ``num_workers=None``: 0 on CPU, min(4, CPU count) with CUDA.
    - ``precision``: "32", "bf16-mixed" (autocast to bfloat16, also on CPU) or "16-mixed"
      (autocast to float16 with a GradScaler; CUDA or CPU).
    - ``grad_accumulation``: micro-batches per optimizer step; ``clip_grad_norm``: max total
      gradient 2-norm, or None.
    - ``ema_decay``: keep an exponential moving average of the weights (validation then uses it).
    - ``scheduler_interval``: step the LR scheduler after each optimizer "step" or each "epoch".
    - ``log_every``: optimizer steps per metrics row; ``checkpoint_every``: optimizer steps per
      extra mid-epoch checkpoint (one is always written at each epoch end when ``out_dir`` is set).
    - ``progress``: tqdm bars; None shows them only when stderr is a terminal.
    - ``tensorboard``: also write TensorBoard scalars; None does when tensorboard is installed.
    """

    epochs: int = 10
    batch_size: int = 64
    shuffle: bool = True
    num_workers: int | None = None
    precision: str = "32"
    grad_accumulation: int = 1
    clip_grad_norm: float | None = None
    channels_last: bool = False
    compile: bool | str = False  # True, or the name of a torch.compile backend
    ema_decay: float | None = None
    scheduler_interval: str = "step"
    log_every: int = 50
    checkpoint_every: int | None = None
    out_dir: str | Path | None = None
    early_stopping: EarlyStopping | None = None
    seed: int = 0
    device: str | None = None  # None: CUDA when available, else CPU
    progress: bool | None = None
    tensorboard: bool | None = None

    def __post_init__(self) -> None:
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        _positive_int("grad_accumulation", self.grad_accumulation)
        _positive_int("log_every", self.log_every)
        if self.checkpoint_every is not None:
            _positive_int("checkpoint_every", self.checkpoint_every)
        if self.num_workers is not None and (not isinstance(self.num_workers, int) or self.num_workers < 0):
            raise ValueError(f"num_workers must be None or an integer >= 0, got {self.num_workers!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be None or > 0, got {self.clip_grad_norm!r}")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be None or in [0, 1), got {self.ema_decay!r}")
        if self.scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got {self.scheduler_interval!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.early_stopping is not None and not isinstance(self.early_stopping, EarlyStopping):
            raise ValueError(f"early_stopping must be None or an EarlyStopping, got {self.early_stopping!r}")
        if not isinstance(self.compile, (bool, str)):
            raise ValueError(f"compile must be a bool or a torch.compile backend name, got {self.compile!r}")


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
