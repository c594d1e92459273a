"""Which modules have scoreable units, where their signals are, and whose weights they feed.

Wiring is read from ``nn.Sequential`` chains (nested Sequentials are flattened into their
parent's chain): after a layer, the walk passes through element-wise modules (activations,
normalisations, dropout, pooling, Identity) and at most one Flatten, and stops at the first
layer with weights — the *consumer*, whose input slice of unit u holds u's outgoing weights.
Outside a Sequential, or past any other module, the consumer is unknown.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..nn import KANConv1d, KANConv2d, KANConv3d, KANLinear

KAN_CONV = (KANConv1d, KANConv2d, KANConv3d)
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
WEIGHTED = (nn.Linear, KANLinear, *CONV, *KAN_CONV)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
               nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus)
# Modules that keep unit u in place (element-wise or per channel).
PASS_THROUGH = (*ACTIVATIONS, *NORMS, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity,
                nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
SUPPORTED = (*WEIGHTED, *NORMS)


@dataclasses.dataclass
class ScoredLayer:
    name: str
    module: nn.Module
    unit_dim: int  # the units' dim in the module's output
    units: int
    signal: nn.Module | None  # the activation whose output is this layer's "after activation" signal
    consumer: nn.Module | None  # the next layer reading these units, None if unknown
    block: int  # consumer input features per unit (> 1 after a Flatten of spatial maps)
    norm: nn.Module | None  # the norm layer scaling these units (itself for a norm layer)


def why_unsupported(module: nn.Module) -> str | None:
    if not isinstance(module, SUPPORTED):
        return f"{type(module).__name__} is not a supported layer type"
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) != 1:
        return f"LayerNorm over {tuple(module.normalized_shape)}: only 1-D normalized_shape has units"
    return None


def unit_layout(module: nn.Module) -> tuple[int, int]:
    """(unit dim in the output, number of units)."""
    if isinstance(module, (nn.Linear, KANLinear)):
        return -1, module.out_features
    if isinstance(module, (*CONV, *KAN_CONV)):
        return 1, module.out_channels
    if isinstance(module, nn.GroupNorm):
        return 1, module.num_channels
    if isinstance(module, nn.LayerNorm):
        return -1, module.normalized_shape[0]
    return 1, module.num_features  # BatchNorm


def _chains(model: nn.Module) -> dict[int, tuple[list[nn.Module], int]]:
    """id(module) -> (the flattened Sequential chain holding it, its index there)."""
    nested = {id(c) for m in model.modules() if isinstance(m, nn.Sequential) for c in m.children()}
    where: dict[int, tuple[list[nn.Module], int]] = {}
    for m in model.modules():
        if isinstance(m, nn.Sequential) and id(m) not in nested:
            chain = list(_leaves(m))
            for i, leaf in enumerate(chain):
                where.setdefault(id(leaf), (chain, i))
    return where


def _leaves(seq: nn.Sequential):
    for child in seq:
        if isinstance(child, nn.Sequential):
            yield from _leaves(child)
        else:
            yield child


def _fan_in(module: nn.Module) -> int:
    return module.in_features if isinstance(module, (nn.Linear, KANLinear)) else module.in_channels


def _wire(layer: ScoredLayer, chain: list[nn.Module], index: int) -> None:
    flattened = False
    for m in chain[index + 1:]:
        if isinstance(m, WEIGHTED):
            if flattened and isinstance(m, (nn.Linear, KANLinear)) and m.in_features % layer.units == 0:
                layer.consumer, layer.block = m, m.in_features // layer.units
            elif not flattened and _fan_in(m) == layer.units and getattr(m, "groups", 1) == 1:
                layer.consumer = m
            return
        if isinstance(m, nn.Flatten) and not flattened:
            flattened = True
            continue
        if not isinstance(m, PASS_THROUGH):
            return
        if flattened:
            continue
        if layer.norm is None and isinstance(m, NORMS) and m.weight is not None:
            layer.norm = m
        # KAN layers are their own activation; others take the first activation after them.
        if layer.signal is None and isinstance(m, ACTIVATIONS) and not isinstance(layer.module, (KANLinear, *KAN_CONV)):
            layer.signal = m


def discover(model: nn.Module, names: list[str] | None = None) -> list[ScoredLayer]:
    """The scoreable layers of model (all supported ones, or exactly ``names``), in module order."""
    modules = dict(model.named_modules())
    if names is not None:
        for n in names:
            if n not in modules:
                raise ValueError(f"NeuronScorer: layers names {n!r}, which is not a module of the model")
            reason = why_unsupported(modules[n])
            if reason:
                raise ValueError(f"NeuronScorer: layer {n!r} cannot be scored: {reason}")
    chains = _chains(model)
    layers = []
    for name, m in modules.items():
        if (names is None and why_unsupported(m) is None) or (names is not None and name in names):
            dim, units = unit_layout(m)
            layer = ScoredLayer(name, m, dim, units, None, None, 1, m if isinstance(m, NORMS) and m.weight is not None
                                else None)
            if id(m) in chains:
                _wire(layer, *chains[id(m)])
            layers.append(layer)
    return layers


def incoming(module: nn.Module) -> torch.Tensor:
    """(units, k): every weight feeding each output unit (a norm layer's: its γ)."""
    if isinstance(module, NORMS):
        return module.weight.detach().reshape(-1, 1)
    if isinstance(module, KANLinear):
        return torch.cat([module.base_weight, module.scaled_spline_weight.flatten(1)], 1).detach()
    if isinstance(module, KAN_CONV):
        return torch.cat([module.base_weight.flatten(1), module.spline_weight.flatten(1)], 1).detach()
    return module.weight.detach().flatten(1)


def outgoing(layer: ScoredLayer) -> torch.Tensor | None:
    """(units, k): the consumer's weights reading each unit, or None when it is unknown."""
    m, units, b = layer.consumer, layer.units, layer.block
    if m is None:
        return None

    def columns(w: torch.Tensor) -> torch.Tensor:  # w: (out, units·b, *rest) -> (units, out·b·rest)
        w = w.detach()
        return w.reshape(w.shape[0], units, b, -1).transpose(0, 1).reshape(units, -1)

    if isinstance(m, KANLinear):
        return torch.cat([columns(m.base_weight), columns(m.scaled_spline_weight)], 1)
    if isinstance(m, KAN_CONV):
        return torch.cat([columns(m.base_weight), columns(m.spline_weight)], 1)
    return columns(m.weight)


def spline_coefficients(module: nn.Module) -> torch.Tensor | None:
    """(units, k): the spline coefficients of each output unit of a KAN layer, else None."""
    if isinstance(module, KANLinear):
        return module.scaled_spline_weight.detach().flatten(1)
    if isinstance(module, KAN_CONV):
        return module.spline_weight.detach().flatten(1)
    return None
