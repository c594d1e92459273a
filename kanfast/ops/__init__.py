"""Public op wrappers: argument checks, backend choice, and the torch.ops.kanfast.* kernels."""

from .bspline_basis import bspline_basis
from .channel_stats import ChannelStats, channel_stats
from .coupled_gather import coupled_gather
from .kan_conv import kan_conv
from .kan_linear import kan_linear

__all__ = ["ChannelStats", "bspline_basis", "channel_stats", "coupled_gather", "kan_conv", "kan_linear"]
