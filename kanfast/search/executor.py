"""Executors run evaluations and report every outcome, success or failure, the same way.

``LocalExecutor`` keeps one spawned worker process per slot: one per GPU (each pinned to its
device) or N CPU workers with a fixed thread count each. A worker that raises reports the
error; one that dies (crash, ``os._exit``, the OOM killer) or runs past the per-trial timeout
is replaced, and its evaluation is reported failed with the reason. The Ray executor
(ray_executor.py) offers the same interface across machines.
"""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing as mp
import os
import time
import traceback
from multiprocessing.connection import wait
from typing import Any, Callable, Protocol

DEFAULT_EVALUATOR = "kanfast.search.trial:evaluate"
# A worker's first message: (READY, None) once it waits for tasks, or (STARTUP_FAILED, error).
READY, STARTUP_FAILED = "ready", "startup failed"
STARTUP_ATTEMPTS = 3  # a worker killed this many times in a row before it is ready: give up


@dataclasses.dataclass
class Outcome:
    """What happened to one submitted evaluation."""

    task_id: str
    status: str  # "ok" or "failed"
    metrics: dict[str, Any] | None = None
    failure: str | None = None  # "error", "crash" or "timeout": crash and timeout are worth a retry
    error: str | None = None
    device: str = ""
    wall_seconds: float = 0.0

    @property
    def retryable(self) -> bool:
        return self.failure in ("crash", "timeout")


class Executor(Protocol):
    def start(self) -> None: ...
    def capacity(self) -> int: ...
    def idle(self) -> int: ...
    def running(self) -> int: ...
    def submit(self, task_id: str, task: dict[str, Any]) -> None: ...
    def poll(self, timeout: float) -> list[Outcome]: ...
    def shutdown(self) -> None: ...


def resolve(path: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """'package.module:function' -> the function."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"evaluator must be given as 'module:function', got {path!r}")
    return getattr(importlib.import_module(module), name)


def run_guarded(fn, task: dict[str, Any]) -> tuple[str, dict | None, str | None]:
    """(status, metrics, error): every exception becomes a failed outcome with its message."""
    try:
        return "ok", fn(task), None
    except Exception as exc:  # noqa: BLE001 - the search records any failure and goes on
        tail = "".join(traceback.format_exception(exc)[-3:]).strip()
        return "failed", None, f"{type(exc).__name__}: {exc}\n{tail}"


def _worker_main(conn, device: str, threads: int, evaluator: str) -> None:
    try:
        import torch

        torch.set_num_threads(threads)
        if device.startswith("cuda"):
            torch.cuda.set_device(device)
        fn = resolve(evaluator)
    except Exception as exc:  # noqa: BLE001 - reported to the coordinator, which stops with it
        conn.send((STARTUP_FAILED, f"{type(exc).__name__}: {exc}"))
        return
    conn.send((READY, None))  # the per-trial timeout starts after start-up (imports take seconds on a busy machine)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        task_id, task = message
        status, metrics, error = run_guarded(fn, task)
        conn.send((task_id, status, metrics, error))


@dataclasses.dataclass
class _Worker:
    device: str
    process: Any = None
    conn: Any = None
    ready: bool = False
    failed_startups: int = 0
    task_id: str | None = None
    started: float = 0.0


class LocalExecutor:
    """Worker processes on this machine. devices: one entry per worker ("cpu", "cuda:0", ...)."""

    def __init__(self, devices: list[str], *, threads_per_worker: int = 1, timeout: float | None = None,
                 evaluator: str = DEFAULT_EVALUATOR) -> None:
        if not devices:
            raise ValueError("LocalExecutor needs at least one worker device")
        if threads_per_worker < 1:
            raise ValueError(f"threads_per_worker must be >= 1, got {threads_per_worker}")
        resolve(evaluator)  # fail early on a bad path, in this process
        self.threads = threads_per_worker
        self.timeout = timeout
        self.evaluator = evaluator
        self._context = mp.get_context("spawn")
        self._workers = [_Worker(device) for device in devices]

    def _spawn(self, worker: _Worker) -> None:
        parent, child = self._context.Pipe()
        worker.process = self._context.Process(target=_worker_main, args=(child, worker.device, self.threads,
                                                                          self.evaluator), daemon=True)
        worker.process.start()
        child.close()
        worker.conn = parent
        worker.ready = False
        worker.task_id = None

    def start(self) -> None:
        for worker in self._workers:
            self._spawn(worker)

    def capacity(self) -> int:
        return len(self._workers)

    def idle(self) -> int:
        return sum(w.ready and w.task_id is None for w in self._workers)

    def running(self) -> int:
        return sum(w.task_id is not None for w in self._workers)

    def submit(self, task_id: str, task: dict[str, Any]) -> None:
        worker = next((w for w in self._workers if w.ready and w.task_id is None), None)
        if worker is None:
            raise RuntimeError("LocalExecutor.submit: every worker is busy (check idle() first)")
        worker.task_id, worker.started = task_id, time.monotonic()
        worker.conn.send((task_id, dict(task, device=worker.device)))

    def _replace(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=10)
        worker.conn.close()
        self._spawn(worker)

    def _starting(self, worker: _Worker, ready: set) -> None:
        """A worker still starting up: mark it ready, or replace it if it died on the way."""
        if worker.conn in ready:
            try:
                kind, error = worker.conn.recv()
            except (EOFError, OSError):
                kind, error = None, None  # died before it could say anything: killed, see below
            if kind == STARTUP_FAILED:  # deterministic (bad device, broken install): retrying cannot help
                raise RuntimeError(f"search worker on {worker.device} could not start: {error}")
            worker.ready = kind == READY
        if worker.ready:
            worker.failed_startups = 0
        elif worker.process.sentinel in ready or not worker.process.is_alive():
            worker.process.join(timeout=5)
            worker.failed_startups += 1
            if worker.failed_startups >= STARTUP_ATTEMPTS:
                raise RuntimeError(f"search worker on {worker.device} died {STARTUP_ATTEMPTS} times while starting "
                                   f"(last exit code {worker.process.exitcode})")
            self._replace(worker)

    def poll(self, timeout: float) -> list[Outcome]:
        """Outcomes that arrived within `timeout` seconds (possibly none); also notices workers
        that finished starting up (idle() grows)."""
        starting = [w for w in self._workers if not w.ready]
        busy = [w for w in self._workers if w.task_id is not None]
        watched = starting + busy
        if not watched:
            return []
        deadline = min((w.started + self.timeout for w in busy), default=None) if self.timeout else None
        wait_for = timeout if deadline is None else max(0.0, min(timeout, deadline - time.monotonic()))
        ready = set(wait([w.conn for w in watched] + [w.process.sentinel for w in watched], wait_for))
        for w in starting:
            self._starting(w, ready)
        outcomes = []
        now = time.monotonic()
        for w in busy:
            elapsed = now - w.started
            if w.conn in ready:
                try:
                    task_id, status, metrics, error = w.conn.recv()
                except (EOFError, OSError):
                    pass  # died while sending: handled as a crash below
                else:
                    outcomes.append(Outcome(task_id, status, metrics, "error" if error else None, error, w.device,
                                            elapsed))
                    w.task_id = None
                    continue
            if w.process.sentinel in ready or not w.process.is_alive():
                w.process.join(timeout=5)  # reap it, so that its exit code is known
                code = w.process.exitcode
                outcomes.append(Outcome(w.task_id, "failed", failure="crash", device=w.device, wall_seconds=elapsed,
                                        error=f"worker process died (exit code {code}) during the evaluation"))
                self._replace(w)
            elif self.timeout and elapsed > self.timeout:
                outcomes.append(Outcome(w.task_id, "failed", failure="timeout", device=w.device, wall_seconds=elapsed,
                                        error=f"timed out after {self.timeout:g} s; the worker was killed"))
                self._replace(w)
        return outcomes

    def shutdown(self) -> None:
        for w in self._workers:
            if w.process is None:
                continue
            if w.task_id is None and w.process.is_alive():
                try:
                    w.conn.send(None)
                except OSError:
                    pass
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
            w.conn.close()


def default_devices(device: str, workers: int | None) -> list[str]:
    """Worker devices: one per visible GPU for "cuda" (or `workers` of them), else N CPU workers."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is visible")
        count = torch.cuda.device_count()
        return [f"cuda:{i % count}" for i in range(workers or count)]
    if device != "cpu":
        raise ValueError(f"--device must be auto, cpu or cuda, got {device!r}")
    return ["cpu"] * (workers or max(1, (os.cpu_count() or 1)))
