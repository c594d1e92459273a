"""pytest-benchmark suite for KANConv2d: `pytest bench/bench_kan_conv.py --benchmark-only`.

Ratios to the dense floor and the sweep plot come from `python bench/kan_conv_ratios.py`."""

import pytest

from kan_conv_cases import HEADLINE, Problem
from common import provider_param

PROVIDERS = ["floor", "floor_channels_last", "cpp", "reference"]


@pytest.mark.parametrize("provider", [provider_param(p) for p in PROVIDERS])
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
def test_kan_conv(benchmark, provider, backward):
    problem = Problem(HEADLINE)
    benchmark.group = f"kan_conv {HEADLINE.label} {'fwd+bwd' if backward else 'fwd'}"
    benchmark(problem.run(provider, backward))
