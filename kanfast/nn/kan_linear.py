"""``kanfast.KANLinear``: a B-spline KAN layer on the fused op ``kanfast.ops.kan_linear``."""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..ops._activations import activation_name
from ._spline_grid import adaptive_grid, fit_spline_coefficients, uniform_grid, validate_grid_buffer


def _as_module(base_activation) -> nn.Module:
    if isinstance(base_activation, nn.Module):
        return base_activation
    if isinstance(base_activation, type) and issubclass(base_activation, nn.Module):
        return base_activation()
    if callable(base_activation):
        raise TypeError("base_activation must be an nn.Module class or instance (e.g. torch.nn.SiLU)")
    raise TypeError(f"base_activation must be an nn.Module class or instance, got {base_activation!r}")


class KANLinear(nn.Module):
    """Kolmogorov–Arnold linear layer: ``y = act(x) @ base_weightᵀ + B(x) @ (spline_weight·spline_scaler)ᵀ + bias``.

    Parameter names, shapes and defaults follow the widely used efficient-kan ``KANLinear``,
    so its checkpoints load (see :meth:`from_efficient_kan`; it has no bias). Input (*, in_features)
    -> (*, out_features). The bases are never stored: backward recomputes them.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        grid_size: int = 5,
        spline_order: int = 3,
        scale_noise: float = 0.1,
        scale_base: float = 1.0,
        scale_spline: float = 1.0,
        enable_standalone_scale_spline: bool = True,
        base_activation=nn.SiLU,
        grid_eps: float = 0.02,
        grid_range=(-1, 1),
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features), ("grid_size", grid_size),
                            ("spline_order", spline_order)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"KANLinear: {name} must be a positive int, got {value!r}")
        if not 0.0 <= grid_eps <= 1.0:
            raise ValueError(f"KANLinear: grid_eps must be in [0, 1], got {grid_eps}")
        factory = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.out_features = out_features
        self.grid_size = grid_size
        self.spline_order = spline_order
        self.scale_noise = scale_noise
        self.scale_base = scale_base
        self.scale_spline = scale_spline
        self.enable_standalone_scale_spline = enable_standalone_scale_spline
        self.grid_eps = grid_eps
        self.grid_range = tuple(grid_range)
        self.register_buffer("grid", uniform_grid(in_features, grid_size, spline_order, grid_range, **factory))
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, grid_size + spline_order, **factory))
        if enable_standalone_scale_spline:
            self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features, **factory))
        else:
            self.register_parameter("spline_scaler", None)
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.base_activation = _as_module(base_activation)
        self.reset_parameters()

    # ------------------------------------------------------------------ init and loading

    def reset_parameters(self) -> None:
        """efficient-kan's initialisation: Kaiming-uniform base weights, splines fitted to small noise."""
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5) * self.scale_base)
        with torch.no_grad():
            knots = self.grid[:, self.spline_order : -self.spline_order].t()  # (G+1, in)
            noise = (torch.rand(self.grid_size + 1, self.in_features, self.out_features, device=knots.device) - 0.5)
            noise = noise * self.scale_noise / self.grid_size
            coeff = self._fit(knots, noise.to(knots.dtype))  # (out, in, G+K)
            scale = 1.0 if self.enable_standalone_scale_spline else self.scale_spline
            self.spline_weight.copy_(scale * coeff)
            if self.spline_scaler is not None:
                nn.init.kaiming_uniform_(self.spline_scaler, a=math.sqrt(5) * self.scale_spline)
            if self.bias is not None:
                self.bias.zero_()

    @classmethod
    def from_efficient_kan(cls, source: nn.Module | Mapping[str, torch.Tensor], **kwargs) -> "KANLinear":
        """A KANLinear (without bias) holding an efficient-kan ``KANLinear``'s weights: pass the
        module (its hyper-parameters are read) or its state_dict plus the constructor kwargs."""
        if isinstance(source, nn.Module):
            for name in ("grid_size", "spline_order", "scale_noise", "scale_base", "scale_spline",
                         "enable_standalone_scale_spline", "grid_eps"):
                kwargs.setdefault(name, getattr(source, name))
            kwargs.setdefault("base_activation", type(source.base_activation))
            state = source.state_dict()
        else:
            state = dict(source)
        out_features, in_features = state["base_weight"].shape
        kwargs.setdefault("enable_standalone_scale_spline", "spline_scaler" in state)
        kwargs.setdefault("grid_size", state["spline_weight"].shape[-1] - kwargs.get("spline_order", 3))
        layer = cls(in_features, out_features, bias=False, device=state["base_weight"].device,
                    dtype=state["base_weight"].dtype, **kwargs)
        layer.load_state_dict(state)
        return layer

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        grid = state_dict.get(prefix + "grid")
        if grid is not None:
            validate_grid_buffer(f"{type(self).__name__} {prefix}grid", grid, tuple(self.grid.shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(
                f"KANLinear: x must have shape (*, in_features) = (*, {self.in_features}), got {tuple(x.shape)}"
            )
        name = activation_name(self.base_activation)
        if name is not None:  # base path fused into the op
            return ops.kan_linear(x, self.grid, self.base_weight, self.spline_weight, self.spline_scaler, self.bias,
                                  spline_order=self.spline_order, base_activation=name)
        y = ops.kan_linear(x, self.grid, None, self.spline_weight, self.spline_scaler, self.bias,
                           spline_order=self.spline_order)
        return y + F.linear(self.base_activation(x), self.base_weight)

    @property
    def scaled_spline_weight(self) -> torch.Tensor:
        """spline_weight·spline_scaler: (out, in, G+K)."""
        if self.spline_scaler is None:
            return self.spline_weight
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    # ------------------------------------------------------------------ grid adaptation

    def _fit(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Spline coefficients (out, in, G+K) whose curves on the current grid best match
        targets (batch, in, out) at x (batch, in)."""
        bases = ops.bspline_basis(x, self.grid, self.spline_order)  # (batch, in, G+K)
        coeff = fit_spline_coefficients(bases.transpose(0, 1), targets.transpose(0, 1))  # (in, G+K, out)
        return coeff.permute(2, 0, 1).to(self.spline_weight.dtype)

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, margin: float = 0.01) -> None:
        """Move the knots to the data (quantiles of x blended with a uniform grid by grid_eps)
        and refit spline_weight so that each spline keeps its values at x.

        x: (batch, in_features) or (*, in_features). The fit is a ridge-regularised least squares
        solve; the scaler is left as is and the fitted curve is divided by it (not applied twice).
        """
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"update_grid: x must have shape (*, {self.in_features}), got {tuple(x.shape)}")
        x = x.reshape(-1, self.in_features).to(self.grid.dtype)
        bases = ops.bspline_basis(x, self.grid, self.spline_order)  # (batch, in, G+K)
        curves = torch.einsum("bij,oij->bio", bases, self.scaled_spline_weight.to(bases.dtype))  # (batch, in, out)
        new_grid = adaptive_grid(x, self.grid_size, self.spline_order, self.grid_eps, margin).to(self.grid.dtype)
        validate_grid_buffer("update_grid", new_grid, tuple(self.grid.shape))
        self.grid.copy_(new_grid)
        coeff = self._fit(x, curves)  # fitted to spline_weight·scaler
        if self.spline_scaler is not None:
            scaler = self.spline_scaler.unsqueeze(-1)
            usable = scaler.abs() > torch.finfo(scaler.dtype).tiny
            # a zero scaler silences the curve whatever the weights: keep them
            coeff = torch.where(usable, coeff / torch.where(usable, scaler, torch.ones_like(scaler)),
                                self.spline_weight)
        self.spline_weight.copy_(coeff)

    def regularization_loss(self, regularize_activation: float = 1.0, regularize_entropy: float = 1.0) -> torch.Tensor:
        """efficient-kan's sparsity regulariser: L1 of the mean |spline_weight| per edge plus the
        entropy of its distribution (0·log 0 taken as 0)."""
        l1 = self.spline_weight.abs().mean(-1)
        total = l1.sum()
        p = l1 / total.clamp_min(torch.finfo(l1.dtype).tiny)
        entropy = -torch.special.xlogy(p, p).sum()
        return regularize_activation * total + regularize_entropy * entropy

    def extra_repr(self) -> str:
        act = type(self.base_activation).__name__
        return (f"in_features={self.in_features}, out_features={self.out_features}, grid_size={self.grid_size}, "
                f"spline_order={self.spline_order}, base_activation={act}, bias={self.bias is not None}")
