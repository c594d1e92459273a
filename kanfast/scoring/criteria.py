"""The neuron-scoring criteria: what each measures, on which tensor, and which way is weak.

Where a criterion is measured:

- ``output``: the layer's own output (before any activation).
- ``signal``: the output of the element-wise activation that follows the layer in its
  ``nn.Sequential`` (through normalisation, dropout and pooling; see layers.py), or the
  layer's output where there is none. KAN layers are their own activation: always their output.
- ``gradient``: the signal times ∂L/∂signal, collected by a backward hook.
- ``weights``: the current parameters, read when scores are asked for.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from .layers import incoming, outgoing, spline_coefficients


@dataclasses.dataclass(frozen=True)
class Criterion:
    name: str
    measured_on: str  # "output", "signal", "gradient" or "weights"
    higher_is_weaker: bool  # False: a low score marks a weak unit
    needs: frozenset[str]  # statistics the hooks must collect: "output", "signal", "hist", "grad", "utility"
    score: Callable  # (LayerState) -> Tensor (units,), or None where the criterion does not apply
    description: str


def _nan(state) -> torch.Tensor:
    device = next(state.layer.module.parameters(), torch.empty(0)).device
    return torch.full((state.layer.units,), float("nan"), dtype=torch.float64, device=device)


def _from(stats_name: str, fn):
    def score(state):
        stats = getattr(state, stats_name)
        return _nan(state) if stats is None else fn(stats)
    return score


def _redo(stats):
    s = stats.abs_mean
    return s / s.mean().clamp_min(torch.finfo(s.dtype).tiny)  # an all-silent layer scores 0 everywhere


def _utility(state):
    if state.utility is None:
        return _nan(state)
    return state.utility / (1 - state.utility_decay ** state.utility_steps)  # bias-corrected EMA


def _norms(matrix_of, p):
    def score(state):
        w = matrix_of(state.layer)
        if w is None:
            return None
        return (w.abs().sum(1) if p == 1 else w.norm(dim=1)).double()
    return score


def _bn_gamma(state):
    norm = state.layer.norm
    return None if norm is None else norm.weight.detach().abs().double()


def _spline_l1(state):
    w = spline_coefficients(state.layer.module)
    return None if w is None else w.abs().sum(1).double()


_C = Criterion
CRITERIA: dict[str, Criterion] = {c.name: c for c in (
    _C("mean_abs", "signal", False, frozenset({"signal"}), _from("signal", lambda s: s.abs_mean), "E|a|"),
    _C("mean", "output", False, frozenset({"output"}), _from("output", lambda s: s.mean), "E[a]"),
    _C("variance", "output", False, frozenset({"output"}), _from("output", lambda s: s.var),
       "population variance of a"),
    _C("apoz", "signal", True, frozenset({"signal"}), _from("signal", lambda s: s.nonpos_fraction),
       "average percentage of zeros: the fraction of a <= 0 (= a == 0 after a ReLU)"),
    _C("entropy", "signal", False, frozenset({"signal", "hist"}), _from("signal", lambda s: s.entropy()),
       "entropy (nats) of the histogram of a over hist_range, outside values in the edge bins"),
    _C("taylor", "gradient", False, frozenset({"grad"}), _from("grad", lambda s: s.prod_mean.abs()),
       "first-order Taylor importance |E[a·∂L/∂a]|"),
    _C("redo", "signal", False, frozenset({"signal"}), _from("signal", _redo),
       "ReDo's normalised activity: E|a| divided by the layer's average E|a|"),
    _C("utility", "signal", False, frozenset({"signal", "utility"}), _utility,
       "contribution utility: bias-corrected EMA over batches of E|a|·Σ|outgoing weights| (weight 1 when the "
       "consumer is unknown)"),
    _C("weight_in_l1", "weights", False, frozenset(), _norms(lambda l: incoming(l.module), 1),
       "L1 norm of the unit's incoming weights (a norm layer's: |γ|)"),
    _C("weight_in_l2", "weights", False, frozenset(), _norms(lambda l: incoming(l.module), 2),
       "L2 norm of the unit's incoming weights"),
    _C("weight_out_l1", "weights", False, frozenset(), _norms(outgoing, 1),
       "L1 norm of the consumer's weights reading the unit (absent when the consumer is unknown)"),
    _C("weight_out_l2", "weights", False, frozenset(), _norms(outgoing, 2), "L2 norm of the same"),
    _C("bn_gamma", "weights", False, frozenset(), _bn_gamma,
       "|γ| of the unit's normalisation layer (the layer itself, or the first one after it)"),
    _C("spline_l1", "weights", False, frozenset(), _spline_l1, "L1 norm of a KAN unit's spline coefficients"),
)}


def check_criteria(names) -> tuple[str, ...]:
    names = (names,) if isinstance(names, str) else tuple(names)
    if not names:
        raise ValueError("NeuronScorer: criteria must name at least one criterion")
    for n in names:
        if n not in CRITERIA:
            raise ValueError(f"NeuronScorer: unknown criterion {n!r}; choose from {', '.join(CRITERIA)}")
    return names
