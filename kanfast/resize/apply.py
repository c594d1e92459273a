"""Carrying out a resize plan on every tensor of a coupling group, and on the optimizer."""

from __future__ import annotations

import collections
import dataclasses

import torch
from torch import nn

from .couple import Group, Member
from .graph import ResizeError
from .optim import gather_state, replace_parameters
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


def _along(vec: torch.Tensor, dim: int, ndim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[dim] = -1
    return vec.reshape(shape)


def _positions(units: torch.Tensor, member: Member, n: int, size: int) -> torch.Tensor:
    """For each position of the resized dim, the old position it reads: unit u's block moves to
    wherever u appears in ``units``; positions outside the units stay."""
    o, b = member.offset, member.block
    inside = (o + units[:, None] * b + torch.arange(b, device=units.device)).reshape(-1)
    return torch.cat([torch.arange(o, device=units.device), inside,
                      torch.arange(o + n * b, size, device=units.device)])


def _spread(per_unit: torch.Tensor, member: Member, n: int, size: int, fill) -> torch.Tensor:
    """Per-unit values -> per position of the resized dim (``fill`` outside the units)."""
    before = per_unit.new_full((member.offset,), fill)
    after = per_unit.new_full((size - member.offset - n * member.block,), fill)
    return torch.cat([before, per_unit.repeat_interleave(member.block), after])


class _Tensor:
    """One tensor being resized: its value, which positions take initial values, its optimizer state."""

    def __init__(self, value: torch.Tensor, state: dict) -> None:
        self.trainable = isinstance(value, nn.Parameter)  # noise goes on weights, never on statistics
        self.value = value.detach()
        self.initial = torch.zeros_like(self.value, dtype=torch.bool)
        self.state = state

    def resize(self, slot: Slot, member: Member, plan: Plan, n: int, owner: str) -> None:
        dim, size, ndim = slot.dim, self.value.shape[slot.dim], self.value.dim()
        device = self.value.device
        units = torch.where(plan.fresh, 0, plan.src).to(device)  # fresh units read a placeholder
        index = _positions(units, member, n, size)
        old_shape = self.value.shape
        self.value = self.value.index_select(dim, index)
        self.initial = self.initial.index_select(dim, index)

        def per_position(per_unit, fill):
            return _along(_spread(per_unit.to(device), member, n, size, fill), dim, ndim)

        fresh = per_position(plan.fresh, False)
        if slot.kind == "outgoing":
            self.value = self.value * per_position(plan.scale, 1.0).to(self.value.dtype)
            if plan.random_outgoing:
                self.initial |= fresh
            else:
                self.value = self.value.masked_fill(fresh, 0)
        else:
            self.initial |= fresh
        if plan.noise and slot.kind == "incoming" and self.trainable:
            replica = per_position(plan.new & ~plan.fresh, False)
            noise = torch.randn(self.value.shape, generator=plan.generator, dtype=self.value.dtype).to(device)
            self.value = self.value + replica * noise * (plan.noise * self.value.abs().mean())
        self.state = gather_state(self.state, old_shape, dim, index, per_position(plan.new, False), owner)


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
    for name, members in members_of.items():
        module = modules[name]
        todo: dict[str, list[tuple[Slot, Member]]] = collections.defaultdict(list)
        for member in members:
            for slot in slots(module, member.role):
                todo[slot.attr].append((slot, member))
        results[name] = {}
        for attr, pairs in todo.items():
            old = getattr(module, attr)
            t = _Tensor(old, dict(optimizer.state.get(old, {})) if optimizer is not None else {})
            # later slices first, so the offsets of earlier ones stay valid
            for slot, member in sorted(pairs, key=lambda pair: -pair[1].offset):
                t.resize(slot, member, plan, n, f"{name}.{attr}")
            results[name][attr] = t
        if any(bool(t.initial.any()) for t in results[name].values()):
            deltas = [(mb.role, (m - n) * mb.block) for mb in members]
            initial = initial_values(module, {a: t.value for a, t in results[name].items()}, deltas, plan.generator)
            for attr, t in results[name].items():
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
