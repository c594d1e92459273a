"""Search configuration: defaults that finish in minutes on a laptop, overridable from a
YAML/JSON file, the command line or Python."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

from .executor import DEFAULT_EVALUATOR
from .space import SearchSpace

OBJECTIVES = ("accuracy", "params", "latency")

# Settings that define the search itself; resuming a run must not change them. The others
# (where and how evaluations run) may differ between the first run and a resume.
SEARCH_KEYS = ("data", "data_root", "data_seed", "seed", "population", "generations", "elitism", "tournament_size",
               "crossover_rate", "mutation_rate", "epochs", "batch_size", "objectives", "reevaluate_elites",
               "evaluator", "space")


@dataclasses.dataclass
class SearchConfig:
    out: str | None = None  # run directory; default search-runs/<timestamp>
    data: str = "digits"  # digits, cifar10, cifar100 or a .npz file with x (N, C, H, W) and y (N,)
    data_root: str | None = None  # where CIFAR files live
    data_seed: int = 0  # the train/validation/test split
    seed: int = 0  # the genetic algorithm and every evaluation's seed
    population: int = 10
    generations: int = 5
    elitism: int = 2  # best genomes ever seen, carried into each new generation unchanged
    tournament_size: int = 3
    crossover_rate: float = 0.7
    mutation_rate: float = 0.2
    epochs: int = 20
    batch_size: int = 64
    objectives: tuple[str, ...] = ("accuracy",)
    reevaluate_elites: bool = False
    executor: str = "local"  # local or ray
    ray_address: str | None = None
    device: str = "auto"  # auto, cpu or cuda
    workers: int | None = None  # default: one per GPU, or one per CPU core
    threads_per_worker: int = 1
    timeout: float | None = 900.0  # seconds per evaluation
    retries: int = 1  # extra attempts after a crash or a timeout
    evaluator: str = DEFAULT_EVALUATOR  # module:function running one evaluation
    space: SearchSpace = dataclasses.field(default_factory=SearchSpace)
    progress: bool | None = None  # progress bar; default: when stderr is a terminal

    def __post_init__(self) -> None:
        if isinstance(self.space, Mapping):
            self.space = SearchSpace.from_dict(self.space)
        self.objectives = tuple(self.objectives)
        positive = ("population", "generations", "tournament_size", "epochs", "batch_size", "threads_per_worker")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"search config: {name} must be a positive int, got {value!r}")
        if self.population < 2:
            raise ValueError(f"search config: population must be at least 2, got {self.population}")
        if not 0 <= self.elitism < self.population:
            raise ValueError(f"search config: elitism must be in [0, population), got {self.elitism}")
        for name in ("crossover_rate", "mutation_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"search config: {name} must be in [0, 1], got {getattr(self, name)}")
        if not self.objectives or self.objectives[0] != "accuracy" or any(o not in OBJECTIVES for o in self.objectives):
            raise ValueError(f"search config: objectives must start with 'accuracy' and name only {OBJECTIVES}, "
                             f"got {list(self.objectives)}")
        if self.executor not in ("local", "ray"):
            raise ValueError(f"search config: executor must be 'local' or 'ray', got {self.executor!r}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"search config: workers must be positive, got {self.workers}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"search config: timeout must be positive seconds, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"search config: retries must be >= 0, got {self.retries}")

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["space"] = self.space.to_dict()
        data["objectives"] = list(self.objectives)
        return data

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "SearchConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"search config: unknown keys {sorted(unknown)}; known: {sorted(names)}")
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "SearchConfig":
        """A YAML (.yaml/.yml) or JSON file; `overrides` win over the file."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"--config {path}: no such file")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            values = json.loads(text)
        else:
            raise ValueError(f"--config {path}: use a .yaml, .yml or .json file")
        if not isinstance(values, dict):
            raise ValueError(f"--config {path}: the file must hold a mapping of settings")
        return cls.from_dict({**values, **overrides})

    def search_settings(self) -> dict[str, Any]:
        data = self.to_dict()
        return {k: data[k] for k in SEARCH_KEYS}
