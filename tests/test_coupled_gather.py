import pytest
import torch

import kanfast
from kanfast import reference
from conftest import DEVICE, backend_params

BACKENDS = backend_params(include_reference=True)
FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _rule(m, n, *, scaled=True, with_fresh=True, seed=0):
    """index (m,) into n units, and a random scale and fresh mask (or None)."""
    gen = torch.Generator().manual_seed(seed)
    index = torch.randint(0, n, (m,), generator=gen).to(DEVICE)
    scale = (torch.rand(m, generator=gen, dtype=torch.float64) + 0.5).to(DEVICE) if scaled else None
    fresh = (torch.rand(m, generator=gen) < 0.3).to(DEVICE) if with_fresh else None
    return index, scale, fresh


def _case(shapes, dims, m, n, *, dtype=torch.float32, scaled=True, with_fresh=True):
    gen = torch.Generator().manual_seed(1)
    tensors = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype).to(DEVICE) for s in shapes]
    return (tensors, dims, *_rule(m, n, scaled=scaled, with_fresh=with_fresh))


def _tolerance(backend, dtype, scaled):
    # A gather and one rounded multiply: exact, except that the Triton interpreter (not a GPU)
    # converts float32 to bfloat16 by truncation, one bf16 step off round-to-nearest.
    if backend == "triton" and dtype == torch.bfloat16 and scaled and kanfast._backend.triton_interpreted():
        return dict(rtol=2**-7, atol=0)
    return dict(rtol=0, atol=0)


def _check(backend, tensors, dims, index, scale, fresh):
    out = kanfast.ops.coupled_gather(tensors, dims, index, scale, fresh, backend=backend)
    expected = reference.coupled_gather(tensors, dims, index, scale, fresh)
    assert len(out) == len(tensors)
    for o, e, t in zip(out, expected, tensors):
        assert o.dtype == t.dtype and o.shape == e.shape and o.is_contiguous()
        torch.testing.assert_close(o, e, **_tolerance(backend, t.dtype, scale is not None))
    return out


# A conv weight (out, in, kh, kw), a linear weight (out, in), a bias and BN statistics, coupled
# along their own dims; n = 7 units.
MIXED = ([(7, 3, 3, 3), (5, 7), (7,), (7,), (2, 7, 3)], [0, 1, 0, -1, 1])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("m", [4, 7, 12], ids=["prune", "permute", "widen"])
@pytest.mark.parametrize("scaled,with_fresh", [(True, True), (False, True), (True, False), (False, False)])
def test_matches_reference(backend, dtype, m, scaled, with_fresh):
    tensors, dims, index, scale, fresh = _case(*MIXED, m, 7, dtype=dtype, scaled=scaled, with_fresh=with_fresh)
    _check(backend, tensors, dims, index, scale, fresh)


@pytest.mark.parametrize("backend", BACKENDS)
def test_values(backend):
    t = torch.arange(12, dtype=torch.float64, device=DEVICE).view(3, 4)
    index = torch.tensor([2, 0, 2], device=DEVICE)
    scale = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64, device=DEVICE)
    fresh = torch.tensor([False, False, True], device=DEVICE)
    rows, cols = kanfast.ops.coupled_gather([t, t.T], [0, 1], index, scale, fresh, backend=backend)
    assert rows.tolist() == [[4.0, 4.5, 5.0, 5.5], [0.0, 2.0, 4.0, 6.0], [0.0] * 4]
    assert cols.tolist() == [[4.0, 0.0, 0.0], [4.5, 2.0, 0.0], [5.0, 4.0, 0.0], [5.5, 6.0, 0.0]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_net2net_repeats(backend):
    # m > n with every unit repeated: a split into halves keeps the sum of outgoing weights.
    w = torch.randn(6, 5, dtype=torch.float64, device=DEVICE)
    index = torch.arange(5, device=DEVICE).repeat_interleave(2)
    scale = torch.full((10,), 0.5, dtype=torch.float64, device=DEVICE)
    (out,) = _check(backend, [w], [1], index, scale, None)
    torch.testing.assert_close(out.view(6, 5, 2).sum(-1), w, rtol=0, atol=0)


# One coupling group of n = 5 units in a single call: a conv's own rows (moved), a consumer
# linear reading them flattened (3 positions per unit, scaled, zeroed where fresh), a concat
# consumer seeing them after 4 other features and before 2 (scaled by a second row), a bias
# (moved) and an optimizer moment of the conv (zeroed where new, by the second fresh row).
GROUP = dict(shapes=[(5, 2, 3), (6, 5 * 3), (3, 4 + 5 + 2), (5,), (5, 2, 3)], dims=[0, 1, 1, 0, 0],
             offsets=[0, 0, 4, 0, 0], blocks=[1, 3, 1, 1, 1], scale_rows=[-1, 0, 1, -1, -1],
             fresh_rows=[-1, 0, 0, -1, 1])


def _group_case(m, *, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype).to(DEVICE) for s in GROUP["shapes"]]
    index = torch.randint(0, 5, (m,), generator=gen).to(DEVICE)
    scale = (torch.rand(2, m, generator=gen, dtype=torch.float64) + 0.5).to(DEVICE)
    fresh = (torch.rand(2, m, generator=gen) < 0.3).to(DEVICE)
    kwargs = {k: GROUP[k] for k in ("offsets", "blocks", "scale_rows", "fresh_rows")}
    return tensors, GROUP["dims"], index, scale, fresh, dict(units=5, **kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("m", [3, 5, 8], ids=["prune", "permute", "widen"])
def test_group_in_one_call_matches_reference(backend, dtype, m):
    tensors, dims, index, scale, fresh, kwargs = _group_case(m, dtype=dtype)
    out = kanfast.ops.coupled_gather(tensors, dims, index, scale, fresh, backend=backend, **kwargs)
    expected = reference.coupled_gather(tensors, dims, index, scale, fresh, **kwargs)
    for o, e, t, srow in zip(out, expected, tensors, kwargs["scale_rows"]):
        assert o.dtype == t.dtype and o.shape == e.shape and o.is_contiguous()
        torch.testing.assert_close(o, e, **_tolerance(backend, t.dtype, srow >= 0))
    assert [o.shape for o in out] == [(m, 2, 3), (6, m * 3), (3, 4 + m + 2), (m,), (m, 2, 3)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_group_mixed_dtypes(backend):
    # One call over tensors of every dtype (the Triton backend launches once per dtype).
    tensors, dims, index, scale, fresh, kwargs = _group_case(8)
    tensors = [t.to(d) for t, d in zip(tensors, [torch.float64, torch.float16, torch.bfloat16, torch.float32,
                                                   torch.float32])]
    out = kanfast.ops.coupled_gather(tensors, dims, index, scale, fresh, backend=backend, **kwargs)
    expected = reference.coupled_gather(tensors, dims, index, scale, fresh, **kwargs)
    for o, e, t, srow in zip(out, expected, tensors, kwargs["scale_rows"]):
        torch.testing.assert_close(o, e, **_tolerance(backend, t.dtype, srow >= 0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_group_values(backend):
    # Row [a0 a1 | u0 u0' | u1 u1' | b0]: one carried position before, 2 units of 2 positions,
    # one after. index [1, 0, 1]: 3 units; unit 2 is scaled by 0.5, unit 1 is zeroed.
    t = torch.arange(1.0, 8.0, dtype=torch.float64, device=DEVICE)[None]  # [[1 .. 7]]
    index = torch.tensor([1, 0, 1], device=DEVICE)
    scale = torch.tensor([1.0, 1.0, 0.5], dtype=torch.float64, device=DEVICE)
    fresh = torch.tensor([False, True, False], device=DEVICE)
    moved, scaled = kanfast.ops.coupled_gather([t, t], [1, 1], index, scale, fresh, offsets=[1, 1], blocks=[2, 2],
                                               units=2, scale_rows=[-1, 0], fresh_rows=[-1, 0], backend=backend)
    assert moved.tolist() == [[1.0, 4.0, 5.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]
    assert scaled.tolist() == [[1.0, 4.0, 5.0, 0.0, 0.0, 2.0, 2.5, 6.0, 7.0]]
    # The same without units: the units fill the dim from the offset, nothing is carried after.
    (whole,) = kanfast.ops.coupled_gather([t[:, :5]], [1], index, offsets=[1], blocks=[2], backend=backend)
    assert whole.tolist() == [[1.0, 4.0, 5.0, 2.0, 3.0, 4.0, 5.0]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["transposed", "sliced", "channels_last", "expanded"])
def test_non_contiguous(backend, layout):
    base = torch.randn(6, 9, 5, 4, dtype=torch.float32, device=DEVICE)
    t = {"transposed": base.transpose(0, 2), "sliced": base[:, ::2, 1:], "expanded": base[:1].expand(3, -1, -1, -1),
         "channels_last": base.contiguous(memory_format=torch.channels_last)}[layout]
    assert not t.is_contiguous()
    for dim in range(t.dim()):
        _check(backend, [t], [dim], *_rule(5, t.shape[dim]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_odd_and_large_rows(backend):
    # Rows longer than a parallel chunk next to rows of one element, so both chunking paths run.
    big = torch.randn(3, 11, 4099, device=DEVICE)
    _check(backend, [big, torch.randn(11, device=DEVICE)], [1, 0], *_rule(13, 11))


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty(backend):
    t = torch.randn(4, 3, device=DEVICE)
    index = torch.zeros(0, dtype=torch.long, device=DEVICE)
    out = kanfast.ops.coupled_gather([t, t[:0]], [0, 1], index, backend=backend)
    assert [o.shape for o in out] == [(0, 3), (0, 0)]
    (zero_rows,) = kanfast.ops.coupled_gather([t[:0]], [1], torch.tensor([2, 0], device=DEVICE), backend=backend)
    assert zero_rows.shape == (0, 2)
    assert kanfast.ops.coupled_gather([], [], index, backend=backend) == []


def test_outputs_do_not_alias_inputs():
    t = torch.randn(4, 3, device=DEVICE)
    (out,) = kanfast.ops.coupled_gather([t], [0], torch.arange(4, device=DEVICE))
    out.zero_()
    assert t.abs().sum() > 0


def test_opcheck():
    kanfast._backend.load_library()
    if not kanfast._backend.library_status()[0]:
        pytest.skip("compiled library not loaded")
    for scaled, with_fresh in [(True, True), (False, False)]:
        args = _case(*MIXED, 9, 7, scaled=scaled, with_fresh=with_fresh)
        torch.library.opcheck(torch.ops.kanfast.coupled_gather.default, args)
    tensors, dims, index, scale, fresh, kwargs = _group_case(8)
    torch.library.opcheck(torch.ops.kanfast.coupled_gather.default, (tensors, dims, index, scale, fresh), kwargs)


def test_opcheck_triton():
    if kanfast._backend.why_not("triton", DEVICE) is not None:
        pytest.skip(kanfast._backend.why_not("triton", DEVICE))
    from kanfast.triton.coupled_gather import coupled_gather_triton

    torch.library.opcheck(coupled_gather_triton, (*_case(*MIXED, 9, 7), None, None, None, None, None))
    tensors, dims, index, scale, fresh, kw = _group_case(8)
    torch.library.opcheck(coupled_gather_triton, (tensors, dims, index, scale, fresh, kw["offsets"], kw["blocks"],
                                                  kw["units"], kw["scale_rows"], kw["fresh_rows"]))


def test_bad_inputs():
    t = torch.randn(5, 3)
    idx = torch.tensor([0, 4])
    _bad(r"index values must be in \[0, 3\) \(the units of tensors\[1\] along dims\[1\]\)", [t, t], [0, 1], idx)
    _bad(r"index values must be in \[0, 5\).*\[-1, 0\]", [t], [0], torch.tensor([-1, 0]))
    _bad(r"dims\[1\] must be in \[-2, 2\)", [t, t], [0, 2], idx)
    _bad(r"dims must be a list with one int per tensor \(2\)", [t, t], [0], idx)
    _bad(r"dims\[0\] must be an int", [t], [0.0], idx)
    _bad(r"index must be a 1-dim int64 tensor", [t], [0], idx.int())
    _bad(r"index must be a 1-dim int64 tensor", [t], [0], idx.view(2, 1))
    _bad(r"scale must be a torch.float64 tensor of shape \(m,\) or \(rows, m\) with m = 2", [t], [0], idx,
         scale=torch.ones(3))
    _bad(r"scale must be .* got torch.float64 of shape \(2, 2, 2\)", [t], [0], idx,
         scale=torch.ones(2, 2, 2, dtype=torch.float64))
    _bad(r"scale must be a torch.float64 tensor", [t], [0], idx, scale=torch.ones(2))
    _bad(r"fresh must be a torch.bool tensor of shape \(m,\) or \(rows, m\) with m = 2", [t], [0], idx,
         fresh=torch.ones(2))
    _bad(r"tensors\[1\] must be a floating-point tensor", [t, t.long()], [0, 0], idx)
    _bad(r"tensors must be a list", t, [0], idx)
    _bad(r"dims\[0\] must be in \[0, 0\)", [torch.tensor(1.0)], [0], idx)


def test_bad_group_arguments():
    t = torch.randn(5, 7)
    idx = torch.tensor([0, 1])
    two = torch.ones(2, 2, dtype=torch.float64)
    _bad(r"offsets must be a list with one int per tensor \(2\)", [t, t], [0, 1], idx, offsets=[0])
    _bad(r"offsets\[1\] must be >= 0, got -1", [t, t], [0, 1], idx, offsets=[0, -1])
    _bad(r"blocks\[0\] must be >= 1, got 0", [t], [0], idx, blocks=[0])
    _bad(r"blocks\[0\] must be an int", [t], [0], idx, blocks=[1.0])
    _bad(r"scale_rows\[1\] must be in \[-1, 2\), got 2", [t, t], [0, 1], idx, scale=two, scale_rows=[0, 2])
    _bad(r"scale_rows\[0\] must be in \[-1, 0\), got 0", [t], [0], idx, scale_rows=[0])
    _bad(r"fresh_rows must be a list with one int per tensor \(1\)", [t], [0], idx,
         fresh=torch.ones(2, dtype=torch.bool), fresh_rows=[0, 0])
    _bad(r"units must be None or an int >= 0, got -1", [t], [0], idx, units=-1)
    _bad(r"offsets\[0\] \+ units \* blocks\[0\] = 2 \+ 2 \* 2 exceeds the size 5 of tensors\[0\]", [t], [0], idx,
         offsets=[2], blocks=[2], units=2)
    _bad(r"with units=None, tensors\[1\] of shape \(5, 7\) must hold whole units after offsets\[1\] = 1", [t, t],
         [0, 1], idx, offsets=[0, 1], blocks=[1, 4])
    _bad(r"index values must be in \[0, 2\) \(units\)", [t], [1], torch.tensor([2]), units=2)


def _bad(match, tensors, dims, index, scale=None, fresh=None, **kwargs):
    with pytest.raises((ValueError, TypeError), match=match):
        kanfast.ops.coupled_gather(tensors, dims, index, scale, fresh, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for a device mix")
def test_device_mix():
    t = torch.randn(5, 3)
    _bad(r"tensors\[1\] is on cuda:0 but index is on cpu", [t, t.cuda()], [0, 0], torch.tensor([1]))
    _bad(r"fresh is on cuda:0 but index is on cpu", [t], [0], torch.tensor([1]), fresh=torch.ones(1, dtype=torch.bool,
                                                                                                  device="cuda"))


def test_compiled_op_checks_arguments():
    # The raw op checks too, for callers that skip the Python wrapper.
    kanfast._backend.load_library()
    if not kanfast._backend.library_status()[0]:
        pytest.skip("compiled library not loaded")
    t = torch.randn(5, 3, device=DEVICE)
    with pytest.raises(RuntimeError, match=r"index values must be in \[0, 3\)"):
        torch.ops.kanfast.coupled_gather([t, t], [0, 1], torch.tensor([0, 4], device=DEVICE))
    with pytest.raises(RuntimeError, match=r"dims\[0\] must be in \[-2, 2\)"):
        torch.ops.kanfast.coupled_gather([t], [2], torch.tensor([0], device=DEVICE))
    with pytest.raises(RuntimeError, match=r"fresh must be a bool tensor of shape \(m,\) or \(rows, m\) with m = 1"):
        torch.ops.kanfast.coupled_gather([t], [0], torch.tensor([0], device=DEVICE), None, torch.ones(2, device=DEVICE))
    one = torch.tensor([0], device=DEVICE)
    with pytest.raises(RuntimeError, match=r"scale_rows\[0\] must be in \[-1, 0\), got 0"):
        torch.ops.kanfast.coupled_gather([t], [0], one, scale_rows=[0])
    with pytest.raises(RuntimeError, match=r"blocks must have one entry per tensor \(1\), got 2"):
        torch.ops.kanfast.coupled_gather([t], [0], one, blocks=[1, 1])
    with pytest.raises(RuntimeError, match=r"offsets\[0\] \+ units \* blocks\[0\] = 4 \+ 2 \* 1 exceeds"):
        torch.ops.kanfast.coupled_gather([t], [0], one, offsets=[4], units=2)
    with pytest.raises(RuntimeError, match=r"index values must be in \[0, 1\) \(units\)"):
        torch.ops.kanfast.coupled_gather([t], [0], torch.tensor([1], device=DEVICE), units=1)
