"""kanfast.train.recalibrate_bn and kanfast.train.find_batch_size."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kanfast.train import clear_batch_size_cache, find_batch_size, recalibrate_bn


def blobs(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def trained_bn_model():
    """Linear → Dropout(0.5) → Linear → BatchNorm → ReLU → Linear, trained 200 steps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.Dropout(0.5), nn.Linear(32, 16), nn.BatchNorm1d(16), nn.ReLU(),
                          nn.Linear(16, 3))
    x, y = blobs()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for idx in torch.randperm(128 * 25).remainder(128).split(16):  # 25 epochs
        optimizer.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        optimizer.step()
    return model


@torch.no_grad()
def eval_loss(model, x, y):
    model.eval()
    return F.cross_entropy(model(x), y).item()


def cumulative_stats(pre_bn, batch_size):
    """What momentum=None BatchNorm accumulates: the mean of the per-batch means and unbiased variances."""
    batches = pre_bn.split(batch_size)
    return (torch.stack([b.mean(0) for b in batches]).mean(0),
            torch.stack([b.var(0, unbiased=True) for b in batches]).mean(0))


def test_recalibrate_bn_uses_eval_mode_activations():
    model = trained_bn_model()
    x, y = blobs()
    reference = copy.deepcopy(model)
    loss_before = eval_loss(model, x, y)
    with torch.no_grad():  # z -> 3z + 5 before BatchNorm: the same function, but the running stats are now wrong
        model[2].weight.mul_(3)
        model[2].bias.mul_(3).add_(5)
    assert eval_loss(model, x, y) > 2 * loss_before

    model.train()
    recalibrate_bn(model, (x, y), batch_size=32)
    assert all(m.training for m in model.modules())  # flags restored
    assert model[3].momentum == 0.1

    model.eval()
    with torch.no_grad():
        want_mean, want_var = cumulative_stats(model[:3](x), 32)
        torch.manual_seed(1)
        _, dropout_var = cumulative_stats(model[:3].train()(x), 32)
    torch.testing.assert_close(model[3].running_mean, want_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model[3].running_var, want_var, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(dropout_var, want_var, rtol=0.1)  # dropout on would have given other statistics
    assert eval_loss(model, x, y) <= 1.05 * loss_before

    recalibrate_bn(reference, (x, y), batch_size=32)  # the unscaled model, recalibrated alike
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference.eval()(x), rtol=1e-4, atol=1e-4)


def test_recalibrate_bn_max_batches_and_loader():
    model = trained_bn_model()
    x, y = blobs()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    recalibrate_bn(model, loader, max_batches=1)
    with torch.no_grad():
        first = model.eval()[:3](x[:16])
    torch.testing.assert_close(model[3].running_mean, first.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[3].running_var, first.var(0), rtol=1e-5, atol=1e-6)
    assert model[3].num_batches_tracked == 1
    with pytest.raises(ValueError, match="max_batches"):
        recalibrate_bn(model, loader, max_batches=0)


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))


def test_find_batch_size_cpu_estimate():
    clear_batch_size_cache()
    model = mlp()
    # per sample: the input (64 floats) and the ReLU output (256 floats, saved once for ReLU and the
    # second Linear), each saved and then its gradient; fixed: 4× the parameter bytes
    per_sample = 2 * (64 + 256) * 4
    fixed = 4 * 4 * sum(p.numel() for p in model.parameters())
    available = 50 * 2**20
    got = find_batch_size(model, torch.randn(4, 64), available_bytes=available, max_batch=10**9)
    assert got == int((0.8 * available - fixed) // per_sample)
    assert find_batch_size(model, torch.randn(4, 64), available_bytes=available, max_batch=100) == 100
    with pytest.raises(MemoryError, match="one sample"):
        find_batch_size(model, torch.randn(4, 64), available_bytes=fixed)
    assert find_batch_size(model, torch.randn(4, 64)) >= 1  # reads the real free memory


def test_find_batch_size_caches_and_leaves_the_model_alone():
    clear_batch_size_cache()
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2)).eval()
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    state = copy.deepcopy(model.state_dict())
    first = find_batch_size(model, torch.randn(3, 8), available_bytes=2**24)
    assert len(calls) == 1
    assert find_batch_size(model, torch.randn(5, 8), available_bytes=2**24) == first  # same per-sample shape
    assert len(calls) == 1
    find_batch_size(model, torch.randn(2, 2, 4), available_bytes=2**24)  # another input shape: measured again
    assert len(calls) == 2
    assert not model.training and all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_find_batch_size_bad_arguments():
    with pytest.raises(ValueError, match="max_batch"):
        find_batch_size(mlp(), torch.randn(2, 64), max_batch=0)
    with pytest.raises(ValueError, match="safety"):
        find_batch_size(mlp(), torch.randn(2, 64), safety=1.5)
    with pytest.raises(ValueError, match="sample_input"):
        find_batch_size(mlp(), torch.randn(0, 64))


def simulate_device_memory(monkeypatch, limit):
    """Runs the CUDA search on CPU: CPU is treated as a searched device and a training step
    whose batch exceeds ``limit`` raises torch.OutOfMemoryError, as a full GPU would; the
    batches tried are recorded."""
    from kanfast.train import batch_size

    tried = []
    real_step = batch_size._training_step

    def step(model, x, autocast, loss_fn):
        tried.append(len(x))
        if len(x) > limit:
            raise torch.OutOfMemoryError(f"simulated: {len(x)} > {limit} samples")
        real_step(model, x, autocast, loss_fn)

    monkeypatch.setattr(batch_size, "_SEARCHED_DEVICES", ("cuda", "cpu"))
    monkeypatch.setattr(batch_size, "_training_step", step)
    return tried


def test_find_batch_size_search_grows_then_bisects_and_caches(monkeypatch):
    clear_batch_size_cache()
    tried = simulate_device_memory(monkeypatch, limit=300)
    model = nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    state = copy.deepcopy(model.state_dict())
    got = find_batch_size(model, torch.randn(2, 64), max_batch=4096, safety=0.8)
    assert tried[:9] == [2, 4, 8, 16, 32, 64, 128, 256, 512]  # doubling up to the first failure
    largest = max(b for b in tried if b <= 300)
    assert 300 * 15 / 16 <= largest <= 300 and got == int(largest * 0.8)  # bisected, then the safety margin
    assert len(tried) <= 9 + 5
    for key, value in model.state_dict().items():  # BatchNorm statistics untouched by the probes
        assert torch.equal(value, state[key]), key
    probes = len(tried)
    assert find_batch_size(model, torch.randn(7, 64), max_batch=4096, safety=0.5) == int(largest * 0.5)
    assert len(tried) == probes  # cached per model shape: no new probe
    find_batch_size(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2)), torch.randn(2, 64),
                    max_batch=4096)
    assert len(tried) > probes  # another model shape: searched again


def test_find_batch_size_search_limits(monkeypatch):
    clear_batch_size_cache()
    tried = simulate_device_memory(monkeypatch, limit=10**6)
    assert find_batch_size(mlp(), torch.randn(2, 64), max_batch=100, safety=1.0) == 100  # everything fits
    assert tried == [2, 4, 8, 16, 32, 64, 100]
    clear_batch_size_cache()
    simulate_device_memory(monkeypatch, limit=1)
    with pytest.raises(MemoryError, match="2 samples"):
        find_batch_size(mlp(), torch.randn(2, 64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the search on real GPU memory needs a CUDA device")
def test_find_batch_size_cuda_grows_until_out_of_memory():
    clear_batch_size_cache()
    model = mlp().cuda()
    assert find_batch_size(model, torch.randn(2, 64), max_batch=1000, safety=0.5) == 500
    big = nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 4096)).cuda()
    found = find_batch_size(big, torch.randn(1, 4096), max_batch=2**26, safety=1.0)
    assert 2 <= found < 2**26  # the probe reached an out-of-memory error before the cap
