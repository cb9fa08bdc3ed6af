"""Label-free baselines: the chance ranking every metric is read against (reference.md#method-random)."""

from __future__ import annotations

import numpy as np

from bench.core.method import Method


class RandomRanking(Method):
    """A uniformly random order of the live neurons, drawn from the cell's seeded generator."""

    uses_labels = False

    def __init__(self, normalize: str = "raw"):
        self.normalize = normalize

    def order(self, Z, y, rng: np.random.Generator, **inputs) -> np.ndarray:
        return rng.permutation(Z.shape[1])
