"""The class-conditional Gaussian probe's model (reference.md#method-gaussian): per-class statistics, the MAP
covariance `Lambda_c[T,T] / a_c(t)` of a Normal-inverse-Wishart prior, and the posterior by direct Cholesky.

The `gaussian` method's greedy (methods/gaussian.py) and the `gaussian` evaluation probe (bench/layer.py,
reference.md#metric-probe-acc) share it, so that both describe the same model; it lives in bench/core so
that the scorers need not import methods/.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cholesky, solve_triangular
from scipy.special import logsumexp

from bench.errors import NeuronbenchError

COMPAT_MODES = (None, "published_shrinkage")
JITTER = 1e-6  # times mean(diag Lambda_c), added to the diagonal: keeps Lambda_c positive definite
LOG_2PI = np.log(2 * np.pi)


def check_compat(compat) -> None:
    if compat not in COMPAT_MODES:
        raise NeuronbenchError(f"gaussian: compat must be one of {COMPAT_MODES}, got {compat!r}")


def shrinkage_denominator(counts: np.ndarray, subset_size: int, n_neurons: int, compat=None) -> np.ndarray:
    """a_c: the MAP covariance is Lambda_c[T,T] / a_c. neuronbench uses the t-dimensional marginal prior,
    a_c(t) = N_c + 2t + 4; the published code uses a_c = N_c + 2D + 4 for every subset."""
    check_compat(compat)
    dimension = n_neurons if compat == "published_shrinkage" else subset_size
    return counts.astype(np.float64) + 2 * dimension + 4


@dataclass(frozen=True)
class ClassStatistics:
    """Per-class counts, means and diag(Lambda_c) + jitter, shared by the greedy and the direct fit so that
    both describe the same model."""

    counts: np.ndarray  # (C,) words per class, zero for a class absent from train
    means: np.ndarray  # (C, D) float64
    prior_variances: np.ndarray  # (C, D) diag(Lambda0_c): unbiased class variances
    jitter: np.ndarray  # (C,) JITTER * mean(diag Lambda_c)
    lambda_diagonal: np.ndarray  # (C, D) diag(Lambda_c) + jitter

    @property
    def log_priors(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.counts / self.counts.sum())


def class_statistics(X: np.ndarray, y: np.ndarray, n_classes: int) -> ClassStatistics:
    """Means, Lambda0_c = diag(unbiased class variances) and diag(Lambda_c) = diag(Lambda0_c + S_c).

    A class without any spread (one word, or identical words) has no usable variance; it borrows the
    variance over all words, so that its Lambda_c is still positive definite (a case the reference leaves open).
    """
    X = np.asarray(X, dtype=np.float64)
    counts = np.bincount(y, minlength=n_classes)
    means = np.zeros((n_classes, X.shape[1]))
    scatter_diagonal = np.zeros((n_classes, X.shape[1]))
    for c in np.flatnonzero(counts):
        rows = X[y == c]
        means[c] = rows.mean(axis=0)
        scatter_diagonal[c] = ((rows - means[c]) ** 2).sum(axis=0)
    variances = scatter_diagonal / np.maximum(counts - 1, 1)[:, None]
    no_spread = (counts > 0) & ~(variances > 0).any(axis=1)
    variances[no_spread] = X.var(axis=0, ddof=1)
    diagonal = variances + scatter_diagonal
    jitter = JITTER * diagonal.mean(axis=1)
    return ClassStatistics(counts, means, variances, jitter, diagonal + jitter[:, None])


def gaussian_log_posterior(X_train, y_train, X_eval, subset, n_classes: int, compat=None) -> np.ndarray:
    """(N_eval, n_classes) log p(c | x_T) with train statistics, by a plain Cholesky per class.

    The evaluation probe and the tests' oracle for the incremental greedy. The jitter is taken over all
    columns of X_train, as the ranker does: pass a layer's full matrix and choose neurons with `subset`.
    A class absent from train gets -inf.
    """
    X_train = np.asarray(X_train, dtype=np.float64)
    X_eval = np.asarray(X_eval, dtype=np.float64)
    y_train = np.asarray(y_train, dtype=np.int64)
    subset = np.asarray(subset, dtype=np.int64)
    stats = class_statistics(X_train, y_train, n_classes)
    a = shrinkage_denominator(stats.counts, len(subset), X_train.shape[1], compat)
    log_joint = np.full((len(X_eval), n_classes), -np.inf)
    for c in np.flatnonzero(stats.counts):
        centred = X_train[y_train == c][:, subset] - stats.means[c, subset]
        scale = centred.T @ centred + np.diag(stats.prior_variances[c, subset] + stats.jitter[c])
        factor = cholesky(scale, lower=True)
        whitened = solve_triangular(factor, (X_eval[:, subset] - stats.means[c, subset]).T, lower=True)
        log_det = 2 * np.log(np.diag(factor)).sum()
        log_density = -0.5 * (len(subset) * (LOG_2PI - np.log(a[c])) + log_det
                              + a[c] * (whitened ** 2).sum(axis=0))
        log_joint[:, c] = stats.log_priors[c] + log_density
    return log_joint - logsumexp(log_joint, axis=1, keepdims=True)
