"""The metric files of a run directory.

Rows are buffered in memory and written (both files, one open each) by ``flush``, which the
trainer calls at each epoch end, before each checkpoint and when the run ends or fails; ``write``
also flushes once ``flush_seconds`` have passed since the last flush. So a killed process loses
at most the rows buffered since the last flush: those of the last ``flush_seconds``, or only the
latest row when rows come less often; never a row at or before its checkpoint's step. A run that
ends with an exception loses none.

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
import time
from pathlib import Path
from typing import Any

from .._io import append_jsonl, atomic_write_text, read_jsonl


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
    def __init__(self, directory: str | Path, *, tensorboard: bool | None, resume_step: int | None,
                 flush_seconds: float = 10.0) -> None:
        self.flush_seconds = flush_seconds
        self._pending: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
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

    def write(self, row: dict[str, Any]) -> None:
        self._pending.append(row)
        if self._tensorboard is not None:
            for key, value in row.items():
                if key not in ("kind", "step", "epoch") and isinstance(value, numbers.Real):
                    self._tensorboard.add_scalar(f"{row.get('kind', 'metrics')}/{key}", value, row.get("step", 0))
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def event(self, record: dict[str, Any]) -> None:
        append_jsonl(self.events_path, record)

    def rewrite_events(self, events: list[dict[str, Any]]) -> None:
        """After an event changed (a strategy fills in the metric that followed it)."""
        atomic_write_text(self.events_path, _lines(events))

    # Files are opened per flush: no handle outlives a call.
    def flush(self) -> None:
        """Writes the buffered rows to metrics.jsonl and metrics.csv (and flushes TensorBoard)."""
        rows, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        if rows:
            with open(self.jsonl_path, "a") as f:
                f.write(_lines(rows))
            if any(key not in self.columns for row in rows for key in row):
                self._rewrite_csv(read_jsonl(self.jsonl_path))
            else:
                with open(self.csv_path, "a", newline="") as f:
                    csv.DictWriter(f, self.columns).writerows(rows)
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
