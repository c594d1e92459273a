import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import DEVICE, backend_params
from kanfast import _backend, ops
from kanfast.ops.channel_stats import merge
from tolerances import FLOAT32

BACKENDS = backend_params(include_reference=True)
BINS, RANGE = 8, (-2.0, 2.0)
EXACT = ("count", "zeros", "nonpos", "min", "max")


def _values(*shape, dtype=torch.float64, seed=0):
    """Values near bin centres (no rounding can move one across a bin edge), about a sixth of
    them outside RANGE (clamped into the edge bins), some exact zeros and both range ends."""
    gen = torch.Generator().manual_seed(seed)
    width = (RANGE[1] - RANGE[0]) / BINS
    k = torch.randint(-6, 6, shape, generator=gen).double()
    x = (k + 0.5 + 0.6 * (torch.rand(shape, generator=gen, dtype=torch.float64) - 0.5)) * width
    flat = x.view(-1)
    flat[::7] = 0.0
    flat[1::11] = RANGE[0]
    flat[2::13] = RANGE[1]
    return x.to(dtype=dtype, device=DEVICE)


def _truth(x, dim, grad=None):
    """float64 statistics computed directly from the stored values, one channel per row."""
    C = x.shape[dim]
    a = x.double().movedim(dim, 0).reshape(C, -1)
    t = {"count": torch.full((C,), a.shape[1], dtype=torch.int64, device=a.device), "mean": a.mean(1),
         "abs_mean": a.abs().mean(1), "var": ((a - a.mean(1, keepdim=True)) ** 2).mean(1),
         "zeros": (a == 0).sum(1), "nonpos": (a <= 0).sum(1), "min": a.min(1).values, "max": a.max(1).values}
    index = ((a - RANGE[0]) / (RANGE[1] - RANGE[0]) * BINS).floor().clamp(0, BINS - 1).long()
    t["hist"] = torch.nn.functional.one_hot(index, BINS).sum(1)
    if grad is not None:
        p = a * grad.double().movedim(dim, 0).reshape(C, -1)
        t["prod_mean"], t["prod_abs_mean"] = p.mean(1), p.abs().mean(1)
    return t


def _check(stats, truth, dtype):
    for f in EXACT:
        assert torch.equal(getattr(stats, f).to(truth[f].dtype), truth[f]), f
    assert torch.equal(stats.hist, truth["hist"])
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else FLOAT32[
        "channel_stats" if dtype == torch.float32 else "channel_stats_low_precision_input"]
    derived = {"mean": stats.mean, "abs_mean": stats.abs_mean, "var": stats.var}
    if "prod_mean" in truth:
        derived.update(prod_mean=stats.prod_mean, prod_abs_mean=stats.prod_abs_sum / stats.count)
    for name, value in derived.items():
        assert value.dtype == torch.float64
        torch.testing.assert_close(value, truth[name], **tol, msg=lambda m: f"{name}: {m}")


def _layouts():
    return {
        "2d": (lambda: _values(37, 5), 1),
        "4d": (lambda: _values(3, 6, 5, 7), 1),
        "nlc": (lambda: _values(4, 9, 6), -1),
        "channels_last": (lambda: _values(3, 6, 5, 7).to(memory_format=torch.channels_last), 1),
        "strided": (lambda: _values(4, 12, 6, 9)[:, ::2, 1:, ::3], 1),
        "transposed": (lambda: _values(5, 23).t(), 0),
        "1d": (lambda: _values(6), 0),
        "long_rows": (lambda: _values(2, 3, 2500), 1),  # several CPU segments per row
        "many_rows": (lambda: _values(9000, 3), 1),  # several CPU row blocks
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("layout", list(_layouts()))
def test_matches_float64_truth(backend, dtype, layout):
    make, dim = _layouts()[layout]
    x = make().to(dtype)
    grad = torch.randn(x.shape, dtype=torch.float64, device=DEVICE).to(dtype)
    stats = ops.channel_stats(x, dim, grad=grad, bins=BINS, range=RANGE, backend=backend)
    _check(stats, _truth(x, dim, grad), dtype)
    plain = ops.channel_stats(x, dim, backend=backend)
    assert plain.hist is None and plain.prod_sum is None and plain.hist_range is None
    assert torch.equal(plain.count, stats.count) and torch.equal(plain.min, stats.min)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_low_precision_inputs_accumulate_in_float32(backend, dtype):
    x = _values(64, 4, 33, dtype=dtype)  # 2112 values per channel: a bf16 running sum would be off by far more
    grad = torch.randn(x.shape, device=DEVICE).to(dtype)
    stats = ops.channel_stats(x, 1, grad=grad, bins=BINS, range=RANGE, backend=backend)
    _check(stats, _truth(x, 1, grad), dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_that_require_grad_give_plain_statistics(backend):
    x = _values(6, 3).requires_grad_()
    s = ops.channel_stats(x, 1, grad=x * 2, backend=backend)
    assert not s.sum.requires_grad and not s.prod_sum.requires_grad
    torch.testing.assert_close(s.prod_sum, 2 * (x.detach() ** 2).sum(0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_size(backend):
    x = torch.empty(0, 5, 3, dtype=torch.float32, device=DEVICE)
    s = ops.channel_stats(x, 1, grad=torch.empty_like(x), bins=4, range=(0, 1), backend=backend)
    assert torch.equal(s.count, torch.zeros(5, dtype=torch.int64, device=DEVICE))
    assert (s.min == math.inf).all() and (s.max == -math.inf).all() and s.hist.shape == (5, 4)
    assert not s.hist.any() and not s.sum.any() and not s.m2.any() and s.prod_sum.shape == (5,)
    none = ops.channel_stats(torch.empty(4, 0, device=DEVICE), 1, backend=backend)
    assert none.count.shape == (0,) and none.min.shape == (0,)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the Triton interpreter's numpy on inf - inf
def test_histogram_clamps_outside_values_and_drops_nan(backend):
    x = torch.tensor([[-10.0, -2.0, -1.9, 0.0, 1.99, 2.0, 10.0, math.inf, -math.inf, math.nan]], device=DEVICE).t()
    s = ops.channel_stats(x, 1, bins=4, range=(-2, 2), backend=backend)
    # bins [-2,-1) [-1,0) [0,1) [1,2]: below -2 -> first bin, above 2 -> last, NaN in none
    assert s.hist.tolist() == [[4, 0, 1, 4]]


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(0, 5), min_size=1, max_size=4), channels=st.integers(1, 4),
       spatial=st.integers(1, 3), seed=st.integers(0, 1000))
def test_merge_equals_one_pass_over_concatenation(backend, sizes, channels, spatial, seed):
    parts = [_values(n, channels, spatial, seed=seed + i) + 3.0 * i for i, n in enumerate(sizes)]  # shifted means
    grads = [torch.randn(p.shape, dtype=torch.float64, device=DEVICE) for p in parts]
    kw = dict(bins=BINS, range=RANGE, backend=backend)
    merged = merge(*[ops.channel_stats(p, 1, grad=g, **kw) for p, g in zip(parts, grads)])
    whole = ops.channel_stats(torch.cat(parts), 1, grad=torch.cat(grads), **kw)
    for f in ("count", "zeros", "nonpos", "min", "max", "hist"):
        assert torch.equal(getattr(merged, f), getattr(whole, f)), f
    for f in ("sum", "abs_sum", "m2", "prod_sum", "prod_abs_sum"):
        torch.testing.assert_close(getattr(merged, f), getattr(whole, f), rtol=1e-10, atol=1e-10, msg=f)


def test_merge_refuses_incompatible_partials():
    x = _values(4, 3)
    a = ops.channel_stats(x, 1, bins=4, range=(0, 1))
    with pytest.raises(ValueError, match="same bins and range"):
        a.merge(ops.channel_stats(x, 1, bins=4, range=(0, 2)))
    with pytest.raises(ValueError, match="other has 4 channels, this has 3"):
        a.merge(ops.channel_stats(x.t(), 1, bins=4, range=(0, 1)))
    with pytest.raises(ValueError, match="with grad and the other without"):
        ops.channel_stats(x, 1).merge(ops.channel_stats(x, 1, grad=x))


def test_cpu_result_does_not_depend_on_thread_count():
    if _backend.why_not("cpp", torch.device("cpu")):
        pytest.skip(f"cpp: {_backend.why_not('cpp', torch.device('cpu'))}")
    x = _values(64, 8, 300, dtype=torch.float32).cpu()
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.channel_stats(x, 1, backend="cpp")
        torch.set_num_threads(2)
        two = ops.channel_stats(x, 1, backend="cpp")
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(one.sum, two.sum) and torch.equal(one.m2, two.m2)


def test_opcheck_compiled():
    _backend.load_library() or pytest.skip("compiled library not loaded")
    x = _values(5, 3, 4)
    torch.library.opcheck(torch.ops.kanfast.channel_stats.default, (x, 1, None, 0, 0.0, 0.0))
    torch.library.opcheck(torch.ops.kanfast.channel_stats.default, (x, -1, torch.randn_like(x), 4, -1.0, 1.0))


@pytest.mark.parametrize("backend", [p for p in backend_params() if p.id == "triton"])
def test_opcheck_triton(backend):
    from kanfast.triton.channel_stats import channel_stats_triton

    x = _values(5, 3, 4)
    torch.library.opcheck(channel_stats_triton, (x, 1, torch.randn_like(x), 4, -1.0, 1.0))
    torch.library.opcheck(channel_stats_triton, (x, 2, None, 0, 0.0, 0.0))


def test_torch_compile_fullgraph():
    _backend.load_library() or pytest.skip("compiled library not loaded")
    x = _values(6, 3, 4)
    fn = torch.compile(lambda t: torch.ops.kanfast.channel_stats(t, 1, None, 0, 0.0, 0.0)[1] * 2, fullgraph=True,
                       backend="eager")
    torch.testing.assert_close(fn(x), ops.channel_stats(x, 1).sum * 2)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(dim=3), ValueError, r"dim must be in \[-2, 2\) for x of shape \(4, 3\), got 3"),
        (dict(dim=1.0), TypeError, "dim must be an int"),
        (dict(bins=4), ValueError, r"bins=4 needs range=\(lo, hi\)"),
        (dict(range=(0, 1)), ValueError, "range is only used with a histogram"),
        (dict(bins=-1), ValueError, "bins must be an int >= 0"),
        (dict(bins=4, range=(1, 1)), ValueError, "range must be finite with lo < hi"),
        (dict(bins=4, range=(0, math.inf)), ValueError, "range must be finite with lo < hi"),
        (dict(grad=torch.zeros(4, 2)), ValueError, r"grad must have x's shape \(4, 3\), got \(4, 2\)"),
        (dict(grad=torch.zeros(4, 3)), TypeError, "grad must have x's dtype torch.float64"),
        (dict(x=torch.zeros(4, 3, dtype=torch.long)), TypeError, "x must be a floating-point tensor"),
        (dict(x=torch.tensor(1.0)), ValueError, "x must have at least one dim"),
        (dict(x=[1.0, 2.0]), TypeError, "x must be a torch.Tensor"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, error, match):
    args = dict(x=torch.zeros(4, 3, dtype=torch.float64), dim=1) | kwargs
    with pytest.raises(error, match=match):
        ops.channel_stats(args.pop("x"), args.pop("dim"), **args)


def test_compiled_op_checks_its_arguments_too():
    _backend.load_library() or pytest.skip("compiled library not loaded")
    x = torch.zeros(4, 3)
    for args, match in [((x, 2, None, 0, 0.0, 0.0), r"dim must be in \[-2, 2\)"),
                        ((x, 1, torch.zeros(4, 2), 0, 0.0, 0.0), "grad must have x's shape"),
                        ((x, 1, None, 4, 1.0, 0.0), "lo < hi"),
                        ((x.long(), 1, None, 0, 0.0, 0.0), "x must be a floating-point tensor")]:
        with pytest.raises(RuntimeError, match=match):
            torch.ops.kanfast.channel_stats(*args)


def _all_reduce_worker(rank, world, init_file, out_file):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    x = _values(3 + 4 * rank, 4, 5, seed=rank) + 2.0 * rank  # different sizes and means per rank
    s = ops.channel_stats(x, 1, grad=x * 0.5, bins=BINS, range=RANGE).all_reduce()
    if rank == 0:
        torch.save(s, out_file)
    dist.destroy_process_group()


def test_all_reduce_equals_one_pass_over_all_ranks(tmp_path):
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    out = tmp_path / "stats.pt"
    torch.multiprocessing.spawn(_all_reduce_worker, args=(2, tmp_path / "init", out), nprocs=2)
    reduced = torch.load(out, weights_only=False)
    x = torch.cat([_values(3 + 4 * r, 4, 5, seed=r) + 2.0 * r for r in range(2)])
    whole = ops.channel_stats(x, 1, grad=x * 0.5, bins=BINS, range=RANGE)
    for f in ("count", "zeros", "nonpos", "min", "max", "hist"):
        assert torch.equal(getattr(reduced, f), getattr(whole, f)), f
    for f in ("sum", "abs_sum", "m2", "prod_sum", "prod_abs_sum"):
        torch.testing.assert_close(getattr(reduced, f), getattr(whole, f), rtol=1e-10, atol=1e-10, msg=f)
