"""Where the native sources are and how they compile. Imports nothing but the standard
library, so setup.py can load it before PyTorch is importable."""

from __future__ import annotations

from pathlib import Path

SOURCES_FILE = Path("csrc") / "sources.txt"


def read_sources(root: Path, section: str) -> list[Path]:
    """Paths listed under ``[section]`` in csrc/sources.txt (CMakeLists.txt reads it too)."""
    current, paths = None, []
    for line in (root / SOURCES_FILE).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif current == section:
            paths.append(root / line)
    return paths


# -ffp-contract=off / --fmad=false: no FMA contraction, so the bases match the reference bit
# for bit (the GEMMs, in vendor libraries, are unaffected).
CXX_FLAGS = ["-O3", "-std=c++17", "-fopenmp", "-ffp-contract=off", "-Wno-psabi"]
NVCC_FLAGS = ["-O3", "-std=c++17", "--fmad=false"]
LD_FLAGS = ["-fopenmp"]
