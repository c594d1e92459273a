"""Genetic operators on genomes: random sampling, per-gene mutation, crossover.

Every operator takes an explicit ``random.Random`` (whose state the run checkpoints) and
returns a canonical genome inside the search space.
"""

from __future__ import annotations

import dataclasses
import random

from .genome import Block, Genome, Stage
from .space import SearchSpace


def random_block(space: SearchSpace, rng: random.Random) -> Block:
    return Block(
        kind=rng.choice(space.block_kinds),
        channels=rng.choice(space.channels),
        kernel_size=rng.choice(space.kernel_sizes),
        activation=rng.choice(space.activations),
        grid_size=rng.choice(space.grid_sizes),
        spline_order=rng.choice(space.spline_orders),
    ).canonical()


def random_stage(space: SearchSpace, rng: random.Random) -> Stage:
    count = rng.randint(*space.blocks_per_stage)
    return Stage(tuple(random_block(space, rng) for _ in range(count)), rng.choice(space.pools))


def random_genome(space: SearchSpace, rng: random.Random) -> Genome:
    return Genome(
        stages=tuple(random_stage(space, rng) for _ in range(rng.randint(*space.stages))),
        norm=rng.choice(space.norms),
        dropout=rng.choice(space.dropouts),
        head_kind=rng.choice(space.head_kinds),
        head_hidden=rng.choice(space.head_hidden),
        head_grid_size=rng.choice(space.grid_sizes),
        head_spline_order=rng.choice(space.spline_orders),
        learning_rate=rng.choice(space.learning_rates),
    ).canonical()


def _maybe(rng: random.Random, rate: float, current, options):
    """With probability `rate`, another option than `current` (if any)."""
    others = [o for o in options if o != current]
    return rng.choice(others) if others and rng.random() < rate else current


def mutate(genome: Genome, space: SearchSpace, rng: random.Random, rate: float) -> Genome:
    """Each gene changes with probability `rate`; with the same probability a stage gains or
    loses a block and the genome gains or loses a stage (within the space's bounds)."""
    stages = []
    for stage in genome.stages:
        blocks = []
        for b in stage.blocks:
            kind = _maybe(rng, rate, b.kind, space.block_kinds)
            block = Block(
                kind=kind,
                channels=_maybe(rng, rate, b.channels, space.channels),
                kernel_size=_maybe(rng, rate, b.kernel_size, space.kernel_sizes),
                activation=_maybe(rng, rate, b.activation, space.activations),
                # a conv block turned KAN needs fresh spline genes
                grid_size=_maybe(rng, rate, b.grid_size, space.grid_sizes) if b.grid_size else rng.choice(space.grid_sizes),
                spline_order=(_maybe(rng, rate, b.spline_order, space.spline_orders) if b.spline_order
                              else rng.choice(space.spline_orders)),
            )
            blocks.append(block.canonical())
        if rng.random() < rate:
            if len(blocks) < space.blocks_per_stage[1] and (rng.random() < 0.5 or len(blocks) == space.blocks_per_stage[0]):
                blocks.insert(rng.randrange(len(blocks) + 1), random_block(space, rng))
            elif len(blocks) > space.blocks_per_stage[0]:
                blocks.pop(rng.randrange(len(blocks)))
        stages.append(Stage(tuple(blocks), _maybe(rng, rate, stage.pool, space.pools)))
    if rng.random() < rate:
        if len(stages) < space.stages[1] and (rng.random() < 0.5 or len(stages) == space.stages[0]):
            stages.insert(rng.randrange(len(stages) + 1), random_stage(space, rng))
        elif len(stages) > space.stages[0]:
            stages.pop(rng.randrange(len(stages)))
    head_grid = genome.head_grid_size or rng.choice(space.grid_sizes)
    head_order = genome.head_spline_order or rng.choice(space.spline_orders)
    return Genome(
        stages=tuple(stages),
        norm=_maybe(rng, rate, genome.norm, space.norms),
        dropout=_maybe(rng, rate, genome.dropout, space.dropouts),
        head_kind=_maybe(rng, rate, genome.head_kind, space.head_kinds),
        head_hidden=_maybe(rng, rate, genome.head_hidden, space.head_hidden),
        head_grid_size=_maybe(rng, rate, head_grid, space.grid_sizes),
        head_spline_order=_maybe(rng, rate, head_order, space.spline_orders),
        learning_rate=_maybe(rng, rate, genome.learning_rate, space.learning_rates),
    ).canonical()


def crossover(a: Genome, b: Genome, rng: random.Random) -> Genome:
    """Uniform crossover: the stage count comes from one parent, each stage from either parent
    that has one at that depth, each global gene from either parent."""
    length = len(rng.choice((a, b)).stages)
    stages = []
    for i in range(length):
        donors = [g.stages[i] for g in (a, b) if i < len(g.stages)]
        stages.append(rng.choice(donors))
    pick = {f.name: getattr(rng.choice((a, b)), f.name) for f in dataclasses.fields(Genome) if f.name != "stages"}
    if pick["head_kind"] == "kan" and not (pick["head_grid_size"] and pick["head_spline_order"]):
        # a KAN head with genes taken from the other parent's linear head: use the KAN parent's
        kan_parent = a if a.head_kind == "kan" else b
        pick["head_grid_size"], pick["head_spline_order"] = kan_parent.head_grid_size, kan_parent.head_spline_order
    return Genome(stages=tuple(stages), **pick).canonical()
