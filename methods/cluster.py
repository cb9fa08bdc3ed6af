"""Redundancy-aware ranking: one representative per cluster of correlated neurons, then the rest
(Dalvi et al. 2020). reference.md#method-cluster-rep.

A plain score ranking spends its top k on near-copies of one strong neuron; here the first picks cover
as many distinct clusters as possible.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from bench.core.method import Method, order_by_scores
from methods.cross_model import standardized
from methods.probeless import Probeless


def correlation_clusters(Z: np.ndarray, threshold: float, abs_correlation: bool) -> np.ndarray:
    """Flat cluster ids of the columns of Z: average linkage on `1 − |ρ|` (or `1 − ρ`), cut at `threshold`.

    As in NeuroX's clustering.py: correlations over the words, symmetrized with a unit diagonal;
    constant columns get ρ = 0 where NeuroX gets NaN and sets it to 0. With `abs_correlation` a neuron
    and its negation are one cluster; without it they are as far apart as possible.
    """
    n_neurons = Z.shape[1]
    if n_neurons < 2:
        return np.ones(n_neurons, dtype=np.int64)
    S = standardized(Z)
    rho = S.T @ S / len(S)
    rho = (rho + rho.T) / 2
    np.fill_diagonal(rho, 1.0)
    distance = np.clip(1.0 - (np.abs(rho) if abs_correlation else rho), 0.0, 2.0)  # rounding leaves ±1e-16
    tree = linkage(squareform(distance, checks=False), method="average")
    return fcluster(tree, t=threshold, criterion="distance")


def representatives_first(scores: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Each cluster's best-scoring member (ties to the lower index) by score, then all others by score."""
    by_score = order_by_scores(scores)
    _, first_seen = np.unique(clusters[by_score], return_index=True)
    is_representative = np.zeros(len(by_score), dtype=bool)
    is_representative[first_seen] = True
    return np.concatenate([by_score[is_representative], by_score[~is_representative]])


class ClusterRep(Method):
    """`cluster_rep` with the probeless score as base score (|μ+ − μ−| in the concept form).

    Deterministic, unlike NeuroX's `extract_independent_neurons`, which draws a random member per
    cluster from the global RNG.
    """

    def __init__(self, threshold: float = 0.5, abs_correlation: bool = True, normalize: str = "zscore"):
        self.threshold = threshold
        self.abs_correlation = abs_correlation
        self.normalize = normalize

    def order(self, Z, y, rng, **inputs) -> np.ndarray:
        scores = Probeless().scores(Z, y, rng)
        return representatives_first(scores, correlation_clusters(Z, self.threshold, self.abs_correlation))
