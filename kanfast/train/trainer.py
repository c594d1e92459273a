"""``Trainer``: the training loop for classification, regression or any loss."""

from __future__ import annotations

import contextlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.modules.batchnorm import _BatchNorm

from . import checkpoint, resume as resume_state
from .callbacks import Callback, EarlyStopper
from .config import TrainConfig
from .bn import recalibrate_bn
from .data import LoaderBatches, fresh_loader, make_batches
from .distributed import init_distributed
from .ema import ModelEMA
from .metrics_log import MetricsLog

_AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class Trainer:
    """Trains ``model`` on ``train_data`` with ``optimizer`` (an Optimizer, or a factory called
    with the model's parameters once the model is on the device) and ``loss_fn(output, target)``.

    Data (train and ``val_data``): a DataLoader, a Dataset (batched by the trainer), or a pair
    of tensors ``(x, y)`` kept on the device and sliced by index. Batches are ``(inputs, targets)``.
    ``scheduler``: an LR scheduler or a factory called with the optimizer. ``resume``: a
    checkpoint file or run directory; everything is restored and training continues from there.

    Validation runs after every epoch: ``val_loss`` (sample-weighted mean of ``loss_fn``, which
    must therefore reduce by mean) and, when targets are integers and outputs have one more
    dimension (class scores), ``val_accuracy``. Global RNGs (python, numpy, torch) are seeded
    from ``config.seed`` when ``fit`` starts, or restored from the checkpoint on resume.

    Under ``torchrun`` (``WORLD_SIZE`` > 1, or torch.distributed already initialised) it trains
    with DistributedDataParallel (README, "Multi-process training").

    Checkpoints written by the trainer itself (each epoch end, every ``checkpoint_every`` steps)
    are snapshotted to CPU and written by a background thread while training goes on; ``fit``
    waits for the last one before it returns (or re-raises).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | Callable[..., torch.optim.Optimizer],
                 loss_fn: Callable[[Any, Any], torch.Tensor], train_data: Any, val_data: Any = None,
                 config: TrainConfig | None = None, *, scheduler: Any = None, callbacks: Sequence[Callback] = (),
                 resume: str | Path | None = None) -> None:
        self.config = config = config if config is not None else TrainConfig()
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.rank, self.world_size, self.device = init_distributed(self.device)
        self.distributed = self.world_size > 1
        self.is_main = self.rank == 0  # the rank that writes out_dir and shows progress
        if config.precision != "32" and not torch.amp.is_autocast_available(self.device.type):
            raise ValueError(f"precision={config.precision!r} needs autocast, which device {self.device} "
                             f"does not have: use precision='32' there")
        self.model = model.to(self.device)
        if config.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if isinstance(optimizer, torch.optim.Optimizer):
            self.optimizer = optimizer
        elif callable(optimizer):
            self.optimizer = optimizer(self.model.parameters())
        else:
            raise TypeError(f"optimizer must be an Optimizer or a factory of one, got {type(optimizer).__name__}")
        self.scheduler = scheduler(self.optimizer) if callable(scheduler) and not hasattr(scheduler, "step") \
            else scheduler
        self.loss_fn = loss_fn
        self.callbacks = list(callbacks)
        # float16's narrow range needs loss scaling; bfloat16 has float32's range and needs none
        self.scaler = torch.amp.GradScaler(self.device.type) if config.precision == "16-mixed" else None
        self._ddp: DistributedDataParallel | None = None
        self._forward, self._train_forward = self._build_forwards()
        # after DDP's constructor: every rank averages from rank 0's weights
        self.ema = ModelEMA(self.model, config.ema_decay) if config.ema_decay is not None else None
        loader_args = dict(batch_size=config.batch_size, seed=config.seed, device=self.device,
                           num_workers=config.num_workers, rank=self.rank, world_size=self.world_size)
        self.train_batches = make_batches(train_data, "train_data", shuffle=config.shuffle, **loader_args)
        # validation shards are not padded: every sample counts once in the all-reduced metrics
        self.val_batches = None if val_data is None else make_batches(val_data, "val_data", shuffle=False,
                                                                      pad=False, **loader_args)
        self.early_stopper = EarlyStopper(config.early_stopping) if config.early_stopping else None
        self.progress = self.is_main and (sys.stderr.isatty() if config.progress is None else config.progress)
        self.out_dir = Path(config.out_dir) if config.out_dir is not None else None

        self.step = 0  # optimizer steps taken
        self.epoch = 0  # epochs completed
        self.should_stop = False
        self.events: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []  # the epoch metrics
        self._batch_in_epoch = 0  # micro-batches of the current epoch already trained on
        self._resume_epoch_rng: torch.Tensor | None = None
        self._window: list[torch.Tensor] = []  # step losses not yet logged, on the device
        self._epoch_loss = [0.0, 0]  # sum and count of the logged step losses of this epoch
        self._pending_rng: dict[str, Any] | None = None
        self._epoch_start = 0.0
        self._checkpoints = checkpoint.CheckpointWriter()
        if resume is not None:
            resume_state.restore(self, checkpoint.load(resume))
        self._log = None if self.out_dir is None or not self.is_main else MetricsLog(
            self.out_dir, tensorboard=config.tensorboard, resume_step=self.step if resume is not None else None)

    # ------------------------------------------------------------------ public

    def fit(self) -> list[dict[str, Any]]:
        """Trains up to ``config.epochs`` epochs (or an early stop); returns every epoch's metrics."""
        if self._pending_rng is not None:
            checkpoint.set_rng_state(self._pending_rng)
            self._pending_rng = None
        elif self.step == 0 and self._batch_in_epoch == 0:
            random.seed(self.config.seed)
            np.random.seed(self.config.seed)
            torch.manual_seed(self.config.seed)
        try:
            while self.epoch < self.config.epochs and not self.should_stop:
                self._train_epoch()
                self._end_epoch()
            self._finish_writes()
            if self.distributed:
                dist.barrier()  # every rank returns once rank 0's files are written
        except BaseException:
            # the files up to the failure still get written; the training error is the one raised
            with contextlib.suppress(Exception):
                self._finish_writes()
            raise
        return self.history

    @torch.no_grad()
    def evaluate(self, data: Any = None) -> dict[str, float]:
        """``val_loss`` (and ``val_accuracy`` for classification) on ``data`` or the validation data,
        with the EMA weights when there are, in eval mode and under the training autocast.
        Distributed: each rank evaluates its shard and every rank returns the metrics of all."""
        if data is None and self.val_batches is None:
            raise ValueError("evaluate() needs data: the trainer was made without val_data")
        batches = self.val_batches if data is None else make_batches(
            data, "data", batch_size=self.config.batch_size, shuffle=False, seed=0, device=self.device,
            num_workers=self.config.num_workers, rank=self.rank, world_size=self.world_size, pad=False)
        model = self.ema.module if self.ema is not None else self.model
        forward = model if self.ema is not None else self._forward
        was_training = model.training
        model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        count, classification = 0, None
        try:
            for x, y in batches.epoch(0):
                with self._autocast():
                    output = forward(self._inputs(x))
                    loss = self.loss_fn(output, y)
                if classification is None:
                    classification = _is_classification(output, y)
                loss_sum += loss.detach().double() * len(y)
                if classification:
                    correct += (output.argmax(1) == y).sum()
                count += len(y)
        finally:
            model.train(was_training)
        if self.distributed:
            # one collective; a rank whose shard is empty learns from the others what the task is
            totals = torch.stack([loss_sum, correct.double(), loss_sum.new_tensor(count),
                                  loss_sum.new_tensor(float(bool(classification)))])
            dist.all_reduce(totals)
            loss_sum, correct, count, classification = totals[0], totals[1], int(totals[2]), bool(totals[3])
        if count == 0:
            raise ValueError("the validation data is empty")
        metrics = {"val_loss": loss_sum.item() / count}
        if classification:
            metrics["val_accuracy"] = correct.item() / count
        return metrics

    def log_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Records a structural event (in ``events``, ``out_dir/events.jsonl`` and checkpoints),
        stamped with the current step and epoch; values must be JSON-serialisable."""
        record = {"step": self.step, "epoch": self.epoch, "time": time.time(), **event}
        try:
            json.dumps(record)
        except TypeError as error:
            raise TypeError(f"event must hold only JSON-serialisable values: {error}") from None
        self.events.append(record)
        if self._log is not None:
            self._log.event(record)
        return record

    def update_event(self, index: int, **fields: Any) -> None:
        """Adds ``fields`` to event ``index`` of ``events``, in events.jsonl too (rewritten)."""
        self.events[index].update(fields)
        if self._log is not None:
            self._log.rewrite_events(self.events)

    def recompile(self) -> None:
        """Rebuilds the forward after changing the model's structure: compiles it afresh
        (``config.compile``) and, when distributed, wraps it in a new DDP, whose constructor
        broadcasts rank 0's parameters and buffers (a collective: call it on every rank)."""
        self._forward, self._train_forward = self._build_forwards()

    def rebuild_ema(self) -> None:
        """Restarts the EMA from the current weights: call it after changing the model's structure
        (the old average has the old shapes). Does nothing without ``ema_decay``."""
        if self.ema is not None:
            self.ema = ModelEMA(self.model, self.config.ema_decay)

    def structure_changed(self, bn_batches: int | None = 8) -> None:
        """Brings everything that depends on the model's structure up to date after a resize:
        BatchNorm statistics recalibrated on up to ``bn_batches`` training batches (under the
        evaluation autocast; None: all), the forward rebuilt (``recompile``: when distributed,
        every rank then holds rank 0's parameters and buffers, which settles any randomness of
        the change), then the EMA rebuilt from those weights. Distributed: call it on every rank."""
        if any(isinstance(m, _BatchNorm) and m.track_running_stats for m in self.model.modules()):
            # a loader of its own: the epoch in progress may still be iterating the training loader
            # (with persistent workers a second iter() would restart it)
            data = fresh_loader(self.train_batches.loader) if isinstance(self.train_batches, LoaderBatches) else (
                self.train_batches.x, self.train_batches.y)
            recalibrate_bn(self.model, data, max_batches=bn_batches, batch_size=self.config.batch_size,
                           autocast=_AUTOCAST_DTYPES.get(self.config.precision))
        self.recompile()
        self.rebuild_ema()

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Writes the checkpoint atomically, by default to ``out_dir/checkpoint.pt``, and returns
        once it is on disk. Distributed: only rank 0 writes (the ranks hold the same state); the
        others just return the path."""
        path = self._submit_checkpoint(path)
        self._checkpoints.wait()
        return path

    # ------------------------------------------------------------------ the loop

    def _train_epoch(self) -> None:
        config, accumulation = self.config, self.config.grad_accumulation
        self._epoch_start = time.perf_counter()
        self.model.train()
        skip, total = self._batch_in_epoch, len(self.train_batches)
        batches = self.train_batches.epoch(self.epoch, skip, self._resume_epoch_rng)
        self._resume_epoch_rng = None
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(batches, total=None if total is None else total - skip, leave=False,
                       desc=f"epoch {self.epoch + 1}/{config.epochs}")
        group, pending, group_loss = accumulation, 0, None
        for i, (x, y) in enumerate(bar if bar is not None else batches, start=skip):
            if pending == 0:
                # the last group of an epoch may be short: average over the micro-batches it has
                group = accumulation if total is None else min(accumulation, total - i)
            # DDP averages gradients over the ranks once per optimizer step, not per micro-batch
            # (unless the epoch's length is unknown: then a group may end without a sync)
            no_sync = self._ddp is not None and pending + 1 < group and total is not None
            with self._ddp.no_sync() if no_sync else contextlib.nullcontext():
                with self._autocast():
                    loss = self.loss_fn(self._train_forward(self._inputs(x)), y)
                if group > 1:  # skipped otherwise: an extra autograd node on every step for nothing
                    loss = loss / group
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            group_loss = loss.detach() if group_loss is None else group_loss + loss.detach()
            pending += 1
            if pending == group:
                self._batch_in_epoch = i + 1
                self._optimizer_step(group_loss, bar)
                pending, group_loss = 0, None
        if pending:  # an iterable dataset of unknown length ended inside a group
            self._optimizer_step(group_loss, bar)
        if bar is not None:
            bar.close()

    def _optimizer_step(self, loss: torch.Tensor, bar) -> None:
        config = self.config
        grad_norm = None
        if config.clip_grad_norm is not None:
            if self.scaler is not None:  # clip the true gradients, not the scaled ones
                self.scaler.unscale_(self.optimizer)
            grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), config.clip_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and config.scheduler_interval == "step":
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        self._window.append(loss)
        if self.step % config.log_every == 0:
            # the only host synchronisation of the step, once per log_every steps
            row = {"kind": "step", "epoch": self.epoch + 1, "step": self.step, "loss": self._flush_window(),
                   "lr": self.optimizer.param_groups[0]["lr"]}
            if grad_norm is not None:
                row["grad_norm"] = grad_norm.item()
            if self._log is not None:
                self._log.write(row)
            if bar is not None:
                bar.set_postfix(loss=f"{row['loss']:.4g}", refresh=False)
        for callback in self.callbacks:
            callback.on_step_end(self, self.step)
        # the epoch's last step is checkpointed by _end_epoch, after its epoch row and events
        if config.checkpoint_every is not None and self.step % config.checkpoint_every == 0 \
                and self._log is not None and not self._epoch_ends_here():
            self._submit_checkpoint()

    def _epoch_ends_here(self) -> bool:
        total = len(self.train_batches)  # None: a loader of unknown length
        return total is not None and self._batch_in_epoch >= total

    def _end_epoch(self) -> None:
        if self._window:
            self._flush_window()
        total, count = self._epoch_loss
        self.epoch += 1
        self._batch_in_epoch, self._epoch_loss = 0, [0.0, 0]
        if self.scheduler is not None and self.config.scheduler_interval == "epoch":
            self.scheduler.step()
        metrics: dict[str, Any] = {"kind": "epoch", "epoch": self.epoch, "step": self.step,
                                   "train_loss": total / count if count else float("nan"),
                                   "lr": self.optimizer.param_groups[0]["lr"]}
        if self.val_batches is not None:
            metrics.update(self.evaluate())
        metrics["seconds"] = time.perf_counter() - self._epoch_start
        for callback in self.callbacks:
            callback.on_epoch_end(self, self.epoch, metrics)
        if self.early_stopper is not None and self.early_stopper.update(self.epoch, metrics):
            self.should_stop = True
        self.history.append(metrics)
        if self._log is not None:
            self._log.write(metrics)
            self._submit_checkpoint()

    def _flush_window(self) -> float:
        losses = torch.stack(self._window)
        if self.distributed:  # every rank logs the mean over the ranks
            dist.all_reduce(losses)
            losses /= self.world_size
        losses = losses.tolist()
        self._window = []
        self._epoch_loss = [self._epoch_loss[0] + sum(losses), self._epoch_loss[1] + len(losses)]
        return sum(losses) / len(losses)

    # ------------------------------------------------------------------ files

    def _submit_checkpoint(self, path: str | Path | None = None) -> Path:
        """Starts writing a checkpoint in the background (after the previous one is done)."""
        if path is None:
            if self.out_dir is None:
                raise ValueError("save_checkpoint() needs a path: config.out_dir is not set")
            path = self.out_dir / checkpoint.FILENAME
        path = Path(path)
        if not self.is_main:
            return path
        if self._log is not None:
            self._log.flush()  # the metric rows up to this step are on disk before the checkpoint is
        path.parent.mkdir(parents=True, exist_ok=True)
        self._checkpoints.submit(path, resume_state.training_state(self))
        return path

    def _finish_writes(self) -> None:
        if self._log is not None:
            self._log.flush()
        self._checkpoints.wait()

    # ------------------------------------------------------------------ helpers

    def _autocast(self):
        dtype = _AUTOCAST_DTYPES.get(self.config.precision)
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    def _inputs(self, x):
        if self.config.channels_last and isinstance(x, torch.Tensor) and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _build_forwards(self) -> tuple[Callable, Callable]:
        """(evaluation forward, training forward): the model, compiled when asked; training goes
        through DDP when distributed (evaluation does not: its shards differ in length)."""
        forward = self._compiled(self.model)
        if not self.distributed:
            return forward, forward
        # a new wrapper after every change: DDP's gradient buckets hold the parameters it was made with
        self._ddp = DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return forward, self._compiled(self._ddp)

    def _compiled(self, module: nn.Module) -> Callable:
        compile_with = self.config.compile
        if compile_with is False:
            return module
        return torch.compile(module, **({} if compile_with is True else {"backend": compile_with}))


def _is_classification(output: Any, target: Any) -> bool:
    return (isinstance(output, torch.Tensor) and isinstance(target, torch.Tensor)
            and not target.dtype.is_floating_point and not target.dtype.is_complex
            and output.dim() == target.dim() + 1)
