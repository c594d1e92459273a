import json
import random

import pytest
import torch
from hypothesis import given, settings, strategies as st

from kanfast.search.genome import Genome
from kanfast.search.operators import crossover, mutate, random_genome
from kanfast.search.selection import crowding_distances, non_dominated_fronts, rank_keys, tournament
from kanfast.search.space import SearchSpace

SPACE = SearchSpace()
WIDE = SearchSpace(stages=(1, 4), blocks_per_stage=(1, 3), channels=(2, 3), kernel_sizes=(1, 3, 5, 7),
                   grid_sizes=(1, 2, 6), spline_orders=(1, 2, 4), activations=("silu", "gelu", "relu", "tanh"))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from([(1, 8, 8), (3, 5, 7), (2, 1, 9), (1, 12, 12)]),
       classes=st.integers(2, 11), wide=st.booleans())
def test_every_sampled_mutated_and_crossed_genome_is_valid_and_decodes(seed, shape, classes, wide):
    space = WIDE if wide else SPACE
    rng = random.Random(seed)
    a, b = random_genome(space, rng), random_genome(space, rng)
    for genome in (a, mutate(a, space, rng, 0.5), crossover(a, b, rng), mutate(crossover(a, b, rng), space, rng, 1.0)):
        genome.validate(space)
        model = genome.decode(shape, classes)
        assert model(torch.randn(2, *shape)).shape == (2, classes)
        # decoding is deterministic: same genome, same seed, same weights
        torch.manual_seed(0)
        first = genome.decode(shape, classes).state_dict()
        torch.manual_seed(0)
        second = genome.decode(shape, classes).state_dict()
        assert all(torch.equal(first[k], second[k]) for k in first)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_json_round_trip_and_stable_hash(seed):
    genome = random_genome(WIDE, random.Random(seed))
    again = Genome.from_json(genome.to_json())
    assert again == genome and again.hash == genome.hash
    assert Genome.from_dict(json.loads(json.dumps(genome.to_dict()))).hash == genome.hash


def test_hash_is_stable_across_versions_and_ignores_irrelevant_genes():
    genome = Genome.from_dict({
        "stages": [{"pool": "max", "blocks": [{"kind": "conv", "channels": 8, "kernel_size": 3,
                                                "activation": "relu", "grid_size": 5, "spline_order": 3}]}],
        "norm": "batch", "dropout": 0.1, "head_kind": "linear", "head_hidden": 0, "head_grid_size": 5,
        "head_spline_order": 3, "learning_rate": 0.003})
    # a conv block's and a linear head's spline genes are stored as 0: they do not change the model
    assert genome.stages[0].blocks[0].grid_size == 0 and genome.head_grid_size == 0
    assert genome.hash == "28d1b7a0e9f164d6"  # a change here orphans every existing run directory
    assert genome.hash == Genome.from_json(genome.to_json()).hash


def test_validation_names_the_gene():
    genome = random_genome(SPACE, random.Random(0))
    narrow = SearchSpace(learning_rates=(0.5,))
    with pytest.raises(ValueError, match=r"genome gene learning_rate = .* is outside the search space"):
        genome.validate(narrow)
    with pytest.raises(ValueError, match="not a valid genome"):
        Genome.from_dict({"stages": [{"blocks": []}]})


def test_mutation_rate_zero_keeps_and_one_changes():
    rng = random.Random(1)
    genome = random_genome(SPACE, rng)
    assert mutate(genome, SPACE, rng, 0.0) == genome
    assert mutate(genome, SPACE, random.Random(2), 1.0) != genome
    assert crossover(genome, genome, rng) == genome


def test_tournament_with_the_whole_population_picks_the_best():
    keys = [(3.0,), (1.0,), (2.0,)]
    rng = random.Random(0)
    picks = {tournament(keys, 50, rng) for _ in range(10)}
    assert picks == {1}


def test_pareto_fronts_and_crowding():
    points = [(0.9, -10.0), (0.8, -5.0), (0.7, -20.0), (0.95, -30.0), (0.6, -1.0)]
    fronts = non_dominated_fronts(points)
    assert sorted(fronts[0]) == [0, 1, 3, 4] and fronts[1] == [2]
    distances = crowding_distances(points, fronts[0])
    assert distances[3] == distances[4] == float("inf") and 0 < distances[0] < float("inf")
    keys = rank_keys(points)
    assert keys[2][0] == 1.0 and all(keys[i][0] == 0.0 for i in fronts[0])


@pytest.mark.parametrize("overrides,match", [
    ({"stages": (3, 1)}, "stages must be an increasing pair"),
    ({"kernel_sizes": (2,)}, "kernel sizes must be odd"),
    ({"pools": ("median",)}, r"pools has unknown choices \['median'\]"),
    ({"channels": ()}, "channels must offer at least one choice"),
])
def test_bad_search_space_is_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        SearchSpace(**overrides)
    with pytest.raises(ValueError, match="unknown keys"):
        SearchSpace.from_dict({"chanels": [8]})


def test_equal_accuracies_rank_by_validation_loss_and_failures_last():
    from kanfast.search.config import SearchConfig
    from kanfast.search.engine import _objective_vector, _selection_keys

    config = SearchConfig()
    metrics = [{"val_accuracy": 1.0, "val_loss": 0.30, "params": 10, "latency_ms": 1.0},
               {"val_accuracy": 1.0, "val_loss": 0.05, "params": 10, "latency_ms": 1.0},
               None,
               {"val_accuracy": 0.9, "val_loss": 0.01, "params": 10, "latency_ms": 1.0}]
    keys = _selection_keys(config, [_objective_vector(config, m) for m in metrics])
    assert sorted(range(4), key=keys.__getitem__) == [1, 0, 3, 2]
    multi = SearchConfig(objectives=("accuracy", "params"))
    assert _objective_vector(multi, metrics[0]) == (1.0, -10.0)  # the tie-breaker is not an objective
