"""Datasets for the search: scikit-learn's bundled digits by default, a user's .npz file, or
CIFAR-10/100 through torchvision when it is installed and the files are present.

Every dataset is split into train / validation / test with a fixed seed; the search's
fitness uses the validation split only, and the test split scores the final model.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class SplitDataset:
    name: str
    x_train: torch.Tensor  # (N, C, H, W) float32, roughly in [-1, 1]
    y_train: torch.Tensor  # (N,) int64
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def summary(self) -> str:
        return (f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} validation / {len(self.x_test)} test, "
                f"inputs {self.input_shape}, {self.num_classes} classes")


def _split(name: str, x: np.ndarray, y: np.ndarray, seed: int, fractions=(0.6, 0.2)) -> SplitDataset:
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_train = int(round(fractions[0] * len(x)))
    n_val = int(round(fractions[1] * len(x)))
    if min(n_train, n_val, len(x) - n_train - n_val) < 1:
        raise ValueError(f"dataset {name}: {len(x)} samples are too few for train/validation/test splits")
    # Scale each channel to [-1, 1] with the training split's range (the KAN grids' default range).
    train = x[:n_train]
    low = train.min(axis=(0, 2, 3), keepdims=True)
    high = train.max(axis=(0, 2, 3), keepdims=True)
    x = (2 * (x - low) / np.maximum(high - low, 1e-12) - 1).astype(np.float32)
    t = torch.from_numpy(x)
    labels = torch.from_numpy(y.astype(np.int64))
    a, b = n_train, n_train + n_val
    return SplitDataset(name, t[:a], labels[:a], t[a:b], labels[a:b], t[b:], labels[b:],
                        num_classes=int(labels.max()) + 1)


def _digits(seed: int) -> SplitDataset:
    from sklearn.datasets import load_digits

    data = load_digits()
    return _split("digits", data.images[:, None].astype(np.float64), data.target, seed)


def _npz(path: Path, seed: int) -> SplitDataset:
    if not path.is_file():
        raise ValueError(f"--data {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive or "y" not in archive:
                raise ValueError(f"--data {path}: the archive must hold arrays 'x' (N, C, H, W) and 'y' (N,); "
                                 f"found {sorted(archive.files)}")
            x, y = archive["x"], archive["y"]
    except (OSError, ValueError) as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(f"--data {path}: object arrays are not accepted (files load without pickle)") from exc
        raise
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"--data {path}: x must be a numeric array of shape (N, C, H, W), got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"--data {path}: y must be an integer array of shape (N,) = ({len(x)},), got {y.dtype} {y.shape}")
    if y.min() < 0 or len(np.unique(y)) < 2:
        raise ValueError(f"--data {path}: y must hold class indices 0..K-1 with at least 2 classes")
    if not np.isfinite(x).all():
        raise ValueError(f"--data {path}: x contains NaN or inf")
    return _split(path.stem, x.astype(np.float64), y, seed)


def _cifar(name: str, root: Path | None, seed: int) -> SplitDataset:
    try:
        import torchvision
    except ImportError as exc:
        raise ValueError(f"--data {name} needs torchvision, which is not installed") from exc
    root = root or Path.home() / ".cache" / "kanfast" / "data"
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        parts = [cls(str(root), train=train, download=False) for train in (True, False)]
    except RuntimeError as exc:
        raise ValueError(f"--data {name}: dataset files not found under {root} (download them there first)") from exc
    x = np.concatenate([p.data for p in parts]).transpose(0, 3, 1, 2).astype(np.float64)
    y = np.concatenate([np.asarray(p.targets) for p in parts])
    return _split(name, x, y, seed)


@functools.lru_cache(maxsize=4)
def load_dataset(spec: str = "digits", seed: int = 0, root: str | None = None) -> SplitDataset:
    """``spec``: "digits", "cifar10", "cifar100" or the path of an .npz file with x and y."""
    if spec == "digits":
        return _digits(seed)
    if spec in ("cifar10", "cifar100"):
        return _cifar(spec, Path(root) if root else None, seed)
    if spec.endswith(".npz"):
        return _npz(Path(spec), seed)
    raise ValueError(f"--data must be 'digits', 'cifar10', 'cifar100' or a .npz file, got {spec!r}")
