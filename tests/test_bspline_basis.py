import pytest
import torch

from conftest import DEVICE, backend_params, make_grid
from kanfast import ops, reference
from kanfast.reference.bspline_basis import bspline_basis_derivative
from tolerances import assert_close, low_precision_rule

BACKENDS = backend_params()
CPP = [p for p in BACKENDS if p.id == "cpp"]


def _inputs(batch, features, grid_size, order, *, uniform=True, dtype=torch.float64):
    grid = make_grid(features, grid_size, order, uniform=uniform, dtype=dtype)
    lo, hi = grid[:, 0].min().item(), grid[:, -1].max().item()
    x = torch.empty(batch, features, dtype=torch.float64, device=DEVICE).uniform_(lo - 0.3, hi + 0.3).to(dtype)
    x[0] = grid[:, order].to(dtype)  # exactly on interior knots
    x[1] = grid[:, 0].to(dtype)  # the first knot (inside, half-open)
    x[2] = grid[:, -1].to(dtype)  # the last knot (outside)
    return x, grid


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    "order,grid_size,uniform",
    [(1, 1, True), (2, 3, False), (3, 5, True), (3, 5, False), (4, 10, False), (5, 64, True)],
)
def test_bases_equal_reference_bit_for_bit(backend, dtype, order, grid_size, uniform):
    if backend == "triton" and grid_size > 10:
        pytest.skip("the Triton interpreter unrolls G+2K knots: large grids are covered on GPU runs")
    x, grid = _inputs(19, 7, grid_size, order, uniform=uniform, dtype=dtype)
    out = ops.bspline_basis(x, grid, order, backend=backend)
    assert out.shape == (19, 7, grid_size + order) and out.dtype == dtype
    if _uniform_fast_path(backend, dtype, order, uniform):
        assert_close(out, reference.bspline_basis(x.double(), grid.double(), order), "bspline_uniform")
        return
    expected = reference.bspline_basis(x, grid, order)
    assert torch.equal(out, expected), (out - expected).abs().max()


def _uniform_fast_path(backend, dtype, order, uniform):
    """The C++ CPU kernels evaluate float32 bases of order >= 2 on uniform grids from the
    cardinal B-spline (csrc/include/kanfast/uniform_bspline.h): close to the reference, not equal."""
    return backend == "cpp" and dtype == torch.float32 and order >= 2 and uniform


def _uniform_inputs(batch, features, grid_size, order):
    """float32 x over a uniform float32 grid, with x on every knot, just beside the knots, at both
    ends of the grid, outside it and non-finite."""
    x, grid = _inputs(batch, features, grid_size, order, dtype=torch.float32)
    knots = grid.t()  # (G+2K+1, features)
    x = torch.cat([x, knots, torch.nextafter(knots, knots - 1), torch.nextafter(knots, knots + 1)])
    x[-1, 0], x[-2, 0], x[-3, 0] = float("nan"), float("inf"), -float("inf")
    return x, grid


@pytest.mark.parametrize("backend", CPP)
@pytest.mark.parametrize("features", [3, 16, 37])
@pytest.mark.parametrize("order,grid_size", [(2, 3), (3, 5), (3, 10), (4, 8), (5, 64), (7, 2)])
def test_uniform_fast_path_matches_the_float64_reference(backend, order, grid_size, features):
    x, grid = _uniform_inputs(11, features, grid_size, order)
    x.requires_grad_()
    out = ops.bspline_basis(x, grid, order, backend=backend)
    assert_close(out, reference.bspline_basis(x.detach().double(), grid.double(), order), "bspline_uniform")
    weights = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    deriv = bspline_basis_derivative(x.detach().double(), grid.double(), order)
    expected = (weights.double() * deriv).sum(-1)
    # the derivative scales with 1/h: compare it in units of the knot spacing
    step = grid[:, 1] - grid[:, 0]
    assert_close(grad * step, expected * step, "bspline_uniform_grad")


@pytest.mark.parametrize("backend", CPP)
def test_nearly_uniform_float32_grids_take_the_exact_recursion(backend):
    # One knot moved by far more than rounding: no longer uniform, so bit for bit again.
    x, grid = _uniform_inputs(11, 16, 5, 3)
    grid[5, 4] += 1e-3
    out = ops.bspline_basis(x, grid, 3, backend=backend)
    torch.testing.assert_close(out, reference.bspline_basis(x, grid, 3), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("features", [4, 8, 12, 16, 24, 37])
def test_every_lane_width_and_tail_equals_reference(backend, dtype, features):
    # The CPU kernels pick 32- or 64-byte lanes from the feature count: full groups and tails
    # of both widths, forward and backward.
    x, grid = _inputs(5, features, 5, 3, uniform=False, dtype=dtype)
    x.requires_grad_()
    out = ops.bspline_basis(x, grid, 3, backend=backend)
    assert torch.equal(out, reference.bspline_basis(x, grid, 3))
    weights = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    expected = (weights.double() * bspline_basis_derivative(x.detach().double(), grid.double(), 3)).sum(-1)
    assert_close(grad, expected, "bspline_grad")


@pytest.mark.parametrize("backend", backend_params(include_reference=True))
def test_highest_supported_order(backend):
    x, grid = _inputs(5, 2, 3, 7)
    assert torch.equal(ops.bspline_basis(x, grid, 7, backend=backend), reference.bspline_basis(x, grid, 7))
    with pytest.raises(ValueError, match=r"spline_order must be in \[1, 7\]"):
        ops.bspline_basis(x, make_grid(2, 3, 8), 8, backend=backend)


def test_bases_are_a_partition_of_unity_inside_the_grid_range():
    x, grid = _inputs(200, 5, 6, 3, uniform=False)
    inside = (x >= grid[:, 3]) & (x < grid[:, -4])
    total = ops.bspline_basis(x, grid, 3).sum(-1)
    torch.testing.assert_close(total[inside], torch.ones_like(total[inside]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", backend_params(include_reference=True))
def test_non_finite_inputs(backend):
    grid = make_grid(3, 5, 3)
    x = torch.tensor([[float("nan"), float("inf"), -float("inf")], [0.1, float("nan"), 5.0]], dtype=torch.float64,
                     device=DEVICE)
    out = ops.bspline_basis(x, grid, 3, backend=backend)
    assert torch.isnan(out[0, 0]).all() and torch.isnan(out[1, 1]).all()
    assert (out[0, 1:] == 0).all() and (out[1, 2] == 0).all()
    assert torch.isfinite(out[1, 0]).all()


@pytest.mark.parametrize("backend", backend_params(include_reference=True))
def test_repeated_knots_give_finite_bases_and_gradients(backend):
    grid = torch.tensor([[-1, -1, -1, -1, -0.5, 0, 0, 0.5, 1, 1, 1, 1.0]], dtype=torch.float64, device=DEVICE)
    x = torch.linspace(-1, 0.999, 50, dtype=torch.float64, device=DEVICE).unsqueeze(1).requires_grad_()
    out = ops.bspline_basis(x, grid, 3, backend=backend)
    out.pow(2).sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(50, 1, dtype=torch.float64, device=DEVICE))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_backward_matches_reference_derivative(backend, dtype):
    x, grid = _inputs(23, 6, 5, 3, uniform=False, dtype=dtype)
    x.requires_grad_()
    out = ops.bspline_basis(x, grid, 3, backend=backend)
    weights = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    deriv = bspline_basis_derivative(x.detach().double(), grid.double(), 3)
    expected = (weights.double() * deriv).sum(-1)
    assert_close(grad, expected, "bspline_grad")
    # and the analytic derivative agrees with autograd through the reference recursion
    x64 = x.detach().double().requires_grad_()
    (auto,) = torch.autograd.grad((reference.bspline_basis(x64, grid.double(), 3) * weights.double()).sum(), x64)
    torch.testing.assert_close(auto, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    grid = make_grid(3, 4, 2, uniform=False)
    x = torch.empty(5, 3, dtype=torch.float64, device=DEVICE).uniform_(-0.9, 0.9).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ops.bspline_basis(t, grid, 2, backend=backend), (x,))


@pytest.mark.parametrize("backend", BACKENDS)
def test_layouts_zero_batch_and_leading_dims(backend):
    x, grid = _inputs(12, 4, 5, 3)
    expected = reference.bspline_basis(x, grid, 3)
    # non-contiguous input: a transposed buffer
    x_t = x.t().contiguous().t()
    assert not x_t.is_contiguous()
    assert torch.equal(ops.bspline_basis(x_t, grid, 3, backend=backend), expected)
    # leading dimensions are kept
    out3 = ops.bspline_basis(x.view(3, 4, 4), grid, 3, backend=backend)
    assert torch.equal(out3, expected.view(3, 4, 4, 8))
    # zero-size batch, forward and backward
    empty = torch.empty(0, 4, dtype=torch.float64, device=DEVICE, requires_grad=True)
    out0 = ops.bspline_basis(empty, grid, 3, backend=backend)
    out0.sum().backward()
    assert out0.shape == (0, 4, 8) and empty.grad.shape == (0, 4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_low_precision_rule(backend, dtype):
    x, grid = _inputs(64, 8, 5, 3, dtype=torch.float64)
    x_low = x.to(dtype)
    ref64 = reference.bspline_basis(x_low.double(), grid, 3)
    ref_low = reference.bspline_basis(x_low, grid.to(dtype), 3)
    out = ops.bspline_basis(x_low, grid.float(), 3, backend=backend)
    assert out.dtype == dtype
    low_precision_rule(out, ref_low, ref64, factor=2)


def test_opcheck_compiled():
    pytest.importorskip("kanfast._backend").load_library() or pytest.skip("compiled library not loaded")
    x, grid = _inputs(9, 4, 5, 3)
    torch.library.opcheck(torch.ops.kanfast.bspline_basis.default, (x.requires_grad_(), grid, 3))
    torch.library.opcheck(torch.ops.kanfast.bspline_basis_backward.default,
                          (torch.randn(9, 4, 8, dtype=torch.float64, device=DEVICE), x.detach(), grid, 3))


@pytest.mark.parametrize("backend", [p for p in BACKENDS if p.id == "triton"])
def test_opcheck_triton(backend):
    from kanfast.triton.bspline_basis import bspline_basis_backward_triton, bspline_basis_triton

    x, grid = _inputs(5, 3, 2, 1)
    torch.library.opcheck(bspline_basis_triton, (x.requires_grad_(), grid, 1))
    torch.library.opcheck(bspline_basis_backward_triton, (torch.randn(5, 3, 3, dtype=torch.float64), x.detach(), grid, 1))


def test_torch_compile_fullgraph():
    x, grid = _inputs(8, 4, 5, 3)
    compiled = torch.compile(lambda t: ops.bspline_basis(t, grid, 3).sum(-1) * 2, fullgraph=True, backend="eager")
    assert torch.equal(compiled(x), reference.bspline_basis(x, grid, 3).sum(-1) * 2)


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda x, g: (x, g[0], 3), ValueError, r"grid must have shape \(features"),
        (lambda x, g: (x[:, :2], g, 3), ValueError, r"x.shape\[-1\] must equal grid.shape\[0\] = 4"),
        (lambda x, g: (x, g, 0), ValueError, r"spline_order must be in \[1, 7\]"),
        (lambda x, g: (x, g, 2.0), TypeError, "spline_order must be an int"),
        (lambda x, g: (x, g[:, :4], 3), ValueError, r"grid.shape\[1\] \(knots per feature\) must be in .* = \[5, 128\], got 4"),
        (lambda x, g: (x, g.flip(1), 3), ValueError, "grid must be non-decreasing along dim 1"),
        (lambda x, g: (x, torch.where(g > 0.5, float("nan"), g), 3), ValueError, "grid must hold finite knots"),
        (lambda x, g: (x.long(), g, 3), TypeError, "x must be a floating-point tensor"),
        (lambda x, g: (x, g.to("meta"), 3), ValueError, "grid is on meta but x is on"),
        (lambda x, g: (x.numpy(), g, 3), TypeError, "x must be a torch.Tensor"),
    ],
)
def test_bad_inputs_name_the_argument(make, error, match):
    x, grid = torch.rand(5, 4, dtype=torch.float64), make_grid(4, 5, 3, device="cpu")
    with pytest.raises(error, match=match):
        ops.bspline_basis(*make(x, grid))


def test_compiled_op_checks_its_arguments_too():
    if not pytest.importorskip("kanfast._backend").load_library():
        pytest.skip("compiled library not loaded")
    x, grid = torch.rand(5, 4, dtype=torch.float64), make_grid(4, 5, 3, device="cpu")
    with pytest.raises(RuntimeError, match="must equal grid.size"):
        torch.ops.kanfast.bspline_basis(x[:, :3], grid, 3)
    with pytest.raises(ValueError, match="non-decreasing"):
        torch.ops.kanfast.bspline_basis(x, grid.flip(1), 3)
