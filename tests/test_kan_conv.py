import io

import pytest
import torch
from torch import nn

import kanfast
from conftest import DEVICE, backend_params, make_grid
from kanfast import _backend, ops, reference
from kanfast.ops.kan_conv import conv_geometry
from tolerances import assert_close, low_precision_rule

BACKENDS = backend_params()

# (dims, in, out, kernel, stride, padding, dilation, groups, spatial)
GEOMETRIES = [
    (2, 4, 6, 3, 1, 1, 1, 1, (7, 9)),
    (2, 4, 6, 2, 1, "same", 1, 1, (6, 5)),  # even kernel: asymmetric 'same'
    (2, 4, 4, 3, 2, 2, 2, 4, (9, 8)),  # depthwise, strided, dilated
    (2, 6, 4, 1, 1, 0, 1, 2, (5, 5)),  # 1x1 grouped
    (2, 3, 5, (3, 2), (2, 1), (1, 0), (1, 2), 1, (8, 7)),  # per-dim tuples
    (1, 4, 6, 4, 1, "same", 2, 2, (11,)),
    (1, 3, 2, 3, 2, "valid", 1, 1, (10,)),
    (3, 2, 4, 3, 1, 1, 1, 2, (4, 5, 3)),
]


def _params(geometry, *, grid_size=5, order=3, dtype=torch.float64, base=True, bias=True, batch=3, uniform=False):
    dims, c_in, c_out, k, stride, padding, dilation, groups, spatial = geometry
    kernel = (k,) * dims if isinstance(k, int) else k
    grid = make_grid(c_in, grid_size, order, uniform=uniform, dtype=dtype)
    x = torch.empty(batch, c_in, *spatial, dtype=dtype, device=DEVICE).uniform_(-1.3, 1.3)

    def rand(*shape):
        return torch.randn(*shape, dtype=dtype, device=DEVICE)

    return dict(
        x=x, grid=grid,
        base_weight=rand(c_out, c_in // groups, *kernel) if base else None,
        spline_weight=rand(c_out, c_in // groups, grid_size + order, *kernel),
        bias=rand(c_out) if bias else None,
        kwargs=dict(spline_order=order, stride=stride, padding=padding, dilation=dilation, groups=groups),
    )


def _run(p, backend, **extra):
    return ops.kan_conv(p["x"], p["grid"], p["base_weight"], p["spline_weight"], p["bias"], backend=backend,
                        **p["kwargs"], **extra)


def _reference(p, **extra):
    kw = dict(p["kwargs"], **extra)
    stride, pairs, dilation = conv_geometry("t", p["x"].dim() - 2, p["spline_weight"].shape[3:], kw.pop("stride"),
                                            kw.pop("padding"), kw.pop("dilation"))
    return reference.kan_conv(p["x"], p["grid"], p["base_weight"], p["spline_weight"], p["bias"], stride=stride,
                              padding=pairs, dilation=dilation, **kw)


def _grads(p, fn, grad_out=None):
    names = [n for n in ("x", "base_weight", "spline_weight", "bias") if p[n] is not None]
    leaves = {n: p[n].detach().clone().requires_grad_() for n in names}
    y = fn({**p, **leaves})
    if grad_out is None:
        grad_out = torch.randn_like(y)
    grads = torch.autograd.grad(y, [leaves[n] for n in names], grad_out)
    return y.detach(), dict(zip(names, grads)), grad_out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("wanted", [("x",), ("spline_weight",), ("base_weight", "bias"), ("x", "bias")])
@pytest.mark.parametrize("geometry", GEOMETRIES[:2], ids=["symmetric", "asymmetric_same"])
@pytest.mark.parametrize("base", [True, False], ids=["base", "no_base"])
def test_partial_gradients_match_full_backward(backend, wanted, geometry, base):
    # Backward takes a different path when only x or only the weights need a gradient; without
    # base_weight the remaining tensor arguments shift position in the autograd graph.
    p = _params(geometry, base=base)
    wanted = tuple(n for n in wanted if p[n] is not None)
    _, full, grad_out = _grads(p, lambda q: _run(q, backend, chunk_rows=2))
    leaves = {n: p[n].detach().clone().requires_grad_(n in wanted) for n in full}
    y = _run({**p, **leaves}, backend, chunk_rows=2)
    grads = torch.autograd.grad(y, [leaves[n] for n in wanted], grad_out)
    for name, g in zip(wanted, grads):
        torch.testing.assert_close(g, full[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{g[0]}d-k{g[3]}-s{g[4]}-p{g[5]}-d{g[6]}-g{g[7]}")
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_matches_reference(backend, geometry, padding_mode):
    if geometry[5] == "valid" and padding_mode != "zeros":
        pytest.skip("no padding: the mode is irrelevant")
    if backend == "triton" and (geometry[0] == 3 or padding_mode in ("reflect", "replicate")):
        pytest.skip("the slow interpreter runs a subset; these paths are backend-independent (x is padded first)")
    p = _params(geometry)
    y, grads, grad_out = _grads(p, lambda q: _run(q, backend, padding_mode=padding_mode, chunk_rows=2))
    y_ref, grads_ref, _ = _grads(p, lambda q: _reference(q, padding_mode=padding_mode), grad_out)
    assert y.shape == y_ref.shape
    assert_close(y, y_ref, "kan_linear_output")
    for name in grads:
        assert_close(grads[name], grads_ref[name], "kan_linear_grad")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ["silu", "gelu", "gelu_tanh", "relu", "tanh", "sigmoid", "identity"])
def test_base_activations_in_float32(backend, activation):
    if backend == "triton" and activation not in ("silu", "gelu"):
        pytest.skip("activations run in PyTorch or the same Triton code for every name; two suffice here")
    p = _params(GEOMETRIES[0], dtype=torch.float32)
    p64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in p.items()}
    y, grads, grad_out = _grads(p, lambda q: _run(q, backend, base_activation=activation))
    y_ref, grads_ref, _ = _grads(p64, lambda q: _reference(q, base_activation=activation), grad_out.double())
    assert_close(y, y_ref, "kan_linear_output")
    for name in grads:
        assert_close(grads[name], grads_ref[name], "kan_linear_grad")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_uniform_grids_in_float32_match_reference(backend, channels_last):
    # the C++ CPU kernels' cardinal B-spline path (uniform grid, order >= 2), both lane layouts
    p = _params(GEOMETRIES[0], dtype=torch.float32, uniform=True)
    if channels_last:
        p["x"] = p["x"].to(memory_format=torch.channels_last)
    p64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in p.items()}
    y, grads, grad_out = _grads(p, lambda q: _run(q, backend))
    y_ref, grads_ref, _ = _grads(p64, lambda q: _reference(q), grad_out.double())
    assert_close(y, y_ref, "kan_linear_output")
    for name in grads:
        assert_close(grads[name], grads_ref[name], "kan_linear_grad")


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [1, "same", (2, 0)])
def test_equals_nn_conv2d_when_the_splines_are_zero(padding_mode, padding):
    """Only the base path left, with identity activation: exactly nn.Conv2d's semantics."""
    conv = nn.Conv2d(4, 6, 3, padding=padding, padding_mode=padding_mode, dtype=torch.float64)
    kan = kanfast.KANConv2d(4, 6, 3, padding=padding, padding_mode=padding_mode, dtype=torch.float64,
                            base_activation=nn.Identity)
    with torch.no_grad():
        kan.base_weight.copy_(conv.weight)
        kan.bias.copy_(conv.bias)
        kan.spline_weight.zero_()
    x = torch.randn(2, 4, 7, 8, dtype=torch.float64)
    torch.testing.assert_close(kan(x), conv(x))


def test_zero_padding_pads_the_expanded_channels_not_x():
    """B(0) != 0: padded sites must contribute nothing to the spline path."""
    p = _params((2, 2, 3, 3, 1, 1, 1, 1, (5, 5)), base=False, bias=False)
    y = _run(p, None)
    # the same convolution on an explicitly zero-padded *expanded* input, by hand
    bases = reference.bspline_basis(p["x"].movedim(1, -1), p["grid"], 3).flatten(-2).movedim(-1, 1)
    expanded = nn.functional.pad(bases, [1, 1, 1, 1])
    expected = nn.functional.conv2d(expanded, p["spline_weight"].flatten(1, 2))
    assert_close(y, expected, "kan_linear_output")
    # while padding x with zeros first would evaluate the splines on the padding
    wrong = reference.kan_conv(nn.functional.pad(p["x"], [1, 1, 1, 1]), p["grid"], None, p["spline_weight"],
                               spline_order=3, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1))
    assert not torch.allclose(wrong, y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    p = _params((2, 2, 2, 2, 1, "same", 1, 1, (3, 3)), grid_size=3, order=2, batch=2)
    names = ("x", "base_weight", "spline_weight", "bias")
    inputs = tuple(p[n].clone().requires_grad_() for n in names)

    def fn(x, bw, sw, b):
        return ops.kan_conv(x, p["grid"], bw, sw, b, backend=backend, chunk_rows=1, **p["kwargs"])

    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_layouts_unbatched_channels_last_and_empty(backend):
    p = _params(GEOMETRIES[0], dtype=torch.float32)
    expected = _run(p, "reference")
    cl = dict(p, x=p["x"].to(memory_format=torch.channels_last))
    y = _run(cl, backend)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, expected.double(), "kan_linear_output")
    y1 = _run(dict(p, x=p["x"][1]), backend)
    assert_close(y1, expected[1].double(), "kan_linear_output")
    empty = dict(p, x=p["x"][:0].clone().requires_grad_())
    y0 = _run(empty, backend)
    y0.sum().backward()
    assert y0.shape == (0, *expected.shape[1:]) and empty["x"].grad.shape == empty["x"].shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_x_and_the_weights_are_saved_for_backward(backend):
    p = _params(GEOMETRIES[0], dtype=torch.float32, batch=4)
    params = [p[k].requires_grad_() for k in ("base_weight", "spline_weight", "bias")]
    p["x"].requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        _run(p, backend)
    excluded = {t.untyped_storage().data_ptr() for t in params + [p["grid"]]}
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in saved}
    assert sum(n for ptr, n in storages.items() if ptr not in excluded) == p["x"].untyped_storage().nbytes()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_low_precision_rule(backend, dtype):
    p = _params(GEOMETRIES[0], dtype=torch.float64, batch=2)
    low = {k: (v.to(dtype) if isinstance(v, torch.Tensor) and k != "grid" else v) for k, v in p.items()}
    low["grid"] = p["grid"].float()
    up = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in low.items()}
    ref64, grads64, grad_out = _grads(up, _reference)
    out, grads, _ = _grads(low, lambda q: _run(q, backend), grad_out.to(dtype))
    ref_low, grads_low, _ = _grads(dict(low, grid=p["grid"].to(dtype)), _reference, grad_out.to(dtype))
    assert out.dtype == dtype
    low_precision_rule(out, ref_low, ref64, factor=2)
    for name in grads:
        low_precision_rule(grads[name], grads_low[name], grads64[name], factor=3)


def _op_args(p, chunk_rows=1):
    stride, pairs, dilation = conv_geometry("t", p["x"].dim() - 2, p["spline_weight"].shape[3:],
                                            p["kwargs"]["stride"], p["kwargs"]["padding"], p["kwargs"]["dilation"])
    return (p["x"], p["grid"], p["base_weight"], p["spline_weight"], p["bias"], p["kwargs"]["spline_order"], "silu",
            list(stride), [v for pair in pairs for v in pair], list(dilation), p["kwargs"]["groups"], chunk_rows)


# The second: one channel in and out, 1x1 kernel, where every slot of the weight gradient is
# contiguous and the outputs must still not alias.
OPCHECK_GEOMETRIES = {2: [(2, 2, 4, 2, 1, "same", 1, 2, (4, 3)), (2, 1, 1, 1, 1, 0, 1, 1, (3, 3))],
                      1: [(1, 2, 2, 3, 1, 1, 1, 1, (5,)), (1, 1, 1, 1, 1, 0, 1, 1, (5,))]}


@pytest.mark.parametrize("geometry", OPCHECK_GEOMETRIES[2], ids=["grouped_same", "one_channel"])
def test_opcheck_compiled(geometry):
    if not _backend.load_library():
        pytest.skip("compiled library not loaded")
    p = _params(geometry, grid_size=2, order=1, batch=3)
    for k in ("x", "base_weight", "spline_weight", "bias"):
        p[k].requires_grad_()
    torch.library.opcheck(torch.ops.kanfast.kan_conv.default, _op_args(p, 2))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=["f64", "f32", "bf16"])
def test_memory_format_copies_of_large_images(dims, channels_last, dtype):
    """The C++ CPU backend moves x, y, grad_out and grad_x between NCHW and channels-last with
    its own tiled transpose (memory_format_cpu.h): channel counts and image sizes here leave
    partial tiles and partial bands, images are split into several chunks, and the elements
    are 8, 4 and 2 bytes wide."""
    if not _backend.load_library():
        pytest.skip("compiled library not loaded")
    spatial = (17, 19) if dims == 2 else (5, 7, 9)  # 323 and 315 sites: more than one 256-site band
    p = _params((dims, 10, 9, 3, 1, 1, 1, 1, spatial), dtype=dtype, batch=3)
    if channels_last:
        p["x"] = p["x"].contiguous(memory_format=torch.channels_last if dims == 2 else torch.channels_last_3d)
    # a contiguous grad_out for a channels-last y too: the op moves it to the features' layout
    grad_out = torch.randn(3, 9, *spatial, dtype=dtype)
    y, grads, grad_out = _grads(p, lambda q: _run(q, "cpp", chunk_rows=2), grad_out)
    assert y.is_contiguous() != channels_last and grads["x"].is_contiguous() != channels_last
    p64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in p.items()}
    y_ref, grads_ref, _ = _grads(p64, _reference, grad_out.double())
    if dtype == torch.bfloat16:
        # 2-byte elements: bfloat16 rounding is far below the error of a value in the wrong place
        for actual, expected in ((y, y_ref), (grads["x"], grads_ref["x"])):
            assert (actual.double() - expected).abs().max() <= 0.03 * expected.abs().max()
        return
    assert_close(y, y_ref, "kan_linear_output")
    for name in grads:
        assert_close(grads[name], grads_ref[name], "kan_linear_grad")


@pytest.mark.parametrize("geometry", [GEOMETRIES[0], GEOMETRIES[2]], ids=["groups1", "depthwise"])
def test_channels_last_in_channels_last_out(geometry):
    """Like nn.Conv2d: y and grad_x follow a channels-last x, whichever feature layout the
    backend convolves in (slot-major channels-last for groups == 1 on the CPU, else NCHW), and
    the fake kernels agree with the real strides."""
    if not _backend.load_library():
        pytest.skip("compiled library not loaded")
    p = _params(geometry, batch=2)
    p["x"] = p["x"].contiguous(memory_format=torch.channels_last)
    y, grads, grad_out = _grads(p, lambda q: _run(q, "cpp", chunk_rows=1))
    y_ref, grads_ref, _ = _grads(p, _reference, grad_out)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    assert grads["x"].is_contiguous(memory_format=torch.channels_last) and not grads["x"].is_contiguous()
    assert_close(y, y_ref, "kan_linear_output")
    for name in grads:
        assert_close(grads[name], grads_ref[name], "kan_linear_grad")
    for k in ("x", "base_weight", "spline_weight", "bias"):
        p[k].requires_grad_()
    torch.library.opcheck(torch.ops.kanfast.kan_conv.default, _op_args(p, 1))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.id == "triton"])
@pytest.mark.parametrize("geometry", OPCHECK_GEOMETRIES[1], ids=["padded", "one_channel"])
def test_opcheck_triton(backend, geometry):
    from kanfast.triton.kan_conv import kan_conv_triton

    p = _params(geometry, grid_size=2, order=1, batch=2)
    for k in ("x", "base_weight", "spline_weight", "bias"):
        p[k].requires_grad_()
    torch.library.opcheck(kan_conv_triton, _op_args(p))


def test_torch_compile_fullgraph_on_a_small_kan_cnn():
    model = nn.Sequential(kanfast.KANConv2d(3, 8, 3, padding=1), nn.MaxPool2d(2),
                          kanfast.KANConv2d(8, 8, 3, padding="same", groups=2), nn.Flatten(),
                          kanfast.KANLinear(8 * 4 * 4, 5)).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    expected = model(x)
    y = torch.compile(model, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(y, expected)
    y.sum().backward()
    assert all(q.grad is not None for q in model.parameters())


@pytest.mark.parametrize("cls,dims", [(kanfast.KANConv1d, 1), (kanfast.KANConv2d, 2), (kanfast.KANConv3d, 3)])
def test_module_state_dict_round_trip_and_repr(cls, dims):
    layer = cls(4, 6, 3, stride=2, padding=1, groups=2, padding_mode="circular", grid_size=4)
    x = torch.randn(2, 4, *([7] * dims))
    layer.update_grid(x)
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    fresh = cls(4, 6, 3, stride=2, padding=1, groups=2, padding_mode="circular", grid_size=4)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(fresh(x), layer(x))
    assert tuple(layer.spline_weight.shape) == (6, 2, 7, *([3] * dims))
    assert "groups=2" in repr(layer) and "padding_mode='circular'" in repr(layer) and "grid_size=4" in repr(layer)


def test_update_grid_keeps_cubic_curves_exactly():
    torch.manual_seed(3)
    layer = kanfast.KANConv2d(3, 4, 3, padding=1, groups=1, grid_size=6, dtype=torch.float64)
    x = (torch.rand(4, 3, 9, 9, dtype=torch.float64) ** 2) * 1.6 - 0.8
    samples = torch.linspace(-1, 1, 200, dtype=torch.float64).unsqueeze(1).expand(-1, 3)
    bases = ops.bspline_basis(samples, layer.grid, 3)  # (200, 3, 9)
    powers = torch.stack([samples ** p for p in range(4)], -1)  # (200, 3, 4)
    coeffs = torch.randn(4, 4 * 9, dtype=torch.float64)  # cubic per curve
    with torch.no_grad():
        targets = (powers @ coeffs).transpose(0, 1)  # (3, 200, 36)
        fit = kanfast.nn._spline_grid.fit_spline_coefficients(bases.transpose(0, 1), targets)  # (3, 9, 36)
        layer.spline_weight.copy_(fit.reshape(3, 9, 4, 3, 3).permute(2, 0, 1, 3, 4))
    before = layer(x)
    layer.update_grid(x)
    assert ((layer(x) - before).norm() / before.norm()) < 1e-5


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.5 * x)


def test_any_activation_module_works():
    layer = kanfast.KANConv2d(2, 3, 3, padding=1, padding_mode="reflect", base_activation=Swish,
                              dtype=torch.float64)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    padded = nn.functional.pad(x, [1, 1, 1, 1], mode="reflect")
    expected = reference.kan_conv(padded, layer.grid, None, layer.spline_weight, layer.bias, spline_order=3,
                                  stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1))
    expected = expected + nn.functional.conv2d(Swish()(padded), layer.base_weight)
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: kanfast.KANConv2d(4, 6, 3)(torch.randn(2, 3, 5, 5)), ValueError, r"x must have shape \(N, 4, \*spatial\)"),
        (lambda: kanfast.KANConv2d(4, 6, 3)(torch.randn(2, 4, 5)), ValueError, "with 2 spatial dims"),
        (lambda: kanfast.KANConv2d(4, 6, 3, groups=4), ValueError, r"divisible by groups \(4\)"),
        (lambda: kanfast.KANConv2d(4, 6, 3, padding_mode="mirror"), ValueError, "padding_mode must be one of"),
        (lambda: kanfast.KANConv2d(4, 6, 3, stride=2, padding="same"), ValueError, "'same' is not supported for strided"),
        (lambda: kanfast.KANConv2d(4, 6, (3, 3, 3)), ValueError, "kernel_size must be a positive int or a tuple of 2"),
        (lambda: kanfast.KANConv2d(4, 6, 5)(torch.randn(1, 4, 3, 3)), ValueError, r"kernel \(size 5, dilation 1\) is larger than the padded input \(3\) along spatial dim 0"),
    ],
)
def test_bad_input_names_the_argument(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_op_rejects_mismatched_weights():
    p = _params(GEOMETRIES[0], dtype=torch.float32)
    with pytest.raises(ValueError, match=r"spline_weight must have shape \(6, 4, 8, 3, 3\)"):
        ops.kan_conv(p["x"], p["grid"], None, p["spline_weight"][:, :, :7], spline_order=3)
    with pytest.raises(ValueError, match=r"base_weight must have shape \(6, 4, 3, 3\)"):
        ops.kan_conv(p["x"], p["grid"], p["base_weight"][:, :2], p["spline_weight"], spline_order=3)
    with pytest.raises(ValueError, match=r"groups must be a positive int dividing in_channels \(4\)"):
        ops.kan_conv(p["x"], p["grid"], None, p["spline_weight"], spline_order=3, groups=3)


@pytest.mark.parametrize("bad, error, match", [
    (dict(stride=1.0), ValueError, "stride must be an int or a tuple"),
    (dict(stride=(1, 1.0)), ValueError, "stride must be an int or a tuple"),
    (dict(padding=True), ValueError, "padding must be"),
    (dict(spline_order=True), TypeError, "spline_order must be an int"),
    (dict(groups=1.0), ValueError, "groups must be a positive int"),
    (dict(padding_mode="mirror"), ValueError, "padding_mode must be one of"),
    (dict(backend="nonexistent"), ValueError, "backend must be one of"),
])
def test_checks_hold_for_a_signature_seen_before(bad, error, match):
    """kan_conv checks each call signature once; a call that differs only in the type or value
    of an argument that is not a tensor (1 and 1.0 and True hash alike) is checked again."""
    p = _params(GEOMETRIES[0], dtype=torch.float32)
    good = dict(spline_order=3, stride=1, padding=1, groups=1, padding_mode="zeros")
    for key in bad:
        if key in ("stride", "padding", "groups"):
            good[key] = (1, 1) if isinstance(bad[key], tuple) else int(bad[key])
    for _ in range(2):
        ops.kan_conv(p["x"], p["grid"], p["base_weight"], p["spline_weight"], p["bias"], **good)
    with pytest.raises(error, match=match):
        ops.kan_conv(p["x"], p["grid"], p["base_weight"], p["spline_weight"], p["bias"], **{**good, **bad})
    with pytest.raises(ValueError, match="x.shape\\[1\\] must equal grid.shape\\[0\\]"):
        ops.kan_conv(p["x"][:, :3], p["grid"], p["base_weight"], p["spline_weight"], p["bias"], **good)
