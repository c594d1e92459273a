"""Picking the weakest units from per-layer scores, per layer or across layers."""

from __future__ import annotations

import math

import torch

NORMALIZATIONS = ("none", "mean", "max", "l2")


def _normalized(s: torch.Tensor, how: str) -> torch.Tensor:
    # Makes layers comparable in a global ranking: each layer's scores divided by their scale.
    tiny = torch.finfo(torch.float64).tiny
    if how == "mean":
        return s / s.abs().mean().clamp_min(tiny)
    if how == "max":
        return s / s.abs().max().clamp_min(tiny)
    if how == "l2":
        return s / s.norm().clamp_min(tiny)
    return s


def select_weakest(scores: dict[str, torch.Tensor], amount: float | int, *, higher_is_weaker: bool = False,
                   mode: str = "per_layer", normalize: str = "mean", min_keep: int = 1) -> dict[str, torch.Tensor]:
    """{layer: sorted LongTensor of its weakest units}.

    amount: a float in (0, 1] is a fraction of the units (per layer, or of all units for
    ``mode="global"``, rounded down), an int ≥ 0 a count (per layer, or in total). ``global``
    ranks every unit of every layer together after ``normalize`` ("mean", "max", "l2": each
    layer's scores divided by their mean |·|, max |·| or L2 norm; "none"). At least
    ``min_keep`` units of every layer are kept. Ties go to the lower layer index and unit index.
    """
    if mode not in ("per_layer", "global"):
        raise ValueError(f"select: mode must be 'per_layer' or 'global', got {mode!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"select: normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise TypeError(f"select: amount must be a fraction (float) or a count (int), got {amount!r}")
    if isinstance(amount, float) and not 0 < amount <= 1:
        raise ValueError(f"select: a fraction must be in (0, 1], got {amount}")
    if isinstance(amount, int) and amount < 0:
        raise ValueError(f"select: a count must be >= 0, got {amount}")
    if not isinstance(min_keep, int) or min_keep < 0:
        raise ValueError(f"select: min_keep must be an int >= 0, got {min_keep!r}")
    for name, s in scores.items():
        if torch.isnan(s).any():
            raise ValueError(f"select: layer {name!r} has no score for some units yet (NaN): run batches through "
                             "the attached scorer first (and a backward pass for gradient criteria)")
    sign = -1.0 if higher_is_weaker else 1.0  # after this, lower is weaker
    if mode == "per_layer":
        out = {}
        for name, s in scores.items():
            k = math.floor(amount * s.numel()) if isinstance(amount, float) else amount
            k = max(0, min(k, s.numel() - min_keep))
            order = torch.sort(sign * s.double(), stable=True).indices
            out[name] = order[:k].sort().values
        return out
    names = list(scores)
    flat = torch.cat([sign * _normalized(scores[n].double().cpu(), normalize) for n in names])
    layer_of = torch.cat([torch.full((scores[n].numel(),), i) for i, n in enumerate(names)])
    unit_of = torch.cat([torch.arange(scores[n].numel()) for n in names])
    total = flat.numel()
    k = math.floor(amount * total) if isinstance(amount, float) else min(amount, total)
    order = torch.sort(flat, stable=True).indices  # stable: ties keep (layer, unit) order
    budget = {i: max(0, scores[n].numel() - min_keep) for i, n in enumerate(names)}
    chosen: dict[int, list[int]] = {i: [] for i in range(len(names))}
    taken = 0
    for j in order.tolist():
        if taken == k:
            break
        i = int(layer_of[j])
        if len(chosen[i]) < budget[i]:
            chosen[i].append(int(unit_of[j]))
            taken += 1
    return {n: torch.tensor(sorted(chosen[i]), dtype=torch.long, device=scores[n].device)
            for i, n in enumerate(names)}
