"""What each traced op does to the dimension that holds a group's units.

Every op the coupling trace may cross is listed here; anything else that touches the resized
dimension is an error (see couple.py), never assumed to be element-wise.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import KANConv1d, KANConv2d, KANConv3d, KANLinear

KAN_CONV = (KANConv1d, KANConv2d, KANConv3d)
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, *KAN_CONV)
LINEAR = (nn.Linear, KANLinear)

# Modules that act on each element (or on each channel as a whole) without mixing units.
ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity,
)
# Pooling modules by the number of trailing spatial dims they reduce.
POOL_MODULES = {
    nn.MaxPool1d: 1, nn.AvgPool1d: 1, nn.AdaptiveMaxPool1d: 1, nn.AdaptiveAvgPool1d: 1,
    nn.MaxPool2d: 2, nn.AvgPool2d: 2, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveAvgPool2d: 2,
    nn.MaxPool3d: 3, nn.AvgPool3d: 3, nn.AdaptiveMaxPool3d: 3, nn.AdaptiveAvgPool3d: 3,
}
ELEMENTWISE_FUNCTIONS = {
    torch.relu, F.relu, F.relu6, F.gelu, F.silu, torch.tanh, torch.sigmoid, F.leaky_relu, F.elu, F.selu, F.mish,
    F.hardswish, F.softplus, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, torch.neg, operator.neg,
}
ELEMENTWISE_METHODS = {"relu", "sigmoid", "tanh", "neg", "contiguous", "clone"}
# Binary element-wise ops: with a tensor on both sides, both carry the units (a residual add).
BINARY_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub, operator.imul,
    torch.add, torch.sub, torch.mul, torch.div,
}
BINARY_METHODS = {"add", "sub", "mul", "div", "add_", "mul_"}
POOL_FUNCTIONS = {
    F.max_pool1d: 1, F.avg_pool1d: 1, F.adaptive_max_pool1d: 1, F.adaptive_avg_pool1d: 1,
    F.max_pool2d: 2, F.avg_pool2d: 2, F.adaptive_max_pool2d: 2, F.adaptive_avg_pool2d: 2,
    F.max_pool3d: 3, F.avg_pool3d: 3, F.adaptive_max_pool3d: 3, F.adaptive_avg_pool3d: 3,
}
# Views: the mapping of the units is read from the input and output shapes.
RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
RESHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze", "unflatten"}
REDUCE_FUNCTIONS = {torch.mean, torch.sum}
REDUCE_METHODS = {"mean", "sum"}
# Results are sizes, not tensors: they do not carry units.
METADATA_METHODS = {"size", "dim", "numel"}


def conv_dims(module: nn.Module) -> int:
    """Spatial dims of a (KAN) conv."""
    if isinstance(module, KAN_CONV):
        return module._dims
    return {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}[type(module)]


def is_depthwise(module: nn.Module) -> bool:
    return module.groups > 1 and module.groups == module.in_channels == module.out_channels


def producer_dim(module: nn.Module) -> int | None:
    """The (negative) dim of a layer's output that holds its units, None if it has none."""
    if isinstance(module, (*LINEAR, nn.Embedding)):
        return -1
    if isinstance(module, CONV) and module.groups == 1:
        return -(conv_dims(module) + 1)
    return None


def units_of(module: nn.Module) -> int:
    if isinstance(module, LINEAR):
        return module.out_features
    if isinstance(module, nn.Embedding):
        return module.embedding_dim
    return module.out_channels


INSTANCE_NORM = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)  # by spatial dims


def channel_layout(module: nn.Module) -> tuple[int, int] | None:
    """(position of the channel dim in the input, channel count) of a per-channel module.

    A negative position counts from the last dim; a positive one needs the input's rank."""
    if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d)):
        return -(4 if isinstance(module, nn.BatchNorm3d) else 3), module.num_features
    if isinstance(module, nn.BatchNorm1d):  # (N, C) or (N, C, L)
        return 1, module.num_features
    if isinstance(module, INSTANCE_NORM):  # (N, C, *spatial) or unbatched (C, *spatial)
        return -(INSTANCE_NORM.index(type(module)) + 2), module.num_features
    if isinstance(module, nn.GroupNorm):
        return 1, module.num_channels
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        return -1, module.normalized_shape[0]
    if isinstance(module, nn.PReLU) and module.num_parameters > 1:
        return 1, module.num_parameters
    if isinstance(module, CONV) and is_depthwise(module):
        return -(conv_dims(module) + 1), module.in_channels
    return None
