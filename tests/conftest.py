import os

import pytest
import torch

# Triton kernels run on CPU tensors under the interpreter; it must be on before triton loads.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import kanfast  # noqa: E402
from kanfast import _backend  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def available_backends(device: torch.device = DEVICE) -> list[str]:
    return [name for name in _backend.BACKENDS if _backend.why_not(name, device) is None]


def backend_params(*, include_reference: bool = False):
    """pytest params for every compiled/Triton backend, skipped with the reason where unusable."""
    params = []
    for name in _backend.BACKENDS:
        if name == "reference" and not include_reference:
            continue
        reason = _backend.why_not(name, DEVICE)
        marks = [pytest.mark.skip(reason=f"{name}: {reason}")] if reason else []
        params.append(pytest.param(name, id=name, marks=marks))
    return params


def make_grid(features, grid_size, spline_order, *, uniform=True, dtype=torch.float64, device=DEVICE, seed=0):
    """Uniform knots on (-1, 1) extended by K steps, or strictly increasing random knots."""
    gen = torch.Generator().manual_seed(seed)
    num_knots = grid_size + 2 * spline_order + 1
    if uniform:
        h = 2 / grid_size
        knots = torch.arange(-spline_order, grid_size + spline_order + 1, dtype=torch.float64) * h - 1
        grid = knots.expand(features, -1).clone()
        grid += 0.05 * torch.rand(features, 1, generator=gen, dtype=torch.float64)  # distinct per feature
    else:
        steps = 0.1 + torch.rand(features, num_knots - 1, generator=gen, dtype=torch.float64)
        grid = torch.cat([torch.zeros(features, 1, dtype=torch.float64), steps.cumsum(1)], 1)
        grid = grid / grid[:, -1:] * (2 + 4 * spline_order / grid_size) - (1 + 2 * spline_order / grid_size)
    return grid.to(device=device, dtype=dtype)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
