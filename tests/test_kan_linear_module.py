import io
import math

import pytest
import torch
from torch import nn

import kanfast
from kanfast import reference


class PublishedKANLinear(nn.Module):
    """The efficient-kan KANLinear as its published formulas define it (grid, base_weight,
    spline_weight, spline_scaler; Cox–de Boor with divisions; no bias), written for this test."""

    def __init__(self, in_features, out_features, grid_size=5, spline_order=3, grid_range=(-1, 1)):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.grid_size, self.spline_order = grid_size, spline_order
        self.scale_noise, self.scale_base, self.scale_spline = 0.1, 1.0, 1.0
        self.enable_standalone_scale_spline, self.grid_eps = True, 0.02
        h = (grid_range[1] - grid_range[0]) / grid_size
        knots = torch.arange(-spline_order, grid_size + spline_order + 1) * h + grid_range[0]
        self.register_buffer("grid", knots.expand(in_features, -1).contiguous())
        self.base_weight = nn.Parameter(torch.randn(out_features, in_features) / math.sqrt(in_features))
        self.spline_weight = nn.Parameter(0.1 * torch.randn(out_features, in_features, grid_size + spline_order))
        self.spline_scaler = nn.Parameter(torch.randn(out_features, in_features))
        self.base_activation = nn.SiLU()

    def b_splines(self, x):
        grid = self.grid
        x = x.unsqueeze(-1)
        bases = ((x >= grid[:, :-1]) & (x < grid[:, 1:])).to(x.dtype)
        for k in range(1, self.spline_order + 1):
            bases = (x - grid[:, : -(k + 1)]) / (grid[:, k:-1] - grid[:, : -(k + 1)]) * bases[:, :, :-1] + (
                grid[:, k + 1 :] - x
            ) / (grid[:, k + 1 :] - grid[:, 1:(-k)]) * bases[:, :, 1:]
        return bases

    def forward(self, x):
        base = nn.functional.linear(self.base_activation(x), self.base_weight)
        scaled = self.spline_weight * self.spline_scaler.unsqueeze(-1)
        spline = nn.functional.linear(self.b_splines(x).view(x.size(0), -1), scaled.view(self.out_features, -1))
        return base + spline


def test_efficient_kan_checkpoints_load_and_agree():
    published = PublishedKANLinear(6, 4).double()
    x = torch.rand(50, 6, dtype=torch.float64) * 2 - 1
    for source in (published, published.state_dict()):
        layer = kanfast.KANLinear.from_efficient_kan(source)
        assert layer.bias is None
        torch.testing.assert_close(layer(x), published(x), rtol=1e-12, atol=1e-12)
    # and the plain constructor with bias=False takes the state_dict as is
    plain = kanfast.KANLinear(6, 4, bias=False, dtype=torch.float64)
    plain.load_state_dict(published.state_dict())
    torch.testing.assert_close(plain(x), published(x), rtol=1e-12, atol=1e-12)


def test_parameters_shapes_and_defaults():
    layer = kanfast.KANLinear(3, 2)
    shapes = {n: tuple(p.shape) for n, p in layer.named_parameters()}
    assert shapes == {"base_weight": (2, 3), "spline_weight": (2, 3, 8), "spline_scaler": (2, 3), "bias": (2,)}
    assert tuple(layer.grid.shape) == (3, 12)
    torch.testing.assert_close(layer.grid[0], torch.arange(-3, 9) * 0.4 - 1)
    assert "grid_size=5" in repr(layer) and "base_activation=SiLU" in repr(layer)
    assert kanfast.KANLinear(3, 2, enable_standalone_scale_spline=False).spline_scaler is None


def test_initial_output_is_close_to_the_base_path():
    """Splines start as small noise (efficient-kan's init): the layer is near act(x) @ base_weightᵀ."""
    layer = kanfast.KANLinear(8, 5, scale_noise=0.1)
    x = torch.rand(100, 8) * 2 - 1
    base = nn.functional.linear(nn.functional.silu(x), layer.base_weight)
    assert (layer(x) - base).abs().max() < 0.2


@pytest.mark.parametrize("scaler", [True, False])
def test_update_grid_keeps_the_output_on_the_data(scaler):
    """Cubic splines reproduce cubic polynomials on any grid, so curves that are cubics must
    survive the move to the data-driven grid exactly (up to the ridge term)."""
    torch.manual_seed(1)
    layer = kanfast.KANLinear(4, 3, grid_size=8, enable_standalone_scale_spline=scaler, dtype=torch.float64)
    x = (torch.rand(4000, 4, dtype=torch.float64) ** 2) * 1.6 - 0.8  # unevenly spread inside the range
    coeffs = torch.randn(4, 4, 3, dtype=torch.float64)  # per (power, in, out)
    cubic = sum(coeffs[p] * x.unsqueeze(-1) ** p for p in range(4))  # (batch, in, out)
    with torch.no_grad():
        weights = layer._fit(x, cubic)
        if scaler:
            layer.spline_scaler.uniform_(0.5, 2.0)
            weights = weights / layer.spline_scaler.unsqueeze(-1)
        layer.spline_weight.copy_(weights)
    before = layer(x)
    old_grid = layer.grid.clone()
    layer.update_grid(x)
    after = layer(x)
    assert not torch.equal(layer.grid, old_grid)
    assert (layer.grid[:, 1:] >= layer.grid[:, :-1]).all()
    assert ((after - before).norm() / before.norm()) < 1e-5


def test_update_grid_approximates_arbitrary_curves():
    torch.manual_seed(1)
    layer = kanfast.KANLinear(4, 3, grid_size=8, dtype=torch.float64)
    with torch.no_grad():
        layer.spline_weight.normal_()  # wiggly curves: not representable exactly on the new grid
    x = (torch.rand(4000, 4, dtype=torch.float64) ** 2) * 1.6 - 0.8
    before = layer(x)
    layer.update_grid(x)
    assert ((layer(x) - before).norm() / before.norm()) < 0.1


def test_update_grid_divides_by_the_scaler_instead_of_applying_it_twice():
    torch.manual_seed(2)
    layer = kanfast.KANLinear(2, 2, grid_size=4, dtype=torch.float64)
    with torch.no_grad():
        layer.spline_scaler.fill_(3.0)
        layer.spline_weight.normal_()
    x = torch.rand(3000, 2, dtype=torch.float64) * 1.8 - 0.9
    spline_before = layer(x) - nn.functional.linear(nn.functional.silu(x), layer.base_weight) - layer.bias
    layer.update_grid(x)
    spline_after = layer(x) - nn.functional.linear(nn.functional.silu(x), layer.base_weight) - layer.bias
    ratio = (spline_after.norm() / spline_before.norm()).item()
    assert abs(ratio - 1) < 0.05, ratio  # applying the scaler twice would give ~3


def test_update_grid_rejects_bad_data():
    layer = kanfast.KANLinear(3, 2)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 3\)"):
        layer.update_grid(torch.rand(10, 4))
    with pytest.raises(ValueError, match="x must be finite"):
        layer.update_grid(torch.tensor([[0.0, float("nan"), 1.0]] * 5))
    with pytest.raises(ValueError, match="at least 2 samples"):
        layer.update_grid(torch.rand(1, 3))


def test_regularization_loss_matches_its_formula_and_is_finite_with_zero_weights():
    layer = kanfast.KANLinear(3, 2)
    l1 = layer.spline_weight.abs().mean(-1)
    p = l1 / l1.sum()
    expected = 2.0 * l1.sum() + 0.5 * -(p * p.log()).sum()
    torch.testing.assert_close(layer.regularization_loss(2.0, 0.5), expected)
    with torch.no_grad():
        layer.spline_weight[0].zero_()
    assert torch.isfinite(layer.regularization_loss())
    with torch.no_grad():
        layer.spline_weight.zero_()
    assert layer.regularization_loss().item() == 0


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.5 * x)


@pytest.mark.parametrize("activation", [nn.GELU, nn.Tanh, Swish, Swish()])
def test_any_activation_module_works(activation):
    layer = kanfast.KANLinear(5, 3, base_activation=activation, dtype=torch.float64)
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    act = layer.base_activation
    expected = reference.kan_linear(x, layer.grid, None, layer.spline_weight, layer.spline_scaler, layer.bias,
                                    spline_order=3) + nn.functional.linear(act(x), layer.base_weight)
    y = layer(x)
    torch.testing.assert_close(y, expected)
    (g,) = torch.autograd.grad(y.sum(), x)
    (g_ref,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(g, g_ref)


def test_state_dict_round_trip_with_an_adapted_grid():
    layer = kanfast.KANLinear(4, 2)
    layer.update_grid(torch.rand(500, 4) * 1.5 - 0.5)
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    fresh = kanfast.KANLinear(4, 2)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.rand(9, 4)
    torch.testing.assert_close(fresh(x), layer(x))


def test_loading_a_decreasing_grid_is_refused():
    layer = kanfast.KANLinear(2, 2)
    state = layer.state_dict()
    state["grid"] = state["grid"].flip(1)
    with pytest.raises(ValueError, match="non-decreasing"):
        layer.load_state_dict(state)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(in_features=0), "in_features must be a positive int"),
        (dict(grid_size=2.5), "grid_size must be a positive int"),
        (dict(grid_eps=1.5), r"grid_eps must be in \[0, 1\]"),
        (dict(grid_range=(1, -1)), "grid_range must be increasing"),
        (dict(base_activation=torch.sigmoid), "base_activation must be an nn.Module"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    args = dict(in_features=3, out_features=2) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        kanfast.KANLinear(args.pop("in_features"), args.pop("out_features"), **args)


def test_forward_rejects_wrong_feature_count():
    with pytest.raises(ValueError, match=r"x must have shape \(\*, in_features\) = \(\*, 3\)"):
        kanfast.KANLinear(3, 2)(torch.rand(4, 5))
