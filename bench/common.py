"""Measurement helpers shared by the pytest-benchmark suites and the ratio-table scripts.

DESIGN.md §5: every kernel is reported as a ratio to the dense floor measured in the same
process (median of repeated runs after warm-up, fixed thread count, providers interleaved so
that machine noise hits all of them alike), plus the bytes saved for backward.
"""

from __future__ import annotations

import ctypes
import datetime
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from kanfast._io import atomic_write_text


def provider_param(name: str):
    """A pytest param for a benchmark provider: the floors and "reference" always run, a kanfast
    backend is skipped with the reason it cannot run here."""
    import pytest

    from kanfast import _backend

    always = name.startswith("floor") or name == "reference"
    reason = None if always else _backend.why_not(name, torch.device("cpu"))
    return pytest.param(name, id=name, marks=[pytest.mark.skip(reason=reason)] if reason else [])


def setup_measurement(threads: int) -> None:
    """The fixed thread count of DESIGN.md §5, and a steady allocator."""
    torch.set_num_threads(threads)
    steady_allocator()


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # <malloc.h>


def steady_allocator() -> bool:
    """Keeps freed memory in the heap for reuse (glibc; returns whether it applied).

    By default glibc serves large blocks from fresh mmap pages and adapts that threshold to the
    sizes freed so far, so a provider that allocates large temporaries on every call (the
    floor's feature gradients) ran 1.4x slower or not depending on what had run before it in
    the process: the NCHW floor at N=16 16->32 32x32 took 21 ms first and 15 ms after a larger
    case. Without mmap and heap trimming, every provider reuses warm pages alike.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def saved_activation_bytes(fn: Callable[[], torch.Tensor], parameters: list[torch.Tensor]) -> int:
    """Bytes of the unique storages autograd saves while running fn, parameters excluded."""
    storages: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    excluded = {p.untyped_storage().data_ptr() for p in parameters}
    return sum(n for ptr, n in storages.items() if ptr not in excluded)


def interleaved_medians(runs: dict[str, Callable[[], None]], repeats: int, warmup: int = 2,
                        min_sample_s: float = 0.02) -> dict[str, float]:
    """Median seconds per call per provider; each repetition runs every provider in turn.

    A sample is as many back-to-back calls as fill ``min_sample_s`` (counted from the last
    warm-up call), so that millisecond-scale cases are not timed one noisy call at a time.

    Python's garbage collector is off while timing, as in timeit: with torch imported its
    collections, set off by whichever provider happens to allocate the 700th object, cost
    ~0.6 ms per forward+backward at N=16 16->32 8x8 (the floor took 2.05 ms with it, 1.43 ms
    without), charged to whichever provider was running.
    """
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        calls: dict[str, int] = {}
        for name, fn in runs.items():
            for _ in range(warmup):
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
            calls[name] = max(1, int(min_sample_s / max(elapsed, 1e-9))) if warmup else 1
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeats):
            for name, fn in runs.items():
                start = time.perf_counter()
                for _ in range(calls[name]):
                    fn()
                times[name].append((time.perf_counter() - start) / calls[name])
    finally:
        if collecting:
            gc.enable()
    return {name: statistics.median(ts) for name, ts in times.items()}


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads")


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).parent)
        # Results (this report, its plot) are not code: writing them first must not mark the run dirty.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/",
                                ":(top,exclude)bench/results"], capture_output=True,
                               text=True, timeout=10, cwd=Path(__file__).parent).stdout.strip()
        return out.stdout.strip() + ("+uncommitted" if dirty else "") if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def write_report(path: Path, title: str, script: str, argv: list[str] | None, body: str) -> None:
    """Markdown report with what was measured, where and how; written atomically. script: the
    benchmark's ``__file__``; argv: its arguments (None: the command line's)."""
    args = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python", f"bench/{Path(script).name}", *args])
    text = (f"# {title}\n\n- date: {datetime.date.today().isoformat()}\n- commit: {commit()}\n"
            f"- machine: {machine_description()}\n- command: `{command}`\n\n{body}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
