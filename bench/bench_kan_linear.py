"""pytest-benchmark suite for KANLinear: `pytest bench/bench_kan_linear.py --benchmark-only`.

Ratios to the dense floor are printed by `python bench/kan_linear_ratios.py`."""

import pytest

from kan_linear_cases import CASES, Problem
from common import provider_param

PROVIDERS = ["floor", "cpp", "reference"]


@pytest.mark.parametrize("case", CASES[:2], ids=lambda c: c.label.replace(" ", "_"))
@pytest.mark.parametrize("provider", [provider_param(p) for p in PROVIDERS])
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
def test_kan_linear(benchmark, case, provider, backward):
    problem = Problem(case)
    benchmark.group = f"kan_linear {case.label} {'fwd+bwd' if backward else 'fwd'}"
    benchmark(problem.run(provider, backward))
