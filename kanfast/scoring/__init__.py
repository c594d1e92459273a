"""Batched neuron scoring: per-unit importance of every layer, accumulated across batches
with the fused ``kanfast.ops.channel_stats`` kernel, for pruning / apoptosis / growth."""

from .criteria import CRITERIA, Criterion
from .scorer import DEFAULT_CRITERIA, LayerState, NeuronScorer
from .selection import select_weakest

__all__ = ["CRITERIA", "DEFAULT_CRITERIA", "Criterion", "LayerState", "NeuronScorer", "select_weakest"]
