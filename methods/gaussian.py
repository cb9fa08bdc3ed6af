"""Gaussian probe with greedy mutual-information selection (reference.md#method-gaussian).

Torroba Hennigen et al. 2020; GAUSSIAN in Antverg & Belinkov 2022. Each class is a Gaussian with the MAP
covariance `Lambda_c[T,T] / a_c(t)` of a Normal-inverse-Wishart prior; neurons are added one at a time by the
mutual information their set carries about the label on train. A greedy step costs O(N*C*D) because every
candidate is scored from conditional residuals that are updated by rank-one steps, never refitted.
The model itself (class statistics, shrinkage, the posterior by direct Cholesky) is bench/core/gaussian.py,
which the `gaussian` evaluation probe (reference.md#metric-probe-acc) shares.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.linalg.blas import get_blas_funcs
from scipy.special import logsumexp
from threadpoolctl import ThreadpoolController

from bench.core.gaussian import check_compat, class_statistics, gaussian_log_posterior, shrinkage_denominator
from bench.core.method import Method, order_by_scores

COLLINEAR = 1e-10  # a candidate whose Schur complement falls below this share of its variance scores -inf
FLOAT64_BUDGET = 256 * 2**20  # residual bytes up to which the greedy runs in float64 (exact to ~1e-12)
BLOCK_BYTES = 8 * 2**20  # one block of residuals (classes x words x neurons): measured fastest on 2 cores,
# where numpy's per-call overhead outweighs L2 misses (1 MB blocks: 0.66-0.72 s a step, 8 MB: 0.48 s)
FALLBACK_SUM = 1e-20  # a class-sum this small may have lost precision: that entry is redone exactly
NEGLIGIBLE_WEIGHT = 1e-30  # classes this far below a word's bound are dropped (never hit subnormals)
DENSE_SHARE = 0.5  # above this share of nonzero (word, class) weights a block is scored densely, by a matmul


def label_entropy(counts: np.ndarray) -> float:
    """H(p) in nats of the empirical label distribution."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def gaussian_mutual_information(X, y, subset, n_classes: int | None = None, compat=None) -> float:
    """MI(T) = [H(p) + (1/N) sum_i log p(y_i | x_iT)] / ln 2 bits on the fitting data, by direct Cholesky."""
    y = np.asarray(y, dtype=np.int64)
    n_classes = int(y.max()) + 1 if n_classes is None else n_classes
    log_posterior = gaussian_log_posterior(X, y, X, subset, n_classes, compat)
    mean_log_likelihood = log_posterior[np.arange(len(y)), y].mean()
    return (label_entropy(np.bincount(y, minlength=n_classes)) + mean_log_likelihood) / np.log(2)


def default_threads() -> int:
    """OMP_NUM_THREADS if set (as for the BLAS), otherwise the cores this process may use."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    """Found once: each lookup reads /proc/self/maps, ~4 ms that 150 greedy steps paid twice each."""
    return ThreadpoolController()


def single_threaded_blas():
    """Our threads split the words; a multi-threaded BLAS inside each call would spin against them."""
    return _blas_controller().limit(limits=1, user_api="blas")


@dataclass(frozen=True)
class LogPosteriorTerms:
    """The step's constants: log joint - word bound = log_weight_ic + neuron_offset_cj + curvature_cj r^2."""

    log_weight: np.ndarray  # (C, N) float64, <= 0, max 0 over classes
    word_weights: np.ndarray  # (N, C) exp(log_weight).T, negligible ones set to 0
    neuron_offset: np.ndarray  # (C, 1, D) <= 0
    curvature: np.ndarray  # (C, 1, D) -a_c / (2 s_cj), 0 for invalid candidates


class IncrementalGaussianMI:
    """MI(T u {j}) for every candidate j at once, with T grown one neuron at a time by `add`.

    Per class c (reference.md#method-gaussian, "Cheap greedy steps") it keeps q_ic = ||z_ic||^2 of the
    whitened selected coordinates, ld_c = log det Lambda_c[T,T], b_cj = L_c^-1 Lambda_c[T,j] (rows of
    `projections`), the Schur complements s_cj and the conditional residuals r_icj, for every word i (a word
    is scored under every class). Only classes present in y are modelled; an absent class has prior 0.
    The own-class part of the likelihood needs sum_{i in c} r_icj^2, which follows in closed form from s_cj
    and the regression coefficients g_c = Lambda_c[T,T]^-1 Lambda_c[T,:] (`coefficients`), so the pass over
    the residuals only computes the log-sum-exp over classes.

    Residuals are float64 while they fit in FLOAT64_BUDGET bytes, else float32 (pass `dtype` to choose):
    with N = 20,000, D = 768, C = 17 they take 1 GB in float32. The rank-one update of a block of words is
    applied in the same pass that scores it, so each step reads the residuals once.
    """

    def __init__(self, Z, y, n_classes: int, compat=None, dtype=None, n_threads: int | None = None):
        check_compat(compat)
        Z = np.asarray(Z)
        y = np.asarray(y, dtype=np.int64)
        stats = class_statistics(Z, y, n_classes)
        present = np.flatnonzero(stats.counts)
        n_words, n_neurons = Z.shape
        if dtype is None:
            fits = len(present) * n_words * n_neurons * 8 <= FLOAT64_BUDGET
            dtype = np.float64 if fits else np.float32
        self.dtype = np.dtype(dtype)
        self.compat = compat
        self.n_threads = n_threads or default_threads()
        self.counts = stats.counts[present]
        self.log_priors = stats.log_priors[present]
        self.entropy = label_entropy(self.counts)
        self.labels = np.searchsorted(present, y)  # class ids among the modelled classes
        self.lambda_diagonal = stats.lambda_diagonal[present]
        self.prior_diagonal = stats.prior_variances[present] + stats.jitter[present, None]  # Lambda_c - S_c
        self.centred_by_class = [np.asarray(Z[y == c], dtype=np.float64) - stats.means[c] for c in present]
        self.residuals = np.empty((len(present), n_words, n_neurons), dtype=self.dtype)
        for k, c in enumerate(present):
            np.subtract(Z, stats.means[c].astype(self.dtype), out=self.residuals[k], dtype=self.dtype)
        self.schur = self.lambda_diagonal.copy()
        self.projections = np.zeros((len(present), 0, n_neurons))
        self.coefficients = np.zeros((len(present), 0, n_neurons))
        self.mahalanobis = np.zeros((len(present), n_words))
        self.log_det = np.zeros(len(present))
        self.selected: list[int] = []
        self.pending_update = None  # (u, beta) of the last `add`, applied lazily by the next pass
        self.block_rows = max(1, BLOCK_BYTES // (len(present) * n_neurons * self.dtype.itemsize))
        self.ger = get_blas_funcs("ger", dtype=self.dtype)
        self.thread_scratch = threading.local()  # one block-sized buffer per worker thread, reused

    # -- scoring ---------------------------------------------------------------------------------------

    def candidate_mi(self) -> np.ndarray:
        """(D,) MI(T u {j}) in bits; -inf for selected neurons and for candidates collinear with T."""
        n_words, n_neurons = self.residuals.shape[1:]
        t = len(self.selected) + 1
        a = shrinkage_denominator(self.counts, t, n_neurons, self.compat)
        valid = (self.schur > COLLINEAR * self.lambda_diagonal).all(axis=0)
        valid[self.selected] = False
        safe_schur = np.where(valid, self.schur, 1.0)
        # log joint of word i, class c, candidate j: word_term_ic + neuron_term_cj + curvature_cj * r_icj^2
        word_term = (self.log_priors - 0.5 * (self.log_det - t * np.log(a)))[:, None] \
            - 0.5 * a[:, None] * self.mahalanobis
        neuron_term = np.where(valid, -0.5 * np.log(safe_schur), 0.0)
        curvature = np.where(valid, -0.5 * a[:, None] / safe_schur, 0.0)
        # Upper bounds (r = 0) make every exp() <= 1: per class over candidates, then per word over classes.
        neuron_bound = neuron_term.max(axis=1, keepdims=True)
        word_bound = (word_term + neuron_bound).max(axis=0)
        log_weight = word_term + neuron_bound - word_bound
        terms = LogPosteriorTerms(
            log_weight=log_weight,
            word_weights=np.ascontiguousarray(
                np.where(log_weight > np.log(NEGLIGIBLE_WEIGHT), np.exp(log_weight), 0.0).T, dtype=self.dtype),
            neuron_offset=(neuron_term - neuron_bound).astype(self.dtype)[:, None, :],
            curvature=curvature.astype(self.dtype)[:, None, :],
        )
        starts = range(0, n_words, self.block_rows)
        with single_threaded_blas(), ThreadPoolExecutor(self.n_threads) as pool:
            block_sums = list(pool.map(lambda start: self._score_block(start, terms), starts))
        self.pending_update = None
        own_log_weight = log_weight[self.labels, np.arange(n_words)].sum()
        own_exponent = (curvature * self.own_class_residual_squares()
                        + self.counts[:, None] * (neuron_term - neuron_bound)).sum(axis=0)
        total_log_likelihood = own_log_weight + own_exponent - np.sum(block_sums, axis=0)  # fixed order
        mi = (self.entropy + total_log_likelihood / n_words) / np.log(2)
        return np.where(valid, mi, -np.inf)

    def own_class_residual_squares(self) -> np.ndarray:
        """(C, D) sum over the words of class c of r_icj^2 = s_cj - diag(Lambda_c - S_c)_j - sum_t
        diag(Lambda_c - S_c)_t g_ctj^2, since r_cj = x_j - g_cj . x_T, Lambda_c[T,j] = S_c[T,j] for j not in T."""
        return self.schur - self.prior_diagonal \
            - np.einsum("kt,ktd->kd", self.prior_diagonal[:, self.selected], self.coefficients ** 2)

    def _score_block(self, start: int, terms: LogPosteriorTerms) -> np.ndarray:
        """sum over the block's words of log sum_c exp(log_weight_ic + exponent_icj), per candidate j."""
        rows = slice(start, start + self.block_rows)
        block = self.residuals[:, rows]
        if self.pending_update is not None:
            u, beta = self.pending_update
            for k in range(len(block)):  # in place: a.T is the Fortran-ordered view BLAS updates
                self.ger(-1.0, beta[k], u[k, rows], a=block[k].T, overwrite_a=1)
        weights = terms.word_weights[rows]
        active = weights > 0
        if active.mean() > DENSE_SHARE:
            exponent = np.square(block, out=self._scratch()[:, :block.shape[1]])
            exponent *= terms.curvature
            exponent += terms.neuron_offset
            np.exp(exponent, out=exponent)
            class_sum = np.matmul(weights[:, None, :], exponent.transpose(1, 0, 2))[:, 0]
        else:
            class_sum = self._sparse_class_sum(block, weights, active, terms)
        with np.errstate(divide="ignore"):
            log_class_sum = np.log(class_sum)
        if class_sum.min() < FALLBACK_SUM:
            words, neurons = np.nonzero(class_sum < FALLBACK_SUM)
            log_class_sum[words, neurons] = self._exact_log_class_sum(start + words, neurons, terms)
        return log_class_sum.sum(axis=0, dtype=np.float64)

    @staticmethod
    def _sparse_class_sum(block, weights, active, terms: LogPosteriorTerms) -> np.ndarray:
        """The block's sum over classes, visiting only the (word, class) pairs of nonzero weight: as T grows
        the posterior concentrates (on upos, 26% of the pairs over a 150-step greedy, 7% at the end)."""
        class_sum = np.zeros(block.shape[1:], dtype=block.dtype)
        for k in range(len(block)):
            words = np.flatnonzero(active[:, k])
            if len(words) == 0:
                continue
            exponent = np.square(block[k, words])
            exponent *= terms.curvature[k]
            exponent += terms.neuron_offset[k]
            np.exp(exponent, out=exponent)
            exponent *= weights[words, k, None]
            class_sum[words] += exponent
        return class_sum

    def _scratch(self) -> np.ndarray:
        if not hasattr(self.thread_scratch, "buffer"):
            shape = (len(self.counts), self.block_rows, self.residuals.shape[2])
            self.thread_scratch.buffer = np.empty(shape, dtype=self.dtype)
        return self.thread_scratch.buffer

    def _exact_log_class_sum(self, words, neurons, terms: LogPosteriorTerms) -> np.ndarray:
        """log sum_c exp(log_weight + exponent) for a few (word, candidate) pairs, max-shifted, in float64."""
        r = self.residuals[:, words, neurons].astype(np.float64)
        return logsumexp(terms.log_weight[:, words] + terms.neuron_offset[:, 0, neurons]
                         + terms.curvature[:, 0, neurons] * r ** 2, axis=0)

    # -- growing T ---------------------------------------------------------------------------------------

    def add(self, j: int) -> None:
        """T <- T u {j} by rank-one updates; Lambda_c is touched only through its column j."""
        with single_threaded_blas():
            self._add(j)

    def _add(self, j: int) -> None:
        if self.pending_update is not None:
            self._apply_pending_update()
        n_neurons = self.residuals.shape[2]
        column = np.empty((len(self.counts), n_neurons))
        for k, centred in enumerate(self.centred_by_class):
            column[k] = centred.T @ centred[:, j]  # S_c[:, j]; Lambda0_c is diagonal
        column[:, j] = self.lambda_diagonal[:, j]
        root_schur = np.sqrt(self.schur[:, j])
        u = self.residuals[:, :, j].astype(np.float64) / root_schur[:, None]
        beta = (column - np.einsum("kt,ktd->kd", self.projections[:, :, j], self.projections)) \
            / root_schur[:, None]
        gain = beta / root_schur[:, None]  # coefficient of x_j in each neuron's regression on T u {j}
        self.coefficients = np.concatenate(
            [self.coefficients - self.coefficients[:, :, j, None] * gain[:, None, :], gain[:, None, :]], axis=1)
        self.mahalanobis += u ** 2
        self.log_det += np.log(self.schur[:, j])
        self.schur -= beta ** 2
        self.projections = np.concatenate([self.projections, beta[:, None, :]], axis=1)
        self.selected.append(int(j))
        self.pending_update = (u.astype(self.dtype), beta.astype(self.dtype))

    def _apply_pending_update(self) -> None:
        u, beta = self.pending_update
        for start in range(0, self.residuals.shape[1], self.block_rows):
            rows = slice(start, start + self.block_rows)
            for k in range(len(self.counts)):
                self.ger(-1.0, beta[k], u[k, rows], a=self.residuals[k, rows].T, overwrite_a=1)
        self.pending_update = None


class GaussianProbe(Method):
    """`gaussian`: greedy MI selection under the class-conditional Gaussian probe (reference.md#method-gaussian).

    Up to `k_max` neurons are picked greedily (ties to the lower index); the greedy phase also ends when
    the best gain falls below `min_gain` bits or every candidate is collinear with the picks. The rest
    follow by single-neuron MI. `compat="published_shrinkage"` reproduces NeuroX's a_c = N_c + 2D + 4.
    """

    def __init__(self, k_max: int = 150, min_gain: float | None = None, compat: str | None = None,
                 normalize: str = "zscore"):
        self.k_max = k_max
        self.min_gain = min_gain
        self.compat = compat
        self.normalize = normalize

    def order(self, Z, y, rng, **inputs) -> np.ndarray:
        check_compat(self.compat)
        n_neurons = Z.shape[1]
        if n_neurons == 0:
            return np.zeros(0, dtype=np.int64)
        model = IncrementalGaussianMI(Z, y, int(y.max()) + 1, compat=self.compat)
        single_neuron_mi = scores = model.candidate_mi()
        current_mi = 0.0
        for step in range(min(self.k_max, n_neurons)):
            if step:
                scores = model.candidate_mi()
            best = int(order_by_scores(scores)[0])
            gain = scores[best] - current_mi
            if not np.isfinite(scores[best]) or (self.min_gain is not None and gain < self.min_gain):
                break
            model.add(best)
            current_mi = scores[best]
        rest = np.setdiff1d(np.arange(n_neurons), model.selected)
        rest = rest[order_by_scores(single_neuron_mi[rest])]
        return np.concatenate([np.asarray(model.selected, dtype=np.int64), rest])
