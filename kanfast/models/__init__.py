"""Small ready-made KAN models."""

from .kan_cnn import KANCNN

__all__ = ["KANCNN"]
