"""Thin modules over kanfast.ops."""

from .kan_conv import KANConv1d, KANConv2d, KANConv3d
from .kan_linear import KANLinear

__all__ = ["KANConv1d", "KANConv2d", "KANConv3d", "KANLinear"]
