"""kanfast: fused Kolmogorov–Arnold Network layers and tools for networks that change shape."""

from . import evolve, ops, resize, scoring, train
from ._backend import get_backend, load_library, set_backend, use_backend
from .nn import KANConv1d, KANConv2d, KANConv3d, KANLinear

__version__ = "0.1.0"

__all__ = ["KANConv1d", "KANConv2d", "KANConv3d", "KANLinear", "evolve", "get_backend", "load_library", "ops", "resize", "scoring", "set_backend", "train", "use_backend"]
