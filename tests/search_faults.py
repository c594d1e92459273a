"""An evaluator for the search tests that misbehaves on purpose, chosen by learning rate:
0.002 raises, 0.003 kills its process, 0.004 hangs, anything else trains for real."""

import os
import time

from kanfast.search.genome import Genome
from kanfast.search.trial import evaluate as real_evaluate

FAULTS = {0.002: "raise", 0.003: "exit", 0.004: "hang"}


def evaluate(task):
    fault = FAULTS.get(Genome.from_json(task["genome"]).learning_rate)
    if fault == "raise":
        raise RuntimeError("injected failure")
    if fault == "exit":
        os._exit(3)
    if fault == "hang":
        time.sleep(3600)
    return real_evaluate(task)
