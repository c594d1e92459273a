"""Tracing a model into a torch.fx graph, with tensor shapes when example inputs are given."""

from __future__ import annotations

import math

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from .rules import KAN_CONV, KANLinear, METADATA_METHODS


class ResizeError(ValueError):
    """A resize that cannot be done consistently; the message names the layer, op or argument."""


class _Tracer(fx.Tracer):
    # KAN layers check shapes in forward (data-dependent for fx): they are opaque calls.
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (KANLinear, *KAN_CONV)) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module, example_inputs=None) -> fx.Graph:
    """model's forward as an fx graph; with example_inputs, each node's meta["tensor_meta"]
    holds its shape (the model runs once in eval mode, without autograd, so BatchNorm
    statistics are left as they are)."""
    try:
        graph = _Tracer().trace(model)
    except Exception as e:  # fx raises many types (TraceError, TypeError, ...) for the same reason
        raise ResizeError(f"torch.fx cannot trace {type(model).__name__}.forward: {e}") from e
    if example_inputs is not None:
        inputs = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                ShapeProp(fx.GraphModule(model, graph)).propagate(*inputs)
        except Exception as e:
            raise ResizeError(f"example_inputs: running the traced model on them failed: {e}") from e
        finally:
            model.train(was_training)
    return graph


def shape_of(node) -> tuple[int, ...] | None:
    """The tensor shape recorded at node by shape propagation, None if unknown."""
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    shape = getattr(meta, "shape", None)
    return None if shape is None else tuple(shape)


def is_tensor(node) -> bool:
    """Whether an fx argument is a tensor (sizes read from a tensor are not)."""
    if not isinstance(node, fx.Node):
        return False
    if "tensor_meta" in node.meta:
        return shape_of(node) is not None
    if node.op == "call_method" and node.target in METADATA_METHODS:
        return False
    if node.op == "call_function" and node.target is getattr:
        return False
    return not (node.op == "call_function" and node.args and isinstance(node.args[0], fx.Node)
                and not is_tensor(node.args[0]))


def describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"{type(modules[node.target]).__name__} module {node.target!r}"
    if node.op == "call_method":
        return f"method .{node.target}() at node {node.name!r}"
    return f"function {getattr(node.target, '__name__', node.target)} at node {node.name!r}"


def prod(values) -> int:
    return math.prod(int(v) for v in values)
