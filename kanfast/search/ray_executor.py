"""Executor on Ray core tasks: how a search goes past one machine.

Connects to ``address`` (a running cluster) or starts a local Ray. Each evaluation is one task
asking for one GPU (GPU clusters) or ``threads_per_worker`` CPUs; Ray retries tasks whose
worker died up to ``retries`` times; a task past the per-trial timeout is cancelled and
reported failed, like every exception raised inside it.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from .executor import DEFAULT_EVALUATOR, Outcome, resolve, run_guarded
from .._io import atomic_write_bytes


def _evaluate_remote(evaluator: str, task: dict[str, Any], threads: int):
    """(status, metrics, error, device, weights): the trained weights travel back as bytes,
    since a task on another machine writes its weights file to that machine's disk."""
    import torch

    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() and task.get("device", "cpu").startswith("cuda") else "cpu"
    task = dict(task, device=device)
    status, metrics, error = run_guarded(lambda t: resolve(evaluator)(t), task)
    weights = None
    path = Path(task["weights_path"]) if task.get("weights_path") else None
    if status == "ok" and path is not None and path.is_file():
        weights = path.read_bytes()
    return status, metrics, error, device, weights


def _plain(message: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", message)  # Ray colours its error messages


class RayExecutor:
    def __init__(self, *, address: str | None = None, slots: int = 1, use_gpus: bool = False,
                 threads_per_worker: int = 1, timeout: float | None = None, retries: int = 1,
                 evaluator: str = DEFAULT_EVALUATOR) -> None:
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise ValueError("--executor ray needs Ray: pip install 'ray[default]'") from exc
        resolve(evaluator)
        self.address, self.slots, self.use_gpus = address, slots, use_gpus
        self.threads, self.timeout, self.retries, self.evaluator = threads_per_worker, timeout, retries, evaluator
        self._running: dict[Any, tuple[str, float, str | None]] = {}  # object ref -> (task id, start, weights path)
        self._remote = None

    def start(self) -> None:
        import ray

        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False)
            else:  # a local Ray: its workers import what this process can import
                ray.init(num_cpus=self.slots * self.threads, ignore_reinit_error=True, log_to_driver=False,
                         include_dashboard=False,
                         runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}})
        resources = {"num_gpus": 1} if self.use_gpus else {"num_cpus": self.threads}
        self._remote = ray.remote(max_retries=self.retries, **resources)(_evaluate_remote)

    def capacity(self) -> int:
        return self.slots

    def idle(self) -> int:
        return self.slots - len(self._running)

    def running(self) -> int:
        return len(self._running)

    def submit(self, task_id: str, task: dict[str, Any]) -> None:
        if self.idle() <= 0:
            raise RuntimeError("RayExecutor.submit: all slots are busy (check idle() first)")
        device = "cuda" if self.use_gpus else "cpu"
        ref = self._remote.remote(self.evaluator, dict(task, device=device), self.threads)
        self._running[ref] = (task_id, time.monotonic(), task.get("weights_path"))

    def poll(self, timeout: float) -> list[Outcome]:
        import ray
        from ray.exceptions import GetTimeoutError, RayError, TaskCancelledError

        if not self._running:
            return []
        ready, _ = ray.wait(list(self._running), num_returns=len(self._running), timeout=timeout)
        outcomes = []
        now = time.monotonic()
        for ref in list(self._running):
            task_id, started, weights_path = self._running[ref]
            if ref in ready:
                del self._running[ref]
                try:
                    status, metrics, error, device, weights = ray.get(ref)
                    if weights is not None:
                        atomic_write_bytes(Path(weights_path), weights)
                    outcomes.append(Outcome(task_id, status, metrics, "error" if error else None, error, device,
                                            now - started))
                except (TaskCancelledError, GetTimeoutError) as exc:
                    outcomes.append(Outcome(task_id, "failed", failure="timeout", error=str(exc),
                                            wall_seconds=now - started))
                except RayError as exc:  # the worker died (after Ray's own retries) or the node was lost
                    outcomes.append(Outcome(task_id, "failed", failure="crash", wall_seconds=now - started,
                                            error=_plain(f"{type(exc).__name__}: {exc}")))
            elif self.timeout and now - started > self.timeout:
                ray.cancel(ref, force=True)
                del self._running[ref]
                outcomes.append(Outcome(task_id, "failed", failure="timeout", wall_seconds=now - started,
                                        error=f"timed out after {self.timeout:g} s; the task was cancelled"))
        return outcomes

    def shutdown(self) -> None:
        import ray

        for ref in list(self._running):
            ray.cancel(ref, force=True)
        self._running.clear()
        if not self.address:
            ray.shutdown()
