"""Batch sources for the trainer: in-memory tensors, a Dataset, or a user's DataLoader.

Each yields the batches of one epoch already on the training device, and can skip the batches
a resumed run has already trained on. The order depends only on (seed, epoch) for the sources
the trainer builds, so a resumed run sees exactly the batches the uninterrupted one would.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler


def to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device, non_blocking) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    return batch


class TensorBatches:
    """(x, y) tensors held on the device and sliced by index: no DataLoader, no per-batch copy."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, shuffle: bool, seed: int,
                 device: torch.device) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch_rng_state = None  # the order never depends on the global RNG

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def epoch(self, epoch: int, skip: int = 0, epoch_rng_state: torch.Tensor | None = None,
              ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(len(self.x), generator=generator).to(self.x.device)
            for idx in order.split(self.batch_size)[skip:]:
                yield self.x[idx], self.y[idx]
        else:
            for start in range(skip * self.batch_size, len(self.x), self.batch_size):
                yield self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]


class LoaderBatches:
    """A DataLoader's batches moved to the device.

    With ``generator`` (a loader the trainer built) the order is reseeded from (seed, epoch).
    A user's loader draws its shuffling seed from torch's global RNG (on its first batch), so
    the state of that RNG at the start of the epoch is kept: a resumed run restores it to
    rebuild the same order, skips the trained batches, then puts back the checkpoint's RNG state.
    """

    def __init__(self, loader: DataLoader, device: torch.device, *, generator: torch.Generator | None = None,
                 seed: int = 0) -> None:
        self.loader, self.device, self.generator, self.seed = loader, device, generator, seed
        self.non_blocking = bool(loader.pin_memory) and device.type == "cuda"
        self.epoch_rng_state: torch.Tensor | None = None

    def __len__(self) -> int | None:
        try:
            return len(self.loader)
        except TypeError:  # an IterableDataset without __len__
            return None

    def epoch(self, epoch: int, skip: int = 0, epoch_rng_state: torch.Tensor | None = None) -> Iterator[Any]:
        if self.generator is not None:
            self.generator.manual_seed(self.seed + epoch)
        resume_state = None
        if epoch_rng_state is not None:
            resume_state = torch.get_rng_state()
            torch.set_rng_state(epoch_rng_state)
        self.epoch_rng_state = torch.get_rng_state()
        batches = iter(self.loader)
        # skip before putting the RNG back: a RandomSampler draws its seed on its first batch
        for _ in itertools.islice(batches, skip):
            pass
        if resume_state is not None:
            torch.set_rng_state(resume_state)
        for batch in batches:
            yield to_device(batch, self.device, self.non_blocking)


def build_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, seed: int, device: torch.device,
                 num_workers: int | None) -> LoaderBatches:
    """A DataLoader with settings chosen for the device: pinned memory (and non-blocking copies)
    only with CUDA, persistent workers whenever there are workers, no workers by default on CPU."""
    if num_workers is None:
        num_workers = 0 if device.type == "cpu" else min(4, os.cpu_count() or 1)
    generator = torch.Generator() if shuffle else None
    sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=num_workers > 0)
    return LoaderBatches(loader, device, generator=generator, seed=seed)


def make_batches(data: Any, name: str, *, batch_size: int, shuffle: bool, seed: int, device: torch.device,
                 num_workers: int | None) -> TensorBatches | LoaderBatches:
    if isinstance(data, DataLoader):
        return LoaderBatches(data, device)
    if (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data)):
        return TensorBatches(data[0], data[1], batch_size=batch_size, shuffle=shuffle, seed=seed, device=device)
    if isinstance(data, Dataset):
        return build_loader(data, batch_size=batch_size, shuffle=shuffle, seed=seed, device=device,
                            num_workers=num_workers)
    raise TypeError(f"{name} must be a DataLoader, a Dataset or a tuple of tensors (x, y), "
                    f"got {type(data).__name__}")
