"""float32 tolerances against the float64 reference, one entry per comparison, with the reason.

Bases are elementwise and bit-exact (same arithmetic as the reference) except on the C++ CPU
kernels' uniform-grid path, which has its entries below.
"""

import torch

FLOAT32 = {
    # Sums of in·(G+K+1) products of O(1) terms in float32: error grows like sqrt(terms)·eps·|terms|.
    "kan_linear_output": dict(rtol=2e-5, atol=2e-5),
    # Weight grads sum over the batch too: a few hundred more terms.
    "kan_linear_grad": dict(rtol=1e-4, atol=1e-4),
    # silu(x) and its gradient, one per element, with e^x evaluated in the CPU basis kernels to
    # a few ulp (csrc/include/kanfast/cpu/silu_lanes.h).
    "silu": dict(rtol=1e-6, atol=1e-6),
    # Contractions of G+K products per element.
    "bspline_grad": dict(rtol=1e-5, atol=1e-5),
    # float32 bases on a uniform grid from the cardinal B-spline (csrc/include/kanfast/uniform_bspline.h):
    # u = (x - t_0)/h carries a few ulp of u, up to G+2K, and the stored knots are uniform only
    # to half an ulp of |t|, i.e. |t|/h ulp of u. Measured: 9e-7 at G=10, 4.3e-6 at G=64.
    "bspline_uniform": dict(rtol=0, atol=1e-5),
    # Their derivatives times h (dB/dx scales with 1/h), contracted with G+K random weights.
    # Measured: 6e-6 at G=10, 3.1e-5 at G=64, on values up to ~5.
    "bspline_uniform_grad": dict(rtol=1e-5, atol=6e-5),
    # Per-element means of channel statistics of O(1) values: float32 partial sums over at most
    # 1024-element pieces (<= 128 terms per SIMD lane, or per Triton lane) merged in float64, so
    # the error is at most ~128·2^-24 ≈ 8e-6 of E|a|, typically far less.
    "channel_stats": dict(rtol=1e-5, atol=1e-6),
    # bf16/f16 input: the values are exact in float32 and accumulated in float32 like float32
    # input, so the same bound holds against the float64 statistics of the stored values.
    "channel_stats_low_precision_input": dict(rtol=1e-5, atol=1e-6),
}


def assert_close(actual, expected, name, **override):
    """Compare to a float64 reference: exact-ish for float64, the table above for float32."""
    expected = expected.to(actual.dtype)
    if actual.dtype == torch.float64:
        tol = dict(rtol=1e-10, atol=1e-12)
    else:
        tol = FLOAT32[name]
    tol.update(override)
    torch.testing.assert_close(actual, expected, equal_nan=True, **tol)


def low_precision_rule(kernel_out, ref_low, ref64, factor):
    """flash-attention rule: the kernel's error vs the float64 reference is at most `factor`
    times the error of the reference itself run in the low precision (plus a float floor)."""
    kernel_err = (kernel_out.double() - ref64).abs().max().item()
    ref_err = (ref_low.double() - ref64).abs().max().item()
    assert kernel_err <= factor * ref_err + 1e-6, f"kernel error {kernel_err:.3g} > {factor} × reference error {ref_err:.3g}"


def relative_l2_and_cosine(actual, expected):
    a, e = actual.double().flatten(), expected.double().flatten()
    rel = ((a - e).norm() / e.norm().clamp_min(1e-30)).item()
    cos = torch.nn.functional.cosine_similarity(a, e, dim=0).item()
    return rel, cos
