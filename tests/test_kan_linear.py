import pytest
import torch

from conftest import DEVICE, backend_params, make_grid
from kanfast import _backend, ops, reference
from tolerances import assert_close, low_precision_rule, relative_l2_and_cosine

BACKENDS = backend_params()
ACTIVATIONS = ["silu", "gelu", "gelu_tanh", "relu", "tanh", "sigmoid", "identity"]


def _params(batch, in_f, out_f, grid_size=5, order=3, *, dtype=torch.float64, base=True, scaler=True, bias=True,
            uniform=False):
    grid = make_grid(in_f, grid_size, order, uniform=uniform, dtype=dtype)
    x = torch.empty(batch, in_f, dtype=dtype, device=DEVICE).uniform_(-1.3, 1.3)

    def rand(*shape):
        return torch.randn(*shape, dtype=dtype, device=DEVICE)

    return dict(
        x=x,
        grid=grid,
        base_weight=rand(out_f, in_f) if base else None,
        spline_weight=rand(out_f, in_f, grid_size + order),
        spline_scaler=rand(out_f, in_f) if scaler else None,
        bias=rand(out_f) if bias else None,
        spline_order=order,
    )


def _run(p, backend, **kwargs):
    return ops.kan_linear(p["x"], p["grid"], p["base_weight"], p["spline_weight"], p["spline_scaler"], p["bias"],
                          spline_order=p["spline_order"], backend=backend, **kwargs)


def _grads(p, backend, grad_out=None, **kwargs):
    names = [n for n in ("x", "base_weight", "spline_weight", "spline_scaler", "bias") if p[n] is not None]
    leaves = {n: p[n].detach().clone().requires_grad_() for n in names}
    q = {**p, **leaves}
    y = _run(q, backend, **kwargs)
    if grad_out is None:
        grad_out = torch.randn_like(y)
    grads = torch.autograd.grad(y, [leaves[n] for n in names], grad_out)
    return y.detach(), dict(zip(names, grads)), grad_out


def _assert_matches_float64_reference(p, y, grads, grad_out):
    p64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in p.items()}
    y_ref, grads_ref, _ = _grads(p64, "reference", grad_out.double())
    assert_close(y, y_ref, "kan_linear_output")
    for name, g in grads.items():
        assert_close(g, grads_ref[name], "kan_linear_grad")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", [(37, 7, 5, 5, 3), (16, 1, 1, 1, 1), (64, 33, 17, 10, 2), (9, 4, 6, 20, 5)])
def test_forward_and_gradients_match_reference(backend, dtype, shape):
    batch, in_f, out_f, grid_size, order = shape
    if backend == "triton" and grid_size > 10:
        pytest.skip("the Triton interpreter unrolls G+2K knots: large grids are covered on GPU runs")
    p = _params(batch, in_f, out_f, grid_size, order, dtype=dtype)
    _assert_matches_float64_reference(p, *_grads(p, backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(37, 7, 5, 5, 3), (64, 33, 17, 10, 2), (9, 16, 6, 20, 5)])
def test_uniform_grids_in_float32_match_reference(backend, shape):
    # the C++ CPU kernels' cardinal B-spline path (uniform grid, order >= 2), linear layout
    batch, in_f, out_f, grid_size, order = shape
    if backend == "triton" and grid_size > 10:
        pytest.skip("the Triton interpreter unrolls G+2K knots: large grids are covered on GPU runs")
    p = _params(batch, in_f, out_f, grid_size, order, dtype=torch.float32, uniform=True)
    _assert_matches_float64_reference(p, *_grads(p, backend))


@pytest.mark.parametrize("backend", [p for p in BACKENDS if p.id == "cpp"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_every_thread_count_matches_reference_and_repeats_exactly(backend, threads):
    # One thread runs the row chunks in turn; more split them into shares, each with its own
    # partial weight gradient summed in share order: deterministic for a given thread count.
    p = _params(301, 12, 5, dtype=torch.float32)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        first = _grads(p, backend, chunk_rows=16)
        y, grads, grad_out = _grads(p, backend, first[2], chunk_rows=16)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(y, first[0]) and all(torch.equal(g, first[1][n]) for n, g in grads.items())
    _assert_matches_float64_reference(p, y, grads, grad_out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_reduced_gradients_by_relative_l2_and_cosine(backend):
    p = _params(2048 if backend != "triton" else 256, 16, 8, dtype=torch.float32)
    _, grads, grad_out = _grads(p, backend)
    p64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in p.items()}
    _, grads_ref, _ = _grads(p64, "reference", grad_out.double())
    for name in ("base_weight", "spline_weight", "spline_scaler", "bias"):
        rel, cos = relative_l2_and_cosine(grads[name], grads_ref[name])
        assert rel < 1e-5 and cos > 1 - 1e-9, (name, rel, cos)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_base_activations(backend, activation, dtype):
    if backend == "triton" and activation not in ("silu", "gelu"):
        pytest.skip("activations run in PyTorch on every backend; two suffice under the slow interpreter")
    p = _params(64, 16, 3, dtype=dtype)
    p["x"][0, 0] = 0.0  # relu's kink
    y, grads, grad_out = _grads(p, backend, base_activation=activation)
    p64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in p.items()}
    y_ref = reference.kan_linear(p64["x"], p64["grid"], p64["base_weight"], p64["spline_weight"],
                                 p64["spline_scaler"], p64["bias"], spline_order=3, base_activation=activation)
    assert_close(y, y_ref, "kan_linear_output")
    x = p64["x"].clone().requires_grad_()
    (gx,) = torch.autograd.grad(
        reference.kan_linear(x, p64["grid"], p64["base_weight"], p64["spline_weight"], p64["spline_scaler"],
                             p64["bias"], spline_order=3, base_activation=activation), x, grad_out.double())
    assert_close(grads["x"], gx, "kan_linear_grad")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_silu_base_path_over_the_whole_float_range(backend, dtype):
    # The CPU kernels evaluate silu themselves: compare it alone (no spline, one feature so no
    # NaN mixes across features) with torch's, from underflow to overflow and non-finite x.
    x = torch.cat([torch.linspace(-750, 750, 3001, dtype=torch.float64), torch.linspace(-4, 4, 801, dtype=torch.float64),
                   torch.tensor([88.5, -88.5, 1e-30, -0.0, float("inf"), -float("inf"), float("nan")],
                                dtype=torch.float64)]).to(dtype).to(DEVICE).unsqueeze(1)
    p = _params(x.shape[0], 1, 1, dtype=dtype, scaler=False, bias=False)
    p.update(x=x, base_weight=torch.ones(1, 1, dtype=dtype, device=DEVICE), spline_weight=p["spline_weight"] * 0)
    y, grads, grad_out = _grads(p, backend)
    x64 = x.double().requires_grad_()
    expected = torch.nn.functional.silu(x64)
    (expected_grad,) = torch.autograd.grad(expected, x64, grad_out.double())
    assert_close(y, expected, "silu")
    assert_close(grads["x"], expected_grad, "silu")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("base,scaler,bias", [(False, True, True), (True, False, False), (False, False, False)])
def test_optional_parameters(backend, base, scaler, bias):
    p = _params(13, 4, 3, base=base, scaler=scaler, bias=bias)
    y, grads, grad_out = _grads(p, backend)
    y_ref, grads_ref, _ = _grads(p, "reference", grad_out)
    assert_close(y, y_ref, "kan_linear_output")
    assert grads.keys() == grads_ref.keys()
    for name, g in grads.items():
        assert_close(g, grads_ref[name], "kan_linear_grad")


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunking_changes_nothing(backend):
    p = _params(50, 6, 4)
    y, grads, grad_out = _grads(p, backend)
    for chunk_rows in (1, 7, 49, 50, 1000):
        y_c, grads_c, _ = _grads(p, backend, grad_out, chunk_rows=chunk_rows)
        torch.testing.assert_close(y_c, y, rtol=1e-13, atol=1e-13)
        for name, g in grads.items():
            torch.testing.assert_close(grads_c[name], g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("wanted", [("x",), ("spline_weight",), ("base_weight", "spline_scaler"), ("x", "bias")])
@pytest.mark.parametrize("base", [True, False], ids=["base", "no_base"])
def test_partial_gradients_match_full_backward(backend, wanted, base):
    # Backward takes a different path when only x or only the weights need a gradient.
    p = _params(23, 5, 3, base=base)
    if not base and "base_weight" in wanted:
        wanted = tuple(n for n in wanted if n != "base_weight")
    _, full, grad_out = _grads(p, backend, chunk_rows=7)
    leaves = {n: p[n].detach().clone().requires_grad_(n in wanted) for n in full}
    y = _run({**p, **leaves}, backend, chunk_rows=7)
    grads = torch.autograd.grad(y, [leaves[n] for n in wanted], grad_out)
    for name, g in zip(wanted, grads):
        torch.testing.assert_close(g, full[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    p = _params(4, 3, 2, grid_size=3, order=2)
    names = ("x", "base_weight", "spline_weight", "spline_scaler", "bias")
    inputs = tuple(p[n].clone().requires_grad_() for n in names)

    def fn(x, bw, sw, sc, b):
        return ops.kan_linear(x, p["grid"], bw, sw, sc, b, spline_order=2, backend=backend, chunk_rows=3)

    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_of_any_layout_and_size(backend):
    p = _params(24, 6, 5)
    y_ref = _run(p, "reference")
    x = p["x"]
    # leading dims like nn.Linear
    y3 = ops.kan_linear(x.view(2, 3, 4, 6), p["grid"], p["base_weight"], p["spline_weight"], p["spline_scaler"],
                        p["bias"], spline_order=3, backend=backend)
    assert_close(y3.reshape(24, 5), y_ref, "kan_linear_output")
    # non-contiguous input and weights
    q = dict(p, x=x.t().contiguous().t(), spline_weight=p["spline_weight"].transpose(0, 1).contiguous().transpose(0, 1))
    assert not q["x"].is_contiguous() and not q["spline_weight"].is_contiguous()
    assert_close(_run(q, backend), y_ref, "kan_linear_output")
    # ... and backward through them (the leaves keep the strides: clone preserves them)
    _, grads, grad_out = _grads(q, backend)
    _, grads_ref, _ = _grads(q, "reference", grad_out)
    for name, g in grads.items():
        assert_close(g, grads_ref[name], "kan_linear_grad")
    # zero rows: forward and backward
    z = dict(p, x=x[:0].clone().requires_grad_())
    y0 = _run(z, backend)
    y0.sum().backward()
    assert y0.shape == (0, 5) and z["x"].grad.shape == (0, 6)


@pytest.mark.parametrize("backend", backend_params(include_reference=True))
def test_nan_rows_stay_nan_and_do_not_leak(backend):
    p = _params(6, 4, 3)
    p["x"][2, 1] = float("nan")
    p["x"][4, 0] = float("inf")
    y = _run(p, backend)
    assert torch.isnan(y[2]).all()
    finite_rows = [0, 1, 3, 5]
    assert torch.isfinite(y[finite_rows]).all()
    assert_close(y[finite_rows], _run(dict(p, x=p["x"][finite_rows]), "reference"), "kan_linear_output")


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_x_and_the_weights_are_saved_for_backward(backend):
    p = _params(300, 8, 4, dtype=torch.float32)
    params = {k: p[k].requires_grad_() for k in ("base_weight", "spline_weight", "spline_scaler", "bias")}
    x = p["x"].requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        _run(p, backend)
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in saved}
    param_ptrs = {t.untyped_storage().data_ptr() for t in params.values()} | {p["grid"].untyped_storage().data_ptr()}
    activation_bytes = sum(n for ptr, n in storages.items() if ptr not in param_ptrs)
    assert activation_bytes == x.untyped_storage().nbytes()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_low_precision_rule(backend, dtype):
    p = _params(64, 16, 8, dtype=torch.float64)
    low = {k: (v.to(dtype) if isinstance(v, torch.Tensor) and k != "grid" else v) for k, v in p.items()}
    low["grid"] = p["grid"].float()
    up = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in low.items()}
    ref64_out, ref64_grads, grad_out = _grads(up, "reference")
    grad_low = grad_out.to(dtype)
    out, grads, _ = _grads(low, backend, grad_low)
    ref_low_out, ref_low_grads, _ = _grads(dict(low, grid=p["grid"].to(dtype)), "reference", grad_low)
    assert out.dtype == dtype
    low_precision_rule(out, ref_low_out, ref64_out, factor=2)
    for name in grads:
        low_precision_rule(grads[name], ref_low_grads[name], ref64_grads[name], factor=3)


def _op_args(p, chunk_rows=0):
    return (p["x"], p["grid"], p["base_weight"], p["spline_weight"], p["spline_scaler"], p["bias"], p["spline_order"],
            "silu", chunk_rows)


def test_opcheck_compiled():
    if not _backend.load_library():
        pytest.skip("compiled library not loaded")
    p = _params(10, 4, 3, grid_size=3, order=2)
    for k in ("x", "base_weight", "spline_weight", "spline_scaler", "bias"):
        p[k].requires_grad_()
    torch.library.opcheck(torch.ops.kanfast.kan_linear.default, _op_args(p, 4))
    g = torch.randn(10, 3, dtype=torch.float64, device=DEVICE)
    detached = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in p.items()}
    args = (g, *_op_args(detached)[:5], 2, "silu", 4, [True, True, True, True])
    torch.library.opcheck(torch.ops.kanfast.kan_linear_backward.default, args)


def test_reused_scratch_buffers_across_shapes_dtypes_and_threads():
    # The C++ CPU kernels keep their chunk buffers per thread between calls: a later call with
    # a smaller or larger chunk, another dtype, or from another thread must not see stale data.
    if not _backend.load_library():
        pytest.skip("compiled library not loaded")
    import concurrent.futures

    sizes = [(300, torch.float32), (17, torch.float32), (300, torch.float64), (1200, torch.float32), (5, torch.float64)]
    cases = [{k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in _params(batch, 6, 4, dtype=dtype).items()}
             for batch, dtype in sizes]  # the buffers are the CPU kernels'

    def check(p):
        y, grads, grad_out = _grads(p, "cpp", chunk_rows=128)
        p64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in p.items()}
        y_ref, grads_ref, _ = _grads(p64, "reference", grad_out.double())
        assert_close(y, y_ref, "kan_linear_output")
        for name, g in grads.items():
            assert_close(g, grads_ref[name], "kan_linear_grad")

    for p in cases:
        check(p)
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(check, cases * 2))


@pytest.mark.parametrize("backend", [p for p in BACKENDS if p.id == "triton"])
def test_opcheck_triton(backend):
    from kanfast.triton.kan_linear import kan_linear_triton

    p = _params(6, 3, 2, grid_size=2, order=1)
    for k in ("x", "base_weight", "spline_weight", "spline_scaler", "bias"):
        p[k].requires_grad_()
    torch.library.opcheck(kan_linear_triton, _op_args(p, 4))


def test_torch_compile_fullgraph_on_a_kan_mlp():
    import kanfast

    model = torch.nn.Sequential(kanfast.KANLinear(6, 16), kanfast.KANLinear(16, 3)).double()
    x = torch.randn(32, 6, dtype=torch.float64)
    expected = model(x)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    torch.testing.assert_close(y, expected)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def _bad(**changes):
    p = _params(5, 4, 3, dtype=torch.float32)
    p.update(changes)
    return p


@pytest.mark.parametrize(
    "changes,error,match",
    [
        (dict(spline_weight=torch.zeros(3, 4, 7)), ValueError, r"spline_weight must have shape \(3, 4, 8\)"),
        (dict(spline_weight=torch.zeros(3, 32)), ValueError, r"spline_weight must have shape \(out_features, in_f"),
        (dict(base_weight=torch.zeros(3, 5)), ValueError, r"base_weight must have shape \(3, 4\)"),
        (dict(spline_scaler=torch.zeros(4, 3)), ValueError, r"spline_scaler must have shape \(3, 4\)"),
        (dict(bias=torch.zeros(4)), ValueError, r"bias must have shape \(3,\)"),
        (dict(bias=torch.zeros(3, dtype=torch.float64)), TypeError, "bias must have x's dtype torch.float32"),
        (dict(x=torch.zeros(5, 3)), ValueError, r"x.shape\[-1\] must equal grid.shape\[0\] = 4"),
        (dict(spline_order=4), ValueError, r"spline_weight must have shape \(3, 4, 7\)"),
    ],
)
def test_bad_inputs_name_the_argument(changes, error, match):
    with pytest.raises(error, match=match):
        _run(_bad(**changes), None)


def test_bad_activation_and_chunk_rows():
    p = _bad()
    with pytest.raises(ValueError, match="base_activation must be one of"):
        _run(p, None, base_activation="swish")
    with pytest.raises(ValueError, match="chunk_rows must be a positive int"):
        _run(p, None, chunk_rows=0)
