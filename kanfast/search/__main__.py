"""``python -m kanfast.search``: evolve CNN architectures (KANConv2d and Conv2d blocks) on a
dataset, by default scikit-learn's bundled handwritten digits, and report the best model's
validation and test accuracy.

Every finished evaluation is appended to RUN_DIR/evaluations.jsonl at once and the population
is checkpointed each generation: after any interruption, `--resume RUN_DIR` continues without
retraining finished genomes. Settings come from the defaults, then --config FILE (YAML or
JSON, including a `space:` mapping that narrows or widens the search space), then the flags.
"""

from __future__ import annotations

import argparse
import sys

from .config import SearchConfig
from .engine import default_run_directory, run


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kanfast.search", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = SearchConfig()
    run_group = p.add_argument_group("run")
    run_group.add_argument("--out", help="run directory (default: search-runs/<date-time>)")
    run_group.add_argument("--resume", metavar="RUN_DIR", help="continue the search in RUN_DIR")
    run_group.add_argument("--config", help="YAML or JSON file with settings (flags override it)")
    run_group.add_argument("--seed", type=int, help=f"seed of the search and its evaluations (default {d.seed})")
    data = p.add_argument_group("data")
    data.add_argument("--data", help="digits (default), cifar10, cifar100, or FILE.npz holding x (N, C, H, W) "
                                     "and integer labels y (N,); loaded without pickle")
    data.add_argument("--data-root", help="directory holding the CIFAR files (torchvision layout)")
    data.add_argument("--data-seed", type=int, help=f"seed of the train/validation/test split (default {d.data_seed})")
    ga = p.add_argument_group("genetic algorithm")
    ga.add_argument("--population", type=int, help=f"genomes per generation (default {d.population})")
    ga.add_argument("--generations", type=int, help=f"default {d.generations}")
    ga.add_argument("--elitism", type=int, help=f"best genomes carried over unchanged (default {d.elitism})")
    ga.add_argument("--tournament-size", type=int, help=f"default {d.tournament_size}")
    ga.add_argument("--crossover-rate", type=float, help=f"default {d.crossover_rate}")
    ga.add_argument("--mutation-rate", type=float, help=f"per-gene mutation probability (default {d.mutation_rate})")
    ga.add_argument("--objectives", help="comma-separated: accuracy (default), accuracy,params or accuracy,latency "
                                         "(multi-objective: NSGA-II ranking, Pareto archive, pareto.png)")
    ga.add_argument("--reevaluate-elites", action="store_true", default=None,
                    help="train carried-over elites again each generation and average their scores")
    training = p.add_argument_group("each evaluation")
    training.add_argument("--epochs", type=int, help=f"training epochs per genome (default {d.epochs})")
    training.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    execution = p.add_argument_group("execution")
    execution.add_argument("--executor", choices=("local", "ray"), help="local worker processes (default) or Ray")
    execution.add_argument("--ray-address", help="address of a running Ray cluster (default: start a local Ray)")
    execution.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default auto: CUDA if available")
    execution.add_argument("--workers", type=int, help="parallel evaluations (default: one per GPU, else per core)")
    execution.add_argument("--threads-per-worker", type=int, help=f"CPU threads per worker (default {d.threads_per_worker})")
    execution.add_argument("--timeout", type=float, help=f"seconds per evaluation before it is killed (default {d.timeout:g})")
    execution.add_argument("--retries", type=int, help=f"extra attempts after a crash or timeout (default {d.retries})")
    execution.add_argument("--evaluator", help="module:function that trains one genome: it takes the task dict and returns "
                                "val_accuracy, val_loss, test_accuracy, params and latency_ms (advanced; default "
                                f"{d.evaluator})")
    execution.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                           help="progress bar (default: when stderr is a terminal)")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    values = {k: v for k, v in vars(args).items() if v is not None and k not in ("config", "resume")}
    if "objectives" in values:
        values["objectives"] = tuple(o.strip() for o in values["objectives"].split(",") if o.strip())
    if args.resume and args.out and args.out != args.resume:
        print("error: --out and --resume name different directories", file=sys.stderr)
        return 2
    if args.resume:
        values["out"] = args.resume
    out = None
    try:
        config = SearchConfig.from_file(args.config, **values) if args.config else SearchConfig.from_dict(values)
        out = config.out = config.out or default_run_directory()  # named now: an interrupted run says where it is
        result = run(config, resume=bool(args.resume))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f"; continue with: python -m kanfast.search --resume {out}" if out else ""
        print(f"\ninterrupted{where}", file=sys.stderr)
        return 130
    _print_report(result)
    return 0


def _print_report(result) -> None:
    print()
    print(f"{'rank':>4}  {'val acc':>8}  {'test acc':>8}  {'params':>9}  {'ms/sample':>9}  architecture")
    for row in result.leaderboard[:10]:
        print(f"{row['rank']:>4}  {row['val_accuracy']:>8.2%}  {row['test_accuracy']:>8.2%}  {row['params']:>9,}  "
              f"{row['latency_ms']:>9.3f}  {row['architecture']}")
    m = result.best_metrics
    print()
    print(f"best model: validation accuracy {m['val_accuracy']:.2%}, test accuracy {m['test_accuracy']:.2%} "
          f"({m['params']:,} parameters, genome {result.leaderboard[0]['hash']})")
    print(f"search time: {result.wall_seconds / 60:.1f} min ({result.evaluations} evaluations run, "
          f"{result.failures} failed); results in {result.out}")


if __name__ == "__main__":
    sys.exit(main())
