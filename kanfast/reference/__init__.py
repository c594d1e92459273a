"""Pure-PyTorch implementations of every op: the truth in tests, the fallback, a bench provider."""

from .bspline_basis import bspline_basis, bspline_basis_derivative, knot_span_reciprocals
from .channel_stats import channel_stats
from .coupled_gather import coupled_gather
from .kan_conv import kan_conv
from .kan_linear import kan_linear

__all__ = ["bspline_basis", "bspline_basis_derivative", "channel_stats", "coupled_gather", "kan_conv", "kan_linear", "knot_span_reciprocals"]
