"""What a resize changed."""

from __future__ import annotations

import dataclasses

from torch import nn


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclasses.dataclass(frozen=True)
class TensorChange:
    name: str  # as in model.state_dict()
    old_shape: tuple[int, ...]
    new_shape: tuple[int, ...]


@dataclasses.dataclass
class ResizeReport:
    op: str  # "widen", "prune" or "reinit"
    layer: str
    old_units: int
    new_units: int
    changes: list[TensorChange]
    params_before: int
    params_after: int
    notes: list[str]  # why the function may have changed (LayerNorm / GroupNorm across the units)

    def __str__(self) -> str:
        delta = self.params_after - self.params_before
        lines = [f"{self.op} {self.layer}: {self.old_units} -> {self.new_units} units, "
                 f"parameters {self.params_before} -> {self.params_after} ({delta:+d})"]
        width = max((len(c.name) for c in self.changes), default=0)
        lines += [f"  {c.name:<{width}}  {c.old_shape} -> {c.new_shape}" for c in self.changes]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclasses.dataclass
class DeepenReport:
    op: str  # "deepen"
    layer: str  # the module the new layer follows, named as before the call
    inserted: dict[str, str]  # new module name (after the call) -> description
    inserted_params: int  # parameters of the inserted modules
    renamed: dict[str, str]  # modules that moved, old -> new name; their submodules and tensors follow the prefix
    params_before: int
    params_after: int
    notes: list[str]  # where the inserted layer is not the identity

    def __str__(self) -> str:
        delta = self.params_after - self.params_before
        lines = [f"{self.op} after {self.layer}: {len(self.inserted)} module(s) with {self.inserted_params} parameters, "
                 f"parameters {self.params_before} -> {self.params_after} ({delta:+d})"]
        width = max(len(n) for n in self.inserted)
        lines += [f"  {name:<{width}}  {desc}" for name, desc in self.inserted.items()]
        if self.renamed:
            lines.append("  renamed: " + ", ".join(f"{old} -> {new}" for old, new in self.renamed.items()))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)
