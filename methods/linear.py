"""Linear-probe rankers: the LCA family (Dalvi et al. 2019) and mean |W| (Antverg & Belinkov).

Reference: shared/docs/reference.md#method-lca and #method-linear-meanw. Published probes are trained
with a few epochs of Adam and stop far from the optimum, so their rankings depend on data order and
learning rate; here the elastic-net probe is solved to convergence by a deterministic full-batch
method, and the ranking is read from its weights.
"""

from __future__ import annotations

import math

import numpy as np

from bench.errors import NeuronbenchError
from bench.probe import check_probe_inputs, cross_entropy, fit_logistic
from methods.base import Method, order_by_scores

ORDERINGS = ("weight_mass", "mean_abs")
BACKTRACK_SHRINK = 0.5
# Each iteration first tries a slightly longer step than the last accepted one: the curvature near the
# optimum is far below the global Lipschitz bound, and backtracking alone could only shrink the step.
# (1.1 needed the fewest matmuls of 1.0, 1.1, 1.25, 1.5, 2 on 20k x 384 x 17 synthetic problems.)
STEP_GROWTH = 1.1
# The ridge warm start needs some penalty even for `noreg`, or a separable task would send it to infinity.
MIN_WARM_START_RIDGE = 1e-4
# The backtracking test compares float64 means of per-word log-likelihoods (each up to ~50 in size),
# which are rounded to about 1e-13; without a slack above that, rounding could fail the test for ever
# shorter steps.
LOSS_ROUNDING = 1e-12


def elastic_net_penalty(W: np.ndarray, l1: float, l2: float) -> float:
    """l1 * sum|W| + l2 * ||W||_F, the Frobenius norm not squared (reference.md#method-lca)."""
    return l1 * float(np.abs(W).sum()) + l2 * float(np.linalg.norm(W))


def prox_elastic_net(V: np.ndarray, threshold: float, shrink: float) -> np.ndarray:
    """Exact prox of `threshold * sum|W| + shrink * ||W||_F` at V.

    Soft-thresholding every entry and then scaling the matrix towards zero is the exact prox of this
    pair (the Frobenius prox preserves signs and zeros, so it composes with the l1 prox).
    """
    W = np.sign(V) * np.maximum(np.abs(V) - threshold, 0.0)
    norm = float(np.linalg.norm(W))
    return W * (max(0.0, 1.0 - shrink / norm) if norm > 0 else 0.0)


def fit_elastic_net(Z, y, n_classes: int, l1: float, l2: float, max_iter: int = 5000,
                    tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray, int]:
    """Minimize `mean CE + l1 * sum|W| + l2 * ||W||_F` (b free); return (W, b, iterations).

    W has shape (n_outputs, D): one row (sigmoid) for two classes, one per class (softmax) otherwise.
    Solver (reference.md#method-lca): FISTA with backtracking, warm-started from a ridge fit. The
    momentum restarts (O'Donoghue & Candes 2015) when it points against the proximal step, and a step
    that would raise the objective is redone without momentum, so the iterates descend monotonically
    and "relative objective decrease below `tol`" is a sound stopping rule.
    """
    Z, y = check_probe_inputs(Z, y, n_classes)
    n = len(Z)
    ridge = fit_logistic(Z, y, n_classes, C=1.0 / (n * max(l1 + l2, MIN_WARM_START_RIDGE)))
    W, b = ridge.W.astype(np.float64), ridge.b.astype(np.float64)
    # The logits are tracked in float64 and moved by float32 matmuls of parameter *changes*: a fresh
    # float32 product would carry rounding noise of about 1e-8 of the loss, enough to upset the
    # backtracking test and the stopping rule near the optimum, while the change's product is exact
    # to float32 precision of the change itself.
    logits = (ridge.W @ Z.T).astype(np.float64) + b[:, None]
    objective = cross_entropy(logits, y) + elastic_net_penalty(W, l1, l2)
    W_prev, b_prev, logits_prev = W, b, logits
    t, momentum, step = 1.0, 0.0, 1.0
    iteration = 0
    while iteration < max_iter:
        iteration += 1
        W_extra = W + momentum * (W - W_prev)
        b_extra = b + momentum * (b - b_prev)
        logits_extra = logits + momentum * (logits - logits_prev)
        loss_extra, residual = cross_entropy(logits_extra, y, with_residual=True)
        grad_W = (residual @ Z).astype(np.float64)
        grad_b = residual.sum(axis=1, dtype=np.float64)
        slack = LOSS_ROUNDING * max(1.0, abs(loss_extra))
        step *= STEP_GROWTH
        while True:
            W_new = prox_elastic_net(W_extra - step * grad_W, step * l1, step * l2)
            b_new = b_extra - step * grad_b
            dW, db = W_new - W_extra, b_new - b_extra
            logits_new = logits_extra + dW.astype(np.float32) @ Z.T + db[:, None]
            loss_new = cross_entropy(logits_new, y)
            model = (loss_extra + float((grad_W * dW).sum() + grad_b @ db)
                     + float((dW * dW).sum() + db @ db) / (2 * step))
            if loss_new <= model + slack:
                break
            step *= BACKTRACK_SHRINK
        objective_new = loss_new + elastic_net_penalty(W_new, l1, l2)
        if objective_new > objective:
            if momentum == 0.0:
                break  # even a plain proximal step cannot descend: float64 resolution reached
            t, momentum = 1.0, 0.0
            W_prev, b_prev, logits_prev = W, b, logits
            continue
        decrease = objective - objective_new
        momentum_against_step = float(((W_extra - W_new) * (W_new - W)).sum()
                                      + (b_extra - b_new) @ (b_new - b)) > 0
        W_prev, b_prev, logits_prev = W, b, logits
        W, b, logits, objective = W_new, b_new, logits_new, objective_new
        if decrease <= tol * abs(objective):
            break
        if momentum_against_step:
            t, momentum = 1.0, 0.0
        else:
            t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
            t, momentum = t_next, (t - 1.0) / t_next
    return W, b, iteration


def weight_mass_order(W: np.ndarray) -> np.ndarray:
    """Neurons by the weight-mass key of reference.md#method-lca ("Weight-mass ordering, exact form").

    W has shape (n_outputs, D), one row per class (a single row for a binary probe). For class c,
    A_cj is the share of |W_c.| strictly ahead of neuron j when the class's neurons are sorted by |W_cj|
    descending (ties by index); neurons are ranked by (min_c A_cj, -max_c |W_cj| / M_c, j). NeuroX admits
    neuron j at the first mass step past min_c A_cj, so this refines its chunk order for every stride.
    Classes with no weight are skipped; if every class has none the order is the index order.
    """
    magnitude = np.abs(np.asarray(W, dtype=np.float64))
    magnitude = magnitude[magnitude.sum(axis=1) > 0]
    d = magnitude.shape[1]
    if len(magnitude) == 0:
        return np.arange(d)
    by_class = np.argsort(-magnitude, axis=1, kind="stable")
    sorted_magnitude = np.take_along_axis(magnitude, by_class, axis=1)
    cumulative = np.cumsum(sorted_magnitude, axis=1)
    # M_c as the last cumulative sum, so zero-weight neurons get exactly A = 1.
    mass = cumulative[:, -1:]
    ahead_sorted = np.concatenate([np.zeros_like(mass), cumulative[:, :-1]], axis=1) / mass
    ahead = np.empty_like(ahead_sorted)
    np.put_along_axis(ahead, by_class, ahead_sorted, axis=1)
    earliest = ahead.min(axis=0)
    peak_share = (magnitude / mass).max(axis=0)
    return np.lexsort((np.arange(d), -peak_share, earliest))


class LinearProbeRanker(Method):
    """Rank neurons by the weights of an elastic-net logistic probe over the whole layer.

    `ordering="weight_mass"` gives the LCA family (`lca`, `lasso`, `ridge`, `noreg`;
    reference.md#method-lca); `ordering="mean_abs"` gives `linear_meanw`, s_j = mean_c |W_cj|
    (reference.md#method-linear-meanw).
    """

    def __init__(self, l1: float = 1e-3, l2: float = 1e-3, ordering: str = "weight_mass",
                 normalize: str = "zscore", max_iter: int = 5000, tol: float = 1e-7):
        self.l1 = l1
        self.l2 = l2
        self.ordering = ordering
        self.normalize = normalize
        self.max_iter = max_iter
        self.tol = tol

    def order(self, Z: np.ndarray, y: np.ndarray, rng: np.random.Generator, **inputs) -> np.ndarray:
        if self.ordering not in ORDERINGS:
            raise NeuronbenchError(f"{type(self).__name__}: ordering must be one of {ORDERINGS}, "
                                   f"got {self.ordering!r}")
        n_classes = int(y.max()) + 1 if len(y) else 0
        if n_classes < 2:
            raise NeuronbenchError(f"{type(self).__name__} needs labels of at least two classes, "
                                   f"got n_classes={n_classes}")
        W, _, _ = fit_elastic_net(Z, y, n_classes, self.l1, self.l2, self.max_iter, self.tol)
        if self.ordering == "weight_mass":
            return weight_mass_order(W)
        return order_by_scores(np.abs(W).mean(axis=0))
