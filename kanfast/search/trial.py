"""One evaluation: decode a genome, train it on the training split, score it on validation.

Runs inside an executor's worker (a spawned process or a Ray task). ``evaluate`` raises on
failure (a NaN loss raises FloatingPointError); the executor records the error as the
evaluation's result, so a failing genome never stops the search.
"""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .._io import atomic_torch_save
from .data import SplitDataset, load_dataset
from ..resize.report import parameter_count
from .genome import Genome


@torch.no_grad()
def _accuracy_and_loss(model, x, y, batch_size: int) -> tuple[float, float]:
    model.eval()
    correct, loss = 0, 0.0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        logits = model(xb)
        loss += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    return correct / len(x), loss / len(x)


@torch.no_grad()
def _latency_ms(model, x, repeats: int = 3) -> float:
    """Median eval-mode forward time per sample over a batch of up to 256 samples."""
    model.eval()
    batch = x[:256]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(batch)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times) / len(batch)


def train(model: torch.nn.Module, genome: Genome, data: SplitDataset, *, epochs: int, batch_size: int, seed: int,
          device: torch.device) -> dict[str, Any]:
    """AdamW with a cosine schedule; keeps the weights of the best validation epoch."""
    x, y = data.x_train.to(device), data.y_train.to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=genome.learning_rate, weight_decay=1e-4)
    steps_per_epoch = -(-len(x) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=genome.learning_rate,
                                                    total_steps=epochs * steps_per_epoch, pct_start=0.2)
    generator = torch.Generator().manual_seed(seed)
    best = {"val_accuracy": -1.0}
    best_state = None
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=generator).split(batch_size):
            loss = F.cross_entropy(model(x[idx.to(device)]), y[idx.to(device)])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} in epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        val_accuracy, val_loss = _accuracy_and_loss(model, x_val, y_val, 512)
        if val_accuracy > best["val_accuracy"]:
            best = {"val_accuracy": val_accuracy, "val_loss": val_loss, "best_epoch": epoch + 1}
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return best


def save_weights(path: Path, genome: Genome, model: torch.nn.Module, data: SplitDataset, metrics: dict) -> None:
    """Weights plus what rebuilds the model, loadable with torch.load(weights_only=True); atomic."""
    payload = {"genome": genome.to_json(), "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
               "input_shape": list(data.input_shape), "num_classes": data.num_classes, "metrics": metrics}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(path, payload)


def evaluate(task: dict[str, Any]) -> dict[str, Any]:
    """task: genome (JSON), data, data_seed, data_root, epochs, batch_size, seed, device and
    optionally weights_path. Returns the metrics of the trained model."""
    start = time.perf_counter()
    genome = Genome.from_json(task["genome"])
    data = load_dataset(task["data"], task["data_seed"], task.get("data_root"))
    device = torch.device(task["device"])
    torch.manual_seed(task["seed"])
    model = genome.decode(data.input_shape, data.num_classes).to(device)
    metrics = train(model, genome, data, epochs=task["epochs"], batch_size=task["batch_size"], seed=task["seed"],
                    device=device)
    test_accuracy, _ = _accuracy_and_loss(model, data.x_test.to(device), data.y_test.to(device), 512)
    metrics.update(test_accuracy=test_accuracy, params=parameter_count(model),
                   latency_ms=_latency_ms(model, data.x_val.to(device)), train_seconds=time.perf_counter() - start)
    if task.get("weights_path"):
        save_weights(Path(task["weights_path"]), genome, model, data, metrics)
    return metrics
