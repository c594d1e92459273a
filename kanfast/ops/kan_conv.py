"""``kanfast.ops.kan_conv``: the fused KANConv1d/2d/3d of DESIGN.md §2.

Bases are computed once per input element, per chunk of images, and fed to the vendor
convolution as expanded channels; backward recomputes them, so autograd saves only x (padded,
for the non-zero padding modes) and the weights.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
import torch.nn.functional as F

from .. import _backend, reference
from ._checks import check_base_activation, check_bspline_args, check_knots, check_tensor

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _tuple(op: str, name: str, value, dims: int, minimum: int) -> tuple[int, ...]:
    values = (value,) * dims if isinstance(value, int) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(values) != dims or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{op}: {name} must be an int or a tuple of {dims} ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return values


def input_memory_format(x: torch.Tensor) -> torch.memory_format:
    """The layout every backend returns y and grad_x in, as nn.ConvNd: channels-last for a
    channels-last x (one that is not also contiguous), else contiguous. Mirrors
    input_memory_format in csrc/kan_conv/feature_layout.h."""
    if x.dim() not in (4, 5):
        return torch.contiguous_format
    channels_last = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    return channels_last if not x.is_contiguous() and x.is_contiguous(memory_format=channels_last) else \
        torch.contiguous_format


def conv_geometry(op: str, dims: int, kernel_size: Sequence[int], stride, padding, dilation):
    """nn.ConvNd-style arguments -> (stride, ((before, after) per dim), dilation)."""
    stride = _tuple(op, "stride", stride, dims, 1)
    dilation = _tuple(op, "dilation", dilation, dims, 1)
    if isinstance(padding, str):
        if padding == "valid":
            pairs = ((0, 0),) * dims
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' is not supported for strided convolutions (stride={stride})")
            totals = [d * (k - 1) for d, k in zip(dilation, kernel_size)]
            pairs = tuple((t // 2, t - t // 2) for t in totals)  # the extra site goes after, as in nn.ConvNd
        else:
            raise ValueError(f"{op}: padding must be 'same', 'valid', an int or a tuple, got {padding!r}")
    else:
        pairs = tuple((p, p) for p in _tuple(op, "padding", padding, dims, 0))
    return stride, pairs, dilation


def _exact(value):
    """value for a signature key, its type included (1, 1.0 and True hash alike), or TypeError
    when it cannot be part of one."""
    if type(value) in (int, str) or value is None:
        return value, type(value)
    if type(value) in (tuple, list):
        return type(value), tuple(_exact(v) for v in value)
    raise TypeError("not part of a signature")


def _tensor_signature(t):
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError("not part of a signature")
    return t.shape, t.dtype, t.device


# Everything kan_conv checks is a function of its call's signature: shapes, dtypes and devices,
# the arguments that are not tensors, and the backend setting. A signature seen before skips
# the checks, which cost ~20 µs a call (a KAN CNN on small images spends ~1.7 ms a layer).
_PLANS: dict = {}
_MAX_PLANS = 256


@dataclasses.dataclass(frozen=True)
class _Plan:
    unbatched: bool
    pad: tuple[int, ...] | None  # F.pad for the non-zero padding modes, else None
    backend: str
    stride: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]


def kan_conv(
    x: torch.Tensor,
    grid: torch.Tensor,
    base_weight: torch.Tensor | None,
    spline_weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    spline_order: int,
    base_activation: str = "silu",
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    padding_mode: str = "zeros",
    chunk_rows: int | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """KAN convolution with nn.ConvNd's arguments (int/tuple/'same'/'valid' padding, the four
    padding modes, groups).

    x: (N, C, *spatial) or unbatched (C, *spatial), any memory format; grid: (C, G+2K+1);
    base_weight: (out, C/groups, *k) or None; spline_weight: (out, C/groups, G+K, *k);
    bias: (out,) or None -> (N, out, *out_spatial) in x's memory format.
    """
    args = (x, grid, base_weight, spline_weight, bias, spline_order, base_activation, stride, padding, dilation,
            groups, padding_mode, chunk_rows, backend)
    key = None
    if not torch.compiler.is_compiling():
        requested = _backend.get_backend()
        try:
            key = (_tensor_signature(x), _tensor_signature(grid), _tensor_signature(base_weight),
                   _tensor_signature(spline_weight), _tensor_signature(bias), _exact(args[5:]), requested,
                   # whether Triton can run on CPU tensors, where it was asked for
                   "triton" in (backend, requested) and _backend.triton_interpreted())
        except TypeError:
            pass  # the checks below name what is wrong, if anything
    plan = _PLANS.get(key) if key is not None else None
    if plan is None:
        plan = _check_and_plan(*args)
        if key is not None:
            if len(_PLANS) >= _MAX_PLANS:
                _PLANS.clear()
            _PLANS[key] = plan
    check_knots("kan_conv", grid, plan.backend)  # reads the knots: not part of the signature

    if plan.unbatched:
        x = x.unsqueeze(0)
    memory_format = input_memory_format(x)  # of the caller's x: F.pad below returns contiguous
    if plan.pad is not None:
        x = F.pad(x, plan.pad, mode=padding_mode)
    if plan.backend == "reference":
        y = reference.kan_conv(x, grid, base_weight, spline_weight, bias, spline_order=spline_order,
                               base_activation=base_activation, stride=plan.stride, padding=plan.pairs,
                               dilation=plan.dilation, groups=groups)
    else:
        op_args = (x, grid, base_weight, spline_weight, bias, spline_order, base_activation, list(plan.stride),
                   [p for pair in plan.pairs for p in pair], list(plan.dilation), groups, chunk_rows or 0)
        if plan.backend == "triton":
            from ..triton.kan_conv import kan_conv_triton

            y = kan_conv_triton(*op_args)
        else:
            y = torch.ops.kanfast.kan_conv(*op_args)
    y = y.contiguous(memory_format=memory_format)  # a no-op unless F.pad or the reference changed it
    return y.squeeze(0) if plan.unbatched else y


def _check_and_plan(x, grid, base_weight, spline_weight, bias, spline_order, base_activation, stride, padding,
                    dilation, groups, padding_mode, chunk_rows, backend) -> _Plan:
    """Every argument check of kan_conv, and what follows from the arguments."""
    op = "kan_conv"
    check_tensor(op, "spline_weight", spline_weight)
    if spline_weight.dim() not in (4, 5, 6):
        raise ValueError(f"{op}: spline_weight must have shape (out, in/groups, G+K, *kernel_size) with 1-3 "
                         f"kernel dims, got {tuple(spline_weight.shape)}")
    dims = spline_weight.dim() - 3
    unbatched = x.dim() == dims + 1
    if x.dim() not in (dims + 1, dims + 2):
        raise ValueError(f"{op}: x must have shape (N, C, *spatial) or (C, *spatial) with {dims} spatial dims, "
                         f"got {tuple(x.shape)}")
    if unbatched:
        x = x.unsqueeze(0)  # for the checks only
    num_bases = check_bspline_args(op, x, grid, spline_order, feature_dim=1)
    check_base_activation(op, base_activation)
    if not isinstance(groups, int) or groups < 1 or x.shape[1] % groups or spline_weight.shape[0] % groups:
        raise ValueError(f"{op}: groups must be a positive int dividing in_channels ({x.shape[1]}) and "
                         f"out_channels ({spline_weight.shape[0]}), got {groups!r}")
    kernel_size = tuple(spline_weight.shape[3:])
    out_channels = spline_weight.shape[0]
    expected = (out_channels, x.shape[1] // groups, num_bases, *kernel_size)
    if tuple(spline_weight.shape) != expected:
        raise ValueError(f"{op}: spline_weight must have shape {expected} = (out, in/groups, grid_size + "
                         f"spline_order, *kernel_size), got {tuple(spline_weight.shape)}")
    for name, t, shape in (("base_weight", base_weight, (out_channels, x.shape[1] // groups, *kernel_size)),
                           ("bias", bias, (out_channels,))):
        if t is None:
            continue
        check_tensor(op, name, t)
        if tuple(t.shape) != shape:
            raise ValueError(f"{op}: {name} must have shape {shape}, got {tuple(t.shape)}")
        if t.dtype != x.dtype or t.device != x.device:
            raise TypeError(f"{op}: {name} must have x's dtype and device ({x.dtype}, {x.device}), "
                            f"got {t.dtype}, {t.device}")
    if spline_weight.dtype != x.dtype or spline_weight.device != x.device:
        raise TypeError(f"{op}: spline_weight must have x's dtype and device ({x.dtype}, {x.device})")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"{op}: padding_mode must be one of {', '.join(PADDING_MODES)}, got {padding_mode!r}")
    if chunk_rows is not None and (not isinstance(chunk_rows, int) or chunk_rows < 1):
        raise ValueError(f"{op}: chunk_rows must be a positive int or None, got {chunk_rows!r}")
    stride, pairs, dilation = conv_geometry(op, dims, kernel_size, stride, padding, dilation)
    for d, (k, (before, after)) in enumerate(zip(kernel_size, pairs)):
        padded = x.shape[2 + d] + before + after
        if padded < dilation[d] * (k - 1) + 1:
            raise ValueError(f"{op}: the kernel (size {k}, dilation {dilation[d]}) is larger than the padded input "
                             f"({padded}) along spatial dim {d} of x")

    pad = None
    if padding_mode != "zeros" and any(p for pair in pairs for p in pair):
        pad = tuple(p for pair in reversed(pairs) for p in pair)
        pairs = ((0, 0),) * dims
    name = _backend.choose(op, x.device, backend)
    return _Plan(unbatched, pad, name, tuple(stride), tuple(pairs), tuple(dilation))


def output_shape(x, spline_weight, stride, padding, dilation):
    """(N, out, *out_spatial) for x (N, C, *spatial) and flat padding (before, after, ...)."""
    sizes = [x.shape[0], spline_weight.shape[0]]
    for d in range(x.dim() - 2):
        k = spline_weight.shape[3 + d]
        padded = x.shape[2 + d] + padding[2 * d] + padding[2 * d + 1]
        sizes.append((padded - dilation[d] * (k - 1) - 1) // stride[d] + 1)
    return sizes


def _fake_forward(x, grid, base_weight, spline_weight, bias, spline_order, base_activation, stride, padding, dilation,
                  groups, chunk_rows):
    shape = output_shape(x, spline_weight, stride, padding, dilation)
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=input_memory_format(x))


def _fake_backward(grad_out, x, grid, base_weight, spline_weight, spline_order, base_activation, stride, padding,
                   dilation, groups, chunk_rows, output_mask):
    def like(t, wanted):
        return x.new_empty(t.shape) if wanted and t is not None else x.new_empty(0)

    grad_x = torch.empty_like(x, memory_format=input_memory_format(x)) if output_mask[0] else x.new_empty(0)
    return grad_x, like(base_weight, output_mask[1]), like(spline_weight, output_mask[2])


def register_autograd(forward_op, backward_op) -> None:
    """Autograd for the Triton kan_conv op through its backward op (the formula of
    csrc/kan_conv/kan_conv_autograd.cpp, which serves the compiled op)."""

    def setup_context(ctx, inputs, output):
        x, grid, base_weight, spline_weight, bias, *options = inputs
        ctx.save_for_backward(x, grid, base_weight, spline_weight)
        ctx.options = options  # spline_order, base_activation, stride, padding, dilation, groups, chunk_rows

    def backward(ctx, grad):
        x, grid, base_weight, spline_weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        mask = [needs[0], needs[2], needs[3]]
        grads = [None] * 3
        if any(mask):
            grads = backward_op(grad.contiguous(), x, grid, base_weight, spline_weight, *ctx.options, mask)
            grads = [g if wanted else None for g, wanted in zip(grads, mask)]
        grad_x, grad_base, grad_spline = grads
        grad_bias = grad.sum([0, *range(2, grad.dim())]) if needs[4] else None
        return (grad_x, None, grad_base, grad_spline, grad_bias) + (None,) * 7

    torch.library.register_autograd(forward_op, backward, setup_context=setup_context)


@_backend.after_library_load
def _register_compiled() -> None:
    torch.library.register_fake("kanfast::kan_conv")(_fake_forward)
    torch.library.register_fake("kanfast::kan_conv_backward")(_fake_backward)
    # Autograd of the compiled op is registered in C++ (csrc/kan_conv/kan_conv_autograd.cpp).
