"""``widen``, ``prune`` and ``reinit``: resize a layer's units and everything coupled to them."""

from __future__ import annotations

import torch
from torch import nn

from .apply import Plan, apply_plan
from .couple import group_for
from .graph import ResizeError
from .report import ResizeReport, parameter_count

INITS = ("net2net", "zeros", "random")


def _run(op: str, model, name, plan_for, example_inputs, optimizer) -> ResizeReport:
    group = group_for(model, name, example_inputs)
    plan = plan_for(group.units)
    before = parameter_count(model)
    changes = apply_plan(model, group, plan, optimizer)
    return ResizeReport(op, name, group.units, len(plan.src), changes, before, parameter_count(model), list(group.notes))


def widen(model: nn.Module, name: str, new_width: int, *, init: str = "net2net", noise: float = 0.0,
          generator: torch.Generator | None = None, example_inputs=None,
          optimizer: torch.optim.Optimizer | None = None) -> ResizeReport:
    """Grow layer ``name`` (as in model.named_modules()) to ``new_width`` units, in place.

    init="net2net": each new unit copies a randomly chosen unit (incoming weights, norm
    statistics, KAN knots) and the outgoing weights of that unit and its copies are divided by
    their number; "zeros": new units get the layer's initialisation and zero outgoing weights.
    Both keep the function (eval mode) unless ``noise`` > 0 (added to the copies' incoming
    weights, relative to their mean magnitude) or the group has a note. "random": fresh
    weights both ways. New units start with zero optimizer state.
    """
    if init not in INITS:
        raise ResizeError(f"widen: init must be one of {', '.join(INITS)}, got {init!r}")
    if not isinstance(noise, (int, float)) or noise < 0:
        raise ResizeError(f"widen: noise must be a number >= 0, got {noise!r}")

    def plan_for(n: int) -> Plan:
        if not isinstance(new_width, int) or isinstance(new_width, bool) or new_width <= n:
            raise ResizeError(f"widen: new_width must be an int above the current {n} units of {name!r}, "
                              f"got {new_width!r} (use prune to shrink)")
        added = new_width - n
        keep = torch.arange(n)
        if init == "net2net":
            copies = torch.randint(n, (added,), generator=generator)
            src = torch.cat([keep, copies])
            copies_of = torch.bincount(src, minlength=n).double()  # each unit and its copies share its outputs
            return Plan(src, torch.zeros(new_width, dtype=torch.bool), torch.arange(new_width) >= n,
                        1 / copies_of[src], noise=float(noise), generator=generator)
        src = torch.cat([keep, torch.zeros(added, dtype=torch.long)])
        fresh = torch.arange(new_width) >= n
        return Plan(src, fresh, fresh, torch.ones(new_width, dtype=torch.float64), random_outgoing=init == "random",
                    generator=generator)

    return _run("widen", model, name, plan_for, example_inputs, optimizer)


def _indices(arg: str, value, n: int, layer: str) -> torch.Tensor:
    """A LongTensor of distinct unit indices from indices or a boolean mask over n units."""
    t = torch.as_tensor(value)
    if t.dtype == torch.bool:
        if t.shape != (n,):
            raise ResizeError(f"{arg}: a mask must have shape ({n},) for the {n} units of {layer!r}, "
                              f"got {tuple(t.shape)}")
        return t.nonzero().flatten()
    if t.dim() != 1 or (t.numel() and t.is_floating_point()):
        raise ResizeError(f"{arg}: expected a 1-D LongTensor / list of unit indices or a boolean mask, got "
                          f"{t.dtype} of shape {tuple(t.shape)}")
    t = t.long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
        raise ResizeError(f"{arg}: indices must be in [0, {n}) for {layer!r}, got {t.tolist()}")
    if t.unique().numel() != t.numel():
        raise ResizeError(f"{arg}: indices repeat: {t.tolist()}")
    return t.cpu()


def prune(model: nn.Module, name: str, keep, *, example_inputs=None,
          optimizer: torch.optim.Optimizer | None = None) -> ResizeReport:
    """Keep only units ``keep`` (indices, in the order given, or a boolean mask) of layer ``name``
    and of everything coupled to it, in place. The optimizer state of kept units is kept."""

    def plan_for(n: int) -> Plan:
        src = _indices("keep", keep, n, name)
        if src.numel() == 0:
            raise ResizeError(f"keep: at least one unit of {name!r} must stay")
        m = src.numel()
        none = torch.zeros(m, dtype=torch.bool)
        return Plan(src, none, none, torch.ones(m, dtype=torch.float64))

    return _run("prune", model, name, plan_for, example_inputs, optimizer)


def reinit(model: nn.Module, name: str, idx, *, generator: torch.Generator | None = None, example_inputs=None,
           optimizer: torch.optim.Optimizer | None = None) -> ResizeReport:
    """Give units ``idx`` (indices or a boolean mask, e.g. from NeuronScorer.select) of layer
    ``name`` fresh incoming weights from the layer's initialisation, reset their norm
    statistics, zero their outgoing weights and their optimizer state. Shapes stay."""

    def plan_for(n: int) -> Plan:
        fresh = torch.zeros(n, dtype=torch.bool)
        fresh[_indices("idx", idx, n, name)] = True
        return Plan(torch.arange(n), fresh, fresh, torch.ones(n, dtype=torch.float64), generator=generator)

    return _run("reinit", model, name, plan_for, example_inputs, optimizer)
