"""kanfast.train.Trainer: learning, precision, accumulation, clipping, EMA, logging, stopping."""

import csv
import io
import json
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import kanfast
from kanfast.train import Callback, EarlyStopping, TrainConfig, Trainer


def blobs(n=128, seed=0):
    """Three classes decided by the signs of the first two of 8 features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def config(**kwargs):
    return TrainConfig(**{"progress": False, "log_every": 1, "batch_size": 32, **kwargs})


def step_losses(trainer_or_dir):
    path = trainer_or_dir / "metrics.jsonl"
    return [row["loss"] for row in map(json.loads, path.read_text().splitlines()) if row["kind"] == "step"]


class Recorder(Callback):
    """Snapshots the parameters after every optimizer step."""

    def __init__(self):
        self.params = []

    def on_step_end(self, trainer, step):
        self.params.append([p.detach().clone() for p in trainer.model.parameters()])


def kan_classifier(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(kanfast.KANLinear(8, 16), kanfast.KANLinear(16, 3))


def test_classification_learns(tmp_path):
    x, y = blobs(512)
    trainer = Trainer(kan_classifier(), lambda p: torch.optim.Adam(p, lr=1e-2), F.cross_entropy, (x, y),
                      blobs(256, seed=1), config(epochs=5, out_dir=tmp_path))
    history = trainer.fit()
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 5
    assert history[-1]["val_accuracy"] >= 0.9
    assert trainer.step == 5 * 16 and trainer.epoch == 5


def test_regression_learns():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.01 * torch.randn(128, 1, generator=g)
    torch.manual_seed(0)
    trainer = Trainer(nn.Linear(4, 1), lambda p: torch.optim.Adam(p, lr=0.1), F.mse_loss, (x, y), (x, y),
                      config(epochs=15))
    history = trainer.fit()
    assert history[-1]["val_loss"] < history[0]["val_loss"] / 100
    assert "val_accuracy" not in history[-1]  # float targets: regression


LOW_PRECISION = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def test_mixed_precision_on_cpu_close_to_fp32():
    x, y = blobs()
    runs = {}
    for precision in ("32", "bf16-mixed", "16-mixed"):
        model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
        torch.manual_seed(0)
        model.apply(lambda m: m.reset_parameters() if isinstance(m, nn.Linear) else None)
        dtypes = []
        model[0].register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
        trainer = Trainer(model, lambda p: torch.optim.SGD(p, lr=0.1), F.cross_entropy, (x, y), (x, y),
                          config(epochs=5, precision=precision))
        runs[precision] = [h["val_loss"] for h in trainer.fit()]
        assert set(dtypes) == {LOW_PRECISION.get(precision, torch.float32)}
        assert (trainer.scaler is not None) == (precision == "16-mixed")  # bfloat16 needs no loss scaling
    for precision in LOW_PRECISION:
        for fp32, low in zip(runs["32"], runs[precision]):
            assert abs(low - fp32) <= 0.02 * fp32
        assert runs[precision][-1] < runs[precision][0]


class ScaleRecorder(Callback):
    def __init__(self):
        self.scales = []

    def on_step_end(self, trainer, step):
        self.scales.append(trainer.scaler.get_scale())


def test_fp16_grad_scaler_on_cpu_skips_overflow_and_clips_unscaled(tmp_path):
    x, y = blobs()
    model = nn.Linear(8, 3)
    optimizer = NormRecordingSGD(model.parameters(), lr=0.01)
    recorder = ScaleRecorder()
    # a loss of ~100 scaled by 65536 overflows the float16 output gradients: the scaler must back off
    trainer = Trainer(model, optimizer, lambda out, t: 100 * F.cross_entropy(out, t), (x, y), None,
                      config(epochs=2, precision="16-mixed", clip_grad_norm=0.5, out_dir=tmp_path),
                      callbacks=[recorder])
    assert trainer.scaler.get_scale() == 65536.0
    trainer.fit()
    assert recorder.scales[0] < 65536.0 and recorder.scales == sorted(recorder.scales, reverse=True)
    assert len(optimizer.norms) < trainer.step == 8  # overflowing steps skipped the optimizer
    assert optimizer.norms and max(optimizer.norms) <= 0.5 * (1 + 1e-3)  # clipped after unscaling
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["scaler"] == trainer.scaler.state_dict()


def test_grad_accumulation_equals_full_batch():
    """12 samples in batches of 4, 2 per step: one step on samples 0-7, then one on 8-11 alone."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 5, generator=g, dtype=torch.float64), torch.randn(12, 2, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = nn.Linear(5, 2).double()
    expected = nn.Linear(5, 2).double()
    expected.load_state_dict(model.state_dict())
    sgd = torch.optim.SGD(expected.parameters(), lr=0.1)
    for part in (slice(0, 8), slice(8, 12)):
        sgd.zero_grad()
        F.mse_loss(expected(x[part]), y[part]).backward()
        sgd.step()
    trainer = Trainer(model, lambda p: torch.optim.SGD(p, lr=0.1), F.mse_loss, (x, y), None,
                      config(epochs=1, batch_size=4, shuffle=False, grad_accumulation=2))
    trainer.fit()
    assert trainer.step == 2
    for got, want in zip(model.parameters(), expected.parameters()):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-14)


class NormRecordingSGD(torch.optim.SGD):
    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.norms = []

    def step(self, closure=None):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        return super().step(closure)


def test_clip_grad_norm_bounds_the_norm(tmp_path):
    x, y = blobs()
    model = nn.Linear(8, 3)
    optimizer = NormRecordingSGD(model.parameters(), lr=0.01)
    trainer = Trainer(model, optimizer, lambda out, t: 100 * F.cross_entropy(out, t), (x, y), None,
                      config(epochs=1, clip_grad_norm=0.5, out_dir=tmp_path))
    trainer.fit()
    unclipped = [row["grad_norm"] for row in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
                 if row["kind"] == "step"]
    assert len(optimizer.norms) == len(unclipped) == 4
    assert min(unclipped) > 0.5  # clipping had work to do in every step
    assert max(optimizer.norms) <= 0.5 * (1 + 1e-5)


def test_ema_matches_hand_computed_average():
    x, y = blobs(96)
    torch.manual_seed(0)
    model = nn.Linear(8, 3).double()
    start = [p.detach().clone() for p in model.parameters()]
    recorder = Recorder()
    trainer = Trainer(model, lambda p: torch.optim.SGD(p, lr=0.5), F.cross_entropy, (x.double(), y), None,
                      config(epochs=1, ema_decay=0.75), callbacks=[recorder])
    trainer.fit()
    assert len(recorder.params) == 3
    average = start
    for params in recorder.params:
        average = [0.75 * a + 0.25 * p for a, p in zip(average, params)]
    for got, want in zip(trainer.ema.module.parameters(), average):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-14)
    assert not torch.equal(average[0], recorder.params[-1][0])  # the average is not just the last weights


def test_metric_and_event_files(tmp_path):
    x, y = blobs()
    trainer = Trainer(nn.Linear(8, 3), lambda p: torch.optim.SGD(p, lr=0.1), F.cross_entropy, (x, y), (x, y),
                      config(epochs=2, log_every=2, out_dir=tmp_path))
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in rows] == [("step", 2), ("step", 4), ("epoch", 4),
                                                      ("step", 6), ("step", 8), ("epoch", 8)]
    with open(tmp_path / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert {"kind", "epoch", "step", "loss", "lr", "train_loss", "val_loss", "val_accuracy", "seconds"} \
        <= set(table[0])
    assert len(table) == len(rows)
    assert [float(r["loss"]) for r in table if r["kind"] == "step"] == [r["loss"] for r in rows if r["kind"] == "step"]
    assert float(table[-1]["val_accuracy"]) == rows[-1]["val_accuracy"]
    # an epoch's train_loss is the mean of its steps' losses; each step row averages its 2 steps
    assert rows[2]["train_loss"] == pytest.approx((rows[0]["loss"] + rows[1]["loss"]) / 2, rel=1e-12)

    record = trainer.log_event({"type": "widen", "layer": "fc", "units": 4})
    assert trainer.events == [record] and record["step"] == 8 and record["epoch"] == 2
    assert json.loads((tmp_path / "events.jsonl").read_text()) == record
    with pytest.raises(TypeError, match="event"):
        trainer.log_event({"tensor": torch.zeros(1)})


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_bars_only_on_a_terminal(monkeypatch, terminal):
    stream = FakeTerminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    x, y = blobs(64)
    trainer = Trainer(nn.Linear(8, 3), lambda p: torch.optim.SGD(p, lr=0.1), F.cross_entropy, (x, y), None,
                      TrainConfig(epochs=1, batch_size=32))
    trainer.fit()
    assert trainer.progress is terminal
    assert ("epoch 1/1" in stream.getvalue()) is terminal


class Scripted(Callback):
    """Puts a given sequence of values into the epoch metrics as "score"."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, trainer, epoch, metrics):
        metrics["score"] = self.values[epoch - 1]


def test_early_stopping_stops_at_the_expected_epoch(tmp_path):
    # best 5, best 4, +0.03 (< min_delta: bad), best 3.5, bad, bad -> stop after epoch 6
    values = [5.0, 4.0, 3.97, 3.5, 3.49, 3.48, 1.0, 1.0, 1.0, 1.0]
    x, y = blobs(32)
    trainer = Trainer(nn.Linear(8, 3), lambda p: torch.optim.SGD(p, lr=0.1), F.cross_entropy, (x, y), None,
                      config(epochs=10, out_dir=tmp_path,
                             early_stopping=EarlyStopping(patience=2, min_delta=0.05, monitor="score")),
                      callbacks=[Scripted(values)])
    history = trainer.fit()
    assert trainer.epoch == 6 and len(history) == 6 and trainer.should_stop
    assert trainer.early_stopper.best == 3.5 and trainer.early_stopper.best_epoch == 4
    assert [r["score"] for r in history] == values[:6]


def test_early_stopping_names_a_missing_metric():
    x, y = blobs(32)
    trainer = Trainer(nn.Linear(8, 3), lambda p: torch.optim.SGD(p, lr=0.1), F.cross_entropy, (x, y), None,
                      config(epochs=2, early_stopping=EarlyStopping(monitor="val_loss")))
    with pytest.raises(KeyError, match="val_loss"):
        trainer.fit()


def test_compiled_model_gives_the_same_losses(tmp_path):
    x, y = blobs(64)
    losses = []
    for compile_with, out in ((False, tmp_path / "eager"), ("eager", tmp_path / "compiled")):
        torch.manual_seed(0)
        trainer = Trainer(nn.Linear(8, 3), lambda p: torch.optim.SGD(p, lr=0.1), F.cross_entropy, (x, y), None,
                          config(epochs=1, compile=compile_with, out_dir=out))
        trainer.fit()
        losses.append(step_losses(out))
    assert losses[0] == losses[1]
    before = trainer._forward
    trainer.recompile()
    assert trainer._forward is not before and trainer._forward(x).shape == (64, 3)


def test_rebuild_ema_after_a_structural_change():
    x, y = blobs(32)
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))
    trainer = Trainer(model, lambda p: torch.optim.SGD(p, lr=0.1), F.cross_entropy, (x, y), None,
                      config(epochs=1, ema_decay=0.9))
    model[0], model[2] = nn.Linear(8, 6), nn.Linear(6, 3)  # a widened hidden layer
    with pytest.raises(RuntimeError):
        trainer.ema.update(model)
    trainer.rebuild_ema()
    for got, want in zip(trainer.ema.module.parameters(), model.parameters()):
        assert torch.equal(got, want)


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("batch_size", -1), ("precision", "fp16"), ("grad_accumulation", 0), ("clip_grad_norm", 0.0),
    ("ema_decay", 1.0), ("log_every", 0), ("checkpoint_every", 0), ("scheduler_interval", "batch"),
    ("num_workers", -1), ("compile", 3), ("early_stopping", 5),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("kwargs, field", [({"patience": 0}, "patience"), ({"mode": "up"}, "mode"),
                                           ({"min_delta": -1.0}, "min_delta")])
def test_bad_early_stopping_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        EarlyStopping(**kwargs)


def test_bad_trainer_arguments():
    x, y = blobs(32)
    sgd = lambda p: torch.optim.SGD(p, lr=0.1)  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:  # a device without autocast
        patch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
        with pytest.raises(ValueError, match="precision='16-mixed'"):
            Trainer(nn.Linear(8, 3), sgd, F.cross_entropy, (x, y), None, config(precision="16-mixed"))
    with pytest.raises(TypeError, match="train_data"):
        Trainer(nn.Linear(8, 3), sgd, F.cross_entropy, [1, 2, 3], None, config())
    with pytest.raises(TypeError, match="optimizer"):
        Trainer(nn.Linear(8, 3), "sgd", F.cross_entropy, (x, y), None, config())
    with pytest.raises(ValueError, match="same length"):
        Trainer(nn.Linear(8, 3), sgd, F.cross_entropy, (x, y[:5]), None, config())
    with pytest.raises(FileNotFoundError, match="resume"):
        Trainer(nn.Linear(8, 3), sgd, F.cross_entropy, (x, y), None, config(), resume="/nonexistent/run")
