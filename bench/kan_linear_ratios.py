"""Ratio table for KANLinear: kanfast and the reference against the dense floor (DESIGN.md §5).

    python bench/kan_linear_ratios.py --out bench/results/kan_linear_cpu.md
    python bench/kan_linear_ratios.py --quick            # smoke test (CI)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved_medians, markdown_table, saved_activation_bytes, setup_measurement, write_report  # noqa: E402
from kan_linear_cases import CASES, QUICK_CASES, Problem  # noqa: E402
from kanfast import _backend  # noqa: E402

MIB = 1 << 20


def measure(case, providers, repeats):
    problem = Problem(case)
    rows = []
    fwd = interleaved_medians({p: problem.run(p, backward=False) for p in providers}, repeats)
    both = interleaved_medians({p: problem.run(p, backward=True) for p in providers}, repeats)
    x_bytes = problem.input_bytes()
    for p in providers:
        saved = saved_activation_bytes(lambda: problem.forward(p), problem.parameters)
        rows.append([
            case.label, p, f"{fwd[p] * 1e3:.1f}", f"{both[p] * 1e3:.1f}",
            f"{fwd[p] / fwd['floor']:.2f}", f"{both[p] / both['floor']:.2f}",
            f"{saved / MIB:.2f}", f"{saved / x_bytes:.2f}",
        ])
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default=None, help="kanfast backend to measure (default: the automatic choice)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="one tiny case, 1 repeat: a smoke test")
    parser.add_argument("--no-reference", action="store_true", help="skip the (slow) reference provider")
    parser.add_argument("--out", type=Path, help="also write the table as markdown here")
    args = parser.parse_args(argv)

    setup_measurement(args.threads)
    backend = args.backend or _backend.choose("kan_linear", torch.device("cpu"))
    providers = ["floor", backend] + ([] if args.no_reference or backend == "reference" else ["reference"])
    cases, repeats = (QUICK_CASES, 1) if args.quick else (CASES, args.repeats)
    header = ["case", "provider", "fwd ms", "fwd+bwd ms", "fwd ÷ floor", "fwd+bwd ÷ floor", "saved MiB",
              "saved ÷ x"]
    rows = []
    for case in cases:
        case_rows = measure(case, providers, repeats)
        rows += case_rows
        for row in case_rows:
            print("  ".join(row), flush=True)
    table = markdown_table(header, rows)
    print()
    print(table)
    if args.out:
        note = ("floor: one F.linear over in·(G+K+1) precomputed features (input and weight require grad). "
                "saved: bytes of the unique storages autograd saves, parameters excluded; x is the layer input.")
        write_report(args.out, "KANLinear: fwd and fwd+bwd time relative to the dense floor",
                     __file__, argv, table + "\n\n" + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
