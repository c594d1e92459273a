"""Genomes: typed, validated descriptions of a CNN of KANConv2d and/or Conv2d blocks.

A genome is plain data (frozen dataclasses) that serialises to canonical JSON and hashes
stably (sha256 of that JSON), so identical architectures are recognised whatever their
history. Genes that do not affect the model (a Conv2d block's spline settings) are stored
canonically as 0, so they never make two equal models look different.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from torch import nn

from ..nn import KANConv2d, KANLinear
from .space import SearchSpace

FORMAT_VERSION = 1

_ACTIVATIONS = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}


@dataclasses.dataclass(frozen=True)
class Block:
    kind: str  # "kan" (KANConv2d) or "conv" (Conv2d + activation)
    channels: int
    kernel_size: int
    activation: str
    grid_size: int = 0  # kan blocks only (0 for conv)
    spline_order: int = 0

    def canonical(self) -> "Block":
        if self.kind == "conv":
            return dataclasses.replace(self, grid_size=0, spline_order=0)
        return self


@dataclasses.dataclass(frozen=True)
class Stage:
    blocks: tuple[Block, ...]
    pool: str  # "max", "avg" or "none"; 2x2, skipped when the feature map is already 1 pixel wide


@dataclasses.dataclass(frozen=True)
class Genome:
    stages: tuple[Stage, ...]
    norm: str  # "batch" or "none", after every block
    dropout: float  # before the head
    head_kind: str  # "kan" (KANLinear) or "linear"
    head_hidden: int  # width of a hidden head layer, 0 for none
    head_grid_size: int  # kan heads only (0 for linear)
    head_spline_order: int
    learning_rate: float

    # ------------------------------------------------------------------ identity

    def canonical(self) -> "Genome":
        stages = tuple(Stage(tuple(b.canonical() for b in s.blocks), s.pool) for s in self.stages)
        head = {} if self.head_kind == "kan" else {"head_grid_size": 0, "head_spline_order": 0}
        return dataclasses.replace(self, stages=stages, dropout=float(self.dropout),
                                   learning_rate=float(self.learning_rate), **head)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self.canonical())
        data["version"] = FORMAT_VERSION
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Genome":
        data = dict(data)
        version = data.pop("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(f"genome format version {version} is not supported (expected {FORMAT_VERSION})")
        try:
            stages = tuple(Stage(tuple(Block(**b) for b in s["blocks"]), s["pool"]) for s in data.pop("stages"))
            return cls(stages=stages, **data).canonical()
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a valid genome: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> "Genome":
        return cls.from_dict(json.loads(text))

    # ------------------------------------------------------------------ validity

    def validate(self, space: SearchSpace) -> "Genome":
        """Raises ValueError naming the first gene outside the space; returns self."""

        def need(ok: bool, gene: str, value: Any, allowed: Any) -> None:
            if not ok:
                raise ValueError(f"genome gene {gene} = {value!r} is outside the search space (allowed: {allowed})")

        need(space.stages[0] <= len(self.stages) <= space.stages[1], "stages", len(self.stages), space.stages)
        for i, stage in enumerate(self.stages):
            need(stage.pool in space.pools, f"stages[{i}].pool", stage.pool, space.pools)
            need(space.blocks_per_stage[0] <= len(stage.blocks) <= space.blocks_per_stage[1], f"stages[{i}].blocks",
                 len(stage.blocks), space.blocks_per_stage)
            for j, b in enumerate(stage.blocks):
                where = f"stages[{i}].blocks[{j}]"
                need(b.kind in space.block_kinds, f"{where}.kind", b.kind, space.block_kinds)
                need(b.channels in space.channels, f"{where}.channels", b.channels, space.channels)
                need(b.kernel_size in space.kernel_sizes, f"{where}.kernel_size", b.kernel_size, space.kernel_sizes)
                need(b.activation in space.activations, f"{where}.activation", b.activation, space.activations)
                if b.kind == "kan":
                    need(b.grid_size in space.grid_sizes, f"{where}.grid_size", b.grid_size, space.grid_sizes)
                    need(b.spline_order in space.spline_orders, f"{where}.spline_order", b.spline_order,
                         space.spline_orders)
        need(self.norm in space.norms, "norm", self.norm, space.norms)
        need(self.dropout in space.dropouts, "dropout", self.dropout, space.dropouts)
        need(self.head_kind in space.head_kinds, "head_kind", self.head_kind, space.head_kinds)
        need(self.head_hidden in space.head_hidden, "head_hidden", self.head_hidden, space.head_hidden)
        if self.head_kind == "kan":
            need(self.head_grid_size in space.grid_sizes, "head_grid_size", self.head_grid_size, space.grid_sizes)
            need(self.head_spline_order in space.spline_orders, "head_spline_order", self.head_spline_order,
                 space.spline_orders)
        need(self.learning_rate in space.learning_rates, "learning_rate", self.learning_rate, space.learning_rates)
        return self

    # ------------------------------------------------------------------ decoding

    def decode(self, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        """The model for inputs of shape (C, H, W): deterministic, and valid for any genome
        (feature sizes are computed from input_shape, pools skipped on 1-pixel maps)."""
        channels, height, width = input_shape
        layers: list[nn.Module] = []
        batch_norm = self.norm == "batch"
        for stage in self.stages:
            for b in stage.blocks:
                if b.kind == "kan":
                    layers.append(KANConv2d(channels, b.channels, b.kernel_size, padding="same", bias=not batch_norm,
                                            grid_size=b.grid_size, spline_order=b.spline_order,
                                            base_activation=_ACTIVATIONS[b.activation]))
                    if batch_norm:
                        layers.append(nn.BatchNorm2d(b.channels))
                else:
                    layers.append(nn.Conv2d(channels, b.channels, b.kernel_size, padding="same", bias=not batch_norm))
                    if batch_norm:
                        layers.append(nn.BatchNorm2d(b.channels))
                    layers.append(_ACTIVATIONS[b.activation]())
                channels = b.channels
            if stage.pool != "none" and min(height, width) >= 2:
                layers.append(nn.MaxPool2d(2) if stage.pool == "max" else nn.AvgPool2d(2))
                height, width = height // 2, width // 2
        features = channels * height * width
        head: list[nn.Module] = [nn.Flatten()]
        if self.dropout > 0:
            head.append(nn.Dropout(self.dropout))
        kan = dict(grid_size=self.head_grid_size, spline_order=self.head_spline_order)
        if self.head_hidden:
            if self.head_kind == "kan":
                head.append(KANLinear(features, self.head_hidden, **kan))
            else:
                head += [nn.Linear(features, self.head_hidden), nn.SiLU()]
            features = self.head_hidden
        head.append(KANLinear(features, num_classes, **kan) if self.head_kind == "kan"
                    else nn.Linear(features, num_classes))
        return nn.Sequential(nn.Sequential(*layers), nn.Sequential(*head))

    def describe(self) -> str:
        """One line: e.g. 'kan16k3g5·conv32k3 |max| kan32k5g3 |none| head kan64'."""
        parts = []
        for stage in self.stages:
            blocks = "·".join(f"{b.kind}{b.channels}k{b.kernel_size}" + (f"g{b.grid_size}" if b.kind == "kan" else "")
                              for b in stage.blocks)
            parts.append(f"{blocks} |{stage.pool}|")
        head = f"head {self.head_kind}" + (f"{self.head_hidden}" if self.head_hidden else "")
        return " ".join(parts) + f" {head} lr={self.learning_rate:g}"


