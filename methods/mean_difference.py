"""Concept-vs-rest mean differences: `probeless_ovr` and `meanselect` (reference.md#method-probeless,
reference.md#method-meanselect).

Both compare a class with the frequency-weighted mixture of all other words (the concept form's OTHER), unlike
`probeless`, which weighs every class pair equally.
"""

from __future__ import annotations

import numpy as np

from bench.core.method import Method
from methods.probeless import class_means
from methods.univariate import max_over_classes


def one_vs_rest_mean_gap(Z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """max_c |μ+_cj − μ−_cj| per neuron, μ− being the mean over all words not in class c.

    μ− comes from the class sums minus the class's own sum, so every class costs O(D) after one O(N·D) pass.
    """
    n_classes = int(y.max()) + 1
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    means = class_means(Z, y, n_classes).astype(np.float64)
    sums = counts[:, None] * means
    total = sums.sum(axis=0)

    def gap(c: int) -> np.ndarray:
        rest_mean = (total - sums[c]) / (len(y) - counts[c])
        return np.abs(means[c] - rest_mean)

    return max_over_classes(gap, y, Z.shape[1])


class ProbelessOVR(Method):
    """`probeless_ovr`: s_j = |μ+_j − μ−_j|; multi-class labels: one-vs-rest per class, max over classes.

    In the concept form it ranks exactly like `probeless`, SAEBench's mean-difference mask and Gurnee et al.'s
    `mean_dif` (reference.md#method-probeless).
    """

    def __init__(self, normalize: str = "zscore"):
        self.normalize = normalize

    def scores(self, Z, y, rng, **inputs) -> np.ndarray:
        return one_vs_rest_mean_gap(Z, y)


class MeanSelect(Method):
    """`meanselect`: |μ+_j − μ−_j| / (max_i x_ij − min_i x_ij + 1e-7) on train (reference.md#method-meanselect).

    The range does not depend on the class, so max_c |sel_cj| is the one-vs-rest gap over the range. Fan et al.
    take μ− from dev; that leaks dev into the ranking, so it is not reproduced.
    """

    def __init__(self, normalize: str = "zscore"):
        self.normalize = normalize

    def scores(self, Z, y, rng, **inputs) -> np.ndarray:
        value_range = Z.max(axis=0).astype(np.float64) - Z.min(axis=0)
        return one_vs_rest_mean_gap(Z, y) / (value_range + 1e-7)
