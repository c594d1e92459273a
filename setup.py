"""Build script. With PyTorch importable (``pip install --no-build-isolation .``) the C++
extension kanfast._C is compiled now (with the CUDA kernels when PyTorch has CUDA);
otherwise (isolated builds, which must never download PyTorch) the package installs
without it and compiles the same sources on first use. Source lists: csrc/sources.txt."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent

_spec = importlib.util.spec_from_file_location("_kanfast_sources", ROOT / "kanfast" / "_sources.py")
sources = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sources)


class BuildPyWithSources(build_py):
    """Ships csrc/ inside the package (kanfast/_csrc/csrc) for the on-first-use build."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "kanfast" / "_csrc" / "csrc"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(ROOT / "csrc", target, ignore=shutil.ignore_patterns("tests", "build*"))


def extension_modules():
    if os.environ.get("KANFAST_NO_EXTENSION") == "1":
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:  # isolated build: no torch here, compile on first use instead
        return [], {}
    with_cuda = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    files = sources.read_sources(ROOT, "cpu")
    if with_cuda:
        files += sources.read_sources(ROOT, "cuda_kernels") + sources.read_sources(ROOT, "cuda")
    make = cpp_extension.CUDAExtension if with_cuda else cpp_extension.CppExtension
    ext = make(
        "kanfast._C",
        [str(f.relative_to(ROOT)) for f in files],
        include_dirs=[str(ROOT / "csrc" / "include")],
        extra_compile_args={"cxx": sources.CXX_FLAGS, "nvcc": sources.NVCC_FLAGS},
        extra_link_args=sources.LD_FLAGS,
    )
    return [ext], {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extension_modules()
setup(ext_modules=ext_modules, cmdclass={"build_py": BuildPyWithSources, **cmdclass})
