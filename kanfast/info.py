"""``python -m kanfast.info``: what is built, which backends run here, and why not."""

from __future__ import annotations

import platform
import sys

import torch

from . import __version__, _backend


def report() -> str:
    lines = [
        f"kanfast {__version__}  torch {torch.__version__}  python {platform.python_version()}  "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}  threads {torch.get_num_threads()}",
    ]
    loaded, how = _backend.library_status()
    lines.append(f"compiled library: {'loaded, ' + how if loaded else 'NOT loaded: ' + how}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if torch.cuda.is_available():
        lines.append(f"CUDA device: {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})")
    else:
        lines.append("CUDA device: none")
    lines.append("")
    width = max(len(name) for name in _backend.BACKENDS)
    for name, backend in _backend.BACKENDS.items():
        cells = []
        for device in devices:
            reason = _backend.why_not(name, device)
            cells.append(f"{device.type}: " + ("yes" if reason is None else f"no ({reason})"))
        lines.append(f"  {name:<{width}}  {backend.description:<28}  " + "; ".join(cells))
    lines.append("")
    requested = _backend.get_backend()
    for device in devices:
        try:
            chosen = _backend.choose("kan_linear", device)
        except RuntimeError as exc:
            chosen = f"error: {exc}"
        lines.append(f"backend for {device.type} tensors (KANFAST_BACKEND={requested}): {chosen}")
    return "\n".join(lines)


def main() -> int:
    print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
