"""Throughput of the search's local executor with 1..N CPU workers (one thread each).

The same fixed set of genomes is trained with each worker count, on started workers (process
start-up is excluded: a search pays it once); throughput is evaluations per second, and the
scaling efficiency is throughput(N) / (N · throughput(1)). The issue's target is ≥ 0.8.

    python bench/search_scaling.py --out bench/results/search_scaling_cpu.md
    python bench/search_scaling.py --quick            # smoke test (CI)
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, write_report  # noqa: E402
from kanfast.search.executor import LocalExecutor  # noqa: E402
from kanfast.search.operators import random_genome  # noqa: E402
from kanfast.search.space import SearchSpace  # noqa: E402


def tasks(count: int, epochs: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    space = SearchSpace()
    return [{"genome": random_genome(space, rng).to_json(), "data": "digits", "data_seed": 0, "data_root": None,
             "epochs": epochs, "batch_size": 64, "seed": i} for i in range(count)]


def throughput(workers: int, work: list[dict]) -> float:
    """Evaluations per second of `work` on `workers` started CPU workers."""
    executor = LocalExecutor(["cpu"] * workers, threads_per_worker=1)
    executor.start()
    try:
        while executor.idle() < workers:  # started up
            executor.poll(timeout=1.0)
        # warm-up: one evaluation per worker pays the dataset load and first-call costs
        warm = work[:workers]
        for i, task in enumerate(warm):
            executor.submit(f"warm{i}", task)
        _drain(executor, len(warm))
        start = time.perf_counter()
        pending = list(enumerate(work))
        done = 0
        while done < len(work):
            while pending and executor.idle() > 0:
                i, task = pending.pop(0)
                executor.submit(str(i), task)
            outcomes = executor.poll(timeout=1.0)
            failed = [o for o in outcomes if o.status != "ok"]
            if failed:
                raise RuntimeError(f"evaluation failed: {failed[0].error}")
            done += len(outcomes)
        return len(work) / (time.perf_counter() - start)
    finally:
        executor.shutdown()


def _drain(executor, count: int) -> None:
    while count:
        count -= len(executor.poll(timeout=1.0))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--evaluations", type=int, default=8, help="genomes trained per worker count")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 evaluations of 1 epoch: a smoke test")
    parser.add_argument("--out", type=Path, help="write the table as markdown here")
    args = parser.parse_args(argv)
    count, epochs = (2, 1) if args.quick else (args.evaluations, args.epochs)
    work = tasks(count, epochs, seed=0)
    rows, base = [], None
    for workers in range(1, args.max_workers + 1):
        rate = throughput(workers, work)
        base = base or rate
        efficiency = rate / (workers * base)
        rows.append([str(workers), f"{rate * 60:.1f}", f"{rate / base:.2f}", f"{efficiency:.2f}"])
        print(f"{workers} worker(s): {rate * 60:.1f} evaluations/min, speed-up {rate / base:.2f}, "
              f"efficiency {efficiency:.2f}", flush=True)
    table = markdown_table(["workers", "evaluations / min", "speed-up", "efficiency (speed-up ÷ workers)"], rows)
    print(table)
    if args.out:
        note = (f"{count} random genomes of the default search space, {epochs} epochs each on digits, CPU workers "
                "with 1 thread each; worker start-up excluded.")
        write_report(args.out, "Search executor: throughput against the number of CPU workers", __file__, argv,
                     table + "\n\n" + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
