"""Univariate statistics of one neuron against the labels: `anova_f`, `mi`, `mi_hist`, and the one-vs-rest
reduction shared by every per-class detector score (reference.md#method-univariate).

They score each neuron alone, so they are blind to redundancy and to codes spread over many weak neurons.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.special import xlogy
from sklearn.feature_selection import mutual_info_classif

from methods.base import Method
from methods.probeless import class_means


def concept_classes(y: np.ndarray) -> np.ndarray:
    """The classes scored one-vs-rest (reference.md#data-labels).

    Labels {0, 1} are the concept form (0 = OTHER, 1 = concept), so only class 1 is a concept: a detector of
    OTHER is not a detector of the concept. Otherwise every class with both members and non-members counts.
    """
    counts = np.bincount(y)
    candidates = np.array([1]) if len(counts) == 2 else np.arange(len(counts))
    return candidates[(counts[candidates] > 0) & (counts[candidates] < len(y))]


def max_over_classes(score_class: Callable[[int], np.ndarray], y: np.ndarray, n_neurons: int) -> np.ndarray:
    """max_c score_class(c) over `concept_classes(y)`: a neuron counts as important if it singles out any one
    class. NaN loses to any number; with no scorable class every score is -inf (index order)."""
    best = np.full(n_neurons, -np.inf)
    for c in concept_classes(y):
        best = np.fmax(best, score_class(int(c)))
    return best


class AnovaF(Method):
    """`anova_f`: one-way ANOVA F per neuron, equal to scikit-learn's `f_classif` (reference.md#method-univariate).

    The within-class sum of squares is summed directly rather than as a difference of totals, so a neuron that
    is constant inside every class gets exactly 0 there and F = +inf (top of the ranking), not a rounding
    artefact.
    """

    def __init__(self, normalize: str = "zscore"):
        self.normalize = normalize

    def scores(self, Z, y, rng, **inputs) -> np.ndarray:
        n_classes = int(y.max()) + 1
        counts = np.bincount(y, minlength=n_classes)
        means = class_means(Z.astype(np.float64), y, n_classes)
        ss_within = np.square(Z - means[y]).sum(axis=0)
        ss_between = counts @ np.square(means - Z.mean(axis=0, dtype=np.float64))
        df_between = np.count_nonzero(counts) - 1
        df_within = len(y) - np.count_nonzero(counts)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (ss_between / df_between) / (ss_within / df_within)


class MutualInformationKNN(Method):
    """`mi`: kNN estimate of I(x_j; y), scikit-learn's `mutual_info_classif` (reference.md#method-univariate).

    The estimator adds tiny noise and costs O(D·N log N) with large constants, so its `random_state` and a
    sample of at most `max_samples` words both come from the cell generator: the cell seed fixes the result.
    """

    def __init__(self, n_neighbors: int = 3, max_samples: int = 10_000, normalize: str = "zscore"):
        self.n_neighbors = n_neighbors
        self.max_samples = max_samples
        self.normalize = normalize

    def scores(self, Z, y, rng, **inputs) -> np.ndarray:
        if len(y) > self.max_samples:
            sample = np.sort(rng.choice(len(y), size=self.max_samples, replace=False))
            Z, y = Z[sample], y[sample]
        seed = int(rng.integers(np.iinfo(np.uint32).max))
        return mutual_info_classif(Z, y, n_neighbors=self.n_neighbors, random_state=seed)


def entropy_of_counts(counts: np.ndarray, n: int, axis) -> np.ndarray:
    """Miller–Madow entropy (nats): the plug-in entropy plus (occupied cells − 1)/(2n), which removes the
    first-order downward bias of the plug-in estimate."""
    plug_in = np.log(n) - xlogy(counts, counts).sum(axis=axis) / n
    return plug_in + (np.count_nonzero(counts, axis=axis) - 1) / (2 * n)


class MutualInformationHistogram(Method):
    """`mi_hist`: deterministic MI from `bins` equal-frequency bins per neuron (reference.md#method-univariate).

    Equal-frequency edges make the binning invariant to increasing maps of each neuron, like the kNN estimator;
    ties never straddle an edge, so post-ReLU zeros share one bin. I = H(x) + H(y) − H(x, y), each term
    Miller–Madow corrected, so an independent neuron scores ≈ 0 instead of ≈ (bins−1)(C−1)/(2N).
    """

    def __init__(self, bins: int = 32, normalize: str = "zscore"):
        self.bins = bins
        self.normalize = normalize

    def scores(self, Z, y, rng, **inputs) -> np.ndarray:
        n, n_neurons = Z.shape
        n_classes = int(y.max()) + 1
        edges = np.quantile(Z, np.arange(1, self.bins) / self.bins, axis=0)
        bin_of = np.zeros(Z.shape, dtype=np.int32)
        for edge in edges:  # the bin of x is the number of edges below it
            bin_of += Z > edge
        cell = (np.arange(n_neurons) * self.bins + bin_of) * n_classes + y[:, None]
        joint = np.bincount(cell.ravel(), minlength=n_neurons * self.bins * n_classes)
        joint = joint.reshape(n_neurons, self.bins, n_classes).astype(np.float64)
        h_x = entropy_of_counts(joint.sum(axis=2), n, axis=1)
        h_y = entropy_of_counts(np.bincount(y).astype(np.float64), n, axis=0)
        h_xy = entropy_of_counts(joint.reshape(n_neurons, -1), n, axis=1)
        return h_x + h_y - h_xy
