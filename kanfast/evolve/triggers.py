"""When a strategy acts: every n steps or epochs, on a plateau of a metric, or when the layer
entropy has saturated. A trigger is asked after every optimizer step and every epoch."""

from __future__ import annotations

import math
import statistics
from typing import Any


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class Trigger:
    """Base class: ``at_step`` / ``at_epoch`` return True when the strategy should act.
    ``needs_entropy``: the strategy then passes the mean layer entropy of each epoch."""

    needs_entropy = False

    def at_step(self, step: int) -> bool:
        return False

    def at_epoch(self, epoch: int, metrics: dict[str, Any], entropy: float | None = None) -> bool:
        return False

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Every(Trigger):
    """Fires at every ``n``-th optimizer step (``unit="step"``) or epoch (``unit="epoch"``),
    counted by the trainer, so it needs no state of its own across a resume."""

    def __init__(self, n: int, unit: str = "step") -> None:
        self.n = _positive_int("n", n)
        if unit not in ("step", "epoch"):
            raise ValueError(f"unit must be 'step' or 'epoch', got {unit!r}")
        self.unit = unit

    def at_step(self, step: int) -> bool:
        return self.unit == "step" and step % self.n == 0

    def at_epoch(self, epoch: int, metrics: dict[str, Any], entropy: float | None = None) -> bool:
        return self.unit == "epoch" and epoch % self.n == 0

    def __repr__(self) -> str:
        return f"Every({self.n}, unit={self.unit!r})"


class Plateau(Trigger):
    """Fires when ``monitor`` (a key of the epoch metrics) has not improved for more than
    ``patience`` epochs, with torch.optim.lr_scheduler.ReduceLROnPlateau's meanings: improving
    means beating the best by ``threshold`` (relative to it for ``threshold_mode="rel"``), and
    after firing the bad-epoch count stays at 0 for ``cooldown`` epochs."""

    def __init__(self, mode: str = "min", patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, monitor: str = "val_loss") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        if isinstance(cooldown, bool) or not isinstance(cooldown, int) or cooldown < 0:
            raise ValueError(f"cooldown must be an integer >= 0, got {cooldown!r}")
        if not (isinstance(threshold, (int, float)) and threshold >= 0):
            raise ValueError(f"threshold must be a number >= 0, got {threshold!r}")
        self.mode, self.patience, self.threshold = mode, patience, float(threshold)
        self.threshold_mode, self.cooldown, self.monitor = threshold_mode, cooldown, monitor
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0

    def _improves(self, value: float) -> bool:
        if self.mode == "min":
            bound = self.best * (1 - self.threshold) if self.threshold_mode == "rel" else self.best - self.threshold
            return value < bound
        bound = self.best * (1 + self.threshold) if self.threshold_mode == "rel" else self.best + self.threshold
        return value > bound

    def at_epoch(self, epoch: int, metrics: dict[str, Any], entropy: float | None = None) -> bool:
        if self.monitor not in metrics:
            raise KeyError(f"Plateau: monitor={self.monitor!r} is not among the epoch metrics {sorted(metrics)} "
                           "(validation data gives val_loss / val_accuracy)")
        value = float(metrics[self.monitor])
        if self._improves(value):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            self.cooldown_left, self.bad_epochs = self.cooldown, 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "cooldown_left": self.cooldown_left}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs, self.cooldown_left = state["best"], state["bad_epochs"], state["cooldown_left"]


class EntropySaturation(Trigger):
    """Fires when the layer entropy says the network's capacity is used up, judged over the last
    ``window`` epochs, at least ``min_epochs_between`` epochs after the previous firing. The
    ``conditions`` it fires on (any of them):

    - ``"saturated"``: the entropy is flat (population variance below ``variance_threshold``)
      at a level of at least ``min_entropy`` nats (0 accepts any level);
    - ``"rising"``: the entropy keeps rising (its least-squares slope is above
      ``rise_threshold`` nats per epoch) while ``monitor`` has plateaued;
    - ``"plateaued"``: the entropy and ``monitor`` have both plateaued.

    ``monitor`` (a key of the epoch metrics, default val_accuracy) has plateaued when the
    variance of its last ``window`` values is below ``metric_variance_threshold``. The entropy is
    one value per epoch: the mean over the strategy's layers of the mean unit entropy
    (NeuronScorer.layer_entropy) over that epoch's batches.
    """

    needs_entropy = True
    CONDITIONS = ("saturated", "rising", "plateaued")

    def __init__(self, window: int = 10, variance_threshold: float = 0.01, min_epochs_between: int = 3,
                 min_entropy: float = 0.0, *, conditions=("saturated",), monitor: str = "val_accuracy",
                 metric_variance_threshold: float = 1e-4, rise_threshold: float = 0.0) -> None:
        self.window = _positive_int("window", window)
        if self.window < 2:
            raise ValueError(f"window must be at least 2 epochs for a variance, got {window}")
        for name, value in (("variance_threshold", variance_threshold),
                            ("metric_variance_threshold", metric_variance_threshold)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        self.min_epochs_between = _positive_int("min_epochs_between", min_epochs_between)
        for name, value in (("min_entropy", min_entropy), ("rise_threshold", rise_threshold)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        conditions = (conditions,) if isinstance(conditions, str) else tuple(conditions)
        unknown = [c for c in conditions if c not in self.CONDITIONS]
        if not conditions or unknown:
            raise ValueError(f"conditions must name some of {self.CONDITIONS}, got {list(conditions)}")
        self.variance_threshold, self.min_entropy = float(variance_threshold), float(min_entropy)
        self.metric_variance_threshold, self.rise_threshold = float(metric_variance_threshold), float(rise_threshold)
        self.conditions, self.monitor = conditions, monitor
        self.history: list[float] = []
        self.metric_history: list[float | None] = []
        self.last_fired: int | None = None

    def at_epoch(self, epoch: int, metrics: dict[str, Any], entropy: float | None = None) -> bool:
        if entropy is None:
            raise ValueError("EntropySaturation: at_epoch needs the epoch's entropy")
        self.history.append(float(entropy))
        metric = metrics.get(self.monitor)
        self.metric_history.append(None if metric is None else float(metric))
        if len(self.history) < self.window:
            return False
        if self.last_fired is not None and epoch - self.last_fired < self.min_epochs_between:
            return False
        if not any(self._holds(c) for c in self.conditions):
            return False
        self.last_fired = epoch
        return True

    def _holds(self, condition: str) -> bool:
        recent = self.history[-self.window:]
        flat = statistics.pvariance(recent) < self.variance_threshold
        if condition == "saturated":
            return flat and statistics.fmean(recent) >= self.min_entropy
        metric = self.metric_history[-self.window:]
        if any(m is None for m in metric):  # the monitored metric is missing: no plateau to judge
            return False
        metric_flat = statistics.pvariance(metric) < self.metric_variance_threshold
        if condition == "plateaued":
            return flat and metric_flat
        slope = statistics.linear_regression(range(len(recent)), recent).slope
        return metric_flat and slope > self.rise_threshold

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "metric_history": list(self.metric_history),
                "last_fired": self.last_fired}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state["history"])
        self.metric_history = list(state["metric_history"])
        self.last_fired = state["last_fired"]
