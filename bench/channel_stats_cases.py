"""channel_stats benchmark cases and providers: the fused op (a backend) against the
multi-pass torch reference (one reduction per statistic), and the cost of scoring every layer
of a small CNN during a training step (NeuronScorer attached or not)."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from kanfast import ops
from kanfast.scoring import DEFAULT_CRITERIA, NeuronScorer


@dataclasses.dataclass(frozen=True)
class Case:
    shape: tuple[int, ...]
    dim: int = 1
    channels_last: bool = False
    dtype: torch.dtype = torch.float32
    grad: bool = False  # also Σa·g, Σ|a·g|
    bins: int = 0

    @property
    def label(self) -> str:
        extras = [str(self.dtype).replace("torch.", "")]
        extras += ["channels_last"] if self.channels_last else []
        extras += ["grad"] if self.grad else []
        extras += [f"hist{self.bins}"] if self.bins else []
        return f"{'x'.join(map(str, self.shape))} dim={self.dim} {' '.join(extras)}"


# The headline case first (all statistics, no histogram).
CASES = [
    Case((64, 256, 32, 32)),
    Case((64, 256, 32, 32), channels_last=True),
    Case((64, 256, 32, 32), grad=True, bins=32),
    Case((64, 256, 32, 32), dtype=torch.bfloat16),
    Case((8192, 1024)),
    Case((32, 256, 768), dim=-1),
]
QUICK_CASES = [Case((4, 8, 8, 8)), Case((4, 8, 8, 8), channels_last=True, grad=True, bins=8)]


class Problem:
    def __init__(self, case: Case, seed=0):
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(case.shape, generator=gen).to(case.dtype)
        self.x = x.to(memory_format=torch.channels_last) if case.channels_last else x
        self.grad = torch.randn_like(self.x) if case.grad else None
        self.case = case

    def run(self, provider: str):
        c = self.case
        kw = dict(grad=self.grad, bins=c.bins, range=(-3.0, 3.0) if c.bins else None, backend=provider)
        return lambda: ops.channel_stats(self.x, c.dim, **kw)


def small_cnn(width: int = 32, classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes))


class TrainStep:
    """SGD steps of its own small_cnn, with a NeuronScorer attached to every layer for the
    given criteria (accumulating over all steps, as during an epoch), or with none."""

    def __init__(self, batch: int, size: int, criteria: tuple[str, ...] | None, width: int = 32, seed=0):
        torch.manual_seed(seed)
        self.model = small_cnn(width)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.x = torch.randn(batch, 3, size, size)
        self.y = torch.randint(0, 10, (batch,))
        self.scorer = NeuronScorer(self.model, criteria=criteria).attach() if criteria else None

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(self.model(self.x), self.y).backward()
        self.opt.step()


SCORING = {"none": None, "default criteria": DEFAULT_CRITERIA,
           "all activity criteria": ("mean_abs", "mean", "variance", "apoz", "entropy", "taylor", "redo",
                                     "utility")}
