"""Crash-safe file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch


def _temporary(path: Path) -> Path:
    # Same directory as the target so os.replace stays a rename on one file system.
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    tmp = _temporary(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    path = Path(path)
    tmp = _temporary(path)
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def append_jsonl(path: str | Path, record: Any, *, sort_keys: bool = False) -> None:
    """Appends one JSON line and fsyncs it: once this returns, the record survives a crash.
    A crash during the write leaves at most a cut-short last line, which read_jsonl skips."""
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=sort_keys) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> list[Any]:
    """The records of an append-only JSONL file (none if it is missing). A line that does not
    parse is the last one of a crashed writer, cut short, and is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
