"""pytest-benchmark suite for KANConv2d: `pytest bench/bench_kan_conv.py --benchmark-only`.

Ratios to the dense floor and the sweep plot come from `python bench/kan_conv_ratios.py`."""

import pytest
import torch

from kan_conv_cases import HEADLINE, Problem
from kanfast import _backend

PROVIDERS = ["floor", "cpp", "reference"]


def _provider_param(name):
    reason = None if name in ("floor", "reference") else _backend.why_not(name, torch.device("cpu"))
    return pytest.param(name, id=name, marks=[pytest.mark.skip(reason=reason)] if reason else [])


@pytest.fixture(scope="module", autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("provider", [_provider_param(p) for p in PROVIDERS])
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
def test_kan_conv(benchmark, provider, backward):
    problem = Problem(HEADLINE)
    benchmark.group = f"kan_conv {HEADLINE.label} {'fwd+bwd' if backward else 'fwd'}"
    benchmark(problem.run(provider, backward))
