import pytest
import torch

from kanfast import demo
from kanfast.models import KANCNN
from kanfast.nn import KANConv2d, KANLinear


def test_kan_cnn_shapes_and_layers():
    model = KANCNN(3, 7, input_size=(10, 12), channels=(4, 8, 8), batch_norm=True)
    assert model(torch.randn(2, 3, 10, 12)).shape == (2, 7)
    kinds = [type(m) for m in model.modules() if isinstance(m, (KANConv2d, KANLinear))]
    assert kinds == [KANConv2d, KANConv2d, KANConv2d, KANLinear]
    # 10x12 -> 5x6 -> 2x3 -> 1x1: the head sees 8 features
    assert model.head[-1].in_features == 8


def test_kan_cnn_learns():
    torch.manual_seed(0)
    model = KANCNN(1, 2, input_size=(6, 6), channels=(4,))
    x = torch.randn(64, 1, 6, 6)
    y = (x.mean((1, 2, 3)) > 0).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_kan_cnn_rejects_an_empty_stack():
    with pytest.raises(ValueError, match="channels must name at least one stage"):
        KANCNN(1, 2, input_size=(8, 8), channels=())


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_demo_runs(model, capsys):
    assert demo.main(["--model", model, "--epochs", "1"]) == 0
    assert "test accuracy" in capsys.readouterr().out
