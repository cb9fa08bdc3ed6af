"""The L1 logistic ranker of Gurnee et al. 2023's sparse probing (reference.md#method-sparse, `sparse_l1`).

An L1 penalty zeroes the weights of neurons the probe can do without, so |coef| ranks neurons that carry
the concept on their own ahead of those that only help alongside others.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from bench.core.method import Method
from bench.errors import NeuronbenchError
from methods.linear import BACKTRACK_SHRINK, LOSS_ROUNDING, STEP_GROWTH

SOLVERS = ("fista", "liblinear", "saga")


def balanced_weights(targets: np.ndarray) -> np.ndarray:
    """scikit-learn's `class_weight="balanced"` per binary problem: n / (2 · n_class) for each word's side.

    `targets` is (P, N) boolean, one row per problem; every row must have both sides."""
    n = targets.shape[1]
    positives = targets.sum(axis=1, keepdims=True)
    return np.where(targets, n / (2.0 * positives), n / (2.0 * (n - positives)))


def weighted_sigmoid_loss(logits: np.ndarray, signs: np.ndarray, weights: np.ndarray,
                          with_residual: bool = False):
    """Per row p, (1/N) Σ_i w_pi · CE(logit_pi, t_pi) in float64; with the residual d(loss)/d(logits) in float32.

    `signs` is −1 for a positive word and +1 for a negative one, so CE = softplus(sign · logit) and
    d CE / d logit = sign · sigmoid(sign · logit): one exponential per entry for both.
    """
    n = logits.shape[1]
    margin = np.multiply(signs, logits)
    small = np.abs(margin)  # softplus(u) = max(u, 0) + log1p(e^−|u|), exact and overflow-free
    np.negative(small, out=small)
    np.exp(small, out=small)
    softplus = np.log1p(small)
    positive = margin >= 0
    softplus += np.maximum(margin, 0.0, out=margin)
    loss = np.einsum("pi,pi->p", weights, softplus) / n
    if not with_residual:
        return loss
    residual = np.where(positive, 1.0, small)  # sigmoid(u) = (1 or e^−|u|) / (1 + e^−|u|)
    small += 1.0
    residual /= small
    residual *= signs
    residual *= weights
    residual *= 1.0 / n
    return loss, residual.astype(np.float32)


def fit_l1_logistic_ovr(Z, targets: np.ndarray, l1: float, max_iter: int = 5000,
                        tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray, int]:
    """Fit P independent class-balanced L1 logistic problems at once; return (W (P, D), b (P,), iterations).

    Problem p minimizes `(1/N) Σ_i w_pi CE_pi + l1 · ||W_p||_1` with an unpenalized intercept; with
    l1 = 1/(C·N) this is scikit-learn's `C Σ_i w_i CE_i + ||w||_1` (saga's form; liblinear also penalizes
    the intercept) divided by C·N. Starts from W = 0, b = 0.

    Solver: `fit_elastic_net`'s FISTA (backtracking, adaptive momentum restart, monotone descent, stop on a
    relative objective decrease below `tol`), run for every problem in lock-step with its own step, momentum
    and stopping. Each iteration streams Z twice (one gradient and one forward product for all problems);
    those products cost the same for one problem as for all, so a problem whose step fails the backtracking
    test does not trigger an extra product: its step is halved and it retries in the next iteration. A
    problem leaves the batch once it stops.
    """
    Z = np.asarray(Z, dtype=np.float32)
    targets = np.asarray(targets, dtype=bool)
    n_problems, n = targets.shape
    weights = balanced_weights(targets)
    signs = np.where(targets, -1.0, 1.0)
    W = np.zeros((n_problems, Z.shape[1]))
    b = np.zeros(n_problems)
    logits = np.zeros((n_problems, n))  # float64, moved by float32 products of changes (see fit_elastic_net)
    objective = weighted_sigmoid_loss(logits, signs, weights)
    W_prev, b_prev, logits_prev = W.copy(), b.copy(), logits.copy()
    t = np.ones(n_problems)
    momentum = np.zeros(n_problems)
    step = np.ones(n_problems)
    active = np.arange(n_problems)
    iteration = 0
    while len(active) and iteration < max_iter:
        iteration += 1
        a, mom = active, momentum[active, None]
        W_extra = W[a] + mom * (W[a] - W_prev[a])
        b_extra = b[a] + mom[:, 0] * (b[a] - b_prev[a])
        logits_extra = logits[a] + mom * (logits[a] - logits_prev[a])
        loss_extra, residual = weighted_sigmoid_loss(logits_extra, signs[a], weights[a], with_residual=True)
        grad_W = (Z.T @ np.ascontiguousarray(residual.T)).T.astype(np.float64)  # far faster than residual @ Z
        grad_b = residual.sum(axis=1, dtype=np.float64)
        s = step[a]
        V = W_extra - s[:, None] * grad_W
        W_new = np.sign(V) * np.maximum(np.abs(V) - s[:, None] * l1, 0.0)
        b_new = b_extra - s * grad_b
        dW, db = W_new - W_extra, b_new - b_extra
        logits_new = logits_extra + dW.astype(np.float32) @ Z.T + db[:, None]
        loss_new = weighted_sigmoid_loss(logits_new, signs[a], weights[a])
        model = (loss_extra + (grad_W * dW).sum(axis=1) + grad_b * db
                 + ((dW * dW).sum(axis=1) + db * db) / (2 * s))
        fits = loss_new <= model + LOSS_ROUNDING * np.maximum(1.0, np.abs(loss_extra))
        step[a] = np.where(fits, s * STEP_GROWTH, s * BACKTRACK_SHRINK)

        objective_new = loss_new + l1 * np.abs(W_new).sum(axis=1)
        rose = fits & (objective_new > objective[a])
        stalled = rose & (momentum[a] == 0.0)  # even a plain proximal step cannot descend: float64 resolution
        retry = a[rose & ~stalled]  # redo from the last iterate without momentum
        t[retry], momentum[retry] = 1.0, 0.0
        W_prev[retry], b_prev[retry], logits_prev[retry] = W[retry], b[retry], logits[retry]

        ok = fits & ~rose
        k = a[ok]
        decrease = objective[k] - objective_new[ok]
        against = (((W_extra[ok] - W_new[ok]) * (W_new[ok] - W[k])).sum(axis=1)
                   + (b_extra[ok] - b_new[ok]) * (b_new[ok] - b[k])) > 0
        W_prev[k], b_prev[k], logits_prev[k] = W[k], b[k], logits[k]
        W[k], b[k], logits[k], objective[k] = W_new[ok], b_new[ok], logits_new[ok], objective_new[ok]
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t[k] ** 2)) / 2.0
        momentum[k] = np.where(against, 0.0, (t[k] - 1.0) / t_next)
        t[k] = np.where(against, 1.0, t_next)
        finished = np.zeros(n_problems, dtype=bool)
        finished[a[stalled]] = True
        finished[k[decrease <= tol * np.abs(objective[k])]] = True
        active = active[~finished[active]]
    return W, b, iteration


class SparseL1(Method):
    """Rank by |coef| of a class-balanced L1 logistic regression (published: C = 0.1, saga).

    Two classes: one fit. More classes: one binary one-vs-rest fit per class present and
    s_j = max_c |coef_cj|, so a neuron ranks by its strongest use for any one class (the published
    ranker is binary only). `fista` (default) solves all one-vs-rest problems at once to a relative
    objective decrease below `tol` (`fit_l1_logistic_ovr`: saga's objective, intercept not penalized);
    `liblinear` and `saga` call scikit-learn, one problem at a time (saga reproduces the published solver
    but stops at scikit-learn's 100 epochs before converging on large N; both seeded from the cell's
    generator). Neurons with a zero weight tie and follow in index order; the published rankings run
    least-important-first, this one most-important-first.
    """

    def __init__(self, C: float = 0.1, solver: str = "fista", tol: float = 1e-6, normalize: str = "zscore"):
        self.C = C
        self.solver = solver
        self.tol = tol
        self.normalize = normalize

    def scores(self, Z, y, rng, **inputs) -> np.ndarray:
        if self.solver not in SOLVERS:
            raise NeuronbenchError(f"sparse_l1: solver must be one of {SOLVERS}, got {self.solver!r}")
        classes = np.unique(y)
        if len(classes) < 2:
            raise NeuronbenchError(f"sparse_l1 needs at least 2 classes in the labels, "
                                   f"got {classes.tolist()}")
        positives = classes[1:] if len(classes) == 2 else classes
        if self.solver == "fista":
            targets = y[None, :] == positives[:, None]
            W, _, _ = fit_l1_logistic_ovr(Z, targets, l1=1.0 / (self.C * len(y)), tol=self.tol)
            return np.abs(W).max(axis=0)
        # l1_ratio=1 is the L1 penalty from scikit-learn 1.8 on (`penalty` is deprecated there)
        probe = LogisticRegression(C=self.C, l1_ratio=1.0, solver=self.solver, class_weight="balanced",
                                   random_state=int(rng.integers(2**31 - 1)))
        Z = np.ascontiguousarray(Z, dtype=np.float64)  # the solvers' dtype: convert once, not per class
        return np.max([np.abs(probe.fit(Z, y == c).coef_[0]) for c in positives], axis=0)
