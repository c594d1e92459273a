"""Shared set-up of the pytest-benchmark suites, as in the ratio scripts (DESIGN.md §5): 2
threads and a steady allocator (common.setup_measurement)."""

import pytest
import torch

from common import steady_allocator


def pytest_configure(config):
    steady_allocator()


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)
