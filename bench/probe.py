"""The shared evaluation probe: L2 logistic regression, full batch, fit to convergence.

Every ranking is scored through this probe (reference.md#metric-probe-acc, the `linear` family), so it
must be deterministic and reach its optimum rather than stop after a few epochs as published probes do.
The objective is scikit-learn's, `C * sum_i CE_i + 0.5 * ||W||_F^2` with b unpenalized, so its results
can be checked against `sklearn.linear_model.LogisticRegression`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from bench.errors import NeuronbenchError

DEFAULT_CS = (0.01, 0.1, 1.0, 10.0)  # reference.md#metric-probe-acc
# Gradient tolerance of the evaluation probes retrained on a subset (scikit-learn's default). Against
# 1e-6, on 80 fits of real standard-suite cells (minilm_l3 morph_number and upos, hidden and mlp layer 2,
# top-k of probeless and random sets, task and control labels) they fitted 3.9x faster; 23 of 80 test
# accuracies moved, by at most 0.0045 (9 of 2,000 words, a control fit whose dev-chosen C changed).
# The all-neuron probe keeps 1e-6: the ablation scorer reads its weights, and at 1e-4 keeping its top 3
# moved accuracy by up to 0.03 on the golden cell; it is one fit per cell, shared by every method.
SUBSET_GTOL = 1e-4
# exp(-50) / (n * n_outputs) stays a normal float32 for any realistic n: subnormal residuals make
# the float32 gradient matmul about 20x slower. The clamp moves the loss by less than 1e-20.
SHIFTED_LOGIT_FLOOR = -50.0


def n_outputs(n_classes: int) -> int:
    """One logit (sigmoid) for two classes, one per class (softmax) otherwise (reference.md#method-lca)."""
    return 1 if n_classes == 2 else n_classes


@dataclass(frozen=True, eq=False)
class LogisticProbe:
    """A fitted probe, `logits = Z @ W.T + b` with W of shape (n_outputs, D) as in reference.md#notation."""

    W: np.ndarray
    b: np.ndarray
    n_classes: int

    def logits(self, Z) -> np.ndarray:
        """(N, n_outputs) float32 logits; a single column for a two-class probe."""
        return np.asarray(Z, dtype=np.float32) @ self.W.T + self.b

    def predict(self, Z) -> np.ndarray:
        return predict_from_logits(self.logits(Z), self.n_classes)


def predict_from_logits(logits: np.ndarray, n_classes: int) -> np.ndarray:
    """int64 class ids from (N, n_outputs) logits; a tie between logits goes to the lower class id."""
    if n_classes == 2:
        return (logits[:, 0] > 0).astype(np.int64)
    return np.argmax(logits, axis=1)


def check_probe_inputs(Z, y, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Z as C-contiguous float32 (the matmul dtype) and y as int64 ids in 0..n_classes-1, or raise."""
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    y = np.asarray(y)
    if n_classes < 2:
        raise NeuronbenchError(f"a probe needs at least 2 classes, got n_classes={n_classes}")
    if Z.ndim != 2 or y.shape != (len(Z),) or len(Z) == 0:
        raise NeuronbenchError(f"probe inputs: expected Z (N, D) and y (N,) with N > 0, "
                               f"got {Z.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        raise NeuronbenchError(f"probe labels must be integer class ids in 0..{n_classes - 1}")
    return Z, y.astype(np.int64, copy=False)


def cross_entropy(logits: np.ndarray, y: np.ndarray, with_residual: bool = False):
    """Mean cross-entropy of labels y under class-major `logits` (n_outputs, N), by a stable log-softmax.

    With `with_residual`, also return d(mean CE)/d(logits) = (softmax - onehot) / N as float32, ready
    for the gradient matmul. A single logit row l is the two-class softmax over [0, l], which gives the
    sigmoid loss and gradient. The class-major layout makes the per-word reductions run along
    contiguous rows (several times faster than reducing a short last axis). The elementwise work is
    float64 (a copy: `logits` is never modified), so the loss is as precise as the logits given.
    """
    n = len(y)
    words = np.arange(n)
    single = len(logits) == 1
    if single:
        full = np.zeros((2, n))
        full[1] = logits[0]
    else:
        full = logits.astype(np.float64)
    full -= full.max(axis=0)
    label_logit_sum = float(full[y, words].sum())
    np.maximum(full, SHIFTED_LOGIT_FLOOR, out=full)
    probabilities = np.exp(full, out=full)
    partition = probabilities.sum(axis=0)
    loss = (float(np.log(partition).sum()) - label_logit_sum) / n
    if not with_residual:
        return loss
    probabilities /= partition
    probabilities[y, words] -= 1.0
    probabilities *= 1.0 / n
    residual = probabilities[1:] if single else probabilities
    return loss, residual.astype(np.float32)


def fit_logistic(Z, y, n_classes: int, C: float = 1.0, init: LogisticProbe | None = None,
                 max_iter: int = 1000, tol: float = 1e-6) -> LogisticProbe:
    """Fit the L2 probe of reference.md#metric-probe-acc by L-BFGS-B; `init` warm-starts it.

    Like scikit-learn, the objective is divided by C*N (mean CE + ||W||^2 / (2 C N)): same minimizer,
    gradients of order one, so `tol` is a gradient tolerance comparable to scikit-learn's. Classes
    absent from y keep their logit (their bias just sinks); Z with no columns fits the bias only,
    which predicts the majority class.
    """
    Z, y = check_probe_inputs(Z, y, n_classes)
    n, d = Z.shape
    k = n_outputs(n_classes)
    ridge = 1.0 / (C * n)
    if init is None:
        start = np.zeros(k * d + k)
    elif init.W.shape != (k, d):
        raise ValueError(f"warm start has W of shape {init.W.shape}, expected {(k, d)}")
    else:
        start = np.concatenate([init.W.ravel(), init.b]).astype(np.float64)

    def l2_penalty(weights: np.ndarray) -> tuple[float, np.ndarray]:
        return 0.5 * ridge * float(weights.ravel() @ weights.ravel()), ridge * weights

    result = minimize_logistic(Z, y, k, start, l2_penalty, max_iter, tol)
    return LogisticProbe(W=result.x[:k * d].reshape(k, d).astype(np.float32),
                         b=result.x[k * d:].astype(np.float32), n_classes=n_classes)


def minimize_logistic(Z: np.ndarray, y: np.ndarray, k: int, start: np.ndarray, penalty, max_iter: int,
                      gtol: float):
    """L-BFGS-B on `mean CE(Z @ W.T + b) + penalty(W)` from `start` (W raveled, then b), where
    `penalty(W) -> (value, gradient)`: the solver of the evaluation probe and of the smooth ranking probe
    (methods.linear.fit_smooth_probe). Z is C-contiguous float32 and y int64 (check_probe_inputs).

    Logits are tracked in float64 and moved by float32 matmuls of parameter changes: a fresh float32
    product carries rounding noise of about 1e-8 of the loss, which near the optimum drowns the decrease
    L-BFGS-B's line search looks for, while the change's product is exact to float32 precision of the
    change itself.
    """
    d = Z.shape[1]
    last_params = start.copy()
    last_logits = (start[:k * d].reshape(k, d).astype(np.float32) @ Z.T).astype(np.float64)
    last_logits += start[k * d:, None]

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal last_params, last_logits
        change = params - last_params
        logits = last_logits + change[:k * d].reshape(k, d).astype(np.float32) @ Z.T
        logits += change[k * d:, None]
        last_params, last_logits = params.copy(), logits
        loss, residual = cross_entropy(logits, y, with_residual=True)
        penalty_value, penalty_gradient = penalty(params[:k * d].reshape(k, d))
        grad_weights = (residual @ Z).astype(np.float64) + penalty_gradient
        grad_bias = residual.sum(axis=1, dtype=np.float64)
        return loss + penalty_value, np.concatenate([grad_weights.ravel(), grad_bias])

    return minimize(objective, start, jac=True, method="L-BFGS-B",
                    options={"maxiter": max_iter, "gtol": gtol, "ftol": 64 * np.finfo(float).eps,
                             "maxls": 50})


def accuracy(probe: LogisticProbe, Z, y) -> float:
    """Fraction of words whose class the probe predicts."""
    return float(np.mean(probe.predict(Z) == np.asarray(y)))


def fit_select(Z_train, y_train, Z_dev, y_dev, n_classes: int,
               Cs=DEFAULT_CS, tol: float = 1e-6) -> tuple[LogisticProbe, float]:
    """Choose C by dev accuracy, ties to the smaller C (reference.md#metric-probe-acc).

    The Cs are fitted in ascending order, each warm-started from the previous fit: a weaker penalty
    moves the optimum only a little (on 20k x 384 x 17 problems this saved a quarter of the L-BFGS
    iterations of cold starts).
    """
    Z_train = np.ascontiguousarray(Z_train, dtype=np.float32)
    best_accuracy, best_probe, best_C = -1.0, None, None
    probe = None
    for C in sorted(Cs):
        probe = fit_logistic(Z_train, y_train, n_classes, C=C, init=probe, tol=tol)
        dev_accuracy = accuracy(probe, Z_dev, y_dev)
        if dev_accuracy > best_accuracy:
            best_accuracy, best_probe, best_C = dev_accuracy, probe, C
    return best_probe, best_C
