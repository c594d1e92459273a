"""``NeuronScorer``: per-unit importance scores of every layer of a model, from hooks."""

from __future__ import annotations

import dataclasses
import functools

import torch
from torch import nn

from ..ops.channel_stats import ChannelStats, channel_stats
from .criteria import CRITERIA, check_criteria
from .layers import ScoredLayer, discover, outgoing
from .selection import select_weakest

DEFAULT_CRITERIA = ("mean_abs", "apoz", "redo")


@dataclasses.dataclass
class LayerState:
    """What the hooks accumulated for one layer since the last reset."""

    layer: ScoredLayer
    utility_decay: float
    output: ChannelStats | None = None  # the layer's output
    signal: ChannelStats | None = None  # after its activation (the output itself where there is none)
    grad: ChannelStats | None = None  # the signal with ∂L/∂signal
    utility: torch.Tensor | None = None  # un-corrected EMA
    utility_steps: int = 0


def _merge(old: ChannelStats | None, new: ChannelStats) -> ChannelStats:
    return new if old is None else old.merge(new)


class NeuronScorer:
    """Scores the units (output features / channels) of a model's layers while it runs.

    ``layers``: module names to score, or None for every nn.Linear, nn.Conv1d/2d/3d,
    KANLinear, KANConv1d/2d/3d, BatchNorm, GroupNorm and (1-D) LayerNorm. ``criteria``: names
    from kanfast.scoring.CRITERIA (see criteria.py for where each is measured). Histograms
    (for "entropy") have ``bins`` bins over ``hist_range``; values outside land in the edge
    bins. ``utility_decay`` is the EMA factor of the contribution utility, updated per batch.

    Attach with ``with NeuronScorer(model) as scorer:`` or ``attach()`` / ``detach()``. Every
    batch's statistics are merged into the running ones (never overwritten) until ``reset()``.
    Hooks run under torch.no_grad and keep no activation: for gradient criteria the tensor
    hook registered on a signal holds a detached alias of it until that backward runs (or the
    graph is freed), which autograd keeps alive anyway wherever the next layer saves its input.
    """

    def __init__(self, model: nn.Module, layers: list[str] | None = None, criteria=DEFAULT_CRITERIA, *,
                 bins: int = 32, hist_range: tuple[float, float] = (-4.0, 4.0), utility_decay: float = 0.99,
                 backend: str | None = None) -> None:
        self.criteria = check_criteria(criteria)
        if not 0 <= utility_decay < 1:
            raise ValueError(f"NeuronScorer: utility_decay must be in [0, 1), got {utility_decay}")
        self.model = model
        self.layers = discover(model, layers)
        if not self.layers:
            raise ValueError("NeuronScorer: the model has no layer of a supported type")
        needs = set().union(*(CRITERIA[c].needs for c in self.criteria))
        self._needs = needs
        self._bins = bins if "hist" in needs else 0
        self._range = tuple(hist_range) if self._bins else None
        self._backend = backend
        self._states = {l.name: LayerState(l, utility_decay) for l in self.layers}
        self._handles: list = []
        self._generation = 0  # bumped on detach/reset: late gradient hooks of older graphs are ignored
        self.entropy_history: dict[str, list[float]] = {l.name: [] for l in self.layers}

    # ------------------------------------------------------------------ hooks
    def attach(self) -> NeuronScorer:
        if self._handles:
            raise RuntimeError("NeuronScorer.attach: already attached")
        taps: dict[tuple[int, int], tuple[nn.Module, list]] = {}
        for state in self._states.values():
            layer = state.layer
            roles = []
            if self._needs & {"signal", "grad", "utility"}:
                roles.append((layer.signal or layer.module, "signal"))
            if "output" in self._needs:
                roles.append((layer.module, "output"))
            for module, role in roles:
                taps.setdefault((id(module), layer.unit_dim), (module, []))[1].append((state, role))
        for (_, dim), (module, users) in taps.items():
            self._handles.append(module.register_forward_hook(functools.partial(self._on_forward, users, dim)))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._generation += 1

    def __enter__(self) -> NeuronScorer:
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def _on_forward(self, users, dim, module, inputs, output) -> None:
        if not isinstance(output, torch.Tensor):
            return
        for state, _ in users:
            if output.dim() == 0 or output.shape[dim] != state.layer.units:
                raise RuntimeError(f"NeuronScorer: layer {state.layer.name!r} has {state.layer.units} units but the "
                                   f"tensor it is scored on has shape {tuple(output.shape)} (units along dim {dim})")
        with torch.no_grad():
            a = output.detach()
            hist = self._bins if any(role == "signal" for _, role in users) else 0
            stats = channel_stats(a, dim, bins=hist, range=self._range if hist else None, backend=self._backend)
            for state, role in users:
                setattr(state, role, _merge(getattr(state, role), stats))
                if role == "signal" and "utility" in self._needs:
                    self._update_utility(state, stats)
        signal_users = [s for s, role in users if role == "signal"]
        if "grad" in self._needs and signal_users and output.requires_grad and torch.is_grad_enabled():
            output.register_hook(functools.partial(self._on_grad, signal_users, dim, a, self._generation))

    def _on_grad(self, users, dim, a, generation, grad) -> None:
        if generation != self._generation:
            return
        with torch.no_grad():
            stats = channel_stats(a, dim, grad=grad.to(a.dtype), backend=self._backend)
        for state in users:
            state.grad = _merge(state.grad, stats)

    @staticmethod
    def _update_utility(state: LayerState, stats: ChannelStats) -> None:
        w = outgoing(state.layer)
        contribution = stats.abs_mean if w is None else stats.abs_mean * w.abs().sum(1).to(stats.abs_mean)
        d = state.utility_decay
        state.utility = (1 - d) * contribution if state.utility is None else d * state.utility + (1 - d) * contribution
        state.utility_steps += 1

    # ------------------------------------------------------------------ results
    def reset(self) -> None:
        """Forget the accumulated statistics (not the entropy history)."""
        for state in self._states.values():
            state.output = state.signal = state.grad = state.utility = None
            state.utility_steps = 0
        self._generation += 1  # gradient hooks of graphs built before the reset must not count

    def scores(self) -> dict[str, dict[str, torch.Tensor]]:
        """{layer: {criterion: (units,) float64}}, the criteria that apply to that layer (a
        weight_out_* needs a known consumer, bn_gamma a norm layer, spline_l1 a KAN layer).
        NaN where a statistic has seen no data yet."""
        out = {}
        for name, state in self._states.items():
            values = {c: CRITERIA[c].score(state) for c in self.criteria}
            out[name] = {c: v for c, v in values.items() if v is not None}
        return out

    def select(self, amount: float | int, *, criterion: str | None = None, mode: str = "per_layer",
               normalize: str = "mean", min_keep: int = 1) -> dict[str, torch.Tensor]:
        """{layer: LongTensor of the indices of its weakest units} by ``criterion`` (default: the
        first of ``criteria``); see kanfast.scoring.select_weakest for amount/mode/normalize.
        Layers the criterion does not apply to are left out."""
        criterion = criterion or self.criteria[0]
        if criterion not in self.criteria:
            raise ValueError(f"NeuronScorer.select: criterion {criterion!r} is not one of this scorer's criteria "
                             f"{self.criteria}")
        per_layer = {name: s[criterion] for name, s in self.scores().items() if criterion in s}
        return select_weakest(per_layer, amount, higher_is_weaker=CRITERIA[criterion].higher_is_weaker, mode=mode,
                              normalize=normalize, min_keep=min_keep)

    # ------------------------------------------------------------------ layer-level signals
    def layer_entropy(self) -> dict[str, float]:
        """Mean over units of the activation entropy (nats) of each layer that has seen data."""
        if not self._bins:
            raise RuntimeError("NeuronScorer.layer_entropy: needs the 'entropy' criterion (histograms)")
        return {name: float(s.signal.entropy().mean()) for name, s in self._states.items() if s.signal is not None}

    def step(self, reset: bool = False) -> dict[str, float]:
        """Append each layer's current entropy to ``entropy_history`` (call once per epoch);
        with reset=True, then forget the statistics so the next value covers a fresh window."""
        values = self.layer_entropy()
        for name, v in values.items():
            self.entropy_history[name].append(v)
        if reset:
            self.reset()
        return values

    def entropy_plateaued(self, window: int = 3, tol: float = 1e-3) -> list[str]:
        """Layers whose last ``window`` entropy values span less than ``tol`` nats (saturated)."""
        return [name for name, h in self.entropy_history.items()
                if len(h) >= window and max(h[-window:]) - min(h[-window:]) < tol]

    def all_reduce(self, group=None) -> None:
        """Combine the statistics of every DDP rank (torch.distributed), in place, on every rank.
        Utility EMAs are averaged over the ranks."""
        import torch.distributed as dist

        for state in self._states.values():
            for role in ("output", "signal", "grad"):
                if getattr(state, role) is not None:
                    setattr(state, role, getattr(state, role).all_reduce(group))
            if state.utility is not None:
                dist.all_reduce(state.utility, group=group)
                state.utility /= dist.get_world_size(group)
