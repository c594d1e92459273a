"""Ratio tables for channel_stats and neuron scoring (DESIGN.md §5):

1. the fused op against the multi-pass torch reference (one reduction per statistic), and
2. a training step of a small CNN with a NeuronScorer on every layer, against none.

    python bench/channel_stats_ratios.py --out bench/results/channel_stats_cpu.md
    python bench/channel_stats_ratios.py --headline     # the issue's two target numbers only
    python bench/channel_stats_ratios.py --quick        # smoke test (CI)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from channel_stats_cases import CASES, QUICK_CASES, SCORING, Problem, TrainStep  # noqa: E402
from common import interleaved_medians, markdown_table, setup_measurement, write_report  # noqa: E402
from kanfast import _backend  # noqa: E402

TARGET_SPEEDUP = 3.0  # fused vs reference at the headline case
TARGET_OVERHEAD = 0.10  # scoring every layer, fraction of a training step


def stats_rows(cases, backend, repeats):
    rows = []
    for case in cases:
        problem = Problem(case)
        t = interleaved_medians({p: problem.run(p) for p in (backend, "reference")}, repeats)
        row = [case.label, f"{t[backend] * 1e3:.1f}", f"{t['reference'] * 1e3:.1f}", f"{t['reference'] / t[backend]:.1f}"]
        rows.append(row)
        print("  ".join(row), flush=True)
    return rows


def scoring_rows(batch, size, width, repeats):
    steps = {name: TrainStep(batch, size, criteria, width=width) for name, criteria in SCORING.items()}
    t = interleaved_medians({name: s.step for name, s in steps.items()}, repeats)
    rows = []
    for name in SCORING:
        row = [f"batch {batch}, {size}x{size}, width {width}", name, f"{t[name] * 1e3:.1f}",
               f"{(t[name] / t['none'] - 1) * 100:+.1f}%"]
        rows.append(row)
        print("  ".join(row), flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default=None, help="kanfast backend to measure (default: the automatic choice)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="tiny cases, 1 repeat: a smoke test")
    group.add_argument("--headline", action="store_true", help="only the headline case and the CNN step")
    parser.add_argument("--out", type=Path, help="also write the tables as markdown here")
    args = parser.parse_args(argv)

    setup_measurement(args.threads)
    backend = args.backend or _backend.choose("channel_stats", torch.device("cpu"))
    if args.quick:
        cases, repeats, cnn = QUICK_CASES, 1, (4, 8, 8)
    else:
        cases, repeats, cnn = (CASES[:1] if args.headline else CASES), args.repeats, (64, 32, 32)
    stats = markdown_table(["case", f"{backend} ms", "reference ms", "reference ÷ fused"],
                           stats_rows(cases, backend, repeats))
    scoring = markdown_table(["training step", "scorer", "ms", "overhead"], scoring_rows(*cnn, repeats))
    print()
    print(stats + "\n\n" + scoring)
    if args.out:
        note = (f"Targets: reference ÷ fused ≥ {TARGET_SPEEDUP:.0f} at {CASES[0].label}; scoring every layer adds "
                f"≤ {TARGET_OVERHEAD:.0%} to a training step. reference: one torch reduction per statistic "
                "(kanfast/reference/channel_stats.py). Scorers stay attached across steps, as during an epoch; "
                "'all activity criteria' includes the histogram (entropy) and the backward hooks (taylor).")
        write_report(args.out, "channel_stats: fused op vs multi-pass reference; neuron-scoring overhead",
                     __file__, argv, stats + "\n\n" + scoring + "\n\n" + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
