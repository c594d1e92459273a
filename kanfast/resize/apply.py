"""Carrying out a resize plan on every tensor of a coupling group, and on the optimizer."""

from __future__ import annotations

import collections
import dataclasses
import functools

import torch
from torch import nn

from .. import ops, reference
from ..reference.coupled_gather import along, per_position, unit_positions
from .couple import Group, Member
from .graph import ResizeError
from .optim import per_element_state, replace_parameters
from .report import TensorChange
from .slots import Slot, initial_values, slots, update_attributes


@dataclasses.dataclass
class Plan:
    """How a group's n units become m: new unit v takes old unit ``src[v]``'s values, unless
    ``fresh[v]`` (the layer's initialisation in, zero out — or random out with ``random_outgoing``).
    ``new[v]``: optimizer state starts at zero. ``scale[v]`` multiplies v's outgoing weights."""

    src: torch.Tensor  # (m,) long
    fresh: torch.Tensor  # (m,) bool
    new: torch.Tensor  # (m,) bool
    scale: torch.Tensor  # (m,) float64
    random_outgoing: bool = False
    noise: float = 0.0  # replicas' incoming weights get noise·mean|weight|·N(0, 1)
    generator: torch.Generator | None = None


class _Gathers:
    """The gathers of one pass over a group's tensors, run as one kanfast.ops.coupled_gather
    call per device: each tensor says where the units sit along its dim (offset, block) and
    which of the plan's scale / fresh rows its rule uses.

    Rules: "outgoing" (a consumer's weights: scaled, zero for fresh units unless they are
    drawn at random), "copy" (a unit's own tensors: moved; fresh units get initial values
    afterwards) and "state" (optimizer moments: zero for new units)."""

    def __init__(self, plan: Plan, n: int) -> None:
        self.plan, self.n = plan, n
        self.units = torch.where(plan.fresh, 0, plan.src)  # fresh units read a placeholder
        # Rows of the tables (scale: plan.scale; fresh: plan.fresh, plan.new), -1 where a rule
        # would only multiply by 1 or zero nothing (a prune), so the kernel copies instead.
        scaled = not bool((plan.scale == 1).all())
        outgoing_fresh = 0 if bool(plan.fresh.any()) and not plan.random_outgoing else -1
        self.rows = {"outgoing": (0 if scaled else -1, outgoing_fresh), "copy": (-1, -1),
                     "state": (-1, 1 if bool(plan.new.any()) else -1)}
        self.calls: dict[torch.device, list] = collections.defaultdict(list)

    def add(self, rule: str, member: Member, dim: int, tensor: torch.Tensor, put) -> None:
        """Queue tensor's resize along dim; ``put`` receives the result."""
        self.calls[tensor.device].append((tensor, dim, member.offset, member.block, *self.rows[rule], put))

    def run(self) -> None:
        plan = self.plan
        for device, jobs in self.calls.items():
            tensors, dims, offsets, blocks, scale_rows, fresh_rows, puts = (list(c) for c in zip(*jobs))
            scale = plan.scale.to(device) if max(scale_rows) >= 0 else None
            fresh = torch.stack([plan.fresh, plan.new]).to(device) if max(fresh_rows) >= 0 else None
            # The op takes floating-point tensors; other optimizer state goes through torch.
            gather = ops.coupled_gather if all(t.is_floating_point() for t in tensors) else reference.coupled_gather
            out = gather(tensors, dims, self.units.to(device), scale, fresh, offsets=offsets, blocks=blocks,
                         units=self.n, scale_rows=scale_rows if scale is not None else None,
                         fresh_rows=fresh_rows if fresh is not None else None)
            for put, o in zip(puts, out):
                put(o)
        self.calls.clear()


class _Tensor:
    """One tensor being resized: its value, which positions take initial values, its optimizer state."""

    def __init__(self, value: torch.Tensor, state: dict, owner: str) -> None:
        self.trainable = isinstance(value, nn.Parameter)  # noise goes on weights, never on statistics
        self.value = value.detach()
        self.initial: torch.Tensor | None = None  # bool, broadcastable to value; None: no position
        self.state = state
        self.owner = owner

    def queue(self, slot: Slot, gathers: _Gathers, member: Member) -> None:
        """Queue the gathers of this tensor and its per-element optimizer state along slot.dim."""
        def put_value(v):
            self.value = v

        gathers.add("outgoing" if slot.kind == "outgoing" else "copy", member, slot.dim, self.value, put_value)
        for key in per_element_state(self.state, self.value.shape, self.owner):
            gathers.add("state", member, slot.dim, self.state[key], functools.partial(self.state.__setitem__, key))

    def finish(self, slot: Slot, member: Member, plan: Plan, n: int, old_shape: torch.Size) -> None:
        """After the gathers: mark the positions that take initial values, add replicas' noise."""
        dim, size, ndim = slot.dim, old_shape[slot.dim], len(old_shape)
        device = self.value.device

        def spread(per_unit, fill):
            return along(per_position(per_unit.to(device), member.offset, member.block, n, size, fill), dim, ndim)

        if self.initial is not None:  # an earlier slice of this tensor: move its marks along
            units = torch.where(plan.fresh, 0, plan.src).to(device)
            index = unit_positions(units, member.offset, member.block, n, size)
            self.initial = self.initial.expand(old_shape).index_select(dim, index)
        if bool(plan.fresh.any()) and (slot.kind != "outgoing" or plan.random_outgoing):
            fresh = spread(plan.fresh, False)
            self.initial = fresh if self.initial is None else self.initial | fresh
        if plan.noise and slot.kind == "incoming" and self.trainable:
            replica = spread(plan.new & ~plan.fresh, False)
            noise = torch.randn(self.value.shape, generator=plan.generator, dtype=self.value.dtype).to(device)
            self.value = self.value + replica * noise * (plan.noise * self.value.abs().mean())


def _validate(group: Group, modules: dict[str, nn.Module], m: int) -> None:
    for member in group.members:
        module = modules[member.module]
        if isinstance(module, nn.GroupNorm):
            channels = module.num_channels + (m - group.units) * member.block
            if channels % module.num_groups:
                raise ResizeError(f"GroupNorm {member.module!r} would have {channels} channels, not divisible by "
                                  f"its num_groups={module.num_groups}")


def apply_plan(model: nn.Module, group: Group, plan: Plan, optimizer: torch.optim.Optimizer | None
               ) -> list[TensorChange]:
    """Resize every member of group by plan, in place; returns what changed. Everything is
    computed before the model or optimizer is touched, so an error leaves both as they were."""
    n, m = group.units, len(plan.src)
    modules = dict(model.named_modules())
    _validate(group, modules, m)
    members_of: dict[str, list[Member]] = collections.defaultdict(list)
    for member in group.members:
        members_of[member.module].append(member)
    results: dict[str, dict[str, _Tensor]] = {}
    work: list[tuple[_Tensor, list[tuple[Slot, Member]]]] = []
    for name, members in members_of.items():
        module = modules[name]
        todo: dict[str, list[tuple[Slot, Member]]] = collections.defaultdict(list)
        for member in members:
            for slot in slots(module, member.role):
                todo[slot.attr].append((slot, member))
        results[name] = {}
        for attr, pairs in todo.items():
            old = getattr(module, attr)
            state = dict(optimizer.state.get(old, {})) if optimizer is not None else {}
            results[name][attr] = t = _Tensor(old, state, f"{name}.{attr}")
            # later slices first, so the offsets of earlier ones stay valid
            work.append((t, sorted(pairs, key=lambda pair: -pair[1].offset)))
    # Pass k resizes the k-th slice of every tensor (one pass unless a module holds several).
    gathers = _Gathers(plan, n)
    for k in range(max((len(pairs) for _, pairs in work), default=0)):
        step = [(t, *pairs[k], t.value.shape) for t, pairs in work if k < len(pairs)]
        for t, slot, member, _ in step:
            t.queue(slot, gathers, member)
        gathers.run()
        for t, slot, member, old_shape in step:
            t.finish(slot, member, plan, n, old_shape)
    for name, members in members_of.items():
        if any(t.initial is not None and bool(t.initial.any()) for t in results[name].values()):
            module = modules[name]
            deltas = [(mb.role, (m - n) * mb.block) for mb in members]
            initial = initial_values(module, {a: t.value for a, t in results[name].items()}, deltas, plan.generator)
            for attr, t in results[name].items():
                if t.initial is not None:
                    t.value = torch.where(t.initial, initial[attr].to(t.value.dtype), t.value)
    return _install(modules, results, members_of, optimizer, m - n)


def _install(modules, results, members_of, optimizer, delta) -> list[TensorChange]:
    changes, replaced, states = [], {}, {}
    for name, tensors in results.items():
        module = modules[name]
        for attr, t in tensors.items():
            old = getattr(module, attr)
            changes.append(TensorChange(f"{name}.{attr}" if name else attr, tuple(old.shape), tuple(t.value.shape)))
            if isinstance(old, nn.Parameter):
                new = nn.Parameter(t.value.contiguous(), requires_grad=old.requires_grad)
                replaced[old] = new
                states[new] = t.state
            else:
                new = t.value.contiguous()
            setattr(module, attr, new)
        for member in members_of[name]:
            update_attributes(module, member.role, delta * member.block)
    if optimizer is not None:
        replace_parameters(optimizer, replaced, states)
    return changes
