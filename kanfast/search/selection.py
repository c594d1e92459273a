"""Selection: tournaments on a scalar fitness, or NSGA-II ranks (Pareto front, then crowding
distance) when several objectives are optimised."""

from __future__ import annotations

import math
import random
from typing import Sequence

# An objective vector is maximised component-wise (minimised objectives are negated first).
Objectives = tuple[float, ...]


def dominates(a: Objectives, b: Objectives) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def non_dominated_fronts(points: Sequence[Objectives]) -> list[list[int]]:
    """Indices grouped into Pareto fronts, best first (fast non-dominated sort)."""
    dominated_by: list[list[int]] = [[] for _ in points]
    counts = [0] * len(points)
    fronts: list[list[int]] = [[]]
    for i, p in enumerate(points):
        for j, q in enumerate(points):
            if dominates(p, q):
                dominated_by[i].append(j)
            elif dominates(q, p):
                counts[i] += 1
        if counts[i] == 0:
            fronts[0].append(i)
    while fronts[-1]:
        nxt = []
        for i in fronts[-1]:
            for j in dominated_by[i]:
                counts[j] -= 1
                if counts[j] == 0:
                    nxt.append(j)
        fronts.append(nxt)
    return fronts[:-1]


def crowding_distances(points: Sequence[Objectives], front: Sequence[int]) -> dict[int, float]:
    distance = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: math.inf for i in front}
    for m in range(len(points[front[0]])):
        ordered = sorted(front, key=lambda i: points[i][m])
        low, high = points[ordered[0]][m], points[ordered[-1]][m]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if high == low:
            continue
        for k in range(1, len(ordered) - 1):
            distance[ordered[k]] += (points[ordered[k + 1]][m] - points[ordered[k - 1]][m]) / (high - low)
    return distance


def rank_keys(points: Sequence[Objectives]) -> list[tuple[float, float]]:
    """Per point a key that sorts better points first: (front index, -crowding distance)."""
    keys: list[tuple[float, float]] = [(0.0, 0.0)] * len(points)
    for rank, front in enumerate(non_dominated_fronts(points)):
        for i, d in crowding_distances(points, front).items():
            keys[i] = (float(rank), -d)
    return keys


def tournament(keys: Sequence, size: int, rng: random.Random) -> int:
    """Index of the best (smallest key) of `size` entrants drawn with replacement."""
    entrants = [rng.randrange(len(keys)) for _ in range(size)]
    return min(entrants, key=lambda i: (keys[i], i))
