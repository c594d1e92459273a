"""python -m kanfast.sweep: train a grid of evolution-strategy configs on one task, with
repeats over seeds, in parallel worker processes (or on Ray), and rank them by final
validation loss (mean ± std over the repeats).

CONFIG (YAML or JSON):
  task:         digits-mlp | digits-kan | module:function returning
                (model, (x_train, y_train), (x_val, y_val), loss_fn)
  epochs, batch_size, lr (AdamW), repeats (seeds seed .. seed+repeats-1), seed
  max_samples:  keep the first N samples of each split (quick checks)
  strategies:   a list of {name, strategy: Apoptosis | FunctionalPreservation | GrowthOnly |
                Hybrid | Expand | none, params: {...}, trigger: {type: Every | Plateau |
                EntropySaturation, ...its arguments}, grid: {param: [values]}}
  grid:         {param: [values]}: every strategy taking param is expanded over the values
                (cartesian product with its own grid)

OUT holds config.json, runs.jsonl (one line per finished run, append-only), results.json,
summary.md, summary.csv and runs/<run_id>/ (each run's metrics, events and checkpoint). A run
that fails is recorded with its error and the sweep goes on; after an interruption,
--resume OUT trains only the runs not yet recorded (and those that crashed or timed out).
"""

from __future__ import annotations

import argparse
import sys
import time

from .runner import run


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kanfast.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", metavar="CONFIG", help="the sweep's YAML or JSON file (optional with --resume)")
    p.add_argument("--out", help="output directory (default: sweep-runs/<date-time>)")
    p.add_argument("--resume", metavar="OUT", help="continue the sweep in OUT; finished runs are not rerun")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local worker processes (default) or Ray tasks")
    p.add_argument("--ray-address", help="address of a running Ray cluster (default: start a local Ray)")
    p.add_argument("--workers", type=int, help="parallel runs (default: one per GPU, else one per CPU core)")
    p.add_argument("--threads-per-worker", type=int, default=1, help="CPU threads per worker (default 1)")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="seconds per run before it is killed and recorded as failed (default 1800)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.resume and args.out and args.out != args.resume:
        print("error: --out and --resume name different directories", file=sys.stderr)
        return 2
    out = args.resume or args.out or time.strftime("sweep-runs/%Y%m%d-%H%M%S")
    try:
        result = run(args.config, out=out, resume=bool(args.resume), executor=args.executor,
                     workers=args.workers, threads_per_worker=args.threads_per_worker, timeout=args.timeout,
                     ray_address=args.ray_address, progress=args.progress)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: python -m kanfast.sweep --resume {out}", file=sys.stderr)
        return 130
    print((result.out / "summary.md").read_text(), end="")
    failed = sum(r["status"] != "ok" for r in result.runs)
    print(f"\n{result.ran} runs trained, {failed} failed in all; results in {result.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
