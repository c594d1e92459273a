"""Overhead of kanfast.train.Trainer over a plain hand-written loop doing the same useful work.

Both train the same small KAN classifier (built inside each run) on the same data for the same
epochs with AdamW, gradient clipping and an EMA of the weights, and both validate the EMA
weights after every epoch (loss and accuracy) and keep the epoch's mean training loss. The
Trainer additionally writes metrics files (JSONL + CSV), an epoch-end checkpoint, and calls a
no-op callback; progress bars are off (not a terminal).

Measurement: each repetition times one Trainer run and one plain run back to back, in
alternating order (ABBA) so that drifting machine load hits both alike; the overhead is the
median over repetitions of the paired ratio Trainer ÷ plain, with its interquartile range and
extremes reported as the spread, and a distribution-free 95% confidence interval of the median
(order statistics of the ratios): on a shared machine single ratios swing by ±20% and more, so
the interval says whether the repetitions were enough to decide the target (≤ 5%).

    python bench/trainer_overhead.py --repeats 61 --out bench/results/trainer_overhead_cpu.md
    python bench/trainer_overhead.py --quick            # smoke test (CI)
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, setup_measurement, write_report  # noqa: E402
from trainer_cases import Workload  # noqa: E402

TARGET_OVERHEAD = 0.05


def timed_runs(workload: Workload, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of every run, {"trainer"|"plain": [...]}, pairs in ABBA order."""
    runs = {"trainer": workload.trainer, "plain": workload.plain}
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeats):
        for name in (("trainer", "plain") if i % 2 == 0 else ("plain", "trainer")):
            gc.collect()  # no collection of the previous run's garbage inside this one
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return times


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def median_interval(values: list[float]) -> tuple[float, float]:
    """95% confidence interval of the median: the order statistics n/2 ± 1.96·√n/2 (sign test)."""
    ordered, n = sorted(values), len(values)
    half = 1.96 * n ** 0.5 / 2
    return ordered[max(0, int(n / 2 - half))], ordered[min(n - 1, int(n / 2 + half + 0.5))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--samples", type=int, default=16384)  # epochs long enough to amortise the per-epoch checkpoint
    parser.add_argument("--val-samples", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tiny workload, 1 repeat: a smoke test")
    parser.add_argument("--out", type=Path, help="write the table as markdown here")
    args = parser.parse_args(argv)
    setup_measurement(args.threads)
    samples, val_samples, epochs, repeats = ((256, 128, 1, 1) if args.quick else
                                             (args.samples, args.val_samples, args.epochs, args.repeats))
    workload = Workload(samples=samples, val_samples=val_samples, batch=args.batch, epochs=epochs)
    times = timed_runs(workload, repeats, warmup=1 if args.quick else 2)
    ratios = [t / p for t, p in zip(times["trainer"], times["plain"])]
    low, high = quartiles(ratios)
    ci_low, ci_high = median_interval(ratios)
    steps = epochs * -(-samples // args.batch)
    for name, seconds in times.items():
        print(f"{name} seconds, in run order: {' '.join(f'{t:.3f}' for t in seconds)}")
    table = markdown_table(
        ["workload", "plain loop (ms/step)", "Trainer (ms/step)", "overhead: median of pairs",
         "95% CI of the median", "IQR", "min … max", "target"],
        [[f"KANLinear 32→64→10, {samples} samples (+{val_samples} validation), batch {args.batch}, {epochs} epochs",
          f"{statistics.median(times['plain']) * 1e3 / steps:.2f}",
          f"{statistics.median(times['trainer']) * 1e3 / steps:.2f}", f"{statistics.median(ratios) - 1:+.1%}",
          f"{ci_low - 1:+.1%} … {ci_high - 1:+.1%}", f"{low - 1:+.1%} … {high - 1:+.1%}",
          f"{min(ratios) - 1:+.1%} … {max(ratios) - 1:+.1%}",
          # a --quick run is a few steps, where the Trainer's fixed costs (metrics files, checkpoints) dominate
          "n/a (smoke test)" if args.quick else f"≤ {TARGET_OVERHEAD:.0%}"]])
    print(table)
    if args.out:
        note = (f"Overhead: median over {repeats} repetitions (after warm-up) of the paired wall-time ratio "
                "Trainer ÷ plain, each pair run back to back in alternating order; the confidence interval "
                "of that median comes from the order statistics of the ratios (sign test), IQR and min … max "
                "are their spread. ms/step: the median wall time of a run ÷ its optimizer steps. Each run builds "
                "its model, trains, validates the EMA weights every epoch and (Trainer) writes its metrics files "
                "and epoch checkpoints into a temporary directory.")
        write_report(args.out, "Trainer overhead against a plain training loop", __file__, argv,
                     table + "\n\n" + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
