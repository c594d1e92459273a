"""The run directory: everything a search writes, written so that a crash loses nothing.

- ``evaluations.jsonl``: append-only, one line per finished evaluation (flushed and fsynced);
  a line cut short by a crash is ignored on reading.
- ``checkpoint.json``: population, hall of fame and RNG state, replaced atomically each generation.
- ``config.json``, ``leaderboard.csv``, ``best_genome.json``, ``best_model.pt``, ``history.png``,
  ``pareto.png`` (multi-objective runs), ``trials/<hash>.pt`` (each trained model's weights).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

import torch

from .._io import append_jsonl, atomic_write_text, read_jsonl


class RunDirectory:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.trials = self.path / "trials"

    def create(self) -> None:
        self.trials.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        return (self.path / "config.json").is_file()

    # ------------------------------------------------------------------ state

    def write_json(self, name: str, data: Any) -> None:
        atomic_write_text(self.path / name, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def read_json(self, name: str) -> Any:
        path = self.path / name
        return json.loads(path.read_text()) if path.is_file() else None

    def append_evaluation(self, record: dict[str, Any]) -> None:
        append_jsonl(self.path / "evaluations.jsonl", record, sort_keys=True)

    def evaluations(self) -> list[dict[str, Any]]:
        """Every finished evaluation; one cut short by a crash simply runs again."""
        return read_jsonl(self.path / "evaluations.jsonl")

    def weights_path(self, genome_hash: str) -> Path:
        return self.trials / f"{genome_hash}.pt"

    # ------------------------------------------------------------------ reports

    def write_leaderboard(self, header: list[str], rows: Iterable[list[Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerows(rows)
        atomic_write_text(self.path / "leaderboard.csv", buffer.getvalue())

    def publish_best(self, genome_hash: str, genome_json: str) -> None:
        source = self.weights_path(genome_hash)
        if source.is_file():
            tmp = self.path / ".best_model.pt.tmp"
            shutil.copyfile(source, tmp)
            os.replace(tmp, self.path / "best_model.pt")
        self.write_json("best_genome.json", json.loads(genome_json))

    def plot_history(self, history: list[dict[str, float]]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        generations = [h["generation"] for h in history]
        ax.plot(generations, [h["best"] for h in history], "o-", label="best")
        ax.plot(generations, [h["mean"] for h in history], "s--", label="mean")
        ax.set_xlabel("generation")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("validation accuracy")
        ax.legend()
        fig.tight_layout()
        self._save_figure(fig, "history.png")

    def plot_pareto(self, points: list[tuple[float, float]], front: list[int], x_label: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.scatter([p[1] for p in points], [p[0] for p in points], s=12, color="grey", label="evaluated")
        best = sorted((points[i] for i in front), key=lambda p: p[1])
        ax.plot([p[1] for p in best], [p[0] for p in best], "o-", color="C3", label="Pareto front")
        ax.set_xlabel(x_label)
        ax.set_ylabel("validation accuracy")
        ax.set_xscale("log")
        ax.legend()
        fig.tight_layout()
        self._save_figure(fig, "pareto.png")

    def _save_figure(self, fig, name: str) -> None:
        import matplotlib.pyplot as plt

        tmp = self.path / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        os.replace(tmp, self.path / name)


def load_best(path: str | Path) -> tuple[torch.nn.Module, "Genome", dict[str, Any]]:  # noqa: F821
    """The best model of a finished (or interrupted) search: (model in eval mode, genome, metrics)."""
    from .genome import Genome

    file = Path(path) / "best_model.pt"
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist: no evaluation of that run has finished yet")
    payload = torch.load(file, map_location="cpu", weights_only=True)
    genome = Genome.from_json(payload["genome"])
    model = genome.decode(tuple(payload["input_shape"]), payload["num_classes"])
    model.load_state_dict(payload["state_dict"])
    return model.eval(), genome, payload["metrics"]
