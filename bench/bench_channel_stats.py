"""pytest-benchmark suite for channel_stats and scoring: `pytest bench/bench_channel_stats.py --benchmark-only`.

Ratios are printed by `python bench/channel_stats_ratios.py`."""

import pytest

from channel_stats_cases import SCORING, Case, Problem, TrainStep
from common import provider_param

CASES = [Case((8, 32, 16, 16)), Case((8, 32, 16, 16), channels_last=True, grad=True, bins=16), Case((512, 256))]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.label.replace(" ", "_"))
@pytest.mark.parametrize("provider", [provider_param(p) for p in ("cpp", "reference")])
def test_channel_stats(benchmark, case, provider):
    benchmark.group = f"channel_stats {case.label}"
    benchmark(Problem(case).run(provider))


@pytest.mark.parametrize("scoring", list(SCORING))
def test_training_step_with_scoring(benchmark, scoring):
    benchmark.group = "small CNN training step (batch 8, 16x16)"
    benchmark(TrainStep(8, 16, SCORING[scoring], width=8).step)
