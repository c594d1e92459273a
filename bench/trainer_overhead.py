"""Overhead of kanfast.train.Trainer over a plain hand-written loop doing the same arithmetic.

Both train a small KAN classifier for the same epochs (model built inside each run); the
Trainer has EMA, gradient clipping, metrics files, an epoch-end checkpoint and a no-op
callback on. Runs are interleaved and the median of each is compared. The target is ≤ 5%.

    python bench/trainer_overhead.py --out bench/results/trainer_overhead_cpu.md
    python bench/trainer_overhead.py --quick            # smoke test (CI)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved_medians, markdown_table, setup_threads, write_report  # noqa: E402
from trainer_cases import Workload  # noqa: E402

TARGET_OVERHEAD = 0.05


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--samples", type=int, default=16384)  # epochs long enough to amortise the per-epoch checkpoint
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tiny workload, 1 repeat: a smoke test")
    parser.add_argument("--out", type=Path, help="write the table as markdown here")
    args = parser.parse_args(argv)
    setup_threads(args.threads)
    samples, epochs, repeats = (256, 1, 1) if args.quick else (args.samples, args.epochs, args.repeats)
    workload = Workload(samples=samples, batch=args.batch, epochs=epochs)
    t = interleaved_medians({"trainer": workload.trainer, "plain": workload.plain}, repeats,
                            warmup=1 if args.quick else 2)
    overhead = t["trainer"] / t["plain"] - 1
    steps = epochs * -(-samples // args.batch)
    table = markdown_table(
        ["workload", "plain loop (ms/step)", "Trainer (ms/step)", "overhead", "target"],
        [[f"KANLinear 32→64→10, {samples} samples, batch {args.batch}, {epochs} epochs",
          f"{t['plain'] * 1e3 / steps:.2f}", f"{t['trainer'] * 1e3 / steps:.2f}", f"{overhead:+.1%}",
          f"≤ {TARGET_OVERHEAD:.0%}"]])
    print(table)
    if args.out:
        command = "python bench/trainer_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:])
        note = (f"Median of {repeats} interleaved runs after warm-up; each run builds its model, trains and "
                "(Trainer) writes its metrics and checkpoint into a temporary directory.")
        write_report(args.out, "Trainer overhead against a plain training loop", command.strip(),
                     table + "\n\n" + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
