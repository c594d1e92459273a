"""pytest-benchmark suite for KANLinear: `pytest bench/bench_kan_linear.py --benchmark-only`.

Ratios to the dense floor are printed by `python bench/kan_linear_ratios.py`."""

import pytest
import torch

from kan_linear_cases import CASES, Problem
from kanfast import _backend

PROVIDERS = ["floor", "cpp", "reference"]


def _provider_param(name):
    if name in ("floor", "reference"):
        return pytest.param(name, id=name)
    reason = _backend.why_not(name, torch.device("cpu"))
    return pytest.param(name, id=name, marks=[pytest.mark.skip(reason=reason)] if reason else [])


@pytest.fixture(scope="module", autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("case", CASES[:2], ids=lambda c: c.label.replace(" ", "_"))
@pytest.mark.parametrize("provider", [_provider_param(p) for p in PROVIDERS])
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
def test_kan_linear(benchmark, case, provider, backward):
    problem = Problem(case)
    benchmark.group = f"kan_linear {case.label} {'fwd+bwd' if backward else 'fwd'}"
    benchmark(problem.run(provider, backward))
