"""``python -m kanfast.demo``: train a small KAN MLP (``--model mlp``) or KAN CNN
(``--model cnn``) on scikit-learn's bundled handwritten digits (8×8 images, 10 classes, no
download) and report test accuracy and speed."""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn
from tqdm import tqdm

import kanfast
from kanfast.models import KANCNN


def load_digits_split(seed: int = 0):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # (N, 1, 8, 8), pixels -> [-1, 1]
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    n_test = len(x) // 5
    return (x[n_test:], y[n_test:]), (x[:n_test], y[:n_test])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_digits_split(args.seed)
    if args.model == "mlp":
        model = nn.Sequential(nn.Flatten(), kanfast.KANLinear(64, args.hidden), kanfast.KANLinear(args.hidden, 10))
        name = f"KAN MLP 64-{args.hidden}-10"
    else:
        model = KANCNN(1, 10, input_size=(8, 8), channels=(16, 32))
        name = "KAN CNN (KANConv2d 16, 32 + KANLinear head)"
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    steps = 0
    bar = tqdm(range(args.epochs), desc="training", disable=not sys.stderr.isatty())
    for _ in bar:
        model.train()
        for idx in torch.randperm(len(x_train)).split(args.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
            steps += 1
        bar.set_postfix(loss=f"{loss.item():.3f}")
    elapsed = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"{name} on digits: test accuracy {accuracy:.2%} after {args.epochs} epochs "
          f"({steps} steps, {elapsed:.1f} s, backend {kanfast._backend.choose('kan_linear', x_test.device)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
