"""The metric files of a run directory, each row on disk (flushed) when the write returns.

- ``metrics.jsonl``: one JSON object per row (``kind`` "step" or "epoch").
- ``metrics.csv``: the same rows; a row with a new column rewrites the file with the wider header.
- ``events.jsonl``: structural events (``Trainer.log_event``), also fsynced: they are rare and
  a crash must not lose one.
- ``tensorboard/``: the numeric columns as scalars, when tensorboard is installed.

A resumed run first drops the rows written after its checkpoint's step, so each step appears once.
"""

from __future__ import annotations

import csv
import io
import json
import numbers
import os
from pathlib import Path
from typing import Any

from .._io import atomic_write_text, read_jsonl


def _tensorboard_writer(directory: Path, wanted: bool | None):
    if wanted is False:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if wanted:
            raise ImportError("tensorboard=True needs the tensorboard package (pip install tensorboard)") from None
        return None
    return SummaryWriter(str(directory))


def _lines(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


class MetricsLog:
    def __init__(self, directory: str | Path, *, tensorboard: bool | None, resume_step: int | None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path, self.csv_path = self.dir / "metrics.jsonl", self.dir / "metrics.csv"
        self.events_path = self.dir / "events.jsonl"
        rows, events = [], []
        if resume_step is not None:
            rows = [r for r in read_jsonl(self.jsonl_path) if r.get("step", 0) <= resume_step]
            events = [e for e in read_jsonl(self.events_path) if e.get("step", 0) <= resume_step]
        atomic_write_text(self.jsonl_path, _lines(rows))
        atomic_write_text(self.events_path, _lines(events))
        self.columns: list[str] = []
        self._rewrite_csv(rows)
        self._tensorboard = _tensorboard_writer(self.dir / "tensorboard", tensorboard)

    # Files are opened per write (rows come every log_every steps): no handle outlives a call.
    def write(self, row: dict[str, Any]) -> None:
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if any(key not in self.columns for key in row):
            self._rewrite_csv(read_jsonl(self.jsonl_path))
        else:
            with open(self.csv_path, "a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(row)
        if self._tensorboard is not None:
            for key, value in row.items():
                if key not in ("kind", "step", "epoch") and isinstance(value, numbers.Real):
                    self._tensorboard.add_scalar(f"{row.get('kind', 'metrics')}/{key}", value, row.get("step", 0))

    def event(self, record: dict[str, Any]) -> None:
        with open(self.events_path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def rewrite_events(self, events: list[dict[str, Any]]) -> None:
        """After an event changed (a strategy fills in the metric that followed it)."""
        atomic_write_text(self.events_path, _lines(events))

    def flush(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.flush()

    def _rewrite_csv(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.columns += [key for key in row if key not in self.columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns)
        if self.columns:
            writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.csv_path, buffer.getvalue())
