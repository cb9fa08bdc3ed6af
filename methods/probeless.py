"""Probeless ranking: how far apart the class means of each neuron are (Antverg & Belinkov 2022).

reference.md#method-probeless. No probe is trained, so the ranking cannot inherit a probe's biases.
"""

from __future__ import annotations

import numpy as np

from bench.core.method import Method


def class_means(Z: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, D) per-class means by one matrix product; an empty class gets the overall mean."""
    onehot = np.zeros((len(y), n_classes), dtype=np.float32)
    onehot[np.arange(len(y)), y] = 1.0
    counts = onehot.sum(axis=0)
    sums = onehot.T @ Z
    overall = Z.mean(axis=0, keepdims=True)
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], overall)


def pairwise_mean_distance(means: np.ndarray) -> np.ndarray:
    """sum_{a<b} |mu_a - mu_b| per neuron in O(C log C): after sorting, the i-th smallest mean
    (0-based) appears with sign + in i pairs and with sign - in C-1-i pairs."""
    n_classes = means.shape[0]
    weights = 2 * np.arange(n_classes) - (n_classes - 1)
    return weights.astype(np.float64) @ np.sort(means.astype(np.float64), axis=0)


class Probeless(Method):
    """Multi-class `probeless`: s_j = sum over class pairs of |mu_a,j - mu_b,j|.

    In the concept form it is |mu+ - mu-|, SAEBench's and Gurnee et al.'s mean-difference selector.
    """

    def __init__(self, normalize: str = "zscore"):
        self.normalize = normalize

    def scores(self, Z, y, rng, **inputs) -> np.ndarray:
        return pairwise_mean_distance(class_means(Z, y, int(y.max()) + 1))
