"""Cross-model correlation rankings: neurons that recur in independently trained models (Bau et al. 2019).

reference.md#method-crossmodel. Label-free, so a model gets the same ranking for every concept. The config
names the models to compare with (`other_models`) and which of their layers (`other_layers`); the runner
extracts them on the same train words and calls `rank(X, other_activations=[X_2, X_3, ...])`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from bench.core.method import Method, check_activations, live_neurons
from bench.errors import NeuronbenchError

RIDGE = 1e-6  # times the Gram matrix's mean diagonal: keeps collinear or constant neurons solvable


def standardized(X) -> np.ndarray:
    """float64 column z-scores (ddof 0), so that `A.T @ B / N` are Pearson correlations.

    Columns without spread (dead by reference.md#data-znorm) become 0, which gives them ρ = 0 with
    everything, as the reference asks, instead of NaN.
    """
    S = np.array(X, dtype=np.float64)  # a copy, standardized in place: one N x D buffer at D = 3072
    S -= S.mean(axis=0)
    std = np.sqrt(np.einsum("ij,ij->j", S, S) / len(S))
    live = live_neurons(std)
    S /= np.where(live, std, 1.0)
    S[:, ~live] = 0.0
    return S


def standardized_other_models(other_activations, n_words: int) -> Iterator[np.ndarray]:
    """Each other model's activations, standardized, or raise on a missing, misshapen or constant one.

    A generator, so that only one other model's float64 copy is held at a time.
    """
    models = list(other_activations)
    if not models:
        raise NeuronbenchError("other_activations: expected at least one other model's (N, D_m) activations")
    for index, X in enumerate(models):
        where = f"other_activations[{index}]"
        X = check_activations(X, where)
        if len(X) != n_words:
            raise NeuronbenchError(f"{where}: expected activations on the same {n_words} words "
                                   f"as the ranked model, got {len(X)} rows")
        S = standardized(X)
        if not S.any():
            raise NeuronbenchError(f"{where}: no neuron varies over the words; nothing to correlate with")
        yield S


def regression_errors(S: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Mean squared residual of least squares from all neurons of `other` to each column of S.

    Solved by Cholesky on the ridged normal equations: the public re-implementation inverts X^T X
    explicitly, which breaks on collinear neurons or N near D (reference.md#method-crossmodel). The
    residual is never formed: at c = (G + λI)⁻¹ r with r = otherᵀs,
    ||s − other·c||² = ||s||² − c·r − λ||c||², which saves an N·D·D' product; the error in c enters only
    to second order, as at any minimum.
    """
    gram = other.T @ other
    ridge = RIDGE * np.trace(gram) / len(gram)
    gram[np.diag_indices_from(gram)] += ridge
    cross = other.T @ S
    coef = cho_solve(cho_factor(gram), cross)
    squared_residual = (np.einsum("ij,ij->j", S, S) - np.einsum("ij,ij->j", coef, cross)
                        - ridge * np.einsum("ij,ij->j", coef, coef))
    return squared_residual / len(S)


class CrossModelRanker(Method):
    """Scores each neuron against each other model, then combines the per-model scores.

    Standardizes internally, so the ranking is the same whatever `normalize` gave (all three
    statistics are invariant to per-neuron affine maps, reference.md#data-znorm). `other_models` (config
    names) and `other_layers` (see `bench.models.matched_layers`) tell the runner what to extract;
    `rank` itself reads only the activations it is given.
    """

    needs = frozenset({"other_activations"})
    uses_labels = False
    across_models: ClassVar  # np.max or np.min over the other models

    def __init__(self, other_models=(), other_layers: str = "relative", normalize: str = "zscore"):
        self.other_models = other_models
        self.other_layers = other_layers
        self.normalize = normalize

    def scores(self, Z, y, rng, *, other_activations, **inputs) -> np.ndarray:
        S = standardized(Z)
        others = standardized_other_models(other_activations, len(Z))
        return self.across_models(np.stack([self.score_against(S, other) for other in others]), axis=0)

    def score_against(self, S: np.ndarray, other: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class MaxCorr(CrossModelRanker):
    """`maxcorr_i = max_{m'} max_j |ρ_ij|`: a neuron that has a close match in any other model."""

    across_models = staticmethod(np.max)

    def score_against(self, S, other) -> np.ndarray:
        return np.abs(S.T @ other).max(axis=1) / len(S)


class MinCorr(MaxCorr):
    """`mincorr_i = min_{m'} max_j |ρ_ij|`: a neuron that has a close match in every other model."""

    across_models = staticmethod(np.min)


class LinReg(CrossModelRanker):
    """Rank by the worst least-squares error over the other models, ascending (score = −max error).

    Unlike maxcorr, a neuron counts as recurring when it is a linear mix of another model's neurons.
    """

    across_models = staticmethod(np.min)

    def score_against(self, S, other) -> np.ndarray:
        return -regression_errors(S, other)
