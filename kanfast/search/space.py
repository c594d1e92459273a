"""The search space: the bounds every genome must respect, overridable from YAML/JSON."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

BLOCK_KINDS = ("kan", "conv")
ACTIVATIONS = ("silu", "gelu", "relu", "tanh")
POOLS = ("max", "avg", "none")
NORMS = ("batch", "none")
HEAD_KINDS = ("kan", "linear")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Choices for every gene. Integer ranges are inclusive (low, high); the rest are option lists."""

    stages: tuple[int, int] = (1, 3)
    blocks_per_stage: tuple[int, int] = (1, 2)
    channels: tuple[int, ...] = (8, 16, 24, 32, 48)
    kernel_sizes: tuple[int, ...] = (3, 5)
    block_kinds: tuple[str, ...] = BLOCK_KINDS
    grid_sizes: tuple[int, ...] = (3, 5, 8)
    spline_orders: tuple[int, ...] = (2, 3)
    activations: tuple[str, ...] = ("silu", "gelu", "relu")
    pools: tuple[str, ...] = POOLS
    norms: tuple[str, ...] = NORMS
    dropouts: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)
    head_kinds: tuple[str, ...] = HEAD_KINDS
    head_hidden: tuple[int, ...] = (0, 32, 64)  # 0: no hidden layer
    learning_rates: tuple[float, ...] = (1e-3, 3e-3, 1e-2)

    def __post_init__(self) -> None:
        for name in ("stages", "blocks_per_stage"):
            low, high = getattr(self, name)
            if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
                raise ValueError(f"search space: {name} must be an increasing pair of positive ints, got {(low, high)}")
        allowed = {"block_kinds": BLOCK_KINDS, "activations": ACTIVATIONS, "pools": POOLS, "norms": NORMS,
                   "head_kinds": HEAD_KINDS}
        for field in dataclasses.fields(self):
            values = getattr(self, field.name)
            if field.name in ("stages", "blocks_per_stage"):
                continue
            if not values:
                raise ValueError(f"search space: {field.name} must offer at least one choice")
            if field.name in allowed:
                unknown = set(values) - set(allowed[field.name])
                if unknown:
                    raise ValueError(f"search space: {field.name} has unknown choices {sorted(unknown)}; "
                                     f"allowed: {list(allowed[field.name])}")
        checks = {
            "channels": lambda v: isinstance(v, int) and v >= 1,
            "kernel_sizes": lambda v: isinstance(v, int) and v >= 1 and v % 2 == 1,
            "grid_sizes": lambda v: isinstance(v, int) and 1 <= v <= 64,
            "spline_orders": lambda v: isinstance(v, int) and 1 <= v <= 7,
            "dropouts": lambda v: isinstance(v, (int, float)) and 0 <= v < 1,
            "head_hidden": lambda v: isinstance(v, int) and v >= 0,
            "learning_rates": lambda v: isinstance(v, (int, float)) and v > 0,
        }
        for name, ok in checks.items():
            bad = [v for v in getattr(self, name) if not ok(v)]
            if bad:
                raise ValueError(f"search space: invalid {name} {bad} (kernel sizes must be odd, grid sizes in "
                                 f"[1, 64], spline orders in [1, 7], dropouts in [0, 1))")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "SearchSpace":
        """Defaults overridden by ``values`` (lists become tuples); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"search space: unknown keys {sorted(unknown)}; known: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}
