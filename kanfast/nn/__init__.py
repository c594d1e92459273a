"""Thin modules over kanfast.ops."""

from .kan_linear import KANLinear

__all__ = ["KANLinear"]
