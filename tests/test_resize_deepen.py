"""kanfast.resize.deepen: inserted identity layers keep the function, add exactly their
parameters, train, survive a state_dict round trip, and bad arguments are named."""

import io
from collections import OrderedDict

import pytest
import torch
from torch import nn

from kanfast import KANConv2d, KANLinear, resize
from test_resize import Transformer  # a block with an attribute-held ffn

# The inserted layers are exact identities up to float32 rounding of sums with one non-zero term
# (Greville sums for KAN layers); the rest of the model is unchanged.
RTOL = 1e-5


def mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))


def cnn():
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(5 * 4 * 4, 3))


def built(builder, *shape, seed=0):
    torch.manual_seed(seed)
    model = builder().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model, torch.randn(*shape)


def count(model):
    return sum(p.numel() for p in model.parameters())


def relative_change(before, after):
    return float(((after - before).abs().max() / before.abs().max()).detach())


def check_deepen(model, x, after, **kwargs):
    """Deepen in eval mode; assert the function and the parameter accounting; return the report."""
    before, params = model(x), count(model)
    report = resize.deepen(model, after, **kwargs)
    assert relative_change(before, model(x)) <= RTOL
    new_params = sum(p.numel() for name in report.inserted for p in model.get_submodule(name).parameters())
    assert count(model) - params == report.inserted_params == new_params > 0
    assert (report.params_before, report.params_after) == (params, count(model))
    return report


def test_linear_in_mlp_shifts_later_children_and_reports_them():
    model, x = built(mlp, 5, 4)
    last = model[4]
    report = check_deepen(model, x, "2")
    assert report.inserted == {"3": "Linear(in_features=6, out_features=6, bias=True)"}
    assert report.inserted_params == 6 * 6 + 6
    assert report.renamed == {"3": "4", "4": "5"} and model[5] is last
    assert torch.equal(model[3].weight, torch.eye(6)) and not model[3].bias.any()
    text = str(report)
    assert "deepen after 2: 1 module(s) with 42 parameters, parameters 115 -> 157 (+42)" in text
    assert "renamed: 3 -> 4, 4 -> 5" in text


def test_after_an_activation_uses_the_observed_shape():
    model, x = built(mlp, 5, 4)
    report = check_deepen(model, x, "1", example_inputs=x)
    assert list(report.inserted) == ["2"] and model[2].in_features == 8


@pytest.mark.parametrize("batch_norm,kernel_size", [(False, None), (True, 5)])
def test_conv_in_cnn_with_flatten_linear(batch_norm, kernel_size):
    model, x = built(cnn, 3, 2, 4, 4)
    report = check_deepen(model, x, "3", batch_norm=batch_norm, kernel_size=kernel_size)
    k = kernel_size or 3
    conv = model[4]
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (k, k) and conv.padding == (k // 2, k // 2)
    assert report.inserted_params == 5 * 5 * k * k + 5 + (2 * 5 if batch_norm else 0)
    assert list(report.inserted) == (["4", "5"] if batch_norm else ["4"])
    assert isinstance(model[5], nn.BatchNorm2d) == batch_norm
    assert bool(report.notes) == batch_norm  # BatchNorm is the identity in eval mode only


def test_kan_conv_output_gets_a_centred_identity_conv():
    torch.manual_seed(0)
    model = nn.Sequential(KANConv2d(2, 3, 3, padding=1), nn.Flatten(), nn.Linear(3 * 16, 2)).eval()
    report = check_deepen(model, torch.rand(2, 2, 4, 4) * 1.6 - 0.8, "0")
    assert report.inserted == {"1": "Conv2d(3, 3, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"}


def test_attribute_in_a_sequential_and_a_plain_attribute():
    model, x = built(Transformer, 2, 5, 4)
    report = check_deepen(model, x, "block.ffn.0")
    assert list(report.inserted) == ["block.ffn.1"] and report.renamed == {"block.ffn.1": "block.ffn.2",
                                                                            "block.ffn.2": "block.ffn.3"}
    proj = model.proj
    report = check_deepen(model, x, "proj")
    assert list(report.inserted) == ["proj.1"] and report.renamed == {"proj": "proj.0"}
    assert isinstance(model.proj, nn.Sequential) and model.proj[0] is proj


def test_named_sequential_keeps_names():
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(fc=nn.Linear(4, 5), act=nn.ReLU(), out=nn.Linear(5, 2))).eval()
    x = torch.randn(3, 4)
    first = check_deepen(model, x, "fc")
    second = check_deepen(model, x, "fc")
    assert list(first.inserted) == ["fc_deepen_0"] and list(second.inserted) == ["fc_deepen_1"]
    assert list(model._modules) == ["fc", "fc_deepen_1", "fc_deepen_0", "act", "out"]
    assert first.renamed == second.renamed == {}


@pytest.mark.parametrize("order", [1, 2, 3])
def test_kan_identity_inside_grid_range_and_zero_beyond(order):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4))
    resize.deepen(model, "0", kind="kan", kan_options=dict(grid_range=(-2, 2), grid_size=4, spline_order=order))
    layer = model[1]
    assert isinstance(layer, KANLinear) and layer.spline_order == order
    inside = torch.linspace(-2, 2, 801).unsqueeze(1).expand(-1, 4).contiguous()
    assert float((layer(inside) - inside).abs().max().detach()) <= 1e-6 * 2
    # h = 1: the knots end `order` intervals beyond the range; past them every basis is 0
    beyond = torch.tensor([[-2 - order - 0.5] * 4, [2 + order + 0.5] * 4])
    assert torch.equal(layer(beyond), torch.zeros_like(beyond))
    # between the range and the outer knots the curve bends towards 0
    margin = layer(torch.full((1, 4), 2.5))
    assert bool((margin < 2.5).all()) and bool((margin >= 0).all())


def test_kan_mlp_with_inputs_inside_the_grid_range():
    torch.manual_seed(0)
    model = nn.Sequential(KANLinear(3, 5), KANLinear(5, 2)).eval()
    x = torch.rand(16, 3) * 1.6 - 0.8
    assert float(model[0](x).abs().max().detach()) < 1  # inside the inserted layer's default grid_range (-1, 1)
    report = check_deepen(model, x, "0", kind="kan")
    assert report.inserted_params == 5 * 5 * (1 + 1 + 8) + 5  # base, scaler, G+K = 8 coefficients, bias
    assert "grid_range (-1, 1)" in report.notes[0]


def test_kan_conv_identity_with_kernel_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Flatten(), nn.Linear(3 * 16, 2)).eval()
    x = torch.rand(2, 2, 4, 4) * 0.4 - 0.2
    assert float(model[0](x).abs().max().detach()) < 3
    check_deepen(model, x, "0", kind="kan", kan_options=dict(grid_range=(-3, 3)))
    assert isinstance(model[1], KANConv2d) and model[1].kernel_size == (1, 1)


def test_adam_trains_the_new_layer_in_the_group_of_after():
    model, x = built(mlp, 8, 4)
    model.train()
    others = [p for name, p in model.named_parameters() if not name.startswith("2.")]
    opt = torch.optim.Adam([{"params": others}, {"params": list(model[2].parameters()), "lr": 0.05}], lr=1e-3)
    resize.deepen(model, "2", optimizer=opt)
    new = model[3]
    assert all(any(p is q for q in opt.param_groups[1]["params"]) for p in new.parameters())
    start = new.weight.detach().clone()
    for _ in range(2):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    assert not torch.equal(new.weight, start) and opt.state[new.weight]["step"] == 2


def test_state_dict_round_trip_into_a_fresh_deepened_copy():
    model, x = built(cnn, 3, 2, 4, 4)
    resize.deepen(model, "3", batch_norm=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # no longer the identity
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    fresh, _ = built(cnn, 1, seed=1)
    resize.deepen(fresh, "3", batch_norm=True)
    fresh.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    assert torch.equal(fresh(x), model(x))


def test_errors_name_the_argument_and_change_nothing():
    model, x = built(cnn, 3, 2, 4, 4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cases = [
        (dict(after="nope"), "after: 'nope' is not a module"),
        (dict(after=""), "after: expected the name of a submodule"),
        (dict(after="3", kind="deep"), "kind: must be one of linear, conv, kan"),
        (dict(after="3", kind="linear"), "kind: 'linear' acts on the last dim"),
        (dict(after="6", kind="conv"), "kind: 'conv' needs channels at dim 1"),
        (dict(after="3", kernel_size=4), "kernel_size: must be odd"),
        (dict(after="3", kernel_size=(3, 3, 3)), "kernel_size: expected a positive int or 2"),
        (dict(after="6", batch_norm=True), "batch_norm: only applies to kind='conv'"),
        (dict(after="3", kan_options={"grid_size": 4}), "kan_options: only applies to kind='kan'"),
        (dict(after="3", kind="kan", kan_options={"spline_order": 0}), "kan_options: .*spline_order"),
        (dict(after="3", kind="kan", kan_options={"nope": 1}), "kan_options: .*nope"),
        (dict(after="4"), "example_inputs: the output shape of '4' \\(ReLU\\) is not known"),
        (dict(after="4", example_inputs=x), "kind: cannot tell whether the 4-D output"),
        (dict(after="4", example_inputs=torch.randn(1, 3)), "example_inputs: running the model on them failed"),
    ]
    for kwargs, message in cases:
        with pytest.raises(resize.ResizeError, match=message):
            resize.deepen(model, **kwargs)
    opt = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[6].parameters()}], lr=0.1)
    with pytest.raises(resize.ResizeError, match="optimizer: none of its 2 param groups holds parameters of '3'"):
        resize.deepen(model, "3", optimizer=opt)
    assert len(model) == 7 and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
