"""pytest-benchmark suite for kanfast.train: `pytest bench/bench_trainer.py --benchmark-only`.

The overhead ratio is printed by `python bench/trainer_overhead.py`."""

import pytest

from trainer_cases import Workload


@pytest.mark.parametrize("loop", ["trainer", "plain"])
def test_training_epoch(benchmark, loop):
    benchmark.group = "KAN classifier, 512 samples (+256 validation), batch 128, 1 epoch"
    workload = Workload(samples=512, val_samples=256, epochs=1)
    benchmark(getattr(workload, loop))
