"""Ratio table for KANConv2d against the dense floor (DESIGN.md §5), with a sweep over batch,
channels, image size and grid size, and a plot of the fwd+bwd ratio across the sweep.

    python bench/kan_conv_ratios.py --out bench/results/kan_conv_cpu.md --plot bench/results/kan_conv_cpu.png
    python bench/kan_conv_ratios.py --quick            # smoke test (CI)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved_medians, markdown_table, saved_activation_bytes, setup_measurement, write_report  # noqa: E402
from kan_conv_cases import HEADLINE, QUICK_CASES, SWEEP, Problem  # noqa: E402
from kanfast import _backend  # noqa: E402

MIB = 1 << 20
FLOORS = ["floor", "floor_channels_last"]  # NCHW, as the inputs; channels-last, as the CPU kernels convolve


def measure(case, providers, repeats):
    problem = Problem(case)
    fwd = interleaved_medians({p: problem.run(p, backward=False) for p in providers}, repeats)
    both = interleaved_medians({p: problem.run(p, backward=True) for p in providers}, repeats)
    result = {}
    for p in providers:
        saved = saved_activation_bytes(lambda: problem.forward(p), problem.parameters)
        result[p] = dict(fwd=fwd[p], both=both[p], fwd_ratio=fwd[p] / fwd["floor"],
                         both_ratio=both[p] / both["floor"], both_ratio_cl=both[p] / both["floor_channels_last"],
                         saved=saved, saved_ratio=saved / problem.input_bytes())
    return result


def plot(path: Path, sweep_results, backend: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sweep_results), figsize=(4 * len(sweep_results), 3.4), sharey=True)
    for ax, (axis, points) in zip(axes, sweep_results.items()):
        xs = [label for label, _ in points]
        ax.plot(xs, [r[backend]["both_ratio"] for _, r in points], "o-", label=f"kanfast ({backend}) fwd+bwd")
        ax.plot(xs, [r[backend]["fwd_ratio"] for _, r in points], "s--", label=f"kanfast ({backend}) fwd")
        ax.plot(xs, [r["floor_channels_last"]["both_ratio"] for _, r in points], "^:", color="grey",
                label="channels-last floor fwd+bwd")
        ax.axhline(1.0, color="grey", lw=1)
        ax.axhline(1.3, color="red", lw=1, ls=":", label="target 1.3")
        ax.set_xlabel(axis)
        ax.set_ylim(0, max(2.0, ax.get_ylim()[1]))
    axes[0].set_ylabel("time ÷ dense floor")
    axes[0].legend(fontsize=7)
    fig.suptitle("KANConv2d vs one conv2d over C·(G+K+1) precomputed channels")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default=None, help="kanfast backend to measure (default: automatic choice)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="one tiny case, 1 repeat: a smoke test")
    parser.add_argument("--no-reference", action="store_true", help="skip the (slow) reference provider")
    parser.add_argument("--out", type=Path, help="write the tables as markdown here")
    parser.add_argument("--plot", type=Path, help="write the sweep plot (PNG) here")
    args = parser.parse_args(argv)

    setup_measurement(args.threads)
    backend = args.backend or _backend.choose("kan_conv", torch.device("cpu"))
    header = ["case", "provider", "fwd ms", "fwd+bwd ms", "fwd ÷ floor", "fwd+bwd ÷ floor",
              "fwd+bwd ÷ channels-last floor", "saved MiB", "saved ÷ x"]

    def rows_for(case, result):
        return [[case.label, p, f"{r['fwd'] * 1e3:.1f}", f"{r['both'] * 1e3:.1f}", f"{r['fwd_ratio']:.2f}",
                 f"{r['both_ratio']:.2f}", f"{r['both_ratio_cl']:.2f}", f"{r['saved'] / MIB:.2f}",
                 f"{r['saved_ratio']:.2f}"]
                for p, r in result.items()]

    if args.quick:
        for case in QUICK_CASES:
            for row in rows_for(case, measure(case, FLOORS + [backend], 1)):
                print("  ".join(row))
        return 0

    headline_providers = FLOORS + [backend] + ([] if args.no_reference or backend == "reference" else ["reference"])
    headline = rows_for(HEADLINE, measure(HEADLINE, headline_providers, args.repeats))
    print(markdown_table(header, headline), flush=True)
    sweep_results, sweep_rows = {}, []
    for axis, cases in SWEEP.items():
        points = []
        for case in cases:
            result = measure(case, FLOORS + [backend], args.repeats)
            label = {"batch": case.batch, "channels": f"{case.in_channels}->{case.out_channels}",
                     "image size": case.size, "grid size": case.grid_size}[axis]
            points.append((str(label), result))
            sweep_rows += rows_for(case, result)[1:]
            print(axis, label, f"fwd+bwd ÷ floor {result[backend]['both_ratio']:.2f}, ÷ channels-last floor "
                  f"{result[backend]['both_ratio_cl']:.2f}", flush=True)
        sweep_results[axis] = points
    sweep_table = markdown_table(header, sweep_rows)
    print(sweep_table)
    if args.plot:
        plot(args.plot, sweep_results, backend)
    if args.out:
        note = ("floor: one F.conv2d over C·(G+K+1) precomputed channels (input and weight require grad), same "
                "padding, NCHW like the inputs; floor_channels_last: the same in channels-last memory (features, "
                "weight and grad_out), the layout the CPU kernels convolve in. saved: bytes of the unique storages "
                "autograd saves, parameters excluded.")
        text = (f"## Headline case\n\n{markdown_table(header, headline)}\n\n"
                f"## Sweep (one axis at a time)\n\n{sweep_table}\n\n{note}")
        write_report(args.out, "KANConv2d: fwd and fwd+bwd time relative to the dense floor", __file__, argv,
                     text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
