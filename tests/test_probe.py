"""The shared evaluation probe (reference.md#metric-probe-acc): optimum, edge cases, C selection."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from bench.errors import NeuronbenchError
from bench.probe import accuracy, fit_logistic, fit_select


def gaussian_classes(n_classes: int, n: int = 400, d: int = 6, seed: int = 0, spread: float = 1.0):
    """Overlapping Gaussian classes: a unique, finite, well-conditioned optimum."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    Z = rng.normal(size=(n, d)) + spread * rng.normal(size=(n_classes, d))[y]
    return Z.astype(np.float32), y


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Class probabilities (N, C) in float64 from (N, n_outputs) logits."""
    logits = logits.astype(np.float64)
    if logits.shape[1] == 1:
        logits = np.hstack([np.zeros_like(logits), logits])
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def sklearn_objective(W, b, Z, y, C) -> float:
    """scikit-learn's objective divided by C*N, in float64: mean CE + ||W||^2 / (2 C N)."""
    p = probabilities(Z.astype(np.float64) @ np.asarray(W, np.float64).T + np.asarray(b, np.float64))
    return -np.mean(np.log(p[np.arange(len(y)), y])) + float(np.sum(np.square(W))) / (2 * C * len(y))


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("C", [0.1, 1.0])
def test_matches_sklearn(n_classes, C):
    Z, y = gaussian_classes(n_classes)
    reference = LogisticRegression(C=C, tol=1e-8, max_iter=5000).fit(Z.astype(np.float64), y)
    probe = fit_logistic(Z, y, n_classes, C=C)

    assert probe.W.shape == reference.coef_.shape == (1 if n_classes == 2 else n_classes, Z.shape[1])
    # Same objective, so the same optimum. We stop at |gradient|_inf <= 1e-6, i.e. |g|_2 <= 5.3e-6
    # for these <= 28 parameters; the Hessian's smallest eigenvalue on these problems is >= 2.5e-3
    # (computed once from the reference solution), so the objective gap is <= |g|^2 / (2 lambda)
    # ~ 6e-9 (< 1e-7 relative) and each coefficient is within |g| / lambda ~ 2e-3. Observed: ~3e-5.
    ours = sklearn_objective(probe.W, probe.b, Z, y, C)
    best = sklearn_objective(reference.coef_, reference.intercept_, Z, y, C)
    assert ours <= best * (1 + 1e-7)
    np.testing.assert_allclose(probe.W, reference.coef_, atol=2e-3)
    np.testing.assert_allclose(probabilities(probe.logits(Z)), reference.predict_proba(Z), atol=1e-3)
    assert np.mean(probe.predict(Z) == reference.predict(Z)) >= 0.99


def test_binary_probe_has_one_logit():
    Z, y = gaussian_classes(2)
    probe = fit_logistic(Z, y, 2)
    assert probe.logits(Z).shape == (len(Z), 1)
    assert set(np.unique(probe.predict(Z))) == {0, 1}
    assert accuracy(probe, Z, y) > 0.8


@pytest.mark.parametrize("n_classes", [2, 4])
def test_no_columns_predicts_the_majority(n_classes):
    y = np.array([1] * 7 + [0] * 3 + ([2] * 5 if n_classes > 2 else []))  # class 3 is absent
    probe = fit_logistic(np.zeros((len(y), 0), np.float32), y, n_classes)
    assert probe.W.shape[1] == 0
    np.testing.assert_array_equal(probe.predict(np.zeros((4, 0))), [1, 1, 1, 1])


def test_absent_classes_are_kept_and_never_predicted():
    Z, y = gaussian_classes(3)
    probe = fit_logistic(Z, y, n_classes=5)
    assert probe.W.shape == (5, Z.shape[1])
    assert probe.predict(Z).max() <= 2


def test_fit_is_deterministic():
    Z, y = gaussian_classes(4)
    first, second = fit_logistic(Z, y, 4), fit_logistic(Z, y, 4)
    np.testing.assert_array_equal(first.W, second.W)
    np.testing.assert_array_equal(first.b, second.b)


def test_warm_start_reaches_the_cold_start_solution():
    Z, y = gaussian_classes(4)
    cold = fit_logistic(Z, y, 4, C=1.0)
    warm = fit_logistic(Z, y, 4, C=1.0, init=fit_logistic(Z, y, 4, C=0.1))
    cold_value, warm_value = (sklearn_objective(p.W, p.b, Z, y, 1.0) for p in (cold, warm))
    assert abs(warm_value - cold_value) <= 1e-7 * cold_value
    np.testing.assert_allclose(warm.W, cold.W, atol=2e-3)


def test_fit_select_breaks_an_exact_tie_towards_the_smaller_C():
    # Well-separated classes: every C classifies the whole dev set correctly, an exact tie.
    Z_all, y_all = gaussian_classes(3, n=400, spread=8.0, seed=1)
    Z, y, Z_dev, y_dev = Z_all[:300], y_all[:300], Z_all[300:], y_all[300:]
    probe, C = fit_select(Z, y, Z_dev, y_dev, 3)
    assert C == 0.01
    assert accuracy(probe, Z_dev, y_dev) == 1.0
    np.testing.assert_allclose(probe.W, fit_logistic(Z, y, 3, C=0.01).W, atol=2e-3)
    assert fit_select(Z, y, Z_dev, y_dev, 3, Cs=(10.0, 1.0))[1] == 1.0


def test_fit_select_prefers_the_better_C_on_dev():
    # Many noise features and few words: the strongest penalty generalizes best.
    rng = np.random.default_rng(3)
    y, y_dev = rng.integers(0, 2, 40), rng.integers(0, 2, 2000)
    Z = rng.normal(size=(40, 200)).astype(np.float32)
    Z_dev = rng.normal(size=(2000, 200)).astype(np.float32)
    Z[:, 0] += 1.5 * y
    Z_dev[:, 0] += 1.5 * y_dev
    probe, C = fit_select(Z, y, Z_dev, y_dev, 2)
    accuracies = {c: accuracy(fit_logistic(Z, y, 2, C=c), Z_dev, y_dev) for c in (0.01, 0.1, 1.0, 10.0)}
    assert accuracy(probe, Z_dev, y_dev) == max(accuracies.values())
    assert C == min(c for c, a in accuracies.items() if a == max(accuracies.values()))


@pytest.mark.parametrize("labels, n_classes", [([0, 1, 2], 2), ([0, -1, 1], 2), ([0, 0, 0], 1)])
def test_bad_labels_raise(labels, n_classes):
    with pytest.raises(NeuronbenchError):
        fit_logistic(np.zeros((3, 2), np.float32), np.array(labels), n_classes)
