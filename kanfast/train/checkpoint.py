"""Checkpoint files: everything a run needs to continue exactly, loadable with
``torch.load(weights_only=True)`` (tensors, numbers, strings, lists and dicts only)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_torch_save

FORMAT = 1
FILENAME = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(mt_state), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or the run directory holding one."""
    path = Path(path)
    file = path / FILENAME if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"resume={str(path)!r}: no checkpoint at {file}")
    return file


def save(path: Path, payload: dict[str, Any]) -> None:
    atomic_torch_save(path, {"format": FORMAT, **payload})


def load(path: str | Path) -> dict[str, Any]:
    payload = torch.load(checkpoint_path(path), map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT:
        raise ValueError(f"resume={str(path)!r}: checkpoint format {payload.get('format')!r}, expected {FORMAT}")
    return payload
