"""What a resize changed."""

from __future__ import annotations

import dataclasses


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
