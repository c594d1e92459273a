"""Shared set-up of the pytest-benchmark suites, as in the ratio scripts (DESIGN.md §5): 2
threads, a steady allocator (common.setup_measurement) and no garbage collection while timing
(common.interleaved_medians says why)."""

import pytest
import torch

from common import steady_allocator


def pytest_configure(config):
    steady_allocator()
    if hasattr(config.option, "benchmark_disable_gc"):
        config.option.benchmark_disable_gc = True


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)
