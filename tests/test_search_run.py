"""End-to-end runs of the search: tiny budgets, real worker processes."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from kanfast.search import SearchConfig, load_best, run
from kanfast.search.__main__ import main as cli
from kanfast.search.engine import Search
from kanfast.search.genome import Genome
from kanfast.search.trial import train

TESTS = Path(__file__).resolve().parent
TINY = dict(population=4, generations=2, epochs=1, workers=2, progress=False)


def _records(out):
    return [json.loads(line) for line in (Path(out) / "evaluations.jsonl").read_text().splitlines()]


def test_tiny_search_writes_every_artefact(tmp_path):
    out = tmp_path / "run"
    result = run(SearchConfig(out=str(out), **TINY))
    for name in ("config.json", "checkpoint.json", "evaluations.jsonl", "leaderboard.csv", "best_genome.json",
                 "best_model.pt", "history.png"):
        assert (out / name).is_file(), name
    records = _records(out)
    ok = [r for r in records if r["status"] == "ok"]
    # every genome is trained once
    assert max(Counter((r["hash"], r["key"]) for r in ok).values()) == 1
    assert {"val_accuracy", "test_accuracy", "params", "latency_ms"} <= set(ok[0]["metrics"])
    # the elites of generation 1 survive unchanged into generation 2
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["generation"] == 2 and len(state["history"]) == 2
    model, genome, metrics = load_best(out)
    assert genome.hash == result.leaderboard[0]["hash"] == result.best_genome.hash
    assert metrics["val_accuracy"] == pytest.approx(result.best_metrics["val_accuracy"])
    with torch.no_grad():
        assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    lines = (out / "leaderboard.csv").read_text().splitlines()
    assert lines[0].startswith("rank,hash,val_accuracy") and len(lines) - 1 == len(result.leaderboard)


def test_generations_carry_the_hall_of_fame(tmp_path):
    out = tmp_path / "run"
    run(SearchConfig(out=str(out), population=4, generations=3, epochs=1, workers=2, elitism=2, progress=False))
    records = _records(out)
    by_generation = {}
    for r in records:
        by_generation.setdefault(r["generation"], set()).add(r["hash"])
    best_of_first = sorted((r for r in records if r["generation"] == 0 and r["status"] == "ok"),
                           key=lambda r: -r["metrics"]["val_accuracy"])[0]["hash"]
    state = json.loads((out / "checkpoint.json").read_text())
    assert best_of_first in state["hall_of_fame"]


def _coordinator(out, extra=()):
    args = [sys.executable, "-m", "kanfast.search", "--out", str(out), "--population", "4", "--generations", "3",
            "--epochs", "1", "--workers", "2", "--no-progress", *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_resume_after_kill_9_loses_and_repeats_nothing(tmp_path):
    reference = tmp_path / "reference"
    assert cli(["--out", str(reference), "--population", "4", "--generations", "3", "--epochs", "1",
                "--workers", "2", "--no-progress"]) == 0
    interrupted = tmp_path / "interrupted"
    process = _coordinator(interrupted)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill the coordinator in the middle of the run
        path = interrupted / "evaluations.jsonl"
        if path.is_file() and len(path.read_text().splitlines()) >= 5:
            break
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = len(_records(interrupted))
    assert 0 < done_before < len(_records(reference)) + 1
    assert cli(["--resume", str(interrupted), "--workers", "2", "--no-progress"]) == 0
    resumed = _records(interrupted)
    ok = [r for r in resumed if r["status"] == "ok"]
    assert max(Counter((r["hash"], r["key"]) for r in ok).values()) == 1, "a finished genome was trained again"
    expected = {r["hash"]: r["metrics"]["val_accuracy"] for r in _records(reference) if r["status"] == "ok"}
    got = {r["hash"]: r["metrics"]["val_accuracy"] for r in ok}
    assert got == expected  # same genomes, same scores: nothing lost, nothing repeated


def _seed_for_rates(config, rates):
    """A seed whose first population holds genomes with every learning rate in `rates`."""
    for seed in range(200):
        state = Search(SearchConfig(**{**config.__dict__, "seed": seed}))._fresh_state()
        if set(rates) <= {g["learning_rate"] for g in state["population"]}:
            return seed
    pytest.fail(f"no seed gives a first population with learning rates {rates}")


def test_failures_are_recorded_and_the_run_completes(tmp_path):
    config = SearchConfig(out=str(tmp_path / "run"), population=8, generations=1, epochs=1, workers=2, timeout=8,
                          retries=1, progress=False, evaluator="search_faults:evaluate",
                          space={"learning_rates": [0.001, 0.002, 0.003, 0.004]})
    config.seed = _seed_for_rates(config, [0.001, 0.002, 0.003, 0.004])
    result = run(config)
    records = _records(config.out)
    by_rate = {}
    for r in records:
        by_rate.setdefault(r["genome"]["learning_rate"], []).append(r)
    assert all(r["status"] == "failed" and r["failure"] == "error" and "injected failure" in r["error"]
               for r in by_rate[0.002])
    crashed = by_rate[0.003]
    assert all(r["failure"] == "crash" and "exit code 3" in r["error"] for r in crashed)
    assert Counter(r["hash"] for r in crashed).most_common(1)[0][1] == 2  # one retry, then given up
    assert all(r["failure"] == "timeout" for r in by_rate[0.004])
    assert any(r["status"] == "ok" for r in by_rate[0.001])
    assert result.best_genome.learning_rate == 0.001
    assert result.failures == len([r for r in records if r["status"] == "failed"])


def test_a_nan_loss_fails_the_evaluation():
    genome = Genome.from_dict({"stages": [{"pool": "none", "blocks": [
        {"kind": "conv", "channels": 2, "kernel_size": 3, "activation": "relu"}]}], "norm": "none", "dropout": 0.0,
        "head_kind": "linear", "head_hidden": 0, "head_grid_size": 0, "head_spline_order": 0, "learning_rate": 0.001})
    from kanfast.search.data import load_dataset

    data = load_dataset("digits", 0)
    model = genome.decode(data.input_shape, data.num_classes)
    with torch.no_grad():
        model[0][0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="loss became nan in epoch 1"):
        train(model, genome, data, epochs=1, batch_size=64, seed=0, device=torch.device("cpu"))


def test_ray_executor_on_a_local_ray(tmp_path):
    pytest.importorskip("ray")
    config = SearchConfig(out=str(tmp_path / "run"), population=2, generations=1, epochs=1, workers=2, elitism=1,
                          executor="ray", progress=False, evaluator="search_faults:evaluate",
                          space={"learning_rates": [0.001, 0.002]})
    config.seed = _seed_for_rates(config, [0.001, 0.002])
    result = run(config)
    records = _records(config.out)
    assert len(records) >= 1 and any(r["status"] == "ok" for r in records)
    for r in records:
        if r["genome"]["learning_rate"] == 0.002:
            assert r["status"] == "failed" and "injected failure" in r["error"]
    assert result.best_genome.learning_rate == 0.001
    model, genome, _ = load_best(config.out)  # the weights came back from the Ray task
    assert genome == result.best_genome and model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_user_data_from_npz(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    x = rng.normal(size=(120, 2, 6, 5)) + y[:, None, None, None]  # learnable: the mean encodes the class
    np.savez(tmp_path / "data.npz", x=x.astype(np.float32), y=y)
    result = run(SearchConfig(out=str(tmp_path / "run"), data=str(tmp_path / "data.npz"), population=2,
                              generations=1, epochs=2, workers=1, elitism=1, progress=False))
    model, genome, _ = load_best(tmp_path / "run")
    assert model(torch.zeros(1, 2, 6, 5)).shape == (1, 3)
    assert result.best_metrics["val_accuracy"] > 0.5


@pytest.mark.parametrize("arrays,match", [
    (dict(x=np.zeros((10, 1, 4, 4)), y=np.array([object()] * 10, dtype=object)), "without pickle"),
    (dict(x=np.zeros((10, 16)), y=np.zeros(10, dtype=int)), r"x must be a numeric array of shape \(N, C, H, W\)"),
    (dict(x=np.zeros((10, 1, 4, 4)), y=np.zeros(9, dtype=int)), r"y must be an integer array of shape \(N,\)"),
    (dict(images=np.zeros((10, 1, 4, 4))), "must hold arrays 'x'"),
])
def test_bad_npz_files_are_refused_clearly(tmp_path, capsys, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    assert cli(["--data", str(path), "--out", str(tmp_path / "run"), "--population", "2", "--elitism", "1"]) == 2
    assert re.search(match, capsys.readouterr().err)


@pytest.mark.parametrize("argv,match", [
    (["--population", "1"], "population must be at least 2"),
    (["--objectives", "params"], "objectives must start with 'accuracy'"),
    (["--resume", "/nonexistent/run"], "not a search run directory"),
    (["--data", "mnist"], "--data must be 'digits'"),
    (["--executor", "ray", "--workers", "0"], "workers must be positive"),
])
def test_bad_command_lines_exit_2_with_a_reason(tmp_path, capsys, argv, match):
    out = [] if "--resume" in argv else ["--out", str(tmp_path / "run")]
    assert cli([*out, *argv]) == 2
    assert match in capsys.readouterr().err


def test_an_existing_run_is_not_overwritten_and_bad_config_files_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    (out).mkdir()
    (out / "config.json").write_text("{}")
    assert cli(["--out", str(out)]) == 2
    assert "continue it with --resume" in capsys.readouterr().err
    bad = tmp_path / "search.yaml"
    bad.write_text("population: 4\nspace:\n  chanels: [8]\n")
    assert cli(["--config", str(bad), "--out", str(tmp_path / "other")]) == 2
    assert "unknown keys ['chanels']" in capsys.readouterr().err


def test_a_worker_that_cannot_start_is_an_error_not_a_hang():
    from kanfast.search.executor import LocalExecutor

    executor = LocalExecutor(["cuda:99"])  # no machine has that device: torch.cuda.set_device fails
    executor.start()
    try:
        with pytest.raises(RuntimeError, match="search worker on cuda:99 could not start: .*"):
            for _ in range(120):
                executor.poll(timeout=1.0)
        assert executor.idle() == 0
    finally:
        executor.shutdown()


def test_ctrl_c_names_the_run_directory_to_resume(tmp_path):
    args = [sys.executable, "-m", "kanfast.search", "--population", "4", "--generations", "3", "--epochs", "1",
            "--workers", "1", "--no-progress"]
    process = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(tmp_path.glob("search-runs/*/evaluations.jsonl")):
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    run_dir = next(tmp_path.glob("search-runs/*"))
    assert f"continue with: python -m kanfast.search --resume {run_dir.relative_to(tmp_path)}" in err
