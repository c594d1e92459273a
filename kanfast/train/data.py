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
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler


def to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device, non_blocking) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    return batch


class TensorBatches:
    """(x, y) tensors held on the device and sliced by index: no DataLoader, no per-batch copy.

    With ``world_size`` > 1, rank ``rank`` takes every ``world_size``-th sample of the epoch's
    order (the same on every rank: it depends only on seed and epoch). ``pad``: the order is
    first wrapped around to a multiple of ``world_size``, as DistributedSampler does, so every
    rank takes the same number of steps; without it each sample is seen once (evaluation).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, shuffle: bool, seed: int,
                 device: torch.device, rank: int = 0, world_size: int = 1, pad: bool = True) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch_rng_state = None  # the order never depends on the global RNG

    def _samples(self) -> int:
        n = len(self.x)
        if self.world_size == 1:
            return n
        return -(-n // self.world_size) if self.pad else len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        return -(-self._samples() // self.batch_size)

    def epoch(self, epoch: int, skip: int = 0, epoch_rng_state: torch.Tensor | None = None,
              ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        if not self.shuffle and self.world_size == 1:
            for start in range(skip * self.batch_size, n, self.batch_size):
                yield self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]
            return
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(n, generator=generator).to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        if self.world_size > 1:
            if self.pad and n:
                total = self._samples() * self.world_size
                order = order.repeat(-(-total // n))[:total]
            order = order[self.rank::self.world_size]
        for idx in order.split(self.batch_size)[skip:]:
            yield self.x[idx], self.y[idx]


def fresh_loader(loader: DataLoader) -> DataLoader:
    """A loader over ``loader``'s data with its batching and collation, in order and without
    workers: for a side pass while ``loader`` itself may be mid-epoch."""
    if loader.batch_size is None and loader.batch_sampler is not None:  # a user's batch sampler
        return DataLoader(loader.dataset, batch_sampler=loader.batch_sampler, collate_fn=loader.collate_fn)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, collate_fn=loader.collate_fn)


class LoaderBatches:
    """A DataLoader's batches moved to the device.

    With ``generator`` (a loader the trainer built) the order is reseeded from (seed, epoch);
    with ``distributed_sampler`` (the same, under DDP) that sampler is told the epoch.
    A user's loader draws its shuffling seed from torch's global RNG (on its first batch), so
    the state of that RNG at the start of the epoch is kept: a resumed run restores it to
    rebuild the same order, skips the trained batches, then puts back the checkpoint's RNG state.
    """

    def __init__(self, loader: DataLoader, device: torch.device, *, generator: torch.Generator | None = None,
                 seed: int = 0, distributed_sampler: DistributedSampler | None = None) -> None:
        self.loader, self.device, self.generator, self.seed = loader, device, generator, seed
        self.distributed_sampler = distributed_sampler
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
        if self.distributed_sampler is not None:
            self.distributed_sampler.set_epoch(epoch)  # its order is seed + epoch
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
                 num_workers: int | None, rank: int = 0, world_size: int = 1, pad: bool = True) -> LoaderBatches:
    """A DataLoader with settings chosen for the device: pinned memory (and non-blocking copies)
    only with CUDA, persistent workers whenever there are workers, no workers by default on CPU.
    With ``world_size`` > 1 it loads rank ``rank``'s shard (see TensorBatches for ``pad``)."""
    if num_workers is None:
        num_workers = 0 if device.type == "cpu" else min(4, os.cpu_count() or 1)
    generator = distributed_sampler = None
    if world_size > 1 and pad:
        sampler = distributed_sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                                           shuffle=shuffle, seed=seed)
    elif world_size > 1:
        if shuffle:
            raise ValueError("an unpadded shard is for evaluation, which does not shuffle")
        sampler = range(rank, len(dataset), world_size)
    elif shuffle:
        generator = torch.Generator()
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=num_workers > 0)
    return LoaderBatches(loader, device, generator=generator, seed=seed, distributed_sampler=distributed_sampler)


def make_batches(data: Any, name: str, *, batch_size: int, shuffle: bool, seed: int, device: torch.device,
                 num_workers: int | None, rank: int = 0, world_size: int = 1,
                 pad: bool = True) -> TensorBatches | LoaderBatches:
    """The batches of ``data``; a DataLoader is used as it is (under DDP its sampler must shard)."""
    if isinstance(data, DataLoader):
        return LoaderBatches(data, device)
    shard = dict(rank=rank, world_size=world_size, pad=pad)
    if (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data)):
        return TensorBatches(data[0], data[1], batch_size=batch_size, shuffle=shuffle, seed=seed, device=device,
                             **shard)
    if isinstance(data, Dataset):
        return build_loader(data, batch_size=batch_size, shuffle=shuffle, seed=seed, device=device,
                            num_workers=num_workers, **shard)
    raise TypeError(f"{name} must be a DataLoader, a Dataset or a tuple of tensors (x, y), "
                    f"got {type(data).__name__}")
