"""Coupling groups: a layer's output units and every tensor that must change with them.

A *span* says where the units sit in a traced tensor: along ``dim`` (negative, so leading
batch dims do not matter), unit u owns positions ``offset + u·block … offset + (u+1)·block - 1``
(block > 1 after flattening conv channels into features; offset > 0 after a concat). Starting
from the producer's output, facts "node carries span" spread forwards to users and backwards to
the operands an element-wise op couples (a residual add makes both sides one group) until
every tensor holding the units is a member: a producer's rows, a consumer's input slice or a
per-channel layer (norms, PReLU, depthwise convs).
"""

from __future__ import annotations

import collections
import dataclasses

import torch
from torch import fx, nn

from . import rules
from .graph import ResizeError, describe, is_tensor, prod, shape_of, trace


@dataclasses.dataclass(frozen=True)
class Span:
    dim: int
    offset: int
    block: int
    size: int


@dataclasses.dataclass(frozen=True, order=True)
class Member:
    """A module whose tensors change with the group: ``role`` is "out" (its output rows),
    "in" (its input slice) or "channel" (its per-channel tensors)."""

    module: str
    role: str
    offset: int = 0
    block: int = 1

    def __str__(self) -> str:
        where = f" at offset {self.offset}" if self.offset else ""
        per = f", {self.block} positions per unit" if self.block != 1 else ""
        return f"{self.role:<7} {self.module}{where}{per}"


@dataclasses.dataclass
class Group:
    units: int
    members: list[Member]
    types: dict[str, str]  # module name -> class name
    notes: list[str]  # why a resize of this group cannot keep the function
    error: str | None = None

    @property
    def producers(self) -> list[str]:
        return [m.module for m in self.members if m.role == "out"]

    def __str__(self) -> str:
        head = f"{self.units} units of {', '.join(self.producers)}"
        lines = [head + (f" (not resizable: {self.error})" if self.error else "")]
        lines += [f"  {m}  ({self.types[m.module]})" for m in self.members]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclasses.dataclass
class Dependencies:
    groups: list[Group]

    def group_of(self, name: str) -> Group:
        for g in self.groups:
            if name in g.producers:
                return g
        raise ResizeError(f"layer {name!r} produces no units of any traced group")

    def __str__(self) -> str:
        return "\n".join(f"group {i}: {g}" for i, g in enumerate(self.groups))


class _Untraceable(Exception):
    pass


def _input(call: fx.Node):
    return call.args[0] if call.args else next(iter(call.kwargs.values()))


class _GroupTrace:
    """One breadth-first spread of span facts from a producer."""

    def __init__(self, graph: fx.Graph, modules: dict[str, nn.Module]) -> None:
        self.modules = modules
        self.calls: dict[str, list[fx.Node]] = collections.defaultdict(list)
        for node in graph.nodes:
            if node.op == "call_module":
                self.calls[node.target].append(node)

    def run(self, name: str) -> Group:
        module = self.modules[name]
        self.units = rules.units_of(module)
        self.facts: dict[fx.Node, Span] = {}
        self.members: set[Member] = set()
        self.notes: list[str] = []
        self.queue: collections.deque[fx.Node] = collections.deque()
        error = None
        try:
            self._add(name, "out", Span(rules.producer_dim(module), 0, 1, self.units))
            while self.queue:
                node = self.queue.popleft()
                self._backward(node)
                for user in list(node.users):
                    self._forward(user, node)
        except _Untraceable as e:
            error = str(e)
        order = {n: i for i, n in enumerate(self.modules)}
        members = sorted(self.members, key=lambda m: (order[m.module], m.role, m.offset))
        types = {m.module: type(self.modules[m.module]).__name__ for m in members}
        return Group(self.units, members, types, self.notes, error)

    # ------------------------------------------------------------------ facts and members
    def _claim(self, node, span: Span) -> None:
        if node.op == "placeholder":
            raise _Untraceable(f"the units reach the model input {node.target!r}")
        if node.op == "get_attr":
            raise _Untraceable(f"the units meet the tensor attribute {node.target!r}, which is not resized")
        shape = shape_of(node)
        if shape is not None and (len(shape) < -span.dim or shape[span.dim] != span.size):
            raise _Untraceable(f"node {node.name!r} has shape {shape}, expected {span.size} along dim {span.dim}")
        known = self.facts.get(node)
        if known is None:
            self.facts[node] = span
            self.queue.append(node)
        elif known != span:
            raise _Untraceable(f"node {node.name!r} holds the units at two places ({known} and {span})")

    def _add(self, name: str, role: str, span: Span) -> None:
        module = self.modules[name]
        kind = type(module).__name__
        if role == "channel":
            position, count = rules.channel_layout(module)
            self._check_dim(span, position, _input(self.calls[name][0]), f"{kind} {name!r}")
        else:
            count = (rules.units_of(module) if role == "out" else
                     module.in_features if isinstance(module, rules.LINEAR) else module.in_channels)
            expected = -1 if isinstance(module, rules.LINEAR) else rules.producer_dim(module)
            if span.dim != expected or (role == "out" and span.block != 1):
                raise _Untraceable(f"{kind} {name!r} would see the units along dim {span.dim}, not along its "
                                   f"{'output' if role == 'out' else 'input'} features")
        if count != span.size:
            raise _Untraceable(f"{kind} {name!r} has {count} features where the units' dim has {span.size}")
        member = Member(name, role, span.offset, span.block)
        if member in self.members:
            return
        self.members.add(member)
        if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            self.notes.append(f"{kind} {name!r} normalizes across units: a resize changes its output")
        for call in self.calls[name]:
            if role in ("in", "channel"):
                self._claim(_input(call), span)
            if role in ("out", "channel"):
                self._claim(call, span)

    def _check_dim(self, span: Span, position: int, node, what: str) -> None:
        if position < 0:
            ok = span.dim == position
        else:
            shape = shape_of(node)
            if shape is None:
                raise _Untraceable(f"{what}: pass example_inputs to locate its channel dim")
            ok = len(shape) + span.dim == position
        if not ok:
            raise _Untraceable(f"{what} would see the units along dim {span.dim}, not along its channels")

    # ------------------------------------------------------------------ propagation
    def _forward(self, user: fx.Node, node: fx.Node) -> None:
        span = self.facts[node]
        if user.op == "output":
            raise _Untraceable("the units reach the model output")
        if user.op == "call_module":
            module = self.modules[user.target]
            if isinstance(module, nn.Embedding):
                raise _Untraceable(f"{describe(user, self.modules)} reads the units as indices")
            if rules.producer_dim(module) is not None:
                return self._add(user.target, "in", span)
            if rules.channel_layout(module) is not None:
                return self._add(user.target, "channel", span)
            if isinstance(module, rules.CONV):
                raise _Untraceable(f"{describe(user, self.modules)} has groups={module.groups}: only groups=1 "
                                   "and depthwise convs (groups = in = out channels) can be resized")
        if user.op == "call_method" and user.target in rules.METADATA_METHODS:
            return
        if user.op == "call_function" and user.target is getattr:
            return
        self._claim(user, self._output_span(user, node, span))

    def _output_span(self, user: fx.Node, node: fx.Node, span: Span) -> Span:
        kind, extra = self._kind(user)
        if kind in ("elementwise", "binary"):
            return span
        if kind == "pool":
            if span.dim >= -extra:
                raise _Untraceable(f"{describe(user, self.modules)} pools over the units' dim")
            return span
        if kind == "cat":
            return self._cat_forward(user, node, span)
        if kind == "reshape":
            return self._reshape_forward(user, node, span)
        if kind == "reduce":
            dims, keepdim = self._reduced(user, node)
            if span.dim in dims:
                raise _Untraceable(f"{describe(user, self.modules)} reduces over the units' dim")
            return span if keepdim else dataclasses.replace(span, dim=span.dim + sum(d > span.dim for d in dims))
        raise _Untraceable(f"{describe(user, self.modules)} is not known to keep the units in place")

    def _backward(self, node: fx.Node) -> None:
        span = self.facts[node]
        if node.op == "call_module":
            module = self.modules[node.target]
            if rules.producer_dim(module) is not None:
                return self._add(node.target, "out", span)
            if rules.channel_layout(module) is not None:
                return self._add(node.target, "channel", span)
        kind, _ = self._kind(node)
        if kind in ("elementwise", "binary", "pool"):
            operands = [a for a in (*node.args, *node.kwargs.values()) if is_tensor(a)]
            for a in operands:
                shape = shape_of(a)
                if shape is not None and (len(shape) < -span.dim or shape[span.dim] != span.size):
                    raise _Untraceable(f"{describe(node, self.modules)} broadcasts {a.name!r} of shape {shape} "
                                       "over the units")
                self._claim(a, span)
        elif kind == "cat":
            self._cat_backward(node, span)
        elif kind == "reduce":
            dims, keepdim = self._reduced(node, node.args[0])
            dim = span.dim
            if not keepdim:  # the input dim that lands on span.dim once the reduced dims are gone
                dim = next(d for d in range(-1, -100, -1) if d not in dims and d + sum(r > d for r in dims) == span.dim)
            self._claim(node.args[0], dataclasses.replace(span, dim=dim))
        elif not (kind == "reshape" and node.args[0] in self.facts):  # reached forwards: nothing to couple
            raise _Untraceable(f"cannot follow the units backwards through {describe(node, self.modules)}")

    def _kind(self, node: fx.Node) -> tuple[str, int]:
        if node.op == "call_module":
            module = self.modules[node.target]
            if isinstance(module, rules.ELEMENTWISE_MODULES) or (isinstance(module, nn.PReLU)
                                                                 and module.num_parameters == 1):
                return "elementwise", 0
            if type(module) in rules.POOL_MODULES:
                return "pool", rules.POOL_MODULES[type(module)]
            if isinstance(module, (nn.Flatten, nn.Unflatten)):
                return "reshape", 0
            return "unknown", 0
        target, method = node.target, node.op == "call_method"
        if (target in rules.ELEMENTWISE_METHODS) if method else (target in rules.ELEMENTWISE_FUNCTIONS):
            return "elementwise", 0
        if (target in rules.BINARY_METHODS) if method else (target in rules.BINARY_FUNCTIONS):
            return "binary", 0
        if not method and target in rules.POOL_FUNCTIONS:
            return "pool", rules.POOL_FUNCTIONS[target]
        if (target in rules.RESHAPE_METHODS) if method else (target in rules.RESHAPE_FUNCTIONS):
            return "reshape", 0
        if (target in rules.REDUCE_METHODS) if method else (target in rules.REDUCE_FUNCTIONS):
            return "reduce", 0
        if not method and target is torch.cat:
            return "cat", 0
        return "unknown", 0

    # ------------------------------------------------------------------ shape-aware ops
    def _negative_dim(self, dim: int, node, what: fx.Node) -> int:
        if dim < 0:
            return dim
        shape = shape_of(node)
        if shape is None:
            raise _Untraceable(f"{describe(what, self.modules)}: pass example_inputs to resolve dim={dim}")
        return dim - len(shape)

    def _reduced(self, node: fx.Node, source) -> tuple[list[int], bool]:
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if dims is None:
            raise _Untraceable(f"{describe(node, self.modules)} reduces over all dims, the units' included")
        dims = [dims] if isinstance(dims, int) else list(dims)
        keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        return [self._negative_dim(d, source, node) for d in dims], bool(keepdim)

    def _cat_parts(self, node: fx.Node) -> tuple[list, int]:
        tensors = list(node.args[0])
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        return tensors, self._negative_dim(dim, node, node)

    def _cat_sizes(self, node: fx.Node, tensors: list, dim: int) -> list[int]:
        shapes = [shape_of(t) for t in tensors]
        if any(s is None for s in shapes):
            raise _Untraceable(f"{describe(node, self.modules)}: pass example_inputs to know the concat offsets")
        return [s[dim] for s in shapes]

    def _cat_forward(self, user: fx.Node, node: fx.Node, span: Span) -> Span:
        tensors, dim = self._cat_parts(user)
        if dim != span.dim:
            return span  # the other operands are coupled by _backward
        if tensors.count(node) != 1:
            raise _Untraceable(f"{describe(user, self.modules)} concatenates the units with themselves")
        sizes = self._cat_sizes(user, tensors, dim)
        start = sum(sizes[: tensors.index(node)])
        return dataclasses.replace(span, offset=span.offset + start, size=sum(sizes))

    def _cat_backward(self, node: fx.Node, span: Span) -> None:
        tensors, dim = self._cat_parts(node)
        if dim != span.dim:
            for t in tensors:
                self._claim(t, span)
            return
        start = 0
        for t, size in zip(tensors, self._cat_sizes(node, tensors, dim)):
            if start <= span.offset and span.offset + self.units * span.block <= start + size:
                return self._claim(t, dataclasses.replace(span, offset=span.offset - start, size=size))
            start += size
        raise _Untraceable(f"{describe(node, self.modules)}: the units straddle two concatenated tensors")

    def _reshape_forward(self, user: fx.Node, node: fx.Node, span: Span) -> Span:
        in_shape, out_shape = shape_of(node), shape_of(user)
        if in_shape is None or out_shape is None:
            raise _Untraceable(f"{describe(user, self.modules)}: pass example_inputs to follow the units through it")
        p = len(in_shape) + span.dim
        pre, post = prod(in_shape[:p]), prod(in_shape[p + 1:])
        for q in range(len(out_shape)):
            inner = prod(out_shape[q + 1:])
            if prod(out_shape[:q]) == pre and post % inner == 0 and out_shape[q] == span.size * (post // inner):
                f = post // inner  # trailing positions merged into each unit position
                return Span(q - len(out_shape), span.offset * f, span.block * f, span.size * f)
        raise _Untraceable(f"{describe(user, self.modules)} splits or moves the units' dim "
                           f"({in_shape} -> {out_shape})")


def dependencies(model: nn.Module, example_inputs=None) -> Dependencies:
    """Every coupling group of model, one per set of producers resized together, in module order.
    Groups that cannot be resized carry the reason (``error``), naming the op."""
    graph = trace(model, example_inputs)
    modules = dict(model.named_modules())
    tracer = _GroupTrace(graph, modules)
    groups: list[Group] = []
    for name, module in modules.items():
        if rules.producer_dim(module) is None or name not in tracer.calls:
            continue
        if any(name in g.producers for g in groups):
            continue
        groups.append(tracer.run(name))
    return Dependencies(groups)


def group_for(model: nn.Module, name: str, example_inputs=None) -> Group:
    """The group of the units that layer ``name`` produces; an error if it cannot be resized."""
    modules = dict(model.named_modules())
    if name not in modules:
        raise ResizeError(f"name: {name!r} is not a module of {type(model).__name__}")
    module = modules[name]
    if rules.producer_dim(module) is None:
        raise ResizeError(f"name: {name!r} is a {type(module).__name__}; resizable layers are Linear, Conv1d/2d/3d "
                          "(groups=1), KANLinear, KANConv1d/2d/3d (groups=1) and Embedding")
    tracer = _GroupTrace(trace(model, example_inputs), modules)
    if name not in tracer.calls:
        raise ResizeError(f"name: {name!r} is never called by {type(model).__name__}.forward")
    group = tracer.run(name)
    if group.error:
        raise ResizeError(f"cannot resize {name!r}: {group.error}")
    return group
