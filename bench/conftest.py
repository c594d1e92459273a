"""Shared set-up of the pytest-benchmark suites: 2 threads, as in the ratio scripts (DESIGN.md §5)."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)
