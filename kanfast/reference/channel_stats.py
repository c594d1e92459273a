"""Pure-PyTorch ``channel_stats``: one torch reduction per statistic (the multi-pass baseline
the fused kernels are measured against), in float32 (float64 for float64 input)."""

from __future__ import annotations

import torch

# Order of the returned tensors, shared with the compiled and Triton kernels.
FIELDS = ("count", "sum", "abs_sum", "m2", "zeros", "nonpos", "min", "max", "hist", "prod_sum", "prod_abs_sum")


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def empty_stats(channels: int, bins: int, with_grad: bool, device) -> tuple[torch.Tensor, ...]:
    """The statistics of no elements: the identities of a merge (min = +inf, max = -inf)."""
    f64 = dict(dtype=torch.float64, device=device)
    i64 = dict(dtype=torch.int64, device=device)
    return (
        torch.zeros(channels, **i64), torch.zeros(channels, **f64), torch.zeros(channels, **f64),
        torch.zeros(channels, **f64), torch.zeros(channels, **i64), torch.zeros(channels, **i64),
        torch.full((channels,), float("inf"), **f64), torch.full((channels,), float("-inf"), **f64),
        torch.zeros(channels, bins, **i64), torch.zeros(channels if with_grad else 0, **f64),
        torch.zeros(channels if with_grad else 0, **f64),
    )


def histogram(values: torch.Tensor, bins: int, lo: float, hi: float) -> torch.Tensor:
    """values: (channels, n) -> (channels, bins) counts; outside [lo, hi] clamped into the edge
    bins, NaN not counted. Same arithmetic as histogram_bin in csrc/include/kanfast/channel_stats.h."""
    scale = torch.tensor(bins / (hi - lo), dtype=values.dtype)
    t = (values - torch.tensor(lo, dtype=values.dtype)) * scale
    index = t.clamp(0, bins - 1).floor().long()  # clamp first: huge values must not overflow
    counted = ~torch.isnan(t)
    hist = torch.zeros(values.shape[0], bins, dtype=torch.int64, device=values.device)
    return hist.scatter_add_(1, torch.where(counted, index, 0), counted.long())


def channel_stats(x: torch.Tensor, dim: int, grad: torch.Tensor | None = None, bins: int = 0, lo: float = 0.0,
                  hi: float = 0.0) -> tuple[torch.Tensor, ...]:
    """x: (*) with channels along dim; grad: like x or None -> the tuple FIELDS, each (C,)
    except hist (C, bins); prod_* are (0,) without grad. Counts int64, the rest float64."""
    dim = dim % x.dim()
    channels = x.shape[dim]
    n = x.numel() // channels if channels else 0
    if n == 0:
        return empty_stats(channels, bins, grad is not None, x.device)
    if x.dim() == 1:  # reduce over a new leading dim: sum over no dims would sum over all of them
        x, dim, grad = x.unsqueeze(0), 1, None if grad is None else grad.unsqueeze(0)
    dims = [d for d in range(x.dim()) if d != dim]
    a = x.to(accumulate_dtype(x.dtype))
    var, _ = torch.var_mean(a, dims, correction=0)
    out = {
        "count": torch.full((channels,), n, dtype=torch.int64, device=x.device),
        "sum": a.sum(dims),
        "abs_sum": a.abs().sum(dims),
        "m2": var * n,
        "zeros": (a == 0).sum(dims),
        "nonpos": (a <= 0).sum(dims),
        "min": a.amin(dims),
        "max": a.amax(dims),
        "hist": torch.zeros(channels, bins, dtype=torch.int64, device=x.device),
        "prod_sum": a.new_zeros(0),
        "prod_abs_sum": a.new_zeros(0),
    }
    if bins > 0:
        out["hist"] = histogram(a.movedim(dim, 0).reshape(channels, -1), bins, lo, hi)
    if grad is not None:
        p = a * grad.to(a.dtype)
        out["prod_sum"], out["prod_abs_sum"] = p.sum(dims), p.abs().sum(dims)
    return tuple(out[f].to(torch.int64 if f in ("count", "zeros", "nonpos", "hist") else torch.float64)
                 for f in FIELDS)
