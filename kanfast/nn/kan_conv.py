"""``kanfast.KANConv1d/2d/3d``: drop-in KAN replacements for nn.Conv1d/2d/3d on the fused op
``kanfast.ops.kan_conv``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..ops._activations import activation_name
from ..ops.kan_conv import PADDING_MODES, conv_geometry
from ._spline_grid import adaptive_grid, fit_spline_coefficients, uniform_grid, validate_grid_buffer
from .kan_linear import _as_module

# update_grid refits on at most this many sampled sites per channel: plenty for G+K coefficients.
_MAX_FIT_SAMPLES = 1 << 16


class _KANConvNd(nn.Module):
    """``convNd(act(x), base_weight) + convNd(B(x), spline_weight) + bias`` where B expands each
    input channel into its G+K B-spline bases, computed once per input element."""

    _dims: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
        *,
        grid_size: int = 5,
        spline_order: int = 3,
        scale_noise: float = 0.1,
        scale_base: float = 1.0,
        scale_spline: float = 1.0,
        base_activation=nn.SiLU,
        grid_eps: float = 0.02,
        grid_range=(-1, 1),
    ) -> None:
        super().__init__()
        name = type(self).__name__
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups),
                           ("grid_size", grid_size), ("spline_order", spline_order)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                             f"divisible by groups ({groups})")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {', '.join(PADDING_MODES)}, got {padding_mode!r}")
        if not 0.0 <= grid_eps <= 1.0:
            raise ValueError(f"{name}: grid_eps must be in [0, 1], got {grid_eps}")
        dims = self._dims
        kernel_size = (kernel_size,) * dims if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(kernel_size) != dims or any(not isinstance(k, int) or k < 1 for k in kernel_size):
            raise ValueError(f"{name}: kernel_size must be a positive int or a tuple of {dims}, got {kernel_size!r}")
        conv_geometry(name, dims, kernel_size, stride, padding, dilation)  # validates early
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride = (stride,) * dims if isinstance(stride, int) else tuple(stride)
        self.padding = padding if isinstance(padding, str) else ((padding,) * dims if isinstance(padding, int)
                                                                 else tuple(padding))
        self.dilation = (dilation,) * dims if isinstance(dilation, int) else tuple(dilation)
        self.groups, self.padding_mode = groups, padding_mode
        self.grid_size, self.spline_order = grid_size, spline_order
        self.scale_noise, self.scale_base, self.scale_spline = scale_noise, scale_base, scale_spline
        self.grid_eps, self.grid_range = grid_eps, tuple(grid_range)
        factory = {"device": device, "dtype": dtype}
        self.register_buffer("grid", uniform_grid(in_channels, grid_size, spline_order, grid_range, **factory))
        per_group = in_channels // groups
        self.base_weight = nn.Parameter(torch.empty(out_channels, per_group, *kernel_size, **factory))
        self.spline_weight = nn.Parameter(
            torch.empty(out_channels, per_group, grid_size + spline_order, *kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.base_activation = _as_module(base_activation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Base weights and bias as nn.ConvNd; every spline curve fitted to small noise (as in
        KANLinear), divided by sqrt(fan-in) since the conv has no per-edge scaler."""
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5) * self.scale_base)
        with torch.no_grad():
            fan_in = self.base_weight[0].numel()
            nb = self.grid_size + self.spline_order
            curves = self.spline_weight.numel() // nb
            knots = self.grid[:1, self.spline_order : -self.spline_order].t()  # all rows are equal initially
            noise = (torch.rand(self.grid_size + 1, 1, curves, device=knots.device) - 0.5) * (
                self.scale_noise / self.grid_size)
            bases = ops.bspline_basis(knots, self.grid[:1], self.spline_order)  # (G+1, 1, G+K)
            coeff = fit_spline_coefficients(bases.transpose(0, 1), noise.to(knots.dtype).transpose(0, 1))[0]
            # (G+K, curves) -> (out, in/groups, G+K, *k)
            shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size, nb)
            coeff = coeff.t().reshape(shape).movedim(-1, 2)
            self.spline_weight.copy_(self.scale_spline * coeff / math.sqrt(fan_in))
            if self.bias is not None:
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(self.bias, -bound, bound)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        grid = state_dict.get(prefix + "grid")
        if grid is not None:
            validate_grid_buffer(f"{type(self).__name__} {prefix}grid", grid, tuple(self.grid.shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _apply(self, fn, recurse=True):
        # Module.to(memory_format=...) applies the format to every 4-D and 5-D tensor, and the
        # 2-D channels_last format fails on KANConv2d's 5-D spline weight. The op reshapes the
        # weight per call, so its layout is free: convert its (out, in/groups·(G+K), *k) view.
        spline = self.spline_weight

        def convert(t):
            if t is spline or (spline.grad is not None and t is spline.grad):
                return fn(t.flatten(1, 2)).unflatten(1, t.shape[1:3])
            return fn(t)

        return super()._apply(convert, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = self._dims
        if x.dim() not in (dims + 1, dims + 2) or x.shape[-dims - 1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: x must have shape (N, {self.in_channels}, *spatial) or "
                             f"({self.in_channels}, *spatial) with {dims} spatial dims, got {tuple(x.shape)}")
        kwargs = dict(spline_order=self.spline_order, stride=self.stride, padding=self.padding,
                      dilation=self.dilation, groups=self.groups, padding_mode=self.padding_mode)
        name = activation_name(self.base_activation)
        if name is not None:
            return ops.kan_conv(x, self.grid, self.base_weight, self.spline_weight, self.bias, base_activation=name,
                                **kwargs)
        # an activation the op does not know: its base path runs as a plain convolution
        y = ops.kan_conv(x, self.grid, None, self.spline_weight, self.bias, **kwargs)
        return y + self._plain_conv(self.base_activation(x), self.base_weight)

    def _plain_conv(self, x, weight):
        conv = (F.conv1d, F.conv2d, F.conv3d)[self._dims - 1]
        stride, pairs, dilation = conv_geometry("conv", self._dims, self.kernel_size, self.stride, self.padding,
                                                self.dilation)
        pad = [p for pair in reversed(pairs) for p in pair]
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        return conv(F.pad(x, pad, mode=mode), weight, None, stride, 0, dilation, self.groups)

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, margin: float = 0.01) -> None:
        """Move each input channel's knots to the data (pixel quantiles blended with a uniform
        grid by grid_eps) and refit spline_weight so every curve keeps its values there.

        x: (N, in_channels, *spatial) or unbatched. Ridge-regularised least squares, as KANLinear.
        """
        dims = self._dims
        if x.dim() == dims + 1:
            x = x.unsqueeze(0)
        if x.dim() != dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"update_grid: x must have shape (N, {self.in_channels}, *spatial), got {tuple(x.shape)}")
        samples = x.movedim(1, -1).reshape(-1, self.in_channels).to(self.grid.dtype)
        if samples.shape[0] > _MAX_FIT_SAMPLES:
            samples = samples[torch.randperm(samples.shape[0], device=samples.device)[:_MAX_FIT_SAMPLES]]
        groups, per_group = self.groups, self.in_channels // self.groups
        out_per_group = self.out_channels // groups
        nb = self.grid_size + self.spline_order
        # curves[g]: (per_group, nb, out_per_group·prod(k)) — the coefficients of channel c's curves
        weights = self.spline_weight.reshape(groups, out_per_group, per_group, nb, -1)
        weights = weights.permute(0, 2, 3, 1, 4).reshape(groups, per_group, nb, -1)
        old_bases = ops.bspline_basis(samples, self.grid, self.spline_order)  # (S, in, nb)
        new_grid = adaptive_grid(samples, self.grid_size, self.spline_order, self.grid_eps, margin)
        validate_grid_buffer("update_grid", new_grid, tuple(self.grid.shape))
        self.grid.copy_(new_grid.to(self.grid.dtype))
        new_bases = ops.bspline_basis(samples, self.grid, self.spline_order)
        fitted = []
        for g in range(groups):
            channels = slice(g * per_group, (g + 1) * per_group)
            targets = torch.einsum("sij,ijo->iso", old_bases[:, channels].double(), weights[g].double())
            fitted.append(fit_spline_coefficients(new_bases[:, channels].transpose(0, 1), targets))
        coeff = torch.stack(fitted)  # (groups, per_group, nb, out_per_group·prod(k))
        coeff = coeff.reshape(groups, per_group, nb, out_per_group, -1).permute(0, 3, 1, 2, 4)
        self.spline_weight.copy_(coeff.reshape(self.spline_weight.shape).to(self.spline_weight.dtype))

    def regularization_loss(self, regularize_activation: float = 1.0, regularize_entropy: float = 1.0) -> torch.Tensor:
        """KANLinear's regulariser over the conv's curves: L1 of mean |coefficients| per curve
        plus the entropy of their distribution."""
        l1 = self.spline_weight.abs().mean(2)
        total = l1.sum()
        p = l1 / total.clamp_min(torch.finfo(l1.dtype).tiny)
        return regularize_activation * total - regularize_entropy * torch.special.xlogy(p, p).sum()

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding not in ((0,) * self._dims, "valid"):
            s += f", padding={self.padding!r}"
        if self.dilation != (1,) * self._dims:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s + (f", grid_size={self.grid_size}, spline_order={self.spline_order}, "
                    f"base_activation={type(self.base_activation).__name__}")


class KANConv1d(_KANConvNd):
    """KAN replacement for nn.Conv1d: input (N, C, L) or (C, L)."""

    _dims = 1


class KANConv2d(_KANConvNd):
    """KAN replacement for nn.Conv2d: input (N, C, H, W) or (C, H, W), any memory format."""

    _dims = 2


class KANConv3d(_KANConvNd):
    """KAN replacement for nn.Conv3d: input (N, C, D, H, W) or (C, D, H, W)."""

    _dims = 3
