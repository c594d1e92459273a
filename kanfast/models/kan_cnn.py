"""``KANCNN``: a configurable stack of KANConv2d blocks with pooling and a KANLinear head."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..nn import KANConv2d, KANLinear


class KANCNN(nn.Module):
    """Image classifier: ``[KANConv2d -> (BatchNorm2d) -> MaxPool2d] × len(channels) -> KANLinear``.

    The head's input size is computed from ``input_size``, so any stack that keeps at least one
    pixel is valid; a stage whose input is already 1 pixel wide skips its pooling.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        input_size: tuple[int, int],
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        pool: int = 2,
        batch_norm: bool = True,
        dropout: float = 0.0,
        grid_size: int = 5,
        spline_order: int = 3,
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("KANCNN: channels must name at least one stage")
        kan = dict(grid_size=grid_size, spline_order=spline_order)
        layers: list[nn.Module] = []
        height, width = input_size
        previous = in_channels
        for c in channels:
            layers.append(KANConv2d(previous, c, kernel_size, padding="same", bias=not batch_norm, **kan))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            if pool > 1 and min(height, width) >= pool:
                layers.append(nn.MaxPool2d(pool))
                height, width = height // pool, width // pool
            previous = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), KANLinear(previous * height * width, num_classes,
                                                                                **kan))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
