"""kanfast.evolve.Expand: depth really added (parameters, optimizer, events), training goes on,
bad settings, and a deepened run resumed into a freshly built model."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from kanfast import evolve
from kanfast.train import TrainConfig, Trainer
from test_evolve import SaveAt, count, data, mlp  # the models and helpers of the strategy tests


def trainer_for(model, callbacks, resume=None, epochs=2):
    x, y = data()
    config = TrainConfig(epochs=epochs, batch_size=16, progress=False, device="cpu", tensorboard=False, ema_decay=0.9)
    return Trainer(model, lambda p: torch.optim.Adam(p, lr=1e-2), F.cross_entropy, (x, y), val_data=(x, y),
                   config=config, callbacks=callbacks, resume=resume)


def test_expand_adds_a_trained_layer_after_the_last_hidden_layer():
    x, _ = data()
    strategy = evolve.Expand(interval=3, max_depth_added=1, example_inputs=x[:2])
    trainer = trainer_for(mlp(), [strategy])
    before = count(trainer.model)
    trainer.fit()
    (event,) = trainer.events  # fires at step 3 only: max_depth_added=1
    assert event["kind"] == "deepen" and event["strategy"] == "Expand" and event["step"] == 3
    assert event["layer"] == "2" and event["inserted"] == ["3"] and event["renamed"] == {"3": "4", "4": "5"}
    assert event["params_before"] == before and event["params_after"] == before + 8 * 8 + 8 == count(trainer.model)
    assert event["metric_after"] is not None
    assert isinstance(trainer.model[3], nn.Linear) and trainer.model[3].in_features == 8
    assert strategy.layers == ["0", "2"] and strategy.after == "2"
    listed = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert [id(p) for p in listed] == [id(p) for p in trainer.model.parameters()]
    assert all(p in trainer.optimizer.state for p in trainer.model[3].parameters())  # it trained after insertion
    assert not torch.equal(trainer.model[3].weight, torch.eye(8))
    assert trainer.step == 8 and len(trainer.history) == 2


def test_expand_on_a_plateau_repeats_up_to_max_depth_added():
    x, _ = data()
    strategy = evolve.Expand(after="0", max_depth_added=2, example_inputs=x[:2],
                             trigger=evolve.Every(1, unit="epoch"))
    trainer = trainer_for(mlp(), [strategy], epochs=3)
    trainer.fit()
    assert [e["layer"] for e in trainer.events] == ["0", "0"] and [e["epoch"] for e in trainer.events] == [1, 2]
    assert len(trainer.model) == 7 and strategy.added == 2
    assert strategy.layers == ["0", "4"]  # "2" moved twice


@pytest.mark.parametrize("settings, argument", [
    (dict(max_depth_added=0), "max_depth_added"), (dict(max_depth_added=True), "max_depth_added"),
    (dict(kind="dense"), "kind"), (dict(after=""), "after"), (dict(kan_options=3), "kan_options"),
    (dict(interval=2, trigger=evolve.Every(2)), "trigger"),
])
def test_bad_settings_name_the_argument(settings, argument):
    with pytest.raises(ValueError, match=argument):
        evolve.Expand(**settings)


def test_after_is_checked_against_the_model():
    x, _ = data()
    trainer = trainer_for(mlp(), [evolve.Expand(after="head", interval=1, example_inputs=x[:2])])
    with pytest.raises(ValueError, match="after: 'head'"):
        trainer.fit()


def test_a_deepened_run_resumes_into_a_model_deepened_the_same_way(tmp_path):
    x, _ = data()

    def run(model, resume=None):
        strategy = evolve.Expand(interval=3, example_inputs=x[:2])
        return trainer_for(model, [strategy, SaveAt(5, tmp_path / "mid.pt")], resume=resume), strategy

    full, full_strategy = run(mlp())
    full.fit()
    events = torch.load(tmp_path / "mid.pt", weights_only=True)["events"]
    resumed, strategy = run(evolve.replay_deepen(mlp(), events), resume=tmp_path / "mid.pt")
    assert strategy.added == 1
    resumed.fit()
    assert len(resumed.events) == 1 and resumed.events[0]["metric_after"] == full.events[0]["metric_after"]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert strategy.state_dict() == full_strategy.state_dict()


def test_expand_on_a_kan_cnn_inserts_a_conv_identity():
    from test_evolve import kan_cnn

    x, y = data(16, (1, 6, 6))
    model = kan_cnn()
    start = count(model)
    strategy = evolve.Expand(interval=1, max_depth_added=1, example_inputs=x[:2])
    trainer = Trainer(model, lambda p: torch.optim.Adam(p, lr=1e-2), F.cross_entropy, (x, y), val_data=(x, y),
                      config=TrainConfig(epochs=1, batch_size=8, progress=False, device="cpu", tensorboard=False),
                      callbacks=[strategy])
    trainer.fit()
    (event,) = trainer.events
    assert event["kind"] == "deepen" and event["params_after"] - event["params_before"] == count(model) - start > 0
    assert model(x[:2]).shape == (2, 3)
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}
