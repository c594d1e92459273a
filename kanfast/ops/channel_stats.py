"""``kanfast.ops.channel_stats``: per-channel statistics of an activation tensor in one pass,
as mergeable partials (:class:`ChannelStats`) for accumulating across batches and DDP ranks."""

from __future__ import annotations

import dataclasses
import math

import torch

from .. import _backend
from .. import reference
from ..reference.channel_stats import FIELDS
from ._checks import check_same_device, check_tensor

OP = "channel_stats"


@dataclasses.dataclass(frozen=True)
class ChannelStats:
    """Partial statistics of each channel over the elements seen so far, all of shape (C,):

    count, sum (Σa), abs_sum (Σ|a|), m2 (Σ(a - mean)²), zeros (#a == 0), nonpos (#a <= 0),
    min, max; hist (C, bins) over hist_range, values outside it counted in the edge bins;
    prod_sum (Σa·g), prod_abs_sum (Σ|a·g|) when a gradient g was given, else None.
    Counts are int64, the rest float64. Merging partials gives exactly the statistics of one
    pass over the concatenated data (up to rounding).
    """

    count: torch.Tensor
    sum: torch.Tensor
    abs_sum: torch.Tensor
    m2: torch.Tensor
    zeros: torch.Tensor
    nonpos: torch.Tensor
    min: torch.Tensor
    max: torch.Tensor
    hist: torch.Tensor | None = None
    hist_range: tuple[float, float] | None = None
    prod_sum: torch.Tensor | None = None
    prod_abs_sum: torch.Tensor | None = None

    # ------------------------------------------------------------------ derived per-channel values
    def _per_element(self, total: torch.Tensor) -> torch.Tensor:
        return total / self.count  # NaN for a channel that saw no elements

    @property
    def mean(self) -> torch.Tensor:
        return self._per_element(self.sum)

    @property
    def abs_mean(self) -> torch.Tensor:
        return self._per_element(self.abs_sum)

    @property
    def var(self) -> torch.Tensor:
        """Population variance (divided by count)."""
        return self._per_element(self.m2)

    @property
    def zero_fraction(self) -> torch.Tensor:
        return self._per_element(self.zeros.double())

    @property
    def nonpos_fraction(self) -> torch.Tensor:
        return self._per_element(self.nonpos.double())

    @property
    def prod_mean(self) -> torch.Tensor:
        """E[a·g]; needs the statistics to have been taken with grad."""
        if self.prod_sum is None:
            raise ValueError("ChannelStats.prod_mean: these statistics were taken without grad")
        return self._per_element(self.prod_sum)

    def entropy(self) -> torch.Tensor:
        """Entropy in nats of each channel's histogram (0 for an empty one)."""
        if self.hist is None:
            raise ValueError("ChannelStats.entropy: these statistics were taken without a histogram (bins=0)")
        p = self.hist.double() / self.hist.sum(1, keepdim=True).clamp_min(1)
        return -torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum(1)

    # ------------------------------------------------------------------ combining partials
    def merge(self, other: ChannelStats) -> ChannelStats:
        """The statistics of both sets of elements (Chan et al.'s formula for m2)."""
        if not isinstance(other, ChannelStats):
            raise TypeError(f"ChannelStats.merge: other must be a ChannelStats, got {type(other).__name__}")
        if other.count.shape != self.count.shape:
            raise ValueError(f"ChannelStats.merge: other has {other.count.shape[0]} channels, this has "
                             f"{self.count.shape[0]}")
        if (self.hist is None) != (other.hist is None) or self.hist_range != other.hist_range or (
                self.hist is not None and self.hist.shape != other.hist.shape):
            raise ValueError("ChannelStats.merge: both must have histograms with the same bins and range, got "
                             f"{_hist_desc(self)} and {_hist_desc(other)}")
        if (self.prod_sum is None) != (other.prod_sum is None):
            raise ValueError("ChannelStats.merge: one was taken with grad and the other without")
        na, nb = self.count.double(), other.count.double()
        n = na + nb
        delta = other.sum / nb.clamp_min(1) - self.sum / na.clamp_min(1)
        m2 = self.m2 + other.m2 + delta * delta * (na * nb / n.clamp_min(1))

        def add(a, b):
            return None if a is None else a + b

        return dataclasses.replace(
            self, count=self.count + other.count, sum=self.sum + other.sum, abs_sum=self.abs_sum + other.abs_sum,
            m2=m2, zeros=self.zeros + other.zeros, nonpos=self.nonpos + other.nonpos,
            min=torch.minimum(self.min, other.min), max=torch.maximum(self.max, other.max),
            hist=add(self.hist, other.hist), prod_sum=add(self.prod_sum, other.prod_sum),
            prod_abs_sum=add(self.prod_abs_sum, other.prod_abs_sum))

    def all_reduce(self, group=None) -> ChannelStats:
        """The statistics over every rank of ``group`` (torch.distributed, initialised), the same
        on each rank: sums add, min/max reduce, and m2 = Σ_r [m2_r + n_r·(mean_r - mean)²]."""
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("ChannelStats.all_reduce: torch.distributed is not initialised")
        C = self.count.shape[0]
        hist = self.hist if self.hist is not None else self.count.new_zeros(C, 0)
        ints = torch.cat([self.count, self.zeros, self.nonpos, hist.flatten()])
        prods = [t for t in (self.prod_sum, self.prod_abs_sum) if t is not None]
        floats = torch.cat([self.sum, self.abs_sum, *prods])
        extremes = torch.cat([self.min, -self.max])
        dist.all_reduce(ints, group=group)
        dist.all_reduce(floats, group=group)
        dist.all_reduce(extremes, op=dist.ReduceOp.MIN, group=group)
        count, zeros, nonpos, hist_all = ints[:C], ints[C:2 * C], ints[2 * C:3 * C], ints[3 * C:].view(C, hist.shape[1])
        total = floats[:C]
        # Second round: each rank's m2 about the global mean (a rank with no elements adds 0).
        local_n = self.count.double()
        shift = self.sum / local_n.clamp_min(1) - total / count.double().clamp_min(1)
        m2 = self.m2 + local_n * shift * shift
        dist.all_reduce(m2, group=group)
        rest = floats[2 * C:].view(-1, C)
        return dataclasses.replace(
            self, count=count, sum=total, abs_sum=floats[C:2 * C], m2=m2, zeros=zeros, nonpos=nonpos,
            min=extremes[:C], max=-extremes[C:], hist=None if self.hist is None else hist_all,
            prod_sum=rest[0] if prods else None, prod_abs_sum=rest[1] if prods else None)


def _hist_desc(s: ChannelStats) -> str:
    return "no histogram" if s.hist is None else f"{s.hist.shape[1]} bins over {s.hist_range}"


def merge(*stats: ChannelStats) -> ChannelStats:
    """Merge any number (at least one) of partials, in order."""
    if not stats:
        raise ValueError("merge: needs at least one ChannelStats")
    out = stats[0]
    for s in stats[1:]:
        out = out.merge(s)
    return out


def _check_args(x, dim, grad, bins, range):
    check_tensor(OP, "x", x)
    if x.dim() == 0:
        raise ValueError(f"{OP}: x must have at least one dim (the channels), got a 0-dim tensor")
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"{OP}: dim must be an int, got {type(dim).__name__}")
    if not -x.dim() <= dim < x.dim():
        raise ValueError(f"{OP}: dim must be in [{-x.dim()}, {x.dim()}) for x of shape {tuple(x.shape)}, got {dim}")
    if grad is not None:
        check_tensor(OP, "grad", grad)
        check_same_device(OP, "x", x, grad=grad)
        if grad.shape != x.shape:
            raise ValueError(f"{OP}: grad must have x's shape {tuple(x.shape)}, got {tuple(grad.shape)}")
        if grad.dtype != x.dtype:
            raise TypeError(f"{OP}: grad must have x's dtype {x.dtype}, got {grad.dtype}")
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 0:
        raise ValueError(f"{OP}: bins must be an int >= 0, got {bins!r}")
    if bins == 0:
        if range is not None:
            raise ValueError(f"{OP}: range is only used with a histogram; pass bins > 0 too (got range={range})")
        return 0.0, 0.0
    if range is None:
        raise ValueError(f"{OP}: bins={bins} needs range=(lo, hi), the interval the bins cover")
    try:
        lo, hi = (float(v) for v in range)
    except (TypeError, ValueError):
        raise ValueError(f"{OP}: range must be a pair of numbers (lo, hi), got {range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{OP}: range must be finite with lo < hi, got {range!r}")
    return lo, hi


def channel_stats(x: torch.Tensor, dim: int, *, grad: torch.Tensor | None = None, bins: int = 0,
                  range: tuple[float, float] | None = None, backend: str | None = None) -> ChannelStats:
    """Statistics of every channel (slice along ``dim``) of x, over all other dims, in one pass.

    x: any shape and layout ((N, C), (N, C, *spatial), (N, L, C), channels_last, strided);
    grad: like x (e.g. ∂L/∂x), adds Σx·g and Σ|x·g|; ``bins`` > 0 adds a histogram of each
    channel over ``range`` = (lo, hi), values outside it clamped into the first / last bin and
    NaN left out. Accumulates in float32 (float64 for float64 input) within cache-sized pieces
    and in float64 across them. Not differentiable. ``backend`` overrides the choice.
    """
    lo, hi = _check_args(x, dim, grad, bins, range)
    # Statistics are never differentiated: keep the ops out of any autograd graph.
    x, grad = x.detach(), None if grad is None else grad.detach()
    name = _backend.choose(OP, x.device, backend)
    if name in ("cpp", "cuda"):
        out = torch.ops.kanfast.channel_stats(x, dim, grad, bins, lo, hi)
    elif name == "triton":
        from ..triton.channel_stats import channel_stats_triton

        out = channel_stats_triton(x, dim, grad, bins, lo, hi)
    else:
        out = reference.channel_stats(x, dim, grad, bins, lo, hi)
    values = dict(zip(FIELDS, out))
    if bins == 0:
        values["hist"] = None
    if grad is None:
        values["prod_sum"] = values["prod_abs_sum"] = None
    return ChannelStats(**values, hist_range=(lo, hi) if bins else None)


def fake_channel_stats(x, dim, grad=None, bins=0, lo=0.0, hi=0.0):
    """Output metadata of kanfast::channel_stats (for FakeTensor / torch.compile)."""
    C = x.shape[dim]
    P = C if grad is not None else 0
    f64, i64 = dict(dtype=torch.float64, device=x.device), dict(dtype=torch.int64, device=x.device)
    return (x.new_empty(C, **i64), x.new_empty(C, **f64), x.new_empty(C, **f64), x.new_empty(C, **f64),
            x.new_empty(C, **i64), x.new_empty(C, **i64), x.new_empty(C, **f64), x.new_empty(C, **f64),
            x.new_empty(C, bins, **i64), x.new_empty(P, **f64), x.new_empty(P, **f64))


@_backend.after_library_load
def _register_compiled() -> None:
    torch.library.register_fake("kanfast::channel_stats")(fake_channel_stats)
