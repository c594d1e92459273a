"""Which implementation runs an op: compiled CUDA, Triton, compiled C++ CPU, or the reference.

The compiled part (``kanfast._C``) is loaded lazily and never fatally: an ahead-of-time build
(``pip install --no-build-isolation .``) is imported if present, otherwise the sources are
compiled on first use (ninja, cached); if that fails too, kanfast warns once and runs on the
pure-PyTorch reference. Every refusal is remembered with its reason for ``python -m kanfast.info``.

Backend choice is a table (``BACKENDS``): each backend says which devices it runs on and
whether it is usable here. ``KANFAST_BACKEND`` (or :func:`set_backend`) names one explicitly;
an explicit choice that cannot run is an error that says why, an automatic one falls back quietly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import os
import shutil
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterator

import torch

from ._sources import CXX_FLAGS, LD_FLAGS, NVCC_FLAGS, SOURCES_FILE, read_sources

AUTO = "auto"
# Preference order for automatic choice; the first usable backend for the device wins.
BACKEND_ORDER = ("cuda", "triton", "cpp", "reference")

_PACKAGE_DIR = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Backend:
    name: str
    description: str
    device_types: Callable[[], tuple[str, ...]]  # devices it can run on when asked for
    usable: Callable[[], tuple[bool, str]]  # (usable here, why not)
    auto_device_types: tuple[str, ...]  # devices it is chosen for automatically
    device_note: str = ""  # said when a device is refused


# --------------------------------------------------------------------------- compiled library


class _Library:
    """State of the compiled extension: loaded or not, and why."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempted = False
        self.loaded = False
        self.how = ""  # "prebuilt" or "built on first use at <dir>"
        self.error = ""
        self.after_load: list[Callable[[], None]] = []


_LIB = _Library()


def after_library_load(fn: Callable[[], None]) -> Callable[[], None]:
    """Decorator: run ``fn`` (register fake/autograd kernels of C++ ops) once the library loads."""
    _LIB.after_load.append(fn)
    if _LIB.loaded:
        fn()
    return fn


def source_root() -> Path | None:
    """The directory holding ``csrc/``: the package's copy when installed, else the checkout."""
    for root in (_PACKAGE_DIR / "_csrc", _PACKAGE_DIR.parent):
        if (root / SOURCES_FILE).is_file():
            return root
    return None


def _build_on_first_use() -> str:
    from torch.utils import cpp_extension

    root = source_root()
    if root is None:
        raise RuntimeError("the C++ sources are not installed with this copy of kanfast")
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    sources = read_sources(root, "cpu")
    with_cuda = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    if with_cuda:
        sources += read_sources(root, "cuda_kernels") + read_sources(root, "cuda")
    # One build directory per source tree and toolchain; ninja rebuilds what changed in it.
    digest = hashlib.sha256(repr((str(root), torch.__version__, with_cuda, CXX_FLAGS, NVCC_FLAGS)).encode())
    build_dir = Path(
        os.environ.get("KANFAST_BUILD_DIR", Path.home() / ".cache" / "kanfast" / digest.hexdigest()[:16])
    )
    build_dir.mkdir(parents=True, exist_ok=True)
    if not any(build_dir.glob("*.so")):
        print(f"kanfast: compiling the C++ kernels into {build_dir} (once, about a minute)...", file=sys.stderr)
    cpp_extension.load(
        name="kanfast_C",
        sources=[str(s) for s in sources],
        extra_include_paths=[str(root / "csrc" / "include")],
        extra_cflags=CXX_FLAGS,
        extra_cuda_cflags=NVCC_FLAGS,
        extra_ldflags=LD_FLAGS,
        build_directory=str(build_dir),
        is_python_module=False,
        with_cuda=with_cuda,
        verbose=False,
    )
    return f"built on first use in {build_dir}"


@torch.compiler.disable
def load_library() -> bool:
    """Load the compiled kernels if possible; returns whether they are loaded. Never raises."""
    if _LIB.attempted:
        return _LIB.loaded
    with _LIB.lock:
        if _LIB.attempted:
            return _LIB.loaded
        try:
            if os.environ.get("KANFAST_DISABLE_CPP", "") == "1":
                raise RuntimeError("disabled by KANFAST_DISABLE_CPP=1")
            if importlib.util.find_spec("kanfast._C") is not None:
                importlib.import_module("kanfast._C")
                _LIB.how = "prebuilt (installed with the package)"
            elif os.environ.get("KANFAST_JIT", "1") == "0":
                raise RuntimeError("not prebuilt, and building on first use is off (KANFAST_JIT=0)")
            else:
                _LIB.how = _build_on_first_use()
            _LIB.loaded = True
            for fn in _LIB.after_load:
                fn()
        except Exception as exc:  # noqa: BLE001 - any failure means: run on the reference
            _LIB.error = f"{type(exc).__name__}: {exc}".strip()
            _LIB.loaded = False
            warnings.warn(
                f"kanfast: compiled kernels unavailable ({_LIB.error.splitlines()[0]}); "
                "running on the pure-PyTorch reference. `python -m kanfast.info` shows details.",
                RuntimeWarning,
                stacklevel=3,
            )
        finally:
            _LIB.attempted = True
    return _LIB.loaded


def library_status() -> tuple[bool, str]:
    load_library()
    return (_LIB.loaded, _LIB.how if _LIB.loaded else _LIB.error)


# --------------------------------------------------------------------------- the backends


def _cpp_usable() -> tuple[bool, str]:
    ok, why = library_status()
    return (True, why) if ok else (False, f"compiled library not loaded: {why}")


def _cuda_usable() -> tuple[bool, str]:
    if not torch.cuda.is_available():
        return False, "no CUDA device visible to PyTorch"
    ok, why = library_status()
    if not ok:
        return False, f"compiled library not loaded: {why}"
    if not torch._C._dispatch_has_kernel_for_dispatch_key("kanfast::kan_linear", "CUDA"):
        return False, "the compiled library was built without CUDA kernels (CPU-only PyTorch at build time)"
    return True, "compiled CUDA kernels"


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


@functools.lru_cache(maxsize=None)
def _triton_importable() -> tuple[bool, str]:
    try:
        import triton  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return False, f"triton not importable: {exc}"
    return True, f"triton {triton.__version__}"


def _triton_usable() -> tuple[bool, str]:
    ok, why = _triton_importable()
    if not ok:
        return False, why
    if not (torch.cuda.is_available() or triton_interpreted()):
        return False, "no CUDA device (set TRITON_INTERPRET=1 to run Triton kernels on the CPU, slowly)"
    return True, why + (" (interpreter)" if triton_interpreted() else "")


_ANY_DEVICE = ("cpu", "cuda", "mps", "xpu", "meta")

BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("cuda", "compiled CUDA C++ kernels", lambda: ("cuda",), _cuda_usable, ("cuda",)),
        # The interpreter runs Triton on CPU tensors for testing only: never chosen automatically.
        Backend(
            "triton",
            "Triton kernels",
            lambda: ("cuda", "cpu") if triton_interpreted() else ("cuda",),
            _triton_usable,
            ("cuda",),
            "; CPU tensors only under TRITON_INTERPRET=1 (the slow interpreter, for testing)",
        ),
        Backend("cpp", "compiled C++ CPU kernels", lambda: ("cpu",), _cpp_usable, ("cpu",)),
        Backend("reference", "pure-PyTorch reference", lambda: _ANY_DEVICE, lambda: (True, ""), _ANY_DEVICE),
    )
}


def _requested_from_env() -> str:
    name = os.environ.get("KANFAST_BACKEND", AUTO).strip().lower() or AUTO
    if name != AUTO and name not in BACKENDS:
        raise ValueError(f"KANFAST_BACKEND must be one of {AUTO}, {', '.join(BACKENDS)}; got {name!r}")
    return name


_REQUESTED = _requested_from_env()


def set_backend(name: str) -> None:
    """Use backend ``name`` for every op (or ``"auto"``), like setting KANFAST_BACKEND."""
    global _REQUESTED
    if name != AUTO and name not in BACKENDS:
        raise ValueError(f"backend must be one of {AUTO}, {', '.join(BACKENDS)}; got {name!r}")
    _REQUESTED = name


def get_backend() -> str:
    return _REQUESTED


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: run ops on backend ``name`` inside the block."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def why_not(name: str, device: torch.device) -> str | None:
    """None if backend ``name`` can run on ``device``, else the reason it cannot."""
    backend = BACKENDS[name]
    if device.type not in backend.device_types():
        return f"{backend.description} do not run on {device.type} tensors{backend.device_note}"
    ok, reason = backend.usable()
    return None if ok else reason


# Under torch.compile the choice is made once at trace time and baked into the graph.
@torch.compiler.assume_constant_result
def choose(op: str, device: torch.device, requested: str | None = None) -> str:
    """The backend that runs ``op`` on ``device``: the requested one (argument, then
    set_backend/KANFAST_BACKEND) or the first usable in BACKEND_ORDER."""
    name = requested or _REQUESTED
    if name != AUTO:
        if name not in BACKENDS:
            raise ValueError(f"backend must be one of {AUTO}, {', '.join(BACKENDS)}; got {name!r}")
        reason = why_not(name, device)
        if reason is not None:
            raise RuntimeError(f"kanfast.{op}: backend {name!r} was requested but cannot run here: {reason}")
        return name
    for candidate in BACKEND_ORDER:
        if device.type in BACKENDS[candidate].auto_device_types and why_not(candidate, device) is None:
            return candidate
    return "reference"
