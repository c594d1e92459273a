"""The base activations the fused ops know by name, with their backward (grad·act'(x)).

Mirrors csrc/common/base_activation.h for the Python backends."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

aten = torch.ops.aten

Activation = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]

ACTIVATIONS: dict[str, Activation] = {
    "silu": (F.silu, lambda g, x: aten.silu_backward(g, x)),
    "gelu": (F.gelu, lambda g, x: aten.gelu_backward(g, x)),
    "gelu_tanh": (
        lambda x: F.gelu(x, approximate="tanh"),
        lambda g, x: aten.gelu_backward(g, x, approximate="tanh"),
    ),
    "relu": (F.relu, lambda g, x: aten.threshold_backward(g, x, 0)),
    "tanh": (torch.tanh, lambda g, x: aten.tanh_backward(g, torch.tanh(x))),
    "sigmoid": (torch.sigmoid, lambda g, x: aten.sigmoid_backward(g, torch.sigmoid(x))),
    "identity": (lambda x: x, lambda g, x: g),
}

# nn.Module types that map onto a named activation (others run unfused, outside the op).
def activation_name(module: torch.nn.Module) -> str | None:
    if type(module) is torch.nn.SiLU:
        return "silu"
    if type(module) is torch.nn.GELU:
        return "gelu" if module.approximate == "none" else "gelu_tanh"
    if type(module) is torch.nn.ReLU:
        return "relu"
    if type(module) is torch.nn.Tanh:
        return "tanh"
    if type(module) is torch.nn.Sigmoid:
        return "sigmoid"
    if type(module) is torch.nn.Identity:
        return "identity"
    return None
