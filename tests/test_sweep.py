"""kanfast.sweep: a tiny sweep end to end (results, summary ranking, mean/std), resume, config
errors naming the key (exit 2), and a failing run recorded while the sweep completes."""

import csv
import json
import statistics

import pytest

from kanfast.search.executor import run_guarded
from kanfast.sweep import config as sweep_config
from kanfast.sweep import run
from kanfast.sweep.__main__ import main
from kanfast.sweep.worker import run_one

TINY = {"task": "digits-mlp", "epochs": 1, "batch_size": 32, "repeats": 2, "max_samples": 96,
        "strategies": [{"name": "base", "strategy": "none"},
                       {"name": "apop", "strategy": "Apoptosis", "params": {"prune_rate": 0.1, "interval": 2}}]}


def raising_task():
    raise RuntimeError("task exploded")


def test_tiny_sweep_ranks_records_failures_and_resumes_exactly_the_deleted_run(tmp_path, capsys):
    out = tmp_path / "out"
    config = {**TINY, "strategies": TINY["strategies"] + [
        {"name": "deeper", "strategy": "Expand", "params": {"interval": 1}},
        {"name": "bad-after", "strategy": "Expand", "params": {"after": "nowhere", "interval": 1}}]}
    (tmp_path / "sweep.json").write_text(json.dumps(config))
    assert main([str(tmp_path / "sweep.json"), "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert sorted(runs) == sorted(f"{n}_r{i}" for n in ("base", "apop", "deeper", "bad-after") for i in (0, 1))
    for i in (0, 1):  # 3 steps: Apoptosis fires at step 2, one event for each of the two hidden layers
        assert runs[f"base_r{i}"]["events"] == 0 and runs[f"apop_r{i}"]["events"] == 2
        failed, deeper = runs[f"bad-after_r{i}"], runs[f"deeper_r{i}"]
        assert failed["status"] == "failed" and "after: 'nowhere'" in failed["error"]
        assert deeper["status"] == "ok" and deeper["events"] == 1
        assert deeper["params_after"] == deeper["params_before"] + 64 * 64 + 64
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"] and rows[-1]["config"] == "bad-after"
    assert rows[-1]["failed"] == "2" and rows[-1]["val_loss_mean"] == ""
    means = [float(r["val_loss_mean"]) for r in rows[:3]]
    assert means == sorted(means)
    for row in rows[:3]:
        losses = [r["val_loss"] for r in runs.values() if r["config_name"] == row["config"]]
        assert float(row["val_loss_mean"]) == pytest.approx(statistics.fmean(losses))
        assert float(row["val_loss_std"]) == pytest.approx(statistics.stdev(losses))
    assert f"| 1 | {rows[0]['config']} |" in capsys.readouterr().out
    assert (out / "summary.md").read_text().splitlines()[2].startswith(f"| 1 | {rows[0]['config']} |")

    lines = (out / "runs.jsonl").read_text().splitlines()
    dropped = json.loads(lines[1])["run_id"]
    (out / "runs.jsonl").write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    again = run(None, out=out, resume=True, workers=1, progress=False)
    assert again.ran == 1
    appended = [json.loads(line)["run_id"] for line in (out / "runs.jsonl").read_text().splitlines()]
    assert appended[-1] == dropped and len(appended) == 8
    assert len(json.loads((out / "results.json").read_text())["runs"]) == 8


def test_sweep_through_a_local_ray(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    config = {**TINY, "repeats": 1}
    (tmp_path / "sweep.json").write_text(json.dumps(config))
    assert main([str(tmp_path / "sweep.json"), "--out", str(out), "--workers", "2", "--executor", "ray",
                 "--no-progress"]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert sorted(runs) == ["apop_r0", "base_r0"]
    assert all(r["status"] == "ok" for r in runs.values())
    assert runs["base_r0"]["events"] == 0 and runs["apop_r0"]["events"] == 2


def test_a_task_that_raises_fails_its_run(tmp_path):
    task = {**TINY, **sweep_config.expand(sweep_config.load(TINY))[0], "task": "test_sweep:raising_task",
            "out_dir": str(tmp_path)}
    status, metrics, error = run_guarded(run_one, task)
    assert status == "failed" and metrics is None and "RuntimeError: task exploded" in error


@pytest.mark.parametrize("change, named", [
    ({"strategies": [{"strategy": "Apoptose"}]}, "Apoptose"),
    ({"strategies": [{"strategy": "Apoptosis", "params": {"prune_rat": 0.1}}]}, "prune_rat"),
    ({"strategies": [{"strategy": "Apoptosis", "params": {"prune_rate": 2.0}}]}, "prune_rate"),
    ({"strategies": [{"strategy": "Hybrid", "trigger": {"type": "Plateau", "patients": 2}}]}, "patients"),
    ({"epoch": 3}, "'epoch'"),
    ({"grid": {"growth_rate": [0.1]}}, "grid.growth_rate"),
    ({"task": "mnist"}, "task"),
])
def test_bad_config_exits_2_naming_the_key(tmp_path, capsys, change, named):
    (tmp_path / "sweep.json").write_text(json.dumps({**TINY, **change}))
    assert main([str(tmp_path / "sweep.json"), "--out", str(tmp_path / "o")]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bad_cli_exits_2(tmp_path, capsys):
    assert main(["--resume", str(tmp_path)]) == 2
    assert "config.json is missing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--workers", "two"])
    assert exit_info.value.code == 2
