"""kanfast.resize with an optimizer: parameters swapped, per-element state gathered for kept
units and zero for new ones, training continuing; and a property test over random MLPs."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_resize import RTOL, build, relative_change, units
from torch import nn

from kanfast import resize

OPTIMIZERS = {
    "sgd_momentum": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
    "adam": lambda params: torch.optim.Adam(params, lr=1e-2),
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1),
    "rmsprop": lambda params: torch.optim.RMSprop(params, lr=1e-2, momentum=0.5, centered=True),
}


def train_step(model, optimizer, x):
    model.train()
    optimizer.zero_grad()
    loss = model(x).square().mean()
    loss.backward()
    optimizer.step()
    model.eval()
    return loss.item()


def assert_in_sync(model, optimizer):
    """Every optimizer parameter is a current model parameter and vice versa; no stale state."""
    listed = [p for group in optimizer.param_groups for p in group["params"]]
    current = {id(p) for p in model.parameters()}
    assert len(listed) == len(current) and {id(p) for p in listed} == current
    assert all(id(p) in current for p in optimizer.state)


def snapshot(model, optimizer):
    return {name: {k: v.clone() if torch.is_tensor(v) else v for k, v in optimizer.state[p].items()}
            for name, p in model.named_parameters() if p in optimizer.state}


def expected_state(old, dim, src, new):
    """old state gathered along dim by src, zero for the new units."""
    shape = [1] * old.dim()
    shape[dim] = -1
    return old.index_select(dim, src).masked_fill(new.reshape(shape), 0)


OPS = {  # name -> (call, src of each new unit, which units are new) given the current width n
    "widen_net2net": (lambda m, layer, n, x, opt: resize.widen(m, layer, n + 2, example_inputs=x, optimizer=opt),
                      lambda n: torch.cat([torch.arange(n), torch.zeros(2, dtype=torch.long)]),
                      lambda n: torch.arange(n + 2) >= n),
    "widen_zeros": (lambda m, layer, n, x, opt: resize.widen(m, layer, n + 1, init="zeros", example_inputs=x,
                                                             optimizer=opt),
                    lambda n: torch.cat([torch.arange(n), torch.zeros(1, dtype=torch.long)]),
                    lambda n: torch.arange(n + 1) >= n),
    "prune": (lambda m, layer, n, x, opt: resize.prune(m, layer, torch.arange(1, n), example_inputs=x, optimizer=opt),
              lambda n: torch.arange(1, n), lambda n: torch.zeros(n - 1, dtype=torch.bool)),
    "reinit": (lambda m, layer, n, x, opt: resize.reinit(m, layer, [1], example_inputs=x, optimizer=opt),
               lambda n: torch.arange(n), lambda n: torch.arange(n) == 1),
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("optimizer_name", OPTIMIZERS)
@pytest.mark.parametrize("model_name,layer", [("mlp", "0"), ("residual", "fc_in"), ("kan_mlp", "0")])
def test_optimizer_state_follows_the_units(model_name, layer, optimizer_name, op):
    model, x = build(model_name)
    optimizer = OPTIMIZERS[optimizer_name](model.parameters())
    train_step(model, optimizer, x)
    n = units(model, layer)
    group = resize.dependencies(model, x).group_of(layer)
    old = snapshot(model, optimizer)
    call, src_of, new_of = OPS[op]
    call(model, layer, n, x, optimizer)
    assert_in_sync(model, optimizer)
    now = snapshot(model, optimizer)
    assert now.keys() == old.keys()
    dims = {}  # parameter name -> the dim holding the group's units
    for member in group.members:
        for name, p in dict(model.named_modules())[member.module].named_parameters(prefix=member.module):
            if member.role != "in" or p.dim() > 1:  # a consumer's bias does not read the units
                dims[name] = 0 if member.role in ("out", "channel") else 1
    for name, state in old.items():
        for key, value in state.items():
            if not torch.is_tensor(value) or value.dim() == 0 or name not in dims:
                assert torch.equal(torch.as_tensor(now[name][key]), torch.as_tensor(value)), (name, key)
            else:
                assert torch.equal(now[name][key], expected_state(value, dims[name], src_of(n), new_of(n))), (name, key)
    assert all(len(s) for s in now.values()) and any(name in dims for name in now)
    loss = train_step(model, optimizer, x)
    assert torch.isfinite(torch.tensor(loss)) and len(optimizer.state) == len(list(model.parameters()))


def test_lr_scheduler_keeps_working_after_a_resize():
    model, x = build("cnn")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    train_step(model, optimizer, x)
    scheduler.step()
    resize.widen(model, "4", 7, example_inputs=x, optimizer=optimizer)
    weight = model[4].weight.detach().clone()
    train_step(model, optimizer, x)
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.025)
    assert not torch.equal(model[4].weight, weight)  # the new parameter object is the one being trained
    assert scheduler.optimizer is optimizer and scheduler.get_last_lr() == [pytest.approx(0.025)]


def mlp_of(widths):
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(a, b), nn.Tanh() if i % 2 else nn.ReLU()]
    return nn.Sequential(*layers[:-1])


@settings(max_examples=15, deadline=None)
@given(hidden=st.lists(st.integers(1, 5), min_size=1, max_size=3), data=st.data())
def test_random_resize_sequences_keep_function_and_shapes(hidden, data):
    torch.manual_seed(0)
    widths = [3, *hidden, 2]
    model = mlp_of(widths).eval()
    x = torch.randn(4, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_step(model, optimizer, x)
    before = model(x)
    for _ in range(data.draw(st.integers(1, 4), label="steps")):
        i = data.draw(st.integers(0, len(hidden) - 1), label="hidden layer")
        layer, n = str(2 * i), widths[i + 1]
        op = data.draw(st.sampled_from(["net2net", "zeros", "drop"] if n > 1 else ["net2net", "zeros"]), label="op")
        if op == "drop":  # remove a unit after silencing it: the function stays
            unit = data.draw(st.integers(0, n - 1), label="unit")
            resize.reinit(model, layer, [unit], optimizer=optimizer)
            before = model(x)
            resize.prune(model, layer, [u for u in range(n) if u != unit], optimizer=optimizer)
            widths[i + 1] = n - 1
        else:
            widths[i + 1] = n + data.draw(st.integers(1, 3), label="added")
            resize.widen(model, layer, widths[i + 1], init=op, optimizer=optimizer)
        assert relative_change(before, model(x)) <= RTOL
        linears = [m for m in model if isinstance(m, nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linears] == list(zip(widths[:-1], widths[1:]))
        assert all(m.weight.shape == (m.out_features, m.in_features) for m in linears)
        assert_in_sync(model, optimizer)
    train_step(model, optimizer, x)
