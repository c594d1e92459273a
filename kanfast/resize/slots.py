"""Which tensors of a module belong to a unit, how its size attributes follow, and the values
its own initialisation gives new units."""

from __future__ import annotations

import contextlib
import copy
import dataclasses

import torch
from torch import nn

from ..nn._spline_grid import uniform_grid
from . import rules
from .graph import ResizeError


@dataclasses.dataclass(frozen=True)
class Slot:
    attr: str
    dim: int
    # "incoming": the unit's own weights / statistics; "outgoing": a consumer's weights reading
    # the unit (scaled by net2net, zero for new units); "aux": a consumer's per-input tensors
    # that are not weights (KAN knots and spline scalers: copied, never scaled).
    kind: str


def slots(module: nn.Module, role: str) -> list[Slot]:
    """The tensors of module that change when a member with ``role`` is resized."""
    kan = isinstance(module, (rules.KANLinear, *rules.KAN_CONV))
    if role == "in":
        if not kan:
            return [Slot("weight", 1, "outgoing")]
        found = [Slot("base_weight", 1, "outgoing"), Slot("spline_weight", 1, "outgoing"), Slot("grid", 0, "aux")]
        if getattr(module, "spline_scaler", None) is not None:
            found.append(Slot("spline_scaler", 1, "aux"))
        return found
    if isinstance(module, nn.Embedding):
        return [Slot("weight", 1, "incoming")]
    if kan:
        names = ("base_weight", "spline_weight", "spline_scaler", "bias") + (("grid",) if role == "channel" else ())
    else:
        names = ("weight", "bias", "running_mean", "running_var")
    return [Slot(n, 0, "incoming") for n in names if getattr(module, n, None) is not None]


def update_attributes(module: nn.Module, role: str, delta: int) -> None:
    """Add delta to the size attributes a member with ``role`` describes."""
    if isinstance(module, rules.LINEAR):
        attrs = ("out_features",) if role == "out" else ("in_features",)
    elif isinstance(module, rules.CONV):
        attrs = {"out": ("out_channels",), "in": ("in_channels",)}.get(role, ("in_channels", "out_channels", "groups"))
    elif isinstance(module, nn.Embedding):
        attrs = ("embedding_dim",)
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = (module.normalized_shape[0] + delta,)
        return
    else:
        attrs = {nn.GroupNorm: ("num_channels",), nn.PReLU: ("num_parameters",)}.get(type(module), ("num_features",))
    for a in attrs:
        setattr(module, a, getattr(module, a) + delta)


# Attributes that fix a resizable module's tensor shapes, stored with checkpoints.
SIZE_ATTRIBUTES = (
    (rules.LINEAR, ("in_features", "out_features")),
    (rules.CONV, ("in_channels", "out_channels", "groups")),
    ((nn.Embedding,), ("embedding_dim",)),
    ((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, *rules.INSTANCE_NORM), ("num_features",)),
    ((nn.LayerNorm,), ("normalized_shape",)),
    ((nn.GroupNorm,), ("num_channels",)),
    ((nn.PReLU,), ("num_parameters",)),
)


def size_attributes(module: nn.Module) -> tuple[str, ...]:
    for types, attrs in SIZE_ATTRIBUTES:
        if isinstance(module, types):
            return attrs
    return ()


@contextlib.contextmanager
def _seeded(generator: torch.Generator | None):
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    with torch.random.fork_rng():  # the global RNG streams stay as they were
        torch.manual_seed(seed)
        yield


def initial_values(module: nn.Module, tensors: dict[str, torch.Tensor], role_deltas: list[tuple[str, int]],
                   generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """What module's own initialisation gives each of ``tensors`` (already at their new shapes),
    computed on a copy: the module itself is not touched."""
    if not hasattr(module, "reset_parameters"):
        raise ResizeError(f"{type(module).__name__} has no reset_parameters(): new units have no initial values")
    fresh = copy.deepcopy(module)
    for role, delta in role_deltas:
        update_attributes(fresh, role, delta)
    for attr, value in tensors.items():
        if isinstance(getattr(fresh, attr), nn.Parameter):
            setattr(fresh, attr, nn.Parameter(value.clone()))
        else:
            setattr(fresh, attr, value.clone())
    if isinstance(fresh, (rules.KANLinear, *rules.KAN_CONV)):  # KAN inits fit splines on the initial knots
        g = fresh.grid
        fresh.grid = uniform_grid(g.shape[0], fresh.grid_size, fresh.spline_order, fresh.grid_range,
                                  device=g.device, dtype=g.dtype)
    with _seeded(generator), torch.no_grad():
        fresh.reset_parameters()
    return {attr: getattr(fresh, attr).detach() for attr in tensors}
