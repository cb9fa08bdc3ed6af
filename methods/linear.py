"""Linear-probe rankers: the LCA family (Dalvi et al. 2019) and mean |W| (Antverg & Belinkov).

Reference: shared/docs/reference.md#method-lca and #method-linear-meanw. Published probes are trained
with a few epochs of Adam and stop far from the optimum, so their rankings depend on data order and
learning rate; here the elastic-net probe is solved to convergence by a deterministic full-batch
method, and the ranking is read from its weights.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy.optimize import Bounds, minimize

from bench.core.method import Method, order_by_scores
from bench.errors import NeuronbenchError
from bench.probe import (LogisticProbe, accuracy, check_probe_inputs, cross_entropy, fit_logistic, minimize_logistic,
                         n_outputs)

log = logging.getLogger(__name__)
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
# The smooth solver (l1 = 0) stops when no gradient entry exceeds this. On 20k x 768 x 17 z-scored data
# with l2 = 1e-3 it ends below the objective FISTA reaches at tol = 1e-7 after 120 evaluations (240
# products with Z, against ~520 for FISTA and its warm start: 5.2 s against 12.2 s on one core).
SMOOTH_GTOL = 1e-6
SOLVERS = ("auto", "split", "fista", "lbfgs")
# L-BFGS-B's correction pairs for the split solver: on 20k x 384 x 17 real activations (minilm_l6 upos)
# 20 reached an objective gap of 1e-6 in ~70 evaluations, against ~90 for 5 and 10; 40 saved
# only a few more evaluations at a higher cost per iteration.
SPLIT_MEMORY = 20
# The split solver stops when the objective fell by less than `tol` of its value per iteration over the
# last SPLIT_WINDOW iterations: L-BFGS-B sometimes takes one nearly null step (a short line search) and
# then goes on descending, so a single iteration's decrease would stop it early (on a 600 x 30 x 4
# problem, at 8e-4 of the optimum's value instead of 1e-6).
SPLIT_WINDOW = 5
SEARCH_STRIDE = 100  # NeuroX's get_neuron_ordering grid, whose chunk boundaries `cutoffs_` records
# select_on_dev: each nonzero penalty is chosen from this grid by dev accuracy (reference.md#method-lca)
PENALTY_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


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


def ridge_start(Z, y, n_classes: int, l1: float, l2: float) -> LogisticProbe:
    """FISTA's warm start: the L2 probe of penalty strength l1 + l2 (at least MIN_WARM_START_RIDGE)."""
    return fit_logistic(Z, y, n_classes, C=1.0 / (len(Z) * max(l1 + l2, MIN_WARM_START_RIDGE)))


def fit_elastic_net(Z, y, n_classes: int, l1: float, l2: float, max_iter: int = 5000,
                    tol: float = 1e-7, solver: str = "auto",
                    start: LogisticProbe | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Minimize `mean CE + l1 * sum|W| + l2 * ||W||_F` (b free); return (W, b, iterations).

    W has shape (n_outputs, D): one row (sigmoid) for two classes, one per class (softmax) otherwise.
    `solver="auto"` takes `fit_split_lbfgsb` (`"split"`) when l1 > 0 and L-BFGS (`fit_smooth_probe`, same
    objective) when l1 = 0; `solver="fista"` is the accelerated proximal gradient below, kept as a reference
    (on 20,000 x 384 x 17 real activations it needed 138 iterations from its ridge warm start, 2 products
    with Z each, and the ridge start itself 249 evaluations: 27.7 s, against ~80 evaluations and ~2.2 s for
    the split solver, which reaches a lower objective at the same `tol`).
    FISTA backtracks and is warm-started from `start` (default: `ridge_start`; on that data it needed about
    as many iterations from W = 0, ~150 to the same objective, so the ridge fit buys nothing there). The
    momentum restarts (O'Donoghue & Candes 2015) when it points against the proximal step, and a step that
    would raise the objective is redone without momentum, so the iterates descend monotonically and
    "relative objective decrease below `tol`" is a sound stopping rule.
    """
    if solver not in SOLVERS:
        raise NeuronbenchError(f"fit_elastic_net: solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "lbfgs" or (solver == "auto" and l1 == 0):
        if l1 != 0:
            raise NeuronbenchError(f"the L-BFGS solver needs l1 = 0 (a smooth objective), got l1={l1}")
        return fit_smooth_probe(Z, y, n_classes, l2, max_iter)
    if solver in ("auto", "split"):
        return fit_split_lbfgsb(Z, y, n_classes, l1, l2, max_iter, tol, start)
    Z, y = check_probe_inputs(Z, y, n_classes)
    ridge = start if start is not None else ridge_start(Z, y, n_classes, l1, l2)
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


def contiguous_transpose(Z: np.ndarray, block: int = 256) -> np.ndarray:
    """Z.T as a C-contiguous copy, made in row blocks that stay in cache (5x faster than
    `np.ascontiguousarray(Z.T)` on 20,000 x 384 float32). With it the gradient `Z.T @ residual.T` has
    both operands C-contiguous, which runs about twice as fast as `residual @ Z` for these shapes
    (OpenBLAS, one thread, 17 x 20,000 x 384)."""
    out = np.empty(Z.shape[::-1], dtype=Z.dtype)
    for start in range(0, len(Z), block):
        out[:, start:start + block] = Z[start:start + block].T
    return out


class _Converged(Exception):
    """Raised by the L-BFGS-B callback when the split solver's stopping rule holds."""


def fit_split_lbfgsb(Z, y, n_classes: int, l1: float, l2: float, max_iter: int = 5000, tol: float = 1e-7,
                     start: LogisticProbe | None = None,
                     memory: int = SPLIT_MEMORY) -> tuple[np.ndarray, np.ndarray, int]:
    """`fit_elastic_net`'s objective by L-BFGS-B on the split W = P - M with P, M >= 0.

    On the split the l1 term is the linear `l1 * sum(P + M)`, so the objective is smooth up to the
    bounds (and to ||W||_F at W = 0, where 0 is taken as its gradient): a bound-constrained quasi-Newton
    solver applies, and entries with P = M = 0 are exact zeros. At an optimum no entry has both P and M
    positive, since lowering both lowers the penalty, so the split's minimum is the elastic net's.
    The iterates start at W = 0 (or at `start`) and stop when the objective fell by less than `tol` of its
    value per iteration over the last SPLIT_WINDOW iterations (FISTA's rule, averaged), or when the line
    search can no longer descend. Each evaluation costs two float32 products with Z, about 70% of the time
    (the rest: the float64 cross-entropy, ~15%, and L-BFGS-B itself, ~10%).
    """
    Z, y = check_probe_inputs(Z, y, n_classes)
    n, d = Z.shape
    k = n_outputs(n_classes)
    kd = k * d
    ZT = contiguous_transpose(Z)
    x0 = np.zeros(2 * kd + k)
    if start is not None:
        W0 = np.asarray(start.W, dtype=np.float64).ravel()
        x0[:kd], x0[kd:2 * kd], x0[2 * kd:] = np.maximum(W0, 0), np.maximum(-W0, 0), start.b
    # Logits are tracked in float64 and moved by float32 products of parameter changes, as in
    # bench.probe.minimize_logistic: a fresh float32 product's rounding would drown the line search.
    # L-BFGS-B evaluates each point once, so they are moved in place (fresh 20,000 x 17 arrays per
    # evaluation cost their page faults); `product` receives Z @ dW.T, word-major as BLAS writes it fastest.
    state = {"W": np.zeros((k, d)), "b": np.zeros(k), "x": None, "f": None}
    logits = np.zeros((k, n))
    product = np.empty((n, k), dtype=np.float32)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        W = (x[:kd] - x[kd:2 * kd]).reshape(k, d)
        b = x[2 * kd:]
        dW = W - state["W"]
        if dW.any():
            np.matmul(Z, dW.T.astype(np.float32), out=product)
            np.add(logits, product.T, out=logits)
        np.add(logits, (b - state["b"])[:, None], out=logits)
        state["W"], state["b"] = W, b.copy()
        loss, residual = cross_entropy(logits, y, with_residual=True)
        grad_W = (ZT @ residual.T).T.astype(np.float64)
        norm = float(np.linalg.norm(W))
        if norm > 0:
            grad_W += (l2 / norm) * W
        value = loss + l1 * float(x[:2 * kd].sum()) + l2 * norm
        state["x"], state["f"] = x.copy(), value
        return value, np.concatenate([(grad_W + l1).ravel(), (l1 - grad_W).ravel(),
                                      residual.sum(axis=1, dtype=np.float64)])

    best = {"x": x0, "values": []}

    def after_iteration(x: np.ndarray) -> None:
        # L-BFGS-B's last evaluation is the accepted point; evaluate afresh if it is not.
        value = state["f"] if state["x"] is not None and np.array_equal(state["x"], x) else objective(x)[0]
        values = best["values"]
        values.append(value)
        best["x"] = x.copy()
        if len(values) > SPLIT_WINDOW and values[-1 - SPLIT_WINDOW] - value <= SPLIT_WINDOW * tol * abs(value):
            raise _Converged

    try:
        result = minimize(objective, x0, jac=True, method="L-BFGS-B", callback=after_iteration,
                          bounds=Bounds(np.r_[np.zeros(2 * kd), np.full(k, -np.inf)], np.inf),
                          options={"maxiter": max_iter, "maxfun": 4 * max_iter, "maxcor": memory,
                                   "ftol": 64 * np.finfo(float).eps, "gtol": 0.0, "maxls": 50})
        x = result.x if not best["values"] or result.fun <= best["values"][-1] else best["x"]
    except _Converged:
        x = best["x"]
    W = (x[:kd] - x[kd:2 * kd]).reshape(k, d)
    return W, x[2 * kd:].copy(), max(len(best["values"]), 1)


def fit_smooth_probe(Z, y, n_classes: int, l2: float, max_iter: int = 5000,
                     gtol: float = SMOOTH_GTOL) -> tuple[np.ndarray, np.ndarray, int]:
    """Minimize `mean CE + l2 * ||W||_F` (the l1 = 0 case of `fit_elastic_net`) by L-BFGS.

    Away from W = 0 the objective is smooth, and W = 0 is the minimizer exactly when the CE gradient
    there (with the bias fitted) has norm <= l2, which is checked first. Every evaluation costs two
    products with Z, against two to three per FISTA iteration, and L-BFGS needs far fewer of them.
    Without a penalty on separable data the objective has no minimizer: the solver then stops where the
    gradient falls below `gtol`, and the weights are those of that point of the path.
    """
    Z, y = check_probe_inputs(Z, y, n_classes)
    n, d = Z.shape
    k = n_outputs(n_classes)
    targets = np.zeros((k, n), dtype=np.float32)  # one-hot rows of the outputs (class 1 for one logit)
    if k == 1:
        targets[0] = y == 1
    else:
        targets[y, np.arange(n)] = 1.0
    frequencies = targets.mean(axis=1, dtype=np.float64)
    # At W = 0 the fitted bias predicts the class frequencies, so the gradient is F mean(Z) - Y Z / n.
    gradient_at_zero = frequencies[:, None] * Z.mean(axis=0, dtype=np.float64) - (targets @ Z) / n
    if l2 > 0 and np.linalg.norm(gradient_at_zero) <= l2:
        with np.errstate(divide="ignore"):  # a class absent from y gets bias -inf, its limit
            bias = np.log(frequencies) if k > 1 else np.log(frequencies / (1 - frequencies))
        return np.zeros((k, d)), bias, 0

    def norm_penalty(W: np.ndarray) -> tuple[float, np.ndarray | float]:
        norm = float(np.linalg.norm(W))
        return l2 * norm, (l2 / norm) * W if norm > 0 else 0.0

    result = minimize_logistic(Z, y, k, np.zeros(k * d + k), norm_penalty, max_iter, gtol)
    return result.x[:k * d].reshape(k, d), result.x[k * d:], int(result.nit)


def weight_mass_keys(W: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(e_j = min_c A_cj, max_c |W_cj| / M_c) of reference.md#method-lca, or None if no class has weight.

    A_cj is the share of |W_c.| strictly ahead of neuron j when class c's neurons are sorted by |W_cj|
    descending (ties by index). Classes with no weight are skipped.
    """
    magnitude = np.abs(np.asarray(W, dtype=np.float64))
    magnitude = magnitude[magnitude.sum(axis=1) > 0]
    if len(magnitude) == 0:
        return None
    by_class = np.argsort(-magnitude, axis=1, kind="stable")
    sorted_magnitude = np.take_along_axis(magnitude, by_class, axis=1)
    cumulative = np.cumsum(sorted_magnitude, axis=1)
    # M_c as the last cumulative sum, so zero-weight neurons get exactly A = 1.
    mass = cumulative[:, -1:]
    ahead_sorted = np.concatenate([np.zeros_like(mass), cumulative[:, :-1]], axis=1) / mass
    ahead = np.empty_like(ahead_sorted)
    np.put_along_axis(ahead, by_class, ahead_sorted, axis=1)
    return ahead.min(axis=0), (magnitude / mass).max(axis=0)


def weight_mass_order(W: np.ndarray) -> np.ndarray:
    """Neurons by the weight-mass key (e_j, -peak share, j) of reference.md#method-lca ("exact form").

    W has shape (n_outputs, D), one row per class (a single row for a binary probe). NeuroX admits
    neuron j at the first mass step past e_j, so this refines its chunk order for every stride. If
    every class has no weight the order is the index order.
    """
    d = np.shape(W)[1]
    keys = weight_mass_keys(W)
    if keys is None:
        return np.arange(d)
    earliest, peak_share = keys
    return np.lexsort((np.arange(d), -peak_share, earliest))


def weight_mass_cutoffs(W: np.ndarray, search_stride: int = SEARCH_STRIDE) -> np.ndarray:
    """NeuroX's `cutoffs`: neurons admitted after each step p = k / search_stride, k = 0..stride.

    A class's top neuron (e_j = 0) is admitted at p = 0, any other at the first p > e_j; neurons of no
    class's weight (e_j = 1) never are. Positions in `weight_mass_order(W)`, which admits in this order.
    """
    keys = weight_mass_keys(W)
    if keys is None:
        return np.zeros(search_stride + 1, dtype=np.int64)
    earliest = keys[0]
    step = np.where(earliest == 0, 0, np.floor(earliest * search_stride) + 1)
    return np.searchsorted(np.sort(step), np.arange(search_stride + 1), side="right").astype(np.int64)


class LinearProbeRanker(Method):
    """Rank neurons by the weights of an elastic-net logistic probe over the whole layer.

    The probe is solved by `fit_elastic_net` (FISTA, or L-BFGS when l1 = 0; `tol` is FISTA's).
    `ordering="weight_mass"` gives the LCA family (`lca`, `lasso`, `ridge`, `noreg`;
    reference.md#method-lca) and leaves NeuroX's S = 100 chunk boundaries in `cutoffs_`;
    `ordering="mean_abs"` gives `linear_meanw`, s_j = mean_c |W_cj| (reference.md#method-linear-meanw).
    `select_on_dev=True` chooses each nonzero penalty from PENALTY_GRID by dev accuracy (ties to the
    larger l1, then the larger l2): the method then needs `dev` and fits up to 25 probes.
    """

    def __init__(self, l1: float = 1e-3, l2: float = 1e-3, ordering: str = "weight_mass",
                 normalize: str = "zscore", max_iter: int = 5000, tol: float = 1e-7,
                 select_on_dev: bool = False):
        self.l1 = l1
        self.l2 = l2
        self.ordering = ordering
        self.normalize = normalize
        self.max_iter = max_iter
        self.tol = tol
        self.select_on_dev = select_on_dev

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"dev"}) if self.select_on_dev else frozenset()

    def order(self, Z: np.ndarray, y: np.ndarray, rng: np.random.Generator, **inputs) -> np.ndarray:
        if self.ordering not in ORDERINGS:
            raise NeuronbenchError(f"{type(self).__name__}: ordering must be one of {ORDERINGS}, "
                                   f"got {self.ordering!r}")
        n_classes = int(y.max()) + 1 if len(y) else 0
        if n_classes < 2:
            raise NeuronbenchError(f"{type(self).__name__} needs labels of at least two classes, "
                                   f"got n_classes={n_classes}")
        if self.select_on_dev:
            W = self._fit_selected_on_dev(Z, y, n_classes, *inputs["dev"])
        else:
            W, _, _ = fit_elastic_net(Z, y, n_classes, self.l1, self.l2, self.max_iter, self.tol)
        if self.ordering != "weight_mass":
            self.cutoffs_ = None
            return order_by_scores(np.abs(W).mean(axis=0))
        self.cutoffs_ = weight_mass_cutoffs(W)
        return weight_mass_order(W)

    def _fit_selected_on_dev(self, Z, y, n_classes: int, Z_dev, y_dev) -> np.ndarray:
        """The weights of the grid fit with the best dev accuracy; the larger penalties come first, so a
        strictly better accuracy is needed to move to a smaller one."""
        best = (-1.0, None, None)
        for l1 in sorted(PENALTY_GRID if self.l1 else (0.0,), reverse=True):
            for l2 in sorted(PENALTY_GRID if self.l2 else (0.0,), reverse=True):
                W, b, _ = fit_elastic_net(Z, y, n_classes, l1, l2, self.max_iter, self.tol)
                probe = LogisticProbe(W.astype(np.float32), b.astype(np.float32), n_classes)
                dev_accuracy = accuracy(probe, Z_dev, y_dev)
                if dev_accuracy > best[0]:
                    best = (dev_accuracy, (l1, l2), W)
        log.info("select_on_dev: l1, l2 = %s (dev accuracy %.4f)", best[1], best[0])
        return best[2]
