import os
import subprocess
import sys

import pytest
import torch

import kanfast
from kanfast import _backend


def test_automatic_choice_on_cpu_prefers_the_compiled_kernels():
    expected = "cpp" if _backend.load_library() else "reference"
    assert _backend.choose("kan_linear", torch.device("cpu")) == expected


def test_explicit_backend_that_cannot_run_says_why():
    with pytest.raises(RuntimeError, match="backend 'cuda' was requested but cannot run here: .*cpu tensors"):
        _backend.choose("kan_linear", torch.device("cpu"), "cuda")
    with pytest.raises(ValueError, match="backend must be one of auto, cuda, triton, cpp, reference; got 'gpu'"):
        _backend.choose("kan_linear", torch.device("cpu"), "gpu")


def test_set_and_use_backend():
    x, grid = torch.rand(3, 2), kanfast.KANLinear(2, 1).grid
    with kanfast.use_backend("reference"):
        assert kanfast.get_backend() == "reference"
        assert _backend.choose("bspline_basis", x.device) == "reference"
        kanfast.ops.bspline_basis(x, grid, 3)
    assert kanfast.get_backend() == "auto"
    with pytest.raises(ValueError, match="backend must be one of"):
        kanfast.set_backend("fastest")


def _run(code, **env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KANFAST_")} | env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=600)


def test_without_compiled_kernels_kanfast_warns_once_and_uses_the_reference():
    code = (
        "import torch, kanfast\n"
        "layer = kanfast.KANLinear(3, 2)\n"
        "y = layer(torch.rand(4, 3)); y = layer(torch.rand(4, 3)); y.sum().backward()\n"
        "print(kanfast._backend.choose('kan_linear', torch.device('cpu')))\n"
    )
    result = _run(code, KANFAST_DISABLE_CPP="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "reference"
    assert result.stderr.count("compiled kernels unavailable (RuntimeError: disabled by KANFAST_DISABLE_CPP=1)") == 1


def test_environment_override_is_validated():
    result = _run("import kanfast", KANFAST_BACKEND="gpu")
    assert result.returncode != 0 and "KANFAST_BACKEND must be one of auto" in result.stderr


def test_info_reports_every_backend():
    result = _run("import kanfast.info as i; i.main()", KANFAST_BACKEND="reference")
    assert result.returncode == 0, result.stderr
    for name in ("cuda", "triton", "cpp", "reference"):
        assert f"  {name} " in result.stdout
    assert "backend for cpu tensors (KANFAST_BACKEND=reference): reference" in result.stdout
