"""kanfast.evolve: strategies trained with the Trainer (shapes, optimizer, EMA, events), the
triggers against their definitions, bad settings, and state across checkpoint/resume."""

import json
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from kanfast import evolve
from kanfast.models import KANCNN
from kanfast.train import Callback, TrainConfig, Trainer

FIELDS = {"step", "epoch", "time", "strategy", "kind", "layer", "units", "params_before", "params_after", "monitor",
          "metric_before", "metric_after"}


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def data(n=64, shape=(4,)):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 3, (n,), generator=g)


def trainer_for(model, callbacks, x, y, lr=0.05, resume=None, **config):
    settings = dict(epochs=2, batch_size=16, progress=False, ema_decay=0.9, device="cpu", tensorboard=False)
    settings.update(config)
    return Trainer(model, lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9), F.cross_entropy, (x, y),
                   val_data=(x[:32], y[:32]), config=TrainConfig(**settings), callbacks=callbacks, resume=resume)


def count(model):
    return sum(p.numel() for p in model.parameters())


def assert_consistent(trainer):
    listed = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in listed} == {id(p) for p in trainer.model.parameters()}
    assert len(listed) == len(list(trainer.model.parameters()))
    assert all(any(p is q for q in listed) for p in trainer.optimizer.state)
    if trainer.ema is not None:
        ema = {k: v.shape for k, v in trainer.ema.module.state_dict().items()}
        assert ema == {k: v.shape for k, v in trainer.model.state_dict().items()}


def assert_events(events, kind, layers):
    for e in events:
        assert FIELDS <= set(e) and e["kind"] == kind and e["layer"] in layers
    keys = [(e["step"], e["layer"], e["kind"]) for e in events]
    assert len(keys) == len(set(keys))  # each logged once


class Probe(Callback):
    def __init__(self, fn):
        self.fn, self.seen = fn, []

    def on_step_end(self, trainer, step):  # runs after the strategies listed before it
        self.seen.append(self.fn(trainer, step))


def test_apoptosis_mlp_replaces_weakest_units():
    x, y = data()
    model = mlp()
    before = count(model)
    strategy = evolve.Apoptosis(0.25, interval=2, example_inputs=x[:2])
    trainer = trainer_for(model, [strategy], x, y)
    trainer.fit()
    events = trainer.events
    assert strategy.layers == ["0", "2"]  # "4" reaches the output
    assert [e["step"] for e in events] == [2, 2, 4, 4, 6, 6, 8, 8]
    assert_events(events, "apoptosis", {"0", "2"})
    assert all(len(e["units"]) == 2 and e["params_before"] == e["params_after"] == before for e in events)
    assert events[0]["metric_before"] is None and events[-1]["metric_before"] == trainer.history[0]["val_loss"]
    assert events[0]["metric_after"] == trainer.history[0]["val_loss"]
    assert events[-1]["metric_after"] == trainer.history[1]["val_loss"]
    last = events[-1]  # logged after the last optimizer step: outgoing weights and momentum still zero
    assert last["layer"] == "2" and model[4].weight[:, last["units"]].abs().sum() == 0
    assert trainer.optimizer.state[model[4].weight]["momentum_buffer"][:, last["units"]].abs().sum() == 0
    assert_consistent(trainer)


@pytest.mark.parametrize("init", ["net2net", "zeros"])
def test_growth_only_grows_by_what_it_reports(init):
    x, y = data()
    model = mlp()
    start = count(model)
    strategy = evolve.GrowthOnly(0.5, max_width=14, interval=2, init=init, example_inputs=x[:2])
    trainer = trainer_for(model, [strategy], x, y)
    trainer.fit()
    events = trainer.events
    assert_events(events, "grow", {"0", "2"})
    assert [(e["step"], e["width_before"], e["width_after"]) for e in events] == \
        [(2, 8, 12), (2, 8, 12), (4, 12, 14), (4, 12, 14)]
    assert events[0]["units"] == list(range(8, 12))
    for a, b in zip(events, events[1:]):
        assert a["params_after"] == b["params_before"]
    assert events[0]["params_before"] == start and events[-1]["params_after"] == count(model) > start
    assert (model[0].out_features, model[2].in_features, model[2].out_features, model[4].in_features) == (14,) * 4
    assert_consistent(trainer)


def test_hybrid_keeps_width_and_replaces_units():
    x, y = data()
    model = mlp()
    start = count(model)
    strategy = evolve.Hybrid(0.25, interval=4, init="zeros", example_inputs=x[:2], layers=["2"])
    trainer = trainer_for(model, [strategy], x, y)
    trainer.fit()
    events = trainer.events
    assert_events(events, "replace", {"2"})
    assert [e["step"] for e in events] == [4, 8]
    assert all(len(e["units"]) == 2 and e["params_before"] == e["params_after"] == start for e in events)
    assert model[2].out_features == 8 and count(model) == start
    assert model[4].weight[:, -2:].abs().sum() == 0 < model[4].weight[:, :-2].abs().sum()  # newborns silent
    assert_consistent(trainer)


def test_functional_preservation_fades_then_reinits():
    x, y = data()
    model = mlp()
    strategy = evolve.FunctionalPreservation(0.25, interval=3, preservation_steps=4, mutation_strength=0.1,
                                             layers=["2"], example_inputs=x[:2])
    probe = Probe(lambda t, step: (model[2].weight.detach().clone(), model[4].weight.detach().clone()))
    trainer = trainer_for(model, [strategy, probe], x, y, lr=1e-3, epochs=1, batch_size=8, ema_decay=None)
    trainer.fit()
    fade, death = trainer.events
    assert (fade["kind"], fade["step"], death["kind"], death["step"]) == ("fade", 3, "apoptosis", 7)
    assert fade["units"] == death["units"] and len(fade["units"]) == 2
    units = fade["units"]
    norms = [probe.seen[s - 1][1][:, units].norm().item() for s in range(3, 8)]
    for k in range(1, 4):  # 3/4, 2/4, 1/4 of the starting weights (a tiny lr moves them a little)
        assert norms[k] == pytest.approx(norms[0] * (4 - k) / 4, rel=0.05)
    assert norms[4] == 0
    assert not torch.allclose(probe.seen[5][0][units], probe.seen[6][0][units], atol=1e-3)  # reborn
    others = [i for i in range(8) if i not in units]
    assert probe.seen[6][1][:, others].abs().sum() > 0 and not strategy.fading
    assert_consistent(trainer)


def kan_cnn():
    torch.manual_seed(0)
    return KANCNN(1, 3, input_size=(6, 6), channels=(3, 4), grid_size=3, spline_order=2)


@pytest.mark.parametrize("make", [
    lambda x: evolve.Apoptosis(0.4, interval=1, example_inputs=x[:2]),
    lambda x: evolve.GrowthOnly(0.5, max_width=6, interval=1, example_inputs=x[:2]),
    lambda x: evolve.Hybrid(turnover=0.4, interval=1, example_inputs=x[:2]),
    lambda x: evolve.FunctionalPreservation(0.4, interval=1, preservation_steps=1, mutation_strength=0.1,
                                            example_inputs=x[:2]),
], ids=["apoptosis", "growth", "hybrid", "preservation"])
def test_strategies_on_a_kan_cnn_with_batch_norm(make):
    x, y = data(16, (1, 6, 6))
    model = kan_cnn()
    start = count(model)
    strategy = make(x)
    trainer = trainer_for(model, [strategy], x, y, epochs=1, batch_size=8)
    trainer.fit()
    events = trainer.events
    assert strategy.layers == ["features.0", "features.3"]
    assert {e["layer"] for e in events} == {"features.0", "features.3"}
    assert sum(e["params_after"] - e["params_before"] for e in events) == count(model) - start
    bn = model.features[1]
    assert bn.num_features == model.features[0].out_channels == model.features[3].in_channels
    assert bn.num_batches_tracked > 0 and torch.isfinite(bn.running_var).all()
    assert math.isfinite(trainer.history[-1]["val_loss"])
    assert_consistent(trainer)


def test_strategies_share_one_event_log(tmp_path):
    x, y = data()
    model = mlp()
    callbacks = [evolve.GrowthOnly(0.25, max_width=10, interval=4, layers=["0"], example_inputs=x[:2]),
                 evolve.Apoptosis(0.25, interval=4, layers=["2"], example_inputs=x[:2])]
    trainer = trainer_for(model, callbacks, x, y, out_dir=tmp_path)
    trainer.fit()
    assert [(e["step"], e["kind"]) for e in trainer.events] == [(4, "grow"), (4, "apoptosis"), (8, "apoptosis")]
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert lines == trainer.events and all(e["metric_after"] is not None for e in lines)
    assert model[0].out_features == 10
    assert_consistent(trainer)


def test_entropy_saturation_trigger():
    saturating = [2 - math.exp(-t) for t in range(30)]
    trigger = evolve.EntropySaturation(window=5, variance_threshold=1e-3, min_epochs_between=3)
    fired = [e for e, v in enumerate(saturating, 1) if trigger.at_epoch(e, {}, v)]
    assert fired and fired[0] > 5 and all(b - a >= 3 for a, b in zip(fired, fired[1:]))
    early = saturating[fired[0] - 6:fired[0] - 1]  # the window just before the first firing was not flat
    assert torch.tensor(early).var(unbiased=False) >= 1e-3
    g = torch.Generator().manual_seed(0)
    noisy = (torch.rand(30, generator=g) * 2).tolist()
    trigger = evolve.EntropySaturation(window=5, variance_threshold=1e-3)
    assert not any(trigger.at_epoch(e, {}, v) for e, v in enumerate(noisy, 1))
    high = evolve.EntropySaturation(window=5, variance_threshold=1e-3, min_entropy=3.0)
    assert not any(high.at_epoch(e, {}, v) for e, v in enumerate(saturating, 1))


def test_entropy_rising_or_plateaued_while_accuracy_plateaus():
    rising = [0.5 + 0.1 * t for t in range(12)]
    flat_accuracy = [{"val_accuracy": 0.9 + 0.001 * (t % 2)} for t in range(12)]
    improving = [{"val_accuracy": 0.5 + 0.04 * t} for t in range(12)]

    def fired(trigger, entropies, metrics):
        return [e for e, (v, m) in enumerate(zip(entropies, metrics), 1) if trigger.at_epoch(e, m, v)]

    def make(condition):
        return evolve.EntropySaturation(window=4, variance_threshold=1e-3, min_epochs_between=20,
                                        conditions=condition, metric_variance_threshold=1e-4)

    assert fired(make("rising"), rising, flat_accuracy) == [4]  # the first full window
    assert fired(make("rising"), rising, improving) == []  # accuracy still improves
    assert fired(make("saturated"), rising, flat_accuracy) == []  # the entropy is not flat
    flat = [1.0] * 12
    assert fired(make("plateaued"), flat, flat_accuracy) == [4]
    assert fired(make("plateaued"), flat, improving) == []
    assert fired(make("plateaued"), flat, [{} for _ in flat]) == []  # no accuracy to judge
    both = make(("rising", "plateaued"))
    assert fired(both, rising, flat_accuracy) == [4]
    restored = make("rising")
    restored.load_state_dict(both.state_dict())
    assert restored.history == both.history and restored.metric_history == both.metric_history


def test_entropy_saturation_drives_a_strategy():
    x, y = data()
    strategy = evolve.Apoptosis(0.25, trigger=evolve.EntropySaturation(window=2, variance_threshold=100.0,
                                                                                min_epochs_between=1),
                                layers=["2"], example_inputs=x[:2])
    trainer = trainer_for(mlp(), [strategy], x, y, epochs=3)
    trainer.fit()
    assert [e["epoch"] for e in trainer.events] == [2, 3]
    assert len(strategy.trigger.history) == 3 and all(h > 0 for h in strategy.trigger.history)


@pytest.mark.parametrize("mode,threshold_mode,threshold,patience,cooldown", [
    ("min", "rel", 1e-2, 2, 0), ("min", "abs", 0.05, 1, 2), ("max", "rel", 1e-2, 1, 1), ("max", "abs", 0.0, 0, 0)])
def test_plateau_matches_reduce_lr_on_plateau(mode, threshold_mode, threshold, patience, cooldown):
    values = [1.0, 0.9, 0.95, 0.9, 0.899, 0.898, 0.7, 0.7, 0.71, 0.69, 0.69, 0.69, 0.5, 0.6, 0.6, 0.6, 0.6]
    if mode == "max":
        values = [-v for v in values]
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=0.5, patience=patience,
                                                           threshold=threshold, threshold_mode=threshold_mode,
                                                           cooldown=cooldown, eps=0)
    trigger = evolve.Plateau(mode, patience, threshold, threshold_mode, cooldown, monitor="m")
    expected, got = [], []
    for epoch, v in enumerate(values, 1):
        lr = optimizer.param_groups[0]["lr"]
        reference.step(v)
        expected.append(optimizer.param_groups[0]["lr"] < lr)
        got.append(trigger.at_epoch(epoch, {"m": v}))
    assert any(expected) and got == expected


@pytest.mark.parametrize("make,argument", [
    (lambda: evolve.Apoptosis(-0.1), "prune_rate"),
    (lambda: evolve.Apoptosis(1.0), "prune_rate"),
    (lambda: evolve.Hybrid(turnover=1.5), "turnover"),
    (lambda: evolve.FunctionalPreservation(0), "prune_rate"),
    (lambda: evolve.FunctionalPreservation(0.1, preservation_steps=0), "preservation_steps"),
    (lambda: evolve.FunctionalPreservation(0.1, mutation_strength=-1), "mutation_strength"),
    (lambda: evolve.GrowthOnly(-0.5, max_width=10), "growth_rate"),
    (lambda: evolve.GrowthOnly(0.5, max_width=0), "max_width"),
    (lambda: evolve.GrowthOnly(0.5, max_width=10, init="random"), "init"),
    (lambda: evolve.Apoptosis(0.1, criterion="loudness"), "criterion"),
    (lambda: evolve.Apoptosis(0.1, interval=0), "n"),
    (lambda: evolve.Every(2, unit="batch"), "unit"),
    (lambda: evolve.Plateau(mode="lowest"), "mode"),
    (lambda: evolve.Plateau(threshold_mode="pct"), "threshold_mode"),
    (lambda: evolve.EntropySaturation(window=1), "window"),
    (lambda: evolve.EntropySaturation(variance_threshold=0), "variance_threshold"),
    (lambda: evolve.EntropySaturation(conditions=("saturated", "bored")), "conditions"),
    (lambda: evolve.EntropySaturation(metric_variance_threshold=-1), "metric_variance_threshold"),
])
def test_bad_settings_name_the_argument(make, argument):
    with pytest.raises(ValueError, match=rf"\b{argument}\b"):
        make()


@pytest.mark.parametrize("make,argument", [
    (lambda x: evolve.GrowthOnly(0.5, max_width=6, layers=["0"], example_inputs=x), "max_width"),
    (lambda x: evolve.Apoptosis(0.1, layers=["nope"], example_inputs=x), "layers"),
    (lambda x: evolve.Apoptosis(0.1, layers=["4"], example_inputs=x), "layers"),  # reaches the output
    (lambda x: evolve.Apoptosis(0.1, layers=["1"], example_inputs=x), "layers"),  # a ReLU
])
def test_settings_checked_against_the_model(make, argument):
    x, y = data()
    trainer = trainer_for(mlp(), [make(x[:2])], x, y, epochs=1)
    with pytest.raises(ValueError, match=rf"\b{argument}\b"):
        trainer.fit()


class SaveAt(Callback):
    def __init__(self, step, path):
        self.step, self.path = step, path

    def on_step_end(self, trainer, step):
        if step == self.step:
            trainer.save_checkpoint(self.path)


def test_state_survives_checkpoint_and_resume(tmp_path):
    x, y = data()

    def run(resume=None):
        strategy = evolve.FunctionalPreservation(0.25, interval=3, preservation_steps=4, layers=["2"],
                                                 example_inputs=x[:2])
        trainer = Trainer(mlp(), lambda p: torch.optim.Adam(p, lr=1e-2), F.cross_entropy, (x, y), val_data=(x, y),
                          config=TrainConfig(epochs=2, batch_size=16, progress=False, ema_decay=0.9, device="cpu",
                                             tensorboard=False), callbacks=[strategy, SaveAt(5, tmp_path / "mid.pt")],
                          resume=resume)
        return trainer, strategy

    full, full_strategy = run()
    full.fit()
    resumed, strategy = run(tmp_path / "mid.pt")
    assert strategy.fading == {"2": {"units": full.events[0]["units"], "done": 2}}
    resumed.fit()
    assert [(e["step"], e["kind"], e["units"]) for e in resumed.events] == \
        [(e["step"], e["kind"], e["units"]) for e in full.events]
    assert [e["metric_after"] for e in resumed.events] == [e["metric_after"] for e in full.events]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert strategy.state_dict() == full_strategy.state_dict()


def test_a_grown_model_resumes_into_a_freshly_built_one(tmp_path):
    x, y = data()

    def run(resume=None):
        strategy = evolve.GrowthOnly(0.5, max_width=14, interval=2, layers=["0"], example_inputs=x[:2])
        trainer = trainer_for(mlp(), [strategy, SaveAt(5, tmp_path / "mid.pt")], x, y, resume=resume)
        return trainer

    full = run()
    full.fit()
    resumed = run(tmp_path / "mid.pt")  # built at width 8; the checkpoint holds width 14
    assert resumed.model[0].out_features == resumed.model[2].in_features == 14
    assert_consistent(resumed)
    resumed.fit()
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_the_ema_copy_does_not_run_the_model_hooks():
    x, y = data()
    model = mlp()
    calls = []
    model[0].register_forward_hook(lambda *args: calls.append(1))
    trainer = trainer_for(model, [], x, y, epochs=1)
    assert trainer.ema.module[0]._forward_hooks == {}
    trainer.ema.module(x[:2])
    assert calls == []
