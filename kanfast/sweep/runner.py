"""Runs a sweep's runs in parallel through the search's executors and keeps OUT up to date:

- ``config.json``: the validated config (a resume reads it);
- ``runs.jsonl``: append-only, one line per finished run, fsynced — the record a resume trusts;
- ``results.json``: every finished run by run_id, atomically rewritten after each one;
- ``summary.md`` / ``summary.csv``: one row per config, ranked by mean final validation loss;
- ``runs/<run_id>/``: each run's Trainer directory (metrics, events, checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from tqdm import tqdm

from .._io import append_jsonl, atomic_write_text, read_jsonl
from ..search.executor import LocalExecutor, Outcome, default_devices
from . import config as sweep_config
from .summary import markdown, summarize, to_csv

EVALUATOR = "kanfast.sweep.worker:run_one"
SHARED = ("task", "epochs", "batch_size", "lr", "max_samples")  # training settings every run gets


@dataclasses.dataclass
class SweepResult:
    out: Path
    runs: list[dict[str, Any]]  # one record per finished run, in run order
    summary: list[dict[str, Any]]  # one row per config, best first
    ran: int  # runs trained by this call (a resume skips the finished ones)


def _read_records(path: Path) -> dict[str, dict[str, Any]]:
    """The finished runs by run_id; a line cut short by a crash: that run runs again."""
    return {record["run_id"]: record for record in read_jsonl(path)}


def _settled(record: dict[str, Any]) -> bool:
    # a crash or timeout may be the machine's fault: worth another try on resume; an error is not
    return record["status"] == "ok" or record.get("failure") == "error"


def _prepare(source, out: Path, resume: bool) -> dict[str, Any]:
    saved = out / "config.json"
    if resume:
        if not saved.is_file():
            raise ValueError(f"--resume {out}: no sweep there (config.json is missing)")
        config = sweep_config.load(json.loads(saved.read_text()))
        if source is not None and sweep_config.load(source) != config:
            raise ValueError(f"--resume {out}: CONFIG differs from the sweep's config.json; omit CONFIG to resume")
        return config
    if source is None:
        raise ValueError("CONFIG is required unless resuming")
    if saved.is_file():
        raise ValueError(f"--out {out}: already holds a sweep; continue it with --resume {out}")
    config = sweep_config.load(source)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config


def _executor(kind: str, workers: int | None, threads: int, timeout: float | None, ray_address: str | None):
    if kind == "ray":
        from ..search.ray_executor import RayExecutor

        return RayExecutor(address=ray_address, slots=workers or max(1, (os.cpu_count() or 1) // threads),
                           threads_per_worker=threads, timeout=timeout, retries=0, evaluator=EVALUATOR)
    if kind != "local":
        raise ValueError(f"--executor must be local or ray, got {kind!r}")
    return LocalExecutor(default_devices("auto", workers), threads_per_worker=threads, timeout=timeout,
                         evaluator=EVALUATOR)


def _record(run: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    fields = ("val_loss", "val_accuracy", "train_loss", "epochs", "params_before", "params_after", "events")
    metrics = outcome.metrics or {}
    return {**{k: run[k] for k in ("run_id", "config_name", "strategy", "params", "trigger", "repeat", "seed")},
            **{k: metrics.get(k) for k in fields}, "status": outcome.status, "failure": outcome.failure,
            "error": outcome.error, "device": outcome.device, "wall_seconds": outcome.wall_seconds}


def _write_reports(out: Path, config: dict[str, Any], order: list[str], records: dict[str, dict]) -> list[dict]:
    finished = [records[r] for r in order if r in records]
    atomic_write_text(out / "results.json", json.dumps({"config": config, "runs": {r["run_id"]: r for r in finished}},
                                                       indent=2, sort_keys=True) + "\n")
    rows = summarize(finished)
    atomic_write_text(out / "summary.md", markdown(rows))
    atomic_write_text(out / "summary.csv", to_csv(rows))
    return rows


def run(config: str | Path | Mapping[str, Any] | None = None, *, out: str | Path, resume: bool = False,
        executor: str = "local", workers: int | None = None, threads_per_worker: int = 1,
        timeout: float | None = 1800.0, ray_address: str | None = None, progress: bool | None = None) -> SweepResult:
    """Runs the sweep ``config`` (a mapping or a YAML/JSON file) into ``out``; with ``resume``,
    continues the sweep in ``out`` (``config`` may then be omitted), skipping finished runs.
    Bad settings raise ValueError naming the key."""
    if isinstance(threads_per_worker, bool) or not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise ValueError(f"threads_per_worker must be an integer >= 1, got {threads_per_worker!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be None or an integer >= 1, got {workers!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be None or > 0 seconds, got {timeout!r}")
    out = Path(out)
    config = _prepare(config, out, resume)
    runs = sweep_config.expand(config)
    order = [r["run_id"] for r in runs]
    records = {k: v for k, v in _read_records(out / "runs.jsonl").items() if k in order}
    queue = [r for r in runs if r["run_id"] not in records or not _settled(records[r["run_id"]])]
    by_id = {r["run_id"]: r for r in runs}
    shared = {k: config[k] for k in SHARED}
    pool = _executor(executor, workers, threads_per_worker, timeout, ray_address)
    bar = tqdm(total=len(runs), initial=len(runs) - len(queue), unit="run", desc="sweep",
               disable=not (sys.stderr.isatty() if progress is None else progress))
    if queue:  # workers take seconds to start: none for a finished sweep
        pool.start()
    try:
        pending = list(queue)
        while pending or pool.running():
            while pending and pool.idle() > 0:
                job = pending.pop(0)
                pool.submit(job["run_id"], {**job, **shared, "out_dir": str(out / "runs" / job["run_id"])})
            for outcome in pool.poll(timeout=1.0):
                record = _record(by_id[outcome.task_id], outcome)
                append_jsonl(out / "runs.jsonl", record, sort_keys=True)
                records[record["run_id"]] = record
                _write_reports(out, config, order, records)
                bar.update(1)
    finally:
        pool.shutdown()
        bar.close()
    rows = _write_reports(out, config, order, records)
    return SweepResult(out, [records[r] for r in order if r in records], rows, len(queue))
