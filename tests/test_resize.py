"""kanfast.resize: coupling groups, function-preserving widen / prune / reinit, reports,
errors and checkpoints, on small models of every supported wiring."""

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kanfast import KANConv2d, KANLinear, resize

# widen / prune / reinit keep the function up to float32 rounding of the net2net split (w/k).
RTOL = 1e-5


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc_in, self.fc1, self.fc2, self.head = nn.Linear(4, 6), nn.Linear(6, 8), nn.Linear(8, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.fc_in(x)
        return self.head(h + self.fc2(F.relu(self.fc1(h))))


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(4, 5), nn.Linear(4, 3), nn.Linear(8, 2)

    def forward(self, x):
        return self.head(torch.cat([torch.relu(self.a(x)), torch.tanh(self.b(x))], dim=-1))


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.ln = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x):
        return x + self.ffn(self.ln(x))


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj, self.block, self.head = nn.Linear(4, 8), Block(8), nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.block(self.proj(x)).mean(1))


class Embedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.fc = nn.Embedding(10, 6), nn.Linear(6, 3)

    def forward(self, tokens):
        return self.fc(self.emb(tokens).sum(dim=1))


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 5), nn.Linear(5, 3)])
        self.heads = nn.ModuleDict({"out": nn.Linear(3, 2)})

    def forward(self, x):
        for layer in self.layers:
            x = torch.sigmoid(layer(x))
        return self.heads["out"](x)


def mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))


def cnn():
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.Flatten(), nn.Dropout(0.1),
                         nn.Linear(5 * 2 * 2, 3))


def depthwise():
    return nn.Sequential(nn.Conv2d(2, 4, 1), nn.PReLU(4), nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.BatchNorm2d(4),
                         nn.SiLU(), nn.Conv2d(4, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))


def conv1d():
    return nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU(), nn.Conv1d(4, 3, 1),
                         nn.Flatten(), nn.Linear(3 * 5, 2))


def instance_norm():
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.InstanceNorm2d(4, affine=True, track_running_stats=True),
                         nn.ReLU(), nn.Conv2d(4, 3, 1), nn.InstanceNorm2d(3), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))


def kan_depthwise():
    return nn.Sequential(KANConv2d(2, 3, 1), KANConv2d(3, 3, 3, padding=1, groups=3), KANConv2d(3, 2, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))


def kan_mlp():
    return nn.Sequential(KANLinear(3, 5), KANLinear(5, 2))


def kan_cnn():
    return nn.Sequential(KANConv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), KANConv2d(3, 4, 3, padding=1),
                         nn.Flatten(), KANLinear(4 * 4 * 4, 2))


def image(gen):
    return torch.rand(3, 2, 4, 4, generator=gen) * 1.6 - 0.8


# name -> (builder, example input, layers whose units can be resized without a note)
MODELS = {
    "mlp": (mlp, lambda g: torch.randn(5, 4, generator=g), ["0", "3"]),
    "cnn": (cnn, image, ["0", "4"]),
    "depthwise": (depthwise, image, ["0", "5"]),
    "conv1d": (conv1d, lambda g: torch.randn(3, 2, 5, generator=g), ["0", "3"]),
    "instance_norm": (instance_norm, image, ["0", "3"]),
    "modules": (Stack, lambda g: torch.randn(5, 4, generator=g), ["layers.0", "layers.1"]),
    "residual": (Residual, lambda g: torch.randn(5, 4, generator=g), ["fc_in", "fc1"]),
    "concat": (Concat, lambda g: torch.randn(5, 4, generator=g), ["a", "b"]),
    "transformer": (Transformer, lambda g: torch.randn(2, 5, 4, generator=g), ["block.ffn.0"]),
    "embedding": (Embedder, lambda g: torch.randint(10, (4, 3), generator=g), ["emb"]),
    "kan_mlp": (kan_mlp, lambda g: torch.rand(5, 3, generator=g) * 1.6 - 0.8, ["0"]),
    "kan_cnn": (kan_cnn, image, ["0", "2"]),
    "kan_depthwise": (kan_depthwise, image, ["0"]),
}
CASES = [(model, layer) for model, (_, _, layers) in MODELS.items() for layer in layers]


def build(name, seed=0):
    """The model in eval mode with non-trivial norm statistics, and its example input."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    builder, example, _ = MODELS[name]
    model = builder()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d | nn.InstanceNorm2d) and m.affine and m.track_running_stats:
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.5, 0.5, generator=gen)
    return model.eval(), example(gen)


def relative_change(before, after):
    return float(((after - before).abs().max() / before.abs().max()).detach())


def units(model, layer):
    m = dict(model.named_modules())[layer]
    for attr in ("out_features", "out_channels", "embedding_dim"):
        if hasattr(m, attr):
            return getattr(m, attr)


@pytest.mark.parametrize("init", ["net2net", "zeros"])
@pytest.mark.parametrize("model_name,layer", CASES)
def test_widen_keeps_function(model_name, layer, init):
    model, x = build(model_name)
    before = model(x)
    n = units(model, layer)
    report = resize.widen(model, layer, n + 3, init=init, generator=torch.Generator().manual_seed(1), example_inputs=x)
    assert units(model, layer) == n + 3 and report.new_units == n + 3 and not report.notes
    assert relative_change(before, model(x)) <= RTOL
    model.train()(x)  # the resized model also runs in training mode (BatchNorm batch statistics)


@pytest.mark.parametrize("model_name,layer", CASES)
def test_reinit_then_prune_keeps_function(model_name, layer):
    model, x = build(model_name)
    n = units(model, layer)
    doomed = torch.tensor([0, n - 1])
    resize.reinit(model, layer, doomed, example_inputs=x)  # zero outgoing weights: no contribution left
    before = model(x)
    rows = {k: v.clone() for k, v in model.state_dict().items()}
    report = resize.reinit(model, layer, doomed, generator=torch.Generator().manual_seed(5), example_inputs=x)
    assert report.params_before == report.params_after and relative_change(before, model(x)) <= RTOL
    first = report.changes[0].name  # the layer's own weight: fresh rows for the doomed units only
    unit_dim = 1 if isinstance(dict(model.named_modules())[layer], nn.Embedding) else 0
    changed = (model.state_dict()[first] != rows[first]).movedim(unit_dim, 0).flatten(1).any(1)
    assert changed[doomed].all() and not changed[1:-1].any()
    keep = torch.ones(n, dtype=torch.bool)
    keep[doomed] = False
    report = resize.prune(model, layer, keep, example_inputs=x)
    assert units(model, layer) == n - 2 == report.new_units
    assert relative_change(before, model(x)) <= RTOL


def test_prune_zero_contribution_units_keeps_the_other_weights():
    model, x = build("mlp")
    with torch.no_grad():
        model[3].weight[:, [1, 4]] = 0
    before = model(x)
    old = {k: v.clone() for k, v in model.state_dict().items()}
    keep = torch.tensor([0, 2, 3, 5, 6, 7])
    resize.prune(model, "0", keep.tolist(), example_inputs=x)
    assert relative_change(before, model(x)) <= RTOL
    assert torch.equal(model[0].weight, old["0.weight"][keep])
    assert torch.equal(model[1].running_var, old["1.running_var"][keep])
    assert torch.equal(model[3].weight, old["3.weight"][:, keep])
    assert (model[0].out_features, model[1].num_features, model[3].in_features) == (6, 6, 6)


def test_net2net_replicates_and_splits():
    model, x = build("mlp")
    old = {k: v.clone() for k, v in model.state_dict().items()}
    resize.widen(model, "0", 10, generator=torch.Generator().manual_seed(0), example_inputs=x)
    w_in, w_out = model[0].weight, model[3].weight
    for v in (8, 9):
        u = int((w_in[:v] == w_in[v]).all(1).nonzero()[0])  # the unit it copies
        copies = int((w_in == w_in[u]).all(1).sum())
        assert torch.equal(model[1].running_mean[v], old["1.running_mean"][u])
        torch.testing.assert_close(w_out[:, v], old["3.weight"][:, u] / copies, rtol=0, atol=0)


def test_net2net_noise_breaks_the_symmetry_reproducibly():
    results = []
    for _ in range(2):
        model, x = build("mlp")
        before = model(x)
        resize.widen(model, "0", 12, noise=0.05, generator=torch.Generator().manual_seed(3), example_inputs=x)
        results.append((model[0].weight.detach().clone(), relative_change(before, model(x))))
    (weight, change), (again, _) = results
    assert torch.equal(weight, again)
    assert all(not (weight[:8] == weight[v]).all(1).any() for v in range(8, 12))  # no exact copy left
    assert 0 < change < 0.1


def test_reinit_takes_the_scorer_selection():
    from kanfast.scoring import NeuronScorer

    model, x = build("mlp")
    with NeuronScorer(model, layers=["0"], criteria=("mean_abs",)) as scorer:
        model(x)
    weakest = scorer.select(2)["0"]
    resize.reinit(model, "0", weakest, example_inputs=x)
    assert model[3].weight[:, weakest].abs().max() == 0 and model[3].weight.abs().sum() > 0


def test_widen_zeros_gives_zero_outgoing_kan_weights_and_uniform_knots():
    model, x = build("kan_mlp")
    model[1].grid.mul_(1.5)  # as after update_grid: the kept knots must survive
    old_grid = model[1].grid.clone()
    resize.widen(model, "0", 7, init="zeros", example_inputs=x)
    consumer = model[1]
    assert consumer.base_weight[:, 5:].abs().max() == 0 and consumer.spline_weight[:, 5:].abs().max() == 0
    assert torch.equal(consumer.grid[:5], old_grid)
    torch.testing.assert_close(consumer.grid[5:], torch.linspace(-1 - 3 * 0.4, 1 + 3 * 0.4, 12).expand(2, 12))
    assert (consumer.in_features, model[0].out_features, consumer.spline_scaler.shape) == (7, 7, (2, 7))


def test_report_lists_tensors_and_exact_parameter_counts():
    model, x = build("mlp")
    count = lambda: sum(p.numel() for p in model.parameters())  # noqa: E731
    before = count()
    report = resize.widen(model, "0", 11, example_inputs=x)
    # Linear(4, 8) gains 3 rows of 4 + 3 biases, BatchNorm1d 3 weights + 3 biases, Linear(8, 6) 3 columns of 6
    assert report.params_after - report.params_before == 3 * 4 + 3 + 3 + 3 + 3 * 6 == count() - before
    assert report.params_before == before
    assert {c.name: (c.old_shape, c.new_shape) for c in report.changes} == {
        "0.weight": ((8, 4), (11, 4)), "0.bias": ((8,), (11,)), "1.weight": ((8,), (11,)), "1.bias": ((8,), (11,)),
        "1.running_mean": ((8,), (11,)), "1.running_var": ((8,), (11,)), "3.weight": ((6, 8), (6, 11))}
    text = str(report)
    assert "widen 0: 8 -> 11 units" in text and "1.running_mean  (8,) -> (11,)" in text


def test_dependencies_groups_and_text():
    model, x = build("cnn")
    deps = resize.dependencies(model, x)
    first = deps.group_of("0")
    assert [(m.module, m.role) for m in first.members] == [("0", "out"), ("1", "channel"), ("4", "in")]
    second = deps.group_of("4")
    assert [(m.module, m.role, m.block) for m in second.members] == [("4", "out", 1), ("5", "channel", 1),
                                                                     ("9", "in", 4)]
    assert "reach the model output" in deps.group_of("9").error
    assert "9 at" not in str(deps) and "in      9, 4 positions per unit  (Linear)" in str(deps)


def test_residual_and_concat_groups():
    model, x = build("residual")
    group = resize.dependencies(model, x).group_of("fc_in")
    assert {(m.module, m.role) for m in group.members} == {("fc_in", "out"), ("fc2", "out"), ("fc1", "in"),
                                                          ("head", "in")}
    assert group.producers == ["fc_in", "fc2"]
    model, x = build("concat")
    member = {m.module: m for m in resize.dependencies(model, x).group_of("b").members}["head"]
    assert (member.role, member.offset) == ("in", 5)


def test_layernorm_across_units_is_a_note():
    model, x = build("transformer")
    deps = resize.dependencies(model, x)
    group = deps.group_of("proj")
    assert {m.module for m in group.members} == {"proj", "block.ln", "block.ffn.0", "block.ffn.2", "head"}
    report = resize.widen(model, "proj", 10, example_inputs=x)
    assert model.block.ln.normalized_shape == (10,) and report.notes == group.notes
    assert "LayerNorm 'block.ln' normalizes across units" in str(report)
    assert model(x).shape == (2, 3)


class Softmaxed(nn.Module):
    def __init__(self, module=None):
        super().__init__()
        self.fc, self.head, self.module = nn.Linear(4, 6), nn.Linear(6, 2), module

    def forward(self, x):
        h = self.fc(x)
        h = self.module(h) if self.module is not None else h.softmax(-1)
        return self.head(h)


@pytest.mark.parametrize("module,named", [(None, "method .softmax()"),
                                          (nn.Softmax(-1), "Softmax module 'module'"),
                                          (nn.LayerNorm((2, 6)), "LayerNorm module 'module'")])
def test_unsupported_op_on_resized_dim_is_an_error_naming_it(module, named):
    model = Softmaxed(module)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(resize.ResizeError, match="not known to keep the units in place") as info:
        resize.widen(model, "fc", 8, example_inputs=torch.randn(3, 2, 4))
    assert named in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing changed


def test_errors_name_the_problem():
    model, x = build("cnn")
    with pytest.raises(resize.ResizeError, match="pass example_inputs"):
        resize.widen(model, "4", 6)  # flatten -> Linear needs shapes
    with pytest.raises(resize.ResizeError, match="reach the model output"):
        resize.widen(model, "9", 4, example_inputs=x)
    with pytest.raises(resize.ResizeError, match="name: 'nope' is not a module"):
        resize.widen(model, "nope", 4)
    with pytest.raises(resize.ResizeError, match="name: '1' is a BatchNorm2d"):
        resize.widen(model, "1", 4)
    with pytest.raises(resize.ResizeError, match="new_width must be an int above the current 4"):
        resize.widen(model, "0", 4, example_inputs=x)
    with pytest.raises(resize.ResizeError, match="init must be one of"):
        resize.widen(model, "0", 6, init="ones")
    with pytest.raises(resize.ResizeError, match=r"keep: indices must be in \[0, 4\)"):
        resize.prune(model, "0", [0, 4], example_inputs=x)
    with pytest.raises(resize.ResizeError, match=r"keep: a mask must have shape \(4,\)"):
        resize.prune(model, "0", torch.ones(3, dtype=torch.bool), example_inputs=x)
    with pytest.raises(resize.ResizeError, match="idx: indices repeat"):
        resize.reinit(model, "0", [1, 1], example_inputs=x)
    with pytest.raises(resize.ResizeError, match="model input 'x'"):
        resize.widen(Block(4), "ffn.2", 5)  # its output is added to the block's input


def test_groupnorm_must_stay_divisible_and_grouped_convs_are_refused():
    model = nn.Sequential(nn.Conv2d(2, 4, 1), nn.GroupNorm(2, 4), nn.Conv2d(4, 3, 1), nn.Flatten(1))
    x = torch.randn(2, 2, 3, 3)
    with pytest.raises(resize.ResizeError, match="GroupNorm '1': pass example_inputs to locate its channel dim"):
        resize.widen(model, "0", 6)
    with pytest.raises(resize.ResizeError, match="GroupNorm '1' would have 5 channels, not divisible by its "
                                                 "num_groups=2"):
        resize.widen(model, "0", 5, example_inputs=x)
    assert model[0].out_channels == 4 and model[1].weight.shape == (4,)
    report = resize.widen(model, "0", 6, example_inputs=x)
    assert model(x).shape == (2, 27) and model[1].num_channels == 6 and "GroupNorm '1' normalizes across units" in report.notes[0]
    grouped = nn.Sequential(nn.Conv2d(2, 4, 1), nn.Conv2d(4, 4, 1, groups=2), nn.Conv2d(4, 1, 1))
    with pytest.raises(resize.ResizeError, match="Conv2d module '1' has groups=2"):
        resize.widen(grouped, "0", 6)


@pytest.mark.parametrize("model_name", ["cnn", "kan_cnn", "transformer", "depthwise"])
def test_checkpoint_round_trip_weights_only(model_name):
    model, x = build(model_name)
    for layer in MODELS[model_name][2]:
        resize.widen(model, layer, units(model, layer) + 2, example_inputs=x)
    buffer = io.BytesIO()
    torch.save(resize.state_dict_with_shapes(model), buffer)
    buffer.seek(0)
    fresh, _ = build(model_name, seed=1)
    resize.load_resized(fresh, torch.load(buffer, weights_only=True))
    assert torch.equal(fresh.eval()(x), model(x))
    assert str(fresh) == str(model)
    with pytest.raises(resize.ResizeError, match="checkpoint: expected a dict from state_dict_with_shapes"):
        resize.load_resized(fresh, model.state_dict())
