"""Genetic architecture search over CNNs of KANConv2d and Conv2d blocks.

``python -m kanfast.search --help`` for the command line; ``kanfast.search.run(config)`` from
Python; ``kanfast.search.load_best(run_dir)`` rebuilds the best model of a run.
"""

from .config import SearchConfig
from .data import load_dataset
from .engine import SearchResult, run
from .genome import Block, Genome, Stage
from .rundir import load_best
from .space import SearchSpace

__all__ = ["Block", "Genome", "SearchConfig", "SearchResult", "SearchSpace", "Stage", "load_best", "load_dataset",
           "run"]
