"""pytest-benchmark suite for kanfast.train: `pytest bench/bench_trainer.py --benchmark-only`.

The overhead ratio is printed by `python bench/trainer_overhead.py`."""

import pytest
import torch

from trainer_cases import Workload


@pytest.fixture(scope="module", autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("loop", ["trainer", "plain"])
def test_training_epoch(benchmark, loop):
    benchmark.group = "KAN classifier, 512 samples, batch 128, 1 epoch"
    workload = Workload(samples=512, epochs=1)
    benchmark(getattr(workload, loop))
