import gc
import weakref

import pytest
import torch
from torch import nn

from kanfast.models import KANCNN
from kanfast.scoring import CRITERIA, NeuronScorer, select_weakest

ALL = tuple(CRITERIA)
BINS, RANGE, DECAY = 16, (-2.0, 2.0), 0.9


class Capture:
    """Records, independently of the scorer, each named module's outputs and ∂L/∂output."""

    def __init__(self, model, names):
        modules = dict(model.named_modules())
        self.out = {n: [] for n in names}
        self.grad = {n: [] for n in names}
        self.handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name):
        def hook(module, inputs, output):
            self.out[name].append(output.detach().clone())
            if output.requires_grad:
                output.register_hook(lambda g: self.grad[name].append(g.clone()))
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def _units(t, dim):
    """(samples, units) view of a captured tensor with units along dim."""
    return t.movedim(dim, -1).reshape(-1, t.shape[dim])


def _truth(cap, out_name, sig_name, dim, w_in, w_out):
    """float64 truth of every activity criterion from the captured tensors."""
    out = torch.cat([_units(t, dim) for t in cap.out[out_name]])
    sig = torch.cat([_units(t, dim) for t in cap.out[sig_name]])
    mean_abs = sig.abs().mean(0)
    index = ((sig - RANGE[0]) / (RANGE[1] - RANGE[0]) * BINS).floor().clamp(0, BINS - 1).long()
    p = nn.functional.one_hot(index, BINS).sum(0).double()  # (units, bins)
    p = p / p.sum(1, keepdim=True)
    out_l1 = w_out.abs().sum(1) if w_out is not None else 1.0
    u = 0.0
    for s in cap.out[sig_name]:
        u = DECAY * u + (1 - DECAY) * _units(s, dim).abs().mean(0) * out_l1
    t = {"mean": out.mean(0), "variance": out.var(0, correction=0), "mean_abs": mean_abs,
         "apoz": (sig <= 0).double().mean(0), "entropy": -(p * p.log()).nan_to_num().sum(1),
         "redo": mean_abs / mean_abs.mean(),
         "utility": u / (1 - DECAY ** len(cap.out[sig_name])),
         "weight_in_l1": w_in.abs().sum(1), "weight_in_l2": w_in.norm(dim=1)}
    if cap.grad[sig_name]:
        t["taylor"] = (sig * torch.cat([_units(g, dim) for g in cap.grad[sig_name]])).mean(0).abs()
    if w_out is not None:
        t.update(weight_out_l1=w_out.abs().sum(1), weight_out_l2=w_out.norm(dim=1))
    return t


def _run(model, batches, backward=True):
    for x in batches:
        y = model(x)
        if backward:
            (y ** 2).sum().backward()


def _assert_scores(scores, truth, layer):
    for c, expected in truth.items():
        torch.testing.assert_close(scores[layer][c], expected, rtol=1e-9, atol=1e-12, msg=lambda m: f"{layer} {c}: {m}")


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()


def _batches(*shapes):
    return [torch.randn(*s, dtype=torch.float64) for s in shapes]


def test_every_criterion_of_an_mlp_matches_captured_truth():
    model = _mlp()
    cap = Capture(model, ["0", "1", "2", "3", "4"])
    with NeuronScorer(model, criteria=ALL, bins=BINS, hist_range=RANGE, utility_decay=DECAY) as scorer:
        _run(model, _batches((7, 6), (3, 6), (11, 6)))
    scores = scorer.scores()
    W = {n: model[int(n)].weight.detach() for n in ("0", "2", "4")}
    _assert_scores(scores, _truth(cap, "0", "1", -1, W["0"], W["2"].t()), "0")
    _assert_scores(scores, _truth(cap, "2", "3", -1, W["2"], W["4"].t()), "2")
    last = _truth(cap, "4", "4", -1, W["4"], None)  # no activation, no consumer
    _assert_scores(scores, last, "4")
    assert set(scores["4"]) == set(last)  # weight_out_*, bn_gamma and spline_l1 do not apply


def test_conv_batchnorm_flatten_linear():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)).double()
    nn.init.uniform_(model[1].weight, -2, 2)
    cap = Capture(model, ["0", "1", "2"])
    with NeuronScorer(model, criteria=ALL, bins=BINS, hist_range=RANGE, utility_decay=DECAY) as scorer:
        _run(model, _batches((3, 2, 6, 6), (5, 2, 6, 6)))
    scores = scorer.scores()
    # each conv channel is 16 columns of the linear layer after the flatten
    w_out = model[4].weight.detach().view(3, 4, 16).transpose(0, 1).reshape(4, -1)
    _assert_scores(scores, _truth(cap, "0", "2", 1, model[0].weight.detach().flatten(1), w_out), "0")
    torch.testing.assert_close(scores["0"]["bn_gamma"], model[1].weight.detach().abs())
    bn = _truth(cap, "1", "2", 1, model[1].weight.detach().view(4, 1), w_out)
    _assert_scores(scores, bn, "1")
    torch.testing.assert_close(scores["1"]["bn_gamma"], model[1].weight.detach().abs())


def test_kan_cnn():
    torch.manual_seed(0)
    model = KANCNN(1, 3, input_size=(8, 8), channels=(4, 6)).double()
    cap = Capture(model, ["features.0", "head.2"])
    with NeuronScorer(model, criteria=ALL, bins=BINS, hist_range=RANGE, utility_decay=DECAY) as scorer:
        _run(model, _batches((2, 1, 8, 8), (3, 1, 8, 8)))
    scores = scorer.scores()
    conv, nxt, head = model.features[0], model.features[3], model.head[2]
    w_in = torch.cat([conv.base_weight.flatten(1), conv.spline_weight.flatten(1)], 1).detach()
    w_out = torch.cat([nxt.base_weight.transpose(0, 1).flatten(1), nxt.spline_weight.transpose(0, 1).flatten(1)],
                      1).detach()
    # KAN layers are their own activation: signal = output
    _assert_scores(scores, _truth(cap, "features.0", "features.0", 1, w_in, w_out), "features.0")
    torch.testing.assert_close(scores["features.0"]["spline_l1"], conv.spline_weight.detach().abs().flatten(1).sum(1))
    torch.testing.assert_close(scores["features.0"]["bn_gamma"], model.features[1].weight.detach().abs())
    head_in = torch.cat([head.base_weight, head.scaled_spline_weight.flatten(1)], 1).detach()
    _assert_scores(scores, _truth(cap, "head.2", "head.2", -1, head_in, None), "head.2")
    torch.testing.assert_close(scores["head.2"]["spline_l1"], head.scaled_spline_weight.detach().abs().flatten(1).sum(1))
    # the last conv feeds the head through the model's own forward: consumer unknown
    assert "weight_out_l1" not in scores["features.3"] and "weight_out_l1" not in scores["features.4"]


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.ffn = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))

    def forward(self, x):
        return x + self.ffn(self.norm(x))


def test_transformer_ffn():
    torch.manual_seed(0)
    model = nn.Sequential(Block(), Block()).double()
    cap = Capture(model, ["0.ffn.0", "0.ffn.1", "0.norm"])
    with NeuronScorer(model, criteria=ALL, bins=BINS, hist_range=RANGE, utility_decay=DECAY) as scorer:
        _run(model, _batches((2, 5, 8), (3, 4, 8)))
    scores = scorer.scores()
    ffn = model[0].ffn
    _assert_scores(scores, _truth(cap, "0.ffn.0", "0.ffn.1", -1, ffn[0].weight.detach(), ffn[2].weight.detach().t()),
                   "0.ffn.0")
    norm = _truth(cap, "0.norm", "0.norm", -1, model[0].norm.weight.detach().view(8, 1), None)
    _assert_scores(scores, norm, "0.norm")
    assert {l.name for l in scorer.layers} == {f"{b}.{n}" for b in (0, 1) for n in ("norm", "ffn.0", "ffn.2")}


def test_accumulating_batches_equals_one_big_batch():
    model = _mlp()
    batches = _batches((4, 6), (9, 6), (2, 6))
    criteria = tuple(c for c in ALL if c != "utility")  # the utility EMA is per batch by design
    with NeuronScorer(model, criteria=criteria, bins=BINS, hist_range=RANGE) as split:
        _run(model, batches)
    with NeuronScorer(model, criteria=criteria, bins=BINS, hist_range=RANGE) as whole:
        _run(model, [torch.cat(batches)])
    a, b = split.scores(), whole.scores()
    for layer in a:
        for c in criteria:
            if c in a[layer]:
                torch.testing.assert_close(a[layer][c], b[layer][c], rtol=1e-10, atol=1e-12)


def _hooks(model):
    return [(name, kind) for name, m in model.named_modules()
            for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
            if getattr(m, kind)]


def test_detach_removes_every_hook_and_ignores_late_gradients():
    model = _mlp()
    scorer = NeuronScorer(model, criteria=ALL, bins=BINS, hist_range=RANGE).attach()
    assert _hooks(model)
    y = model(torch.randn(4, 6, dtype=torch.float64))
    scorer.detach()
    assert _hooks(model) == []
    y.sum().backward()  # the graph was built while attached; its gradient hooks must not count
    assert all(s.grad is None for s in scorer._states.values())
    model(torch.randn(4, 6, dtype=torch.float64))
    assert int(scorer._states["0"].signal.count[0]) == 4
    with scorer:
        assert _hooks(model)
    assert _hooks(model) == []


def test_hooks_keep_no_activation_alive():
    model = _mlp()
    refs = []
    model[1].register_forward_hook(lambda m, i, o: refs.append(weakref.ref(o)))
    with NeuronScorer(model, criteria=ALL, bins=BINS, hist_range=RANGE):
        with torch.no_grad():
            model(torch.randn(4, 6, dtype=torch.float64))
        (model(torch.randn(4, 6, dtype=torch.float64)) ** 2).sum().backward()
        gc.collect()
        assert [r() for r in refs] == [None, None]


def test_reset_and_entropy_history():
    model = _mlp()
    x = torch.randn(16, 6, dtype=torch.float64)
    scorer = NeuronScorer(model, criteria=("entropy",), bins=BINS, hist_range=RANGE).attach()
    cap = Capture(model, ["1"])
    for _ in range(3):
        model(x)
        scorer.step(reset=True)
    cap.remove()
    h = scorer.entropy_history
    assert {n: len(v) for n, v in h.items()} == {"0": 3, "2": 3, "4": 3}
    expected = _truth(cap, "1", "1", -1, torch.zeros(5, 1), None)["entropy"].mean()  # one batch per step
    assert h["0"] == pytest.approx([float(expected)] * 3, rel=1e-12)
    assert scorer.entropy_plateaued(window=3) == ["0", "2", "4"]
    assert scorer.entropy_plateaued(window=4) == []
    assert scorer._states["0"].signal is None  # reset by step(reset=True)
    scorer.detach()


def test_select_weakest_per_layer_and_global():
    scores = {"a": torch.tensor([3.0, 1.0, 2.0, 0.5]), "b": torch.tensor([10.0, 20.0, 5.0])}
    as_lists = lambda d: {k: v.tolist() for k, v in d.items()}  # noqa: E731
    assert as_lists(select_weakest(scores, 0.5)) == {"a": [1, 3], "b": [2]}
    assert as_lists(select_weakest(scores, 1)) == {"a": [3], "b": [2]}
    assert as_lists(select_weakest(scores, 3, mode="global", normalize="none")) == {"a": [1, 2, 3], "b": []}
    # a keeps min_keep=1 unit, so the 4th weakest comes from b
    assert as_lists(select_weakest(scores, 4, mode="global", normalize="none")) == {"a": [1, 2, 3], "b": [2]}
    # normalised by the layer mean: a/1.625 = [1.85, .62, 1.23, .31], b/11.67 = [.86, 1.71, .43]
    assert as_lists(select_weakest(scores, 3, mode="global", normalize="mean")) == {"a": [1, 3], "b": [2]}
    assert as_lists(select_weakest(scores, 2 / 7, mode="global", normalize="max")) == {"a": [3], "b": [2]}
    assert as_lists(select_weakest({"a": torch.tensor([0.1, 0.9, 0.5])}, 1, higher_is_weaker=True)) == {"a": [1]}


def test_scorer_select_on_a_constructed_model():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[2.0, 2, 0], [1, 0, 0], [1, 1, 1], [0, 1, 1]]))
        model[0].bias.copy_(torch.tensor([0.0, 0, -100, 0]))  # unit 2 never fires
        model[2].weight.copy_(torch.tensor([[1.0, 1, 1, 1], [3, 3, 3, 3]]))
    scorer = NeuronScorer(model, criteria=("apoz", "weight_in_l1", "weight_out_l1"))
    with pytest.raises(ValueError, match="layer '0' has no score"):
        scorer.select(1)
    with scorer:
        model(torch.rand(8, 3, dtype=torch.float64))
    assert scorer.select(1)["0"].tolist() == [2]  # the dead unit: apoz = 1
    assert scorer.select(1, criterion="weight_in_l1")["0"].tolist() == [1]
    assert scorer.select(1, criterion="weight_in_l1")["2"].tolist() == [0]
    assert list(scorer.select(1, criterion="weight_out_l1")) == ["0"]  # layer 2 has no known consumer
    picked = scorer.select(0.5, criterion="weight_in_l1", mode="global", normalize="none")
    assert {k: v.tolist() for k, v in picked.items()} == {"0": [1, 2, 3], "2": []}


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda m: NeuronScorer(m, criteria=("nope",)), "unknown criterion 'nope'"),
        (lambda m: NeuronScorer(m, layers=["9"]), "layers names '9', which is not a module"),
        (lambda m: NeuronScorer(m, layers=["1"]), "layer '1' cannot be scored: ReLU is not a supported"),
        (lambda m: NeuronScorer(nn.Sequential(nn.ReLU())), "no layer of a supported type"),
        (lambda m: NeuronScorer(nn.LayerNorm((2, 3)), layers=[""]), "only 1-D normalized_shape"),
        (lambda m: NeuronScorer(m).select(1.5), r"a fraction must be in \(0, 1\]"),
        (lambda m: NeuronScorer(m).select(1, mode="all"), "mode must be 'per_layer' or 'global'"),
        (lambda m: NeuronScorer(m).select(1, criterion="taylor"), "criterion 'taylor' is not one of"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make(_mlp())


def test_attach_twice_is_an_error():
    scorer = NeuronScorer(_mlp()).attach()
    with pytest.raises(RuntimeError, match="already attached"):
        scorer.attach()
    scorer.detach()
