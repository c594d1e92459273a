"""Checkpoints of kanfast.train.Trainer: weights_only loading and exact resumption."""

import json
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kanfast.train import Callback, EarlyStopping, TrainConfig, Trainer


class Counter(Callback):
    """Stateful callback: counts steps; optionally crashes the run at a given step."""

    def __init__(self, crash_at=None):
        self.steps, self.crash_at = 0, crash_at

    def on_step_end(self, trainer, step):
        self.steps += 1
        if step == self.crash_at:
            raise KeyboardInterrupt

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def data(kind):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g)
    y = (x[:, 0] > 0).long()
    if kind == "tensors":
        return (x, y)
    if kind == "dataset":
        return TensorDataset(x, y)
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)  # draws from torch's global RNG


def make_trainer(kind, out_dir, epochs, *, seed=0, callback=None, resume=None, checkpoint_every=None,
                 precision="32", loss_scale=1.0):
    torch.manual_seed(seed)  # a resumed run starts from other weights: the checkpoint must replace them
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    config = TrainConfig(epochs=epochs, batch_size=8, progress=False, log_every=1, out_dir=out_dir, seed=3,
                         ema_decay=0.9, clip_grad_norm=1.0, checkpoint_every=checkpoint_every,
                         early_stopping=EarlyStopping(patience=5), precision=precision)
    loss_fn = (lambda out, t: loss_scale * F.cross_entropy(out, t)) if loss_scale != 1 else F.cross_entropy
    return Trainer(model, lambda p: torch.optim.AdamW(p, lr=1e-2), loss_fn, data(kind), data("tensors"),
                   config, scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7),
                   callbacks=[callback or Counter()], resume=resume)


def step_rows(out_dir):
    return [r for r in map(json.loads, (out_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "step"]


@pytest.mark.parametrize("kind", ["tensors", "dataset", "loader"])
@pytest.mark.parametrize("interruption", ["epoch_end", "mid_epoch"])
def test_resumed_run_reproduces_the_uninterrupted_one(tmp_path, kind, interruption):
    full = make_trainer(kind, tmp_path / "full", epochs=2)
    full.fit()
    expected = [r["loss"] for r in step_rows(tmp_path / "full")]
    assert len(expected) == 10

    if interruption == "epoch_end":
        make_trainer(kind, tmp_path / "cut", epochs=1).fit()
        resume_step = 5
    else:  # checkpoints every 3 steps; the run dies at step 8, in the second epoch
        with pytest.raises(KeyboardInterrupt):
            make_trainer(kind, tmp_path / "cut", epochs=2, checkpoint_every=3, callback=Counter(crash_at=8)).fit()
        resume_step = 6
    resumed = make_trainer(kind, tmp_path / "cut", epochs=2, seed=1, resume=tmp_path / "cut",
                           checkpoint_every=3 if interruption == "mid_epoch" else None)
    assert resumed.step == resume_step and resumed.callbacks[0].steps == resume_step
    resumed.fit()

    rows = step_rows(tmp_path / "cut")
    assert [r["step"] for r in rows] == list(range(1, 11))  # rows after the checkpoint were replaced
    assert [r["loss"] for r in rows] == expected
    assert resumed.history[-1]["val_loss"] == full.history[-1]["val_loss"]
    assert resumed.history[-1]["train_loss"] == full.history[-1]["train_loss"]
    for got, want in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        assert torch.equal(got, want)
    for got, want in zip(resumed.ema.module.parameters(), full.ema.module.parameters()):
        assert torch.equal(got, want)
    assert resumed.scheduler.state_dict() == full.scheduler.state_dict()
    assert resumed.callbacks[0].steps == 10


def test_fp16_resume_restores_the_grad_scaler(tmp_path):
    """16-mixed on CPU: the scaler's state (backed off by overflowing steps) is checkpointed and
    restored, and the resumed run reproduces the uninterrupted one's losses."""
    run = dict(precision="16-mixed", loss_scale=3000.0)  # large enough that early steps overflow
    full = make_trainer("tensors", tmp_path / "full", epochs=2, **run)
    full.fit()
    assert full.scaler.get_scale() < 65536.0
    with pytest.raises(KeyboardInterrupt):
        make_trainer("tensors", tmp_path / "cut", epochs=2, checkpoint_every=3, callback=Counter(crash_at=8),
                     **run).fit()
    saved = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 6 and saved["scaler"]["scale"] < 65536.0
    resumed = make_trainer("tensors", tmp_path / "cut", epochs=2, seed=1, resume=tmp_path / "cut",
                           checkpoint_every=3, **run)
    assert resumed.scaler.state_dict() == saved["scaler"]
    resumed.fit()
    assert [r["loss"] for r in step_rows(tmp_path / "cut")] == [r["loss"] for r in step_rows(tmp_path / "full")]
    assert resumed.scaler.state_dict() == full.scaler.state_dict()
    for got, want in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        assert torch.equal(got, want)


def test_checkpoint_loads_with_weights_only(tmp_path):
    trainer = make_trainer("tensors", tmp_path, epochs=1)
    trainer.fit()
    trainer.log_event({"type": "prune", "units": [1, 2]})
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "ema", "rng", "step", "epoch", "callbacks",
            "early_stopping", "events", "history"} <= set(state)
    assert state["step"] == 5 and state["epoch"] == 1 and state["callbacks"] == [{"steps": 5}]
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert state["early_stopping"]["best_epoch"] == 1
    # events logged after the last checkpoint are in the next one
    assert json.loads(torch.load(trainer.save_checkpoint(), weights_only=True)["events"])[0]["units"] == [1, 2]


def test_resume_refuses_a_mismatched_trainer(tmp_path):
    make_trainer("tensors", tmp_path, epochs=1).fit()
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    with pytest.raises(ValueError, match="scheduler"):
        Trainer(model, lambda p: torch.optim.AdamW(p, lr=1e-2), F.cross_entropy, data("tensors"), None,
                TrainConfig(progress=False), resume=tmp_path)


def test_background_checkpoint_is_a_snapshot_and_failures_surface(tmp_path, monkeypatch):
    from kanfast.train import checkpoint

    release, written = threading.Event(), []
    real_save = checkpoint.save

    def slow_save(path, payload):  # the write lags while training goes on changing the weights
        release.wait(timeout=30)
        real_save(path, payload)
        written.append(payload["step"])

    monkeypatch.setattr(checkpoint, "save", slow_save)
    trainer = make_trainer("tensors", tmp_path, epochs=1)
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer._submit_checkpoint()
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)
    release.set()
    trainer._checkpoints.wait()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert written == [0] and all(torch.equal(saved["model"][k], v) for k, v in weights.items())

    def failing_save(path, payload):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save", failing_save)
    with pytest.raises(RuntimeError, match="checkpoint.*disk full"):
        make_trainer("tensors", tmp_path / "failing", epochs=1).fit()
    with pytest.raises(KeyboardInterrupt):  # a training error is not hidden by a failed write
        make_trainer("tensors", tmp_path / "both", epochs=2, callback=Counter(crash_at=7)).fit()


def test_metric_rows_are_buffered_but_on_disk_at_each_checkpoint(tmp_path):
    rows_at_checkpoint = []

    class Watch(Counter):
        def on_epoch_end(self, trainer, epoch, metrics):
            rows_at_checkpoint.append(len(step_rows(tmp_path)))

    trainer = make_trainer("tensors", tmp_path, epochs=2, callback=Watch())
    trainer._log.flush_seconds = float("inf")  # flushes only where the trainer asks for one
    trainer.fit()
    assert rows_at_checkpoint == [0, 5]  # during epoch 2's end its rows are still buffered
    assert len(step_rows(tmp_path)) == 10  # ... and written before its checkpoint / fit's return
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert [r["step"] for r in step_rows(tmp_path)][-1] == saved["step"]


def test_metric_rows_are_flushed_once_flush_seconds_passed(tmp_path):
    from kanfast.train.metrics_log import MetricsLog

    log = MetricsLog(tmp_path, tensorboard=False, resume_step=None, flush_seconds=3600.0)
    log.write({"kind": "step", "step": 1, "loss": 1.0})
    assert step_rows(tmp_path) == []
    log.flush_seconds = 0.0
    log.write({"kind": "step", "step": 2, "loss": 0.5})
    assert [r["step"] for r in step_rows(tmp_path)] == [1, 2]
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["kind,step,loss", "step,1,1.0", "step,2,0.5"]


def test_the_epoch_end_step_is_checkpointed_once(tmp_path, monkeypatch):
    # 40 samples, batch 8: 5 steps per epoch; checkpoint_every=5 falls on each epoch's last step
    from kanfast.train import checkpoint

    written, real_save = [], checkpoint.save

    def recording_save(path, payload):
        written.append(payload["step"])
        real_save(path, payload)

    monkeypatch.setattr(checkpoint, "save", recording_save)
    make_trainer("tensors", tmp_path, epochs=2, checkpoint_every=5).fit()
    assert written == [5, 10]
    make_trainer("tensors", tmp_path / "every2", epochs=2, checkpoint_every=2).fit()
    assert written[2:] == [2, 4, 5, 6, 8, 10]


def test_bn_recalibration_mid_epoch_leaves_the_epoch_order_alone(tmp_path):
    # structure_changed() recalibrates BatchNorm on the training data while the epoch is still
    # iterating its loader: with persistent workers a second iter() of that loader would restart it
    class ChangeAt(Callback):
        def on_step_end(self, trainer, step):
            if step == 2:
                trainer.structure_changed()

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g)
    loader = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8, num_workers=1,
                        persistent_workers=True)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    config = TrainConfig(epochs=2, batch_size=8, progress=False, out_dir=tmp_path)
    trainer = Trainer(model, lambda p: torch.optim.SGD(p, lr=0.1), F.cross_entropy, loader, None, config,
                      callbacks=[ChangeAt()])
    trainer.fit()
    assert trainer.step == 10 and [row["epoch"] for row in trainer.history] == [1, 2]
