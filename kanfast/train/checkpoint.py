"""Checkpoint files: everything a run needs to continue exactly, loadable with
``torch.load(weights_only=True)`` (tensors, numbers, strings, lists and dicts only).

``CheckpointWriter`` writes them off the training thread: the payload is first copied to CPU
(``snapshot``), so training can go on changing the live tensors while the file is written.
The write itself stays atomic (temporary file, fsync, rename): a crash at any point leaves the
previous checkpoint or the new one, never part of a file.
"""

from __future__ import annotations

import copy
import random
import threading
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


def snapshot(obj: Any) -> Any:
    """``obj`` with every tensor copied to a new CPU tensor and every container rebuilt: a copy
    that later in-place updates (parameters, optimizer moments, step counters) do not reach."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        out = type(obj)((key, snapshot(value)) for key, value in obj.items())
        if hasattr(obj, "_metadata"):  # a state_dict's per-module versions, read by load_state_dict
            out._metadata = copy.deepcopy(obj._metadata)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(value) for value in obj)
    return obj


class CheckpointWriter:
    """Saves checkpoints in a background thread, one at a time: ``submit`` waits for the
    previous write, snapshots the payload and returns while the new one is written; ``wait``
    blocks until it is on disk and raises the error of a failed write."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, path: Path, payload: dict[str, Any]) -> None:
        self.wait()
        state = snapshot(payload)
        # not a daemon: an interpreter exiting on an uncaught error still finishes the file
        self._thread = threading.Thread(target=self._write, args=(path, state), name="kanfast-checkpoint")
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"writing a checkpoint failed: {error}") from error

    def _write(self, path: Path, state: dict[str, Any]) -> None:
        try:
            save(path, state)
        except BaseException as error:  # reported on the training thread by the next wait()
            self._error = error


def load(path: str | Path) -> dict[str, Any]:
    payload = torch.load(checkpoint_path(path), map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT:
        raise ValueError(f"resume={str(path)!r}: checkpoint format {payload.get('format')!r}, expected {FORMAT}")
    return payload
