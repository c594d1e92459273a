"""The sweep's summary: one row per config, mean ± std over its repeats, ranked by final
validation loss (configs without a finished run last)."""

from __future__ import annotations

import csv
import io
import math
import statistics
from typing import Any

COLUMNS = ["rank", "config", "strategy", "ok", "failed", "val_loss_mean", "val_loss_std", "val_accuracy_mean",
           "val_accuracy_std", "params_before", "params_after_mean", "events_mean", "wall_seconds_mean"]


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    # sample standard deviation (n - 1) over the repeats; one repeat has no spread to estimate
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["config_name"], []).append(record)
    rows = []
    for name, runs in groups.items():
        ok = [r for r in runs if r["status"] == "ok"]
        row = {"config": name, "strategy": runs[0]["strategy"], "ok": len(ok), "failed": len(runs) - len(ok)}
        for key in ("val_loss", "val_accuracy"):
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std([r[key] for r in ok if r.get(key) is not None])
        row["params_before"] = ok[0]["params_before"] if ok else None
        row["params_after_mean"] = _mean_std([r["params_after"] for r in ok])[0]
        row["events_mean"] = _mean_std([r["events"] for r in ok])[0]
        row["wall_seconds_mean"] = _mean_std([r["wall_seconds"] for r in runs])[0]
        rows.append(row)
    rows.sort(key=lambda r: (r["val_loss_mean"] is None, r["val_loss_mean"] or 0.0, r["config"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return [{key: row[key] for key in COLUMNS} for row in rows]


def _pm(mean, std, fmt: str) -> str:
    return "—" if mean is None else f"{mean:{fmt}} ± {std:{fmt}}"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| rank | config | strategy | ok | failed | val loss | val accuracy | params before → after | events |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        params = "—" if r["params_before"] is None else f"{r['params_before']:,} → {r['params_after_mean']:,.0f}"
        events = "—" if r["events_mean"] is None else f"{r['events_mean']:.1f}"
        lines.append(f"| {r['rank']} | {r['config']} | {r['strategy']} | {r['ok']} | {r['failed']} | "
                     f"{_pm(r['val_loss_mean'], r['val_loss_std'], '.4f')} | "
                     f"{_pm(r['val_accuracy_mean'], r['val_accuracy_std'], '.2%')} | {params} | {events} |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS)
    writer.writeheader()
    writer.writerows({k: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v for k, v in r.items()}
                     for r in rows)
    return buffer.getvalue()
