"""The genetic algorithm's coordinator: generations of evaluations, selection and breeding,
with every finished evaluation recorded at once and the run state checkpointed each
generation, so ``--resume`` continues after any interruption without retraining anything.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .config import SearchConfig
from .data import load_dataset
from .executor import LocalExecutor, Outcome, default_devices
from .genome import Genome
from .operators import crossover, mutate, random_genome
from .rundir import RunDirectory
from .selection import non_dominated_fronts, rank_keys, tournament

LEADERBOARD_HEADER = ["rank", "hash", "val_accuracy", "val_loss", "test_accuracy", "params", "latency_ms", "evaluations",
                      "generation", "architecture"]


@dataclasses.dataclass
class SearchResult:
    out: Path
    best_genome: Genome
    best_metrics: dict[str, Any]
    leaderboard: list[dict[str, Any]]
    evaluations: int  # evaluations run by this call (not cached ones)
    failures: int
    wall_seconds: float


class _Evaluations:
    """Every recorded evaluation, by genome hash."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.by_hash: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            self.add(record)

    def add(self, record: dict[str, Any]) -> None:
        self.by_hash.setdefault(record["hash"], []).append(record)

    def successes(self, genome_hash: str) -> list[dict[str, Any]]:
        return [r for r in self.by_hash.get(genome_hash, []) if r["status"] == "ok"]

    def attempts(self, genome_hash: str, key: str) -> int:
        return sum(r.get("key") == key for r in self.by_hash.get(genome_hash, []))

    def settled(self, genome_hash: str, key: str, retries: int) -> bool:
        """Finished for this key: succeeded, failed for good, or out of retries."""
        records = [r for r in self.by_hash.get(genome_hash, []) if r.get("key") == key]
        return any(r["status"] == "ok" or r.get("failure") not in ("crash", "timeout") for r in records) or (
            len(records) > retries)

    def metrics(self, genome_hash: str) -> dict[str, Any] | None:
        """Mean of the successful evaluations' metrics (one unless elites are re-evaluated)."""
        ok = self.successes(genome_hash)
        if not ok:
            return None
        merged = dict(ok[-1]["metrics"])
        for name in ("val_accuracy", "val_loss", "test_accuracy", "latency_ms"):
            merged[name] = statistics.fmean(r["metrics"][name] for r in ok)
        merged["evaluations"] = len(ok)
        return merged


def _objective_vector(config: SearchConfig, metrics: dict[str, Any] | None) -> tuple[float, ...]:
    """Maximised component-wise; a failed evaluation is worse than anything. A single-objective
    vector ends with -validation loss, a tie-breaker rather than an objective: small validation
    sets make many genomes score the same accuracy."""
    tie_breaker = () if config.multi_objective else ("loss",)
    if metrics is None:
        return tuple(-math.inf for _ in (*config.objectives, *tie_breaker))
    values = {"accuracy": metrics["val_accuracy"], "params": -float(metrics["params"]),
              "latency": -float(metrics["latency_ms"]), "loss": -metrics["val_loss"]}
    return tuple(values[o] for o in (*config.objectives, *tie_breaker))


def _selection_keys(config: SearchConfig, vectors: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    """Smaller is better: NSGA-II (front, -crowding) or (-accuracy, validation loss); failed
    evaluations last."""
    if not config.multi_objective:
        return [tuple(-c for c in v) for v in vectors]
    scored = [i for i, v in enumerate(vectors) if math.isfinite(v[0])]
    keys: list[tuple[float, ...]] = [(math.inf, 0.0)] * len(vectors)
    for i, key in zip(scored, rank_keys([vectors[i] for i in scored])):
        keys[i] = key
    return keys


def _trial_seed(config: SearchConfig, genome_hash: str, key: str) -> int:
    return (config.seed * 1_000_003 + int(genome_hash[:8], 16) + sum(map(ord, key))) % (2**31 - 1)


class Search:
    def __init__(self, config: SearchConfig, *, resume: bool = False) -> None:
        self.config = config
        self.rundir = RunDirectory(Path(config.out))
        self.resumed = resume
        self.stream = sys.stderr

    # ------------------------------------------------------------------ state

    def _fresh_state(self) -> dict[str, Any]:
        rng = random.Random(self.config.seed)
        population, seen = [], set()
        for _ in range(self.config.population):
            genome = random_genome(self.config.space, rng)
            for _ in range(20):  # distinct where the space allows
                if genome.hash not in seen:
                    break
                genome = random_genome(self.config.space, rng)
            seen.add(genome.hash)
            population.append(genome)
        return {"generation": 0, "population": [g.to_dict() for g in population], "hall_of_fame": [],
                "history": [], "rng_state": _rng_to_json(rng.getstate()), "seed": self.config.seed}

    def _save_state(self, state: dict[str, Any]) -> None:
        self.rundir.write_json("checkpoint.json", state)

    # ------------------------------------------------------------------ evaluation

    def _task(self, genome: Genome, key: str) -> dict[str, Any]:
        c = self.config
        return {"genome": genome.to_json(), "data": c.data, "data_seed": c.data_seed, "data_root": c.data_root,
                "epochs": c.epochs, "batch_size": c.batch_size, "seed": _trial_seed(c, genome.hash, key),
                "weights_path": str(self.rundir.weights_path(genome.hash))}

    def _record(self, outcome: Outcome, genome: Genome, key: str, generation: int, attempt: int) -> dict[str, Any]:
        record = {
            "trial_id": outcome.task_id, "hash": genome.hash, "key": key, "genome": genome.to_dict(),
            "generation": generation, "attempt": attempt, "status": outcome.status, "failure": outcome.failure,
            "error": outcome.error, "metrics": outcome.metrics, "device": outcome.device,
            "wall_seconds": round(outcome.wall_seconds, 3),
            "params": (outcome.metrics or {}).get("params"),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        self.rundir.append_evaluation(record)
        return record

    def _evaluate(self, executor, evaluations: _Evaluations, jobs: list[tuple[Genome, str]], generation: int,
                  bar) -> tuple[int, int]:
        """Runs every job (genome, key) not settled yet; returns (evaluations run, failures)."""
        queue = [(g, k) for g, k in jobs if not evaluations.settled(g.hash, k, self.config.retries)]
        in_flight: dict[str, tuple[Genome, str, int]] = {}
        ran = failed = 0
        while queue or in_flight:
            while queue and executor.idle() > 0:
                genome, key = queue.pop(0)
                attempt = evaluations.attempts(genome.hash, key) + 1
                task_id = f"{genome.hash}-{key}-{attempt}"
                in_flight[task_id] = (genome, key, attempt)
                executor.submit(task_id, self._task(genome, key))
            for outcome in executor.poll(timeout=1.0):
                genome, key, attempt = in_flight.pop(outcome.task_id)
                evaluations.add(self._record(outcome, genome, key, generation, attempt))
                ran += 1
                if outcome.status != "ok":
                    failed += 1
                    reason = (outcome.error or "").splitlines()[0]
                    self._say(f"evaluation {outcome.task_id} failed ({outcome.failure}): {reason}")
                    if outcome.retryable and attempt <= self.config.retries:
                        queue.append((genome, key))
                        continue
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(self._postfix(evaluations, executor.running(), failed), refresh=True)
        return ran, failed

    def _postfix(self, evaluations: _Evaluations, running: int, failed: int) -> str:
        accuracies = [m["val_accuracy"] for h in evaluations.by_hash if (m := evaluations.metrics(h))]
        best = f"{max(accuracies):.2%}" if accuracies else "-"
        return f"running {running}, failed {failed}, best val {best}"

    def _say(self, message: str) -> None:
        print(f"kanfast.search: {message}", file=self.stream, flush=True)

    # ------------------------------------------------------------------ the generational loop

    def run(self) -> SearchResult:
        start = time.perf_counter()
        c = self.config
        dataset = load_dataset(c.data, c.data_seed, c.data_root)  # bad data fails here, not in every worker
        self.rundir.create()
        state = self.rundir.read_json("checkpoint.json") if self.resumed else None
        if state is None:
            state = self._fresh_state()
            self.rundir.write_json("config.json", c.to_dict())
            self._save_state(state)
        evaluations = _Evaluations(self.rundir.evaluations())
        executor = self._executor()
        show = c.progress if c.progress is not None else self.stream.isatty()
        self._say(f"{dataset.summary()}; run directory {self.rundir.path}")
        total = c.population * c.generations
        bar = tqdm(total=total, initial=min(total, state["generation"] * c.population), unit="eval",
                   desc="search", file=self.stream, disable=not show, dynamic_ncols=True)
        ran = failures = 0
        executor.start()
        try:
            while state["generation"] < c.generations:
                generation = state["generation"]
                population = [Genome.from_dict(g) for g in state["population"]]
                elites = set(state["hall_of_fame"][: c.elitism]) if c.reevaluate_elites else set()
                jobs, seen = [], set()
                for g in population:
                    key = f"g{generation}" if g.hash in elites else "first"
                    if (g.hash, key) not in seen:
                        seen.add((g.hash, key))
                        jobs.append((g, key))
                cached = sum(evaluations.settled(g.hash, k, c.retries) for g, k in jobs)
                bar.update(c.population - len(jobs) + cached)  # duplicates and cached genomes cost nothing
                n, f = self._evaluate(executor, evaluations, jobs, generation, bar)
                ran, failures = ran + n, failures + f
                self._end_generation(state, population, evaluations)
                state["generation"] = generation + 1
                if state["generation"] < c.generations:
                    state["population"] = [g.to_dict() for g in self._breed(state, population, evaluations)]
                self._save_state(state)
                if not show:
                    h = state["history"][-1]
                    self._say(f"generation {generation + 1}/{c.generations}: best {h['best']:.2%}, "
                              f"mean {h['mean']:.2%}, failed {h['failed']}")
        finally:
            bar.close()
            executor.shutdown()
        return self._result(state, evaluations, ran, failures, time.perf_counter() - start)

    def _executor(self):
        c = self.config
        if c.executor == "ray":
            from .ray_executor import RayExecutor

            import torch

            use_gpus = c.device == "cuda" or (c.device == "auto" and torch.cuda.is_available() and not c.ray_address)
            slots = c.workers or (torch.cuda.device_count() if use_gpus else 2)
            return RayExecutor(address=c.ray_address, slots=slots, use_gpus=use_gpus,
                               threads_per_worker=c.threads_per_worker, timeout=c.timeout, retries=c.retries,
                               evaluator=c.evaluator)
        return LocalExecutor(default_devices(c.device, c.workers), threads_per_worker=c.threads_per_worker,
                             timeout=c.timeout, evaluator=c.evaluator)

    def _scored(self, evaluations: _Evaluations) -> list[tuple[str, dict[str, Any]]]:
        return [(h, m) for h in evaluations.by_hash if (m := evaluations.metrics(h)) is not None]

    def _end_generation(self, state: dict[str, Any], population: list[Genome], evaluations: _Evaluations) -> None:
        c = self.config
        scores = [evaluations.metrics(g.hash) for g in population]
        accuracies = [m["val_accuracy"] for m in scores if m]
        state["history"].append({
            "generation": state["generation"] + 1,
            "best": max(accuracies, default=0.0),
            "mean": statistics.fmean(accuracies) if accuracies else 0.0,
            "failed": sum(m is None for m in scores),
        })
        scored = self._scored(evaluations)
        if not scored:
            return
        keys = _selection_keys(c, [_objective_vector(c, m) for _, m in scored])
        order = sorted(range(len(scored)), key=lambda i: (keys[i], scored[i][0]))
        state["hall_of_fame"] = [scored[i][0] for i in order[: max(c.elitism, 10)]]
        self._write_reports(state, evaluations, scored)

    def _breed(self, state: dict[str, Any], population: list[Genome], evaluations: _Evaluations) -> list[Genome]:
        c = self.config
        rng = random.Random()
        rng.setstate(_rng_from_json(state["rng_state"]))
        vectors = [_objective_vector(c, evaluations.metrics(g.hash)) for g in population]
        keys = _selection_keys(c, vectors)
        genomes = {g.hash: g for g in population}
        for record_list in evaluations.by_hash.values():
            genomes.setdefault(record_list[0]["hash"], Genome.from_dict(record_list[0]["genome"]))
        children = [genomes[h] for h in state["hall_of_fame"][: c.elitism]]
        hashes = {g.hash for g in children}
        while len(children) < c.population:
            for _ in range(20):  # look for a genome not in the new population yet
                a = population[tournament(keys, c.tournament_size, rng)]
                b = population[tournament(keys, c.tournament_size, rng)]
                child = crossover(a, b, rng) if rng.random() < c.crossover_rate else a
                child = mutate(child, c.space, rng, c.mutation_rate)
                if child.hash not in hashes:
                    break
            hashes.add(child.hash)
            children.append(child)
        state["rng_state"] = _rng_to_json(rng.getstate())
        return children

    # ------------------------------------------------------------------ reports

    def _leaderboard(self, evaluations: _Evaluations, scored) -> list[dict[str, Any]]:
        c = self.config
        keys = _selection_keys(c, [_objective_vector(c, m) for _, m in scored])
        order = sorted(range(len(scored)), key=lambda i: (keys[i], scored[i][0]))
        rows = []
        for rank, i in enumerate(order, 1):
            h, m = scored[i]
            first = evaluations.by_hash[h][0]
            rows.append({"rank": rank, "hash": h, "val_accuracy": m["val_accuracy"], "val_loss": m["val_loss"],
                         "test_accuracy": m["test_accuracy"],
                         "params": m["params"], "latency_ms": m["latency_ms"], "evaluations": m["evaluations"],
                         "generation": first["generation"] + 1,
                         "architecture": Genome.from_dict(first["genome"]).describe()})
        return rows

    def _write_reports(self, state, evaluations: _Evaluations, scored) -> None:
        rows = self._leaderboard(evaluations, scored)
        self.rundir.write_leaderboard(LEADERBOARD_HEADER, [[r[k] for k in LEADERBOARD_HEADER] for r in rows])
        best = rows[0]["hash"]
        self.rundir.publish_best(best, Genome.from_dict(evaluations.by_hash[best][0]["genome"]).to_json())
        self.rundir.plot_history(state["history"])
        if self.config.multi_objective:
            objective = self.config.objectives[1]
            points = [(m["val_accuracy"], float(m["params"] if objective == "params" else m["latency_ms"]))
                      for _, m in scored]
            front = non_dominated_fronts([(a, -b) for a, b in points])[0]
            self.rundir.plot_pareto(points, front, "parameters" if objective == "params" else "latency (ms/sample)")

    def _result(self, state, evaluations: _Evaluations, ran: int, failures: int, seconds: float) -> SearchResult:
        scored = self._scored(evaluations)
        if not scored:
            raise RuntimeError(f"every evaluation failed; see {self.rundir.path / 'evaluations.jsonl'}")
        rows = self._leaderboard(evaluations, scored)
        best = rows[0]["hash"]
        return SearchResult(self.rundir.path, Genome.from_dict(evaluations.by_hash[best][0]["genome"]),
                            evaluations.metrics(best), rows, ran, failures, seconds)


def _rng_to_json(state) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_from_json(data) -> tuple:
    version, internal, gauss = data
    return version, tuple(internal), gauss


def default_run_directory() -> str:
    return str(Path("search-runs") / datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))


def run(config: SearchConfig | dict[str, Any], *, resume: bool = False) -> SearchResult:
    """Run (or with resume=True continue) a search; config.out is the run directory."""
    if not isinstance(config, SearchConfig):
        config = SearchConfig.from_dict(config)
    if config.out is None:
        config = dataclasses.replace(config, out=default_run_directory())
    rundir = RunDirectory(Path(config.out))
    if resume:
        stored = rundir.read_json("config.json")
        if stored is None:
            raise ValueError(f"--resume {config.out}: not a search run directory (no config.json)")
        execution = {k: v for k, v in config.to_dict().items() if k not in config.search_settings()}
        config = SearchConfig.from_dict({**stored, **execution})
    elif rundir.exists():
        raise ValueError(f"--out {config.out} already holds a search; continue it with --resume {config.out}")
    return Search(config, resume=resume).run()
