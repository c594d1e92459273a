"""``find_batch_size``: the largest training batch that fits in the device's memory."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import torch
from torch import nn

_DEFAULT_AVAILABLE = 1 << 30  # assumed free host memory when it cannot be read: 1 GiB
# Devices searched by trying batches: their allocator raises torch.OutOfMemoryError when full. A
# CPU allocation that fails raises a plain RuntimeError (or the OOM killer ends the process).
_SEARCHED_DEVICES = ("cuda",)
_cache: dict[tuple, tuple[int, int] | int] = {}


def clear_batch_size_cache() -> None:
    _cache.clear()


def available_host_memory() -> int:
    """Free host memory in bytes: psutil, else /proc/meminfo's MemAvailable, else 1 GiB."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return _DEFAULT_AVAILABLE


def find_batch_size(model: nn.Module, sample_input: torch.Tensor, *, device: str | torch.device | None = None,
                    max_batch: int = 4096, safety: float = 0.8, autocast: torch.dtype | None = None,
                    loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    available_bytes: int | None = None) -> int:
    """The largest batch for one training step (forward + backward) of ``model``, times ``safety``.

    ``sample_input``: a batch of inputs (any batch size; only ``sample_input[:1]`` and the
    per-sample shape are used). ``model`` must already be on ``device`` (default: its parameters'
    device). ``loss_fn(output)`` gives the scalar to differentiate (default: ``output.float().sum()``).

    - CUDA: batches double from 2 (BatchNorm cannot train on one sample) until
      ``torch.OutOfMemoryError``, ending with ``max_batch`` itself; after the first failure the
      limit is bisected between the last batch that ran and it, to within 1/16 of the former;
      the result is ``safety`` × the largest batch that ran.
    - CPU: one probe on two samples measures what a sample costs, the unique storages autograd saves in the
      forward, counted twice (the gradients of those activations exist during backward),
      plus a fixed 4× the parameter bytes (weights, gradients, two optimizer moments);
      the result is (``safety`` × available memory − fixed) ÷ per-sample bytes.
      ``available_bytes`` overrides the reading of free host memory.

    The measurement is cached per (model class, parameter shapes, input shape and dtype,
    device, autocast); the model's weights, gradients, buffers and training flag are left as found.
    """
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
    if not 0 < safety <= 1:
        raise ValueError(f"safety must be in (0, 1], got {safety!r}")
    if not isinstance(sample_input, torch.Tensor) or sample_input.dim() < 1 or len(sample_input) < 1:
        raise ValueError("sample_input must be a tensor with a batch dimension holding at least one sample")
    params = list(model.parameters())
    device = torch.device(device) if device is not None else (params[0].device if params else torch.device("cpu"))
    loss_fn = loss_fn or (lambda output: output.float().sum())
    key = (type(model).__module__, type(model).__qualname__, tuple(tuple(p.shape) for p in params),
           tuple(sample_input.shape[1:]), sample_input.dtype, str(device), autocast)
    sample = sample_input[:1].to(device)
    if device.type in _SEARCHED_DEVICES:
        key += (max_batch,)
        if key not in _cache:
            with _probing(model):
                _cache[key] = _largest_fitting(lambda batch: _fits(model, sample, batch, autocast, loss_fn),
                                               max_batch)
        return max(1, int(_cache[key] * safety))
    if key not in _cache:
        _cache[key] = _cpu_costs(model, sample, autocast, loss_fn)
    fixed, per_sample = _cache[key]
    free = available_host_memory() if available_bytes is None else available_bytes
    budget = safety * free - fixed
    if budget < per_sample:
        raise MemoryError(f"not even one sample fits: {per_sample} bytes per sample and {fixed} fixed bytes, "
                          f"{free} bytes available")
    return max(1, min(max_batch, int(budget // per_sample)))


@contextlib.contextmanager
def _probing(model: nn.Module):
    """Train mode for the probe; weights untouched (autograd.grad fills no .grad), buffers restored."""
    training = {m: m.training for m in model.modules()}
    buffers = [b.detach().clone() for b in model.buffers()]
    model.train()
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, saved in zip(model.buffers(), buffers):
                buffer.copy_(saved)
        for module, flag in training.items():
            module.train(flag)


def _training_step(model, x, autocast, loss_fn) -> None:
    context = contextlib.nullcontext() if autocast is None else torch.autocast(x.device.type, dtype=autocast)
    with context:
        loss = loss_fn(model(x))
    params = [p for p in model.parameters() if p.requires_grad]
    torch.autograd.grad(loss, params, allow_unused=True)


def _cpu_costs(model, sample, autocast, loss_fn) -> tuple[int, int]:
    storages: dict[int, int] = {}
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_storages:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with _probing(model), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _training_step(model, _repeat(sample, 2), autocast, loss_fn)
    fixed = 4 * sum(p.numel() * p.element_size() for p in model.parameters())
    # what two samples save equals what one sample needs: its saved activations plus their gradients
    return fixed, max(1, sum(storages.values()))


def _repeat(sample: torch.Tensor, batch: int) -> torch.Tensor:
    return sample.expand(batch, *sample.shape[1:]).contiguous()


def _fits(model, sample, batch, autocast, loss_fn) -> bool:
    try:
        _training_step(model, _repeat(sample, batch), autocast, loss_fn)
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        if sample.device.type == "cuda":
            torch.cuda.empty_cache()  # the next probe starts from an empty cache, not a fragmented one


def _largest_fitting(fits: Callable[[int], bool], max_batch: int) -> int:
    """The largest batch <= ``max_batch`` for which ``fits`` holds, searched as documented in
    ``find_batch_size``; raises MemoryError when the smallest batch tried does not fit."""
    smallest = min(2, max_batch)
    largest, batch = 0, smallest
    while fits(batch):
        largest = batch
        if batch == max_batch:
            return largest
        batch = min(2 * batch, max_batch)
    if largest == 0:
        raise MemoryError(f"a batch of {smallest} samples does not fit in the device's memory")
    failed = batch
    while failed - largest > max(1, largest // 16):
        middle = (largest + failed) // 2
        if fits(middle):
            largest = middle
        else:
            failed = middle
    return largest
