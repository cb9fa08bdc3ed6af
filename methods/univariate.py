"""Univariate statistics of one neuron against the labels: `anova_f`, `mi`, `mi_hist`, and the one-vs-rest
reduction shared by every per-class detector score (reference.md#method-univariate).

They score each neuron alone, so they are blind to redundancy and to codes spread over many weak neurons.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.special import digamma, xlogy

from bench.core.method import Method
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


MI_CHUNK = 64  # neurons per vectorized block: bounds the (N, chunk) float64 work arrays


def kth_neighbour_distance(sorted_values: np.ndarray, k: int) -> np.ndarray:
    """Distance from each entry of a row-sorted (b, n) array to its k-th nearest other entry in the same row.

    In 1-D the k nearest neighbours of the p-th smallest value fill a window of k + 1 consecutive sorted entries
    that contains p, so the k-th distance is the smallest, over the k + 1 such windows, of the larger of the two
    window ends' distances. Padding with ∓inf rules out windows that leave the array.
    """
    b, n = sorted_values.shape
    padded = np.concatenate([np.full((b, k), -np.inf), sorted_values, np.full((b, k), np.inf)], axis=1)
    best = np.full((b, n), np.inf)
    for left in range(k + 1):  # the window holds `left` entries below p and k - left above
        below = sorted_values - padded[:, k - left:k - left + n]
        above = padded[:, 2 * k - left:2 * k - left + n] - sorted_values
        np.minimum(best, np.maximum(below, above), out=best)
    return best


def count_within(sorted_values: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Per row, how many entries v of row-sorted `sorted_values` have |v − centre| <= radius.

    `searchsorted` on centre ± radius finds both ends up to the rounding of that sum; since |v − centre| is
    monotone in v on each side, exact comparisons of the entries next to each end then settle the boundary.
    """
    n = sorted_values.shape[1]
    lo = np.empty(centres.shape, dtype=np.int64)
    hi = np.empty(centres.shape, dtype=np.int64)
    for j in range(len(centres)):
        lo[j] = np.searchsorted(sorted_values[j], centres[j] - radii[j], side="left")
        hi[j] = np.searchsorted(sorted_values[j], centres[j] + radii[j], side="right")

    def at(index):
        return np.take_along_axis(sorted_values, np.clip(index, 0, n - 1), axis=1)

    while True:  # one pass almost always settles it; loop in case several entries lie within the rounding
        lo_move = ((lo < n) & (centres - at(lo) > radii)).astype(np.int64) \
            - ((lo > 0) & (centres - at(lo - 1) <= radii))
        hi_move = ((hi < n) & (at(hi) - centres <= radii)).astype(np.int64) \
            - ((hi > 0) & (at(hi - 1) - centres > radii))
        if not (lo_move.any() or hi_move.any()):
            return hi - lo
        lo += lo_move
        hi += hi_move


def mutual_info_knn(X: np.ndarray, y: np.ndarray, n_neighbors: int, seed: int) -> np.ndarray:
    """`mutual_info_classif(X, y, n_neighbors=n_neighbors, random_state=seed)` for continuous X, vectorized.

    Same scaling (unit std, no centring), same noise (1e-10 · max(1, mean|x|) from `RandomState(seed)`, drawn
    in the same order) and the same estimator (Ross 2014, scikit-learn's conventions): each point's radius is
    just below the distance to its k-th neighbour of the same class (k = min(n_neighbors, N_c − 1)), m_i counts
    the points of any class within that radius (itself included, so a neighbour exactly at the k-th distance
    is not counted), points alone in their class drop out, and
    I = ψ(n) + ⟨ψ(k)⟩ − ⟨ψ(N_c)⟩ − ⟨ψ(m)⟩, clipped at 0. One-dimensional neighbours need only sorting.
    """
    X = np.asarray(X, dtype=np.float64)
    n, n_neurons = X.shape
    std = X.std(axis=0)
    X = X / np.where(std < 10 * np.finfo(np.float64).eps, 1.0, std)
    noise_scale = 1e-10 * np.maximum(1.0, np.abs(X).mean(axis=0))
    X += noise_scale * np.random.RandomState(seed).standard_normal(size=(n, n_neurons))

    counts = np.bincount(y)
    kept = counts[y] > 1
    X, y = np.ascontiguousarray(X[kept].T), y[kept]
    classes = np.flatnonzero(counts > 1)
    k_of = {int(c): min(n_neighbors, int(counts[c]) - 1) for c in classes}
    n_kept = len(y)
    constant = (digamma(n_kept) + sum(counts[c] * digamma(k_of[c]) for c in k_of) / n_kept
                - sum(counts[c] * digamma(counts[c]) for c in k_of) / n_kept)
    members = {c: np.flatnonzero(y == c) for c in k_of}

    mean_digamma_m = np.empty(n_neurons)
    for start in range(0, n_neurons, MI_CHUNK):
        block = X[start:start + MI_CHUNK]  # (neurons, words), each neuron's values contiguous
        everyone = np.sort(block, axis=1)
        own = [np.sort(block[:, rows], axis=1) for rows in members.values()]
        radii = np.concatenate([np.nextafter(kth_neighbour_distance(values, k_of[c]), 0)
                                for c, values in zip(members, own)], axis=1)
        m = count_within(everyone, np.concatenate(own, axis=1), radii)
        mean_digamma_m[start:start + MI_CHUNK] = digamma(m).mean(axis=1)
    return np.maximum(0.0, constant - mean_digamma_m)


class MutualInformationKNN(Method):
    """`mi`: kNN estimate of I(x_j; y), scikit-learn's `mutual_info_classif` (reference.md#method-univariate).

    Computed by `mutual_info_knn` (sorting instead of scikit-learn's per-neuron trees, same estimate). The
    estimator adds tiny noise and costs O(D·N log N), so its noise seed and a sample of at most `max_samples`
    words both come from the cell generator: the cell seed fixes the result.
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
        return mutual_info_knn(Z, y, self.n_neighbors, seed)


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
