"""The sweep's CONFIG: read from YAML or JSON, checked key by key, expanded into runs.

Every error is a ValueError naming the key (``strategies[1].params.prune_rate: ...``); each
expanded strategy is built once here, so bad values fail before any worker starts.
"""

from __future__ import annotations

import inspect
import itertools
import json
import re
from pathlib import Path
from typing import Any, Mapping

from .. import evolve
from .tasks import BUILTIN_TASKS

STRATEGIES = {cls.__name__: cls for cls in (evolve.Apoptosis, evolve.FunctionalPreservation, evolve.GrowthOnly,
                                            evolve.Hybrid, evolve.Expand)}
TRIGGERS = {cls.__name__: cls for cls in (evolve.Every, evolve.Plateau, evolve.EntropySaturation)}
NO_STRATEGY = "none"
DEFAULTS = {"epochs": 10, "batch_size": 64, "lr": 1e-3, "repeats": 1, "seed": 0, "max_samples": None, "grid": {}}
KEYS = {"task", "strategies", *DEFAULTS}
ENTRY_KEYS = {"name", "strategy", "params", "trigger", "grid"}
SUPPLIED = {"self", "trigger", "example_inputs"}  # given by the sweep itself, not by params


def load(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The validated config, with defaults filled in, from a mapping or a .yaml/.yml/.json file."""
    if isinstance(source, Mapping):
        return validate(dict(source))
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"CONFIG {path}: no such file")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(path.read_text())
    elif path.suffix == ".json":
        values = json.loads(path.read_text())
    else:
        raise ValueError(f"CONFIG {path}: use a .yaml, .yml or .json file")
    if not isinstance(values, dict):
        raise ValueError(f"CONFIG {path}: the file must hold a mapping of settings")
    return validate(values)


def _positive_int(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be an integer >= 1, got {value!r}")


def accepted_params(cls) -> set[str]:
    """Keyword arguments of a strategy: its own and, through **options, the Strategy base's."""
    names = set()
    for klass in (cls, evolve.Strategy):
        names |= {p.name for p in inspect.signature(klass.__init__).parameters.values()
                  if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return names - SUPPLIED


def validate(config: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(config) - KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")
    for key in ("task", "strategies"):
        if key not in config:
            raise ValueError(f"{key} is required")
    config = {**DEFAULTS, **config}
    task = config["task"]
    if not isinstance(task, str) or (task not in BUILTIN_TASKS and not re.fullmatch(r"[\w.]+:\w+", task)):
        raise ValueError(f"task must be one of {', '.join(BUILTIN_TASKS)} or 'module:function', got {task!r}")
    for key in ("epochs", "batch_size", "repeats"):
        _positive_int(key, config[key])
    if config["max_samples"] is not None:
        _positive_int("max_samples", config["max_samples"])
    if isinstance(config["seed"], bool) or not isinstance(config["seed"], int):
        raise ValueError(f"seed must be an integer, got {config['seed']!r}")
    if isinstance(config["lr"], bool) or not isinstance(config["lr"], (int, float)) or not config["lr"] > 0:
        raise ValueError(f"lr must be a number > 0, got {config['lr']!r}")
    _check_grid("grid", config["grid"])
    entries = config["strategies"]
    if not isinstance(entries, list) or not entries:
        raise ValueError("strategies must be a non-empty list of {name, strategy, params, trigger, grid}")
    config["strategies"] = [_entry(f"strategies[{i}]", e) for i, e in enumerate(entries)]
    names = [e["name"] for e in config["strategies"]]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ValueError(f"strategies: the name {duplicate!r} is used twice")
    for key in config["grid"]:
        if not any(key in accepted_params(STRATEGIES[e["strategy"]]) for e in config["strategies"]
                   if e["strategy"] != NO_STRATEGY):
            raise ValueError(f"grid.{key}: no strategy of the sweep takes this parameter")
    for run in expand(config):  # build each once: bad values fail here, not in a worker
        build_strategy(run, example_inputs=None, where=run["config_name"])
    return config


def _check_grid(where: str, grid) -> None:
    if not isinstance(grid, dict):
        raise ValueError(f"{where} must be a mapping of parameter names to lists of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where}.{key} must be a non-empty list of values, got {values!r}")


def _entry(where: str, entry) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a mapping with name, strategy, params, trigger, grid")
    unknown = sorted(set(entry) - ENTRY_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(ENTRY_KEYS))})")
    kind = entry.get("strategy")
    if kind != NO_STRATEGY and kind not in STRATEGIES:
        raise ValueError(f"{where}.strategy: unknown strategy {kind!r} (known: {', '.join(STRATEGIES)}, none)")
    name = entry.get("name", kind)
    if not isinstance(name, str) or not re.fullmatch(r"[\w.=+-]+", name):
        raise ValueError(f"{where}.name must be letters, digits and _.=+- (it names run directories), got {name!r}")
    entry = {"name": name, "strategy": kind, "params": entry.get("params") or {},
             "trigger": entry.get("trigger"), "grid": entry.get("grid") or {}}
    if not isinstance(entry["params"], dict):
        raise ValueError(f"{where}.params must be a mapping")
    _check_grid(f"{where}.grid", entry["grid"])
    if kind == NO_STRATEGY:
        if entry["params"] or entry["trigger"] or entry["grid"]:
            raise ValueError(f"{where}: strategy 'none' takes no params, trigger or grid")
        return entry
    accepted = accepted_params(STRATEGIES[kind])
    for key in [*entry["params"], *entry["grid"]]:
        if key not in accepted:
            raise ValueError(f"{where}.params.{key}: {kind} has no parameter {key!r} "
                             f"(it takes {', '.join(sorted(accepted))})")
    trigger = entry["trigger"]
    if trigger is not None:
        if not isinstance(trigger, dict) or trigger.get("type") not in TRIGGERS:
            raise ValueError(f"{where}.trigger must be a mapping with type: {' | '.join(TRIGGERS)} and its "
                             f"arguments, got {trigger!r}")
        known = set(inspect.signature(TRIGGERS[trigger["type"]].__init__).parameters) - {"self"}
        for key in set(trigger) - {"type"} - known:
            raise ValueError(f"{where}.trigger.{key}: {trigger['type']} has no argument {key!r}")
    return entry


def expand(config: dict[str, Any]) -> list[dict[str, Any]]:
    """One run per (strategy, grid point, repeat), each with a run_id usable as a directory name."""
    runs = []
    for entry in config["strategies"]:
        accepted = set() if entry["strategy"] == NO_STRATEGY else accepted_params(STRATEGIES[entry["strategy"]])
        grid = {k: v for k, v in config["grid"].items() if k in accepted}
        grid.update(entry["grid"])  # a strategy's own grid overrides the shared one
        for point in itertools.product(*grid.values()):
            chosen = dict(zip(grid, point))
            suffix = "".join(f"_{k}={v}" for k, v in chosen.items())
            config_name = entry["name"] + suffix
            for repeat in range(config["repeats"]):
                runs.append({"run_id": re.sub(r"[^\w.=+-]", "_", f"{config_name}_r{repeat}"),
                             "config_name": config_name, "strategy": entry["strategy"],
                             "params": {**entry["params"], **chosen}, "trigger": entry["trigger"],
                             "repeat": repeat, "seed": config["seed"] + repeat})
    return runs


def build_strategy(run: dict[str, Any], *, example_inputs: Any, where: str = "") -> evolve.Strategy | None:
    """The run's callback (None for strategy 'none'); a ValueError says which config it came from."""
    if run["strategy"] == NO_STRATEGY:
        return None
    try:
        trigger = run["trigger"]
        if trigger is not None:
            trigger = TRIGGERS[trigger["type"]](**{k: v for k, v in trigger.items() if k != "type"})
        return STRATEGIES[run["strategy"]](**run["params"], trigger=trigger, example_inputs=example_inputs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where or run['config_name']}: {exc}") from None
