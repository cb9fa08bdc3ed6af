"""Recovery and method-specific properties of sparse_l1, cluster_rep, ig_probe and the cross-model rankers.

The conformance test covers the contract of the YAML-configured methods; the cross-model rankers have no
config yet (the runner cannot feed other models), so their contract is checked here.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from scipy.special import expit, softmax
from sklearn.linear_model import LogisticRegression

from bench.errors import NeuronbenchError
from bench.models import matched_layers
from bench.probe import fit_logistic
from methods.attribution import IGProbe, integrated_gradients, path_points
from methods.cluster import ClusterRep, correlation_clusters
from methods.cross_model import LinReg, MaxCorr, MinCorr, regression_errors, standardized
from methods.probeless import Probeless
from methods.sparse import SparseL1, fit_l1_logistic_ovr

PLANTED = np.array([7, 23, 41, 62, 88])  # neuron PLANTED[c] is shifted by +3 on class c
N, D = 2000, 100


def planted(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(PLANTED), size=N)
    X = rng.normal(size=(N, D))
    X[np.arange(N), PLANTED[y]] += 3.0
    return X.astype(np.float32), y


def checksum(*arrays):
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()


# --- labelled methods: recovery ---------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # saga at 100 epochs
@pytest.mark.parametrize("method", [SparseL1(), SparseL1(solver="liblinear"), SparseL1(solver="saga"), ClusterRep(),
                                    IGProbe(), IGProbe(baseline="zero", rule="left", normalize="raw")],
                         ids=["sparse_l1", "sparse_l1-liblinear", "sparse_l1-saga", "cluster_rep", "ig_probe",
                              "ig_probe-compat"])
def test_planted_neurons_rank_first(method):
    X, y = planted()
    top = method.rank(X, y, rng=np.random.default_rng(0))[:len(PLANTED)]
    assert set(top.tolist()) == set(PLANTED.tolist())


@pytest.mark.parametrize("method", [SparseL1(), IGProbe()], ids=["sparse_l1", "ig_probe"])
def test_concept_form_ranks_the_concept_neuron_first(method):
    """Two classes take the single-fit / |a_+| branch; the concept is class 2 of the planted task."""
    X, y = planted()
    concept = (y == 2).astype(np.int64)
    assert method.rank(X, concept, rng=np.random.default_rng(0))[0] == PLANTED[2]


def test_sparse_l1_is_sparse():
    """Exact zeros, so the penalty is L1: scikit-learn < 1.8 ignores `l1_ratio` and would fit L2."""
    X, y = planted()
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    assert np.sum(SparseL1().scores(Z, (y == 2).astype(np.int64), np.random.default_rng(0)) == 0) > D // 4


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fista_l1_logistic_matches_sklearn():
    """All one-vs-rest problems at once reach saga's optimum (same objective, intercept free): same support, same
    coefficients; liblinear also penalizes the intercept, so only its support is compared."""
    rng = np.random.default_rng(0)
    n, d, C = 600, 20, 0.05
    y = rng.integers(0, 3, size=n)
    X = rng.normal(size=(n, d))
    X[:, 0] += y == 0
    X[:, 1] -= 0.7 * (y == 1)
    X[:, 2] += 0.3 * y
    Z = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    W, b, _ = fit_l1_logistic_ovr(Z, y[None, :] == np.arange(3)[:, None], l1=1.0 / (C * n), tol=1e-12)
    for c in range(3):
        saga = LogisticRegression(C=C, l1_ratio=1.0, solver="saga", class_weight="balanced", tol=1e-10,
                                  max_iter=100_000).fit(Z.astype(np.float64), y == c)
        liblinear = LogisticRegression(C=C, l1_ratio=1.0, solver="liblinear", class_weight="balanced",
                                       tol=1e-8).fit(Z.astype(np.float64), y == c)
        assert 2 < np.count_nonzero(W[c]) < d
        np.testing.assert_array_equal(W[c] != 0, saga.coef_[0] != 0)
        np.testing.assert_allclose(W[c], saga.coef_[0], atol=1e-5)
        assert b[c] == pytest.approx(saga.intercept_[0], abs=1e-5)
        np.testing.assert_array_equal(W[c] != 0, liblinear.coef_[0] != 0)
    two_class = SparseL1(C=C, tol=1e-12).scores(Z, (y == 1).astype(np.int64), np.random.default_rng(0))
    np.testing.assert_allclose(two_class, np.abs(W[1]), atol=1e-5)  # one fit, for the concept


def test_bad_parameters_rejected():
    X, y = planted()
    for method in (SparseL1(solver="lbfgs"), IGProbe(rule="right"), IGProbe(baseline="median"),
                   IGProbe(steps=0)):
        with pytest.raises(NeuronbenchError):
            method.rank(X, y)
    with pytest.raises(NeuronbenchError, match="the labels hold one class"):
        SparseL1().rank(X, np.zeros(N, dtype=np.int64))


# --- cluster_rep ------------------------------------------------------------------------------------

def test_cluster_rep_puts_one_representative_per_redundant_group_first():
    """Each planted neuron gets two near-copies; probeless alone would fill its top 15 with the groups."""
    X, y = planted()
    rng = np.random.default_rng(1)
    groups = [[j, j + 1, j + 2] for j in PLANTED]
    for j, *copies in groups:
        for copy in copies:
            X[:, copy] = X[:, j] + 0.05 * rng.normal(size=N)
    ranking = ClusterRep().rank(X, y, rng=np.random.default_rng(0))
    by_probeless = Probeless().rank(X, y).tolist()
    best_of_group = {min(group, key=by_probeless.index) for group in groups}
    assert set(ranking[:5].tolist()) == best_of_group
    assert set(ranking[-10:].tolist()) == {j for group in groups for j in group} - best_of_group
    assert set(by_probeless[:15]) == {j for group in groups for j in group}


def test_abs_correlation_merges_a_neuron_with_its_negation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 500))
    Z = np.stack([a, -a + 0.05 * rng.normal(size=500), b], axis=1)
    merged = correlation_clusters(Z, threshold=0.5, abs_correlation=True)
    split = correlation_clusters(Z, threshold=0.5, abs_correlation=False)
    assert merged[0] == merged[1] != merged[2]
    assert len(set(split.tolist())) == 3


# --- ig_probe completeness --------------------------------------------------------------------------

def true_change(probe, Z, y, baseline):
    """F(z_i) − F(b) with F = p(y_i | ·), computed from the probe's logits without methods.attribution."""
    at = np.vstack([Z, baseline[None, :]]).astype(np.float64) @ probe.W.T.astype(np.float64) + probe.b
    if probe.n_classes == 2:
        p1 = expit(at[:, 0])
        p = np.stack([1 - p1, p1], axis=1)
    else:
        p = softmax(at, axis=1)
    return p[np.arange(len(y)), y] - p[-1, y]


@pytest.mark.parametrize("n_classes", [2, 5])
@pytest.mark.parametrize("rule", ["midpoint", "left"])
def test_ig_completeness_gap_shrinks_with_steps(n_classes, rule):
    X, y = planted()
    y = np.minimum(y, n_classes - 1)
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    probe = fit_logistic(Z, y, n_classes, C=1.0)
    baseline = np.full(D, -0.5)  # away from 0 so that the path crosses the sigmoid's steep part
    change = true_change(probe, Z, y, baseline)
    gaps = [np.max(np.abs(integrated_gradients(probe, Z, y, baseline, path_points(steps, rule)).sum(axis=1)
                          - change)) for steps in (4, 16, 64)]
    # 4x the steps: the error of the midpoint rule falls ~16x (second order), of the left rule ~4x
    assert gaps[1] < gaps[0] / 2 and gaps[2] < gaps[1] / (10 if rule == "midpoint" else 3)
    assert gaps[2] < (1e-3 if rule == "midpoint" else 0.1)


def autograd_attributions(probe, Z, y, baseline, alphas):
    """IG by torch autograd, one step at a time: an oracle for the closed form."""
    W, b = torch.tensor(probe.W, dtype=torch.float64), torch.tensor(probe.b, dtype=torch.float64)
    Z, base = torch.tensor(Z, dtype=torch.float64), torch.tensor(baseline, dtype=torch.float64)
    rows, targets = torch.arange(len(y)), torch.tensor(y)
    gradient_sum = torch.zeros_like(Z)
    for alpha in alphas:
        point = (base + float(alpha) * (Z - base)).requires_grad_()
        logits = point @ W.T + b
        if probe.n_classes == 2:
            logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
        torch.softmax(logits, dim=1)[rows, targets].sum().backward()
        gradient_sum += point.grad
    return ((Z - base) * gradient_sum / len(alphas)).numpy()


@pytest.mark.parametrize("n_classes", [2, 5])
def test_ig_probe_matches_autograd(n_classes):
    """Closed-form gradients against autograd, and the class aggregation (|a_1| for two classes)."""
    X, y = planted()
    X, y = X[:300, :12], np.minimum(y[:300], n_classes - 1)
    X[np.arange(300), 2 * y] += 1.5
    Z = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    method = IGProbe(steps=7)
    probe = fit_logistic(Z, y, n_classes, C=method.C)
    A = autograd_attributions(probe, Z, y, np.zeros(12), path_points(7, "midpoint"))
    assert np.allclose(integrated_gradients(probe, Z, y, np.zeros(12), path_points(7, "midpoint")), A,
                       rtol=1e-6, atol=1e-9)
    per_class = np.abs([A[y == c].mean(axis=0) for c in range(n_classes)])
    expected = per_class[1] if n_classes == 2 else per_class.mean(axis=0)
    assert np.allclose(method.scores(Z, y, np.random.default_rng(0)), expected, rtol=1e-4, atol=1e-7)


# --- cross-model rankers ----------------------------------------------------------------------------

CROSS_MODEL = [MaxCorr(), MinCorr(), LinReg()]
CROSS_IDS = ["maxcorr", "mincorr", "linreg"]


def copied_neuron(n=1500, d=40, seed=0):
    """Neuron 5 of X reappears, rescaled and noisy, as neuron 11 of a 30-wide other model."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    other = rng.normal(size=(n, 30))
    other[:, 11] = -1.0 + 2.5 * X[:, 5] + 0.3 * rng.normal(size=n)
    return X, other.astype(np.float32)


@pytest.mark.parametrize("method", CROSS_MODEL, ids=CROSS_IDS)
def test_copied_neuron_ranks_first(method):
    X, other = copied_neuron()
    assert method.rank(X, other_activations=[other])[0] == 5
    # duplicated columns make the Gram matrix singular: the ridged Cholesky solve must still work
    assert method.rank(X, other_activations=[np.hstack([other, other])])[0] == 5


def test_regression_errors_match_lstsq():
    rng = np.random.default_rng(0)
    S, other = standardized(rng.normal(size=(200, 6))), standardized(rng.normal(size=(200, 9)))
    S[:, [2]] = standardized(other @ rng.normal(size=(9, 1)) + 0.1 * rng.normal(size=(200, 1)))  # well fit
    coef = np.linalg.lstsq(other, S, rcond=None)[0]
    assert np.allclose(regression_errors(S, other), np.mean((S - other @ coef) ** 2, axis=0), atol=1e-6)


def test_neuron_in_one_other_model_only():
    """Every neuron recurs moderately (ρ ≈ 0.6) in both other models, except neuron 3: strongly in the
    first, not at all in the second (which is also wider)."""
    rng = np.random.default_rng(0)
    n, d = 3000, 20
    X = rng.normal(size=(n, d))
    first = X + 1.3 * rng.normal(size=(n, d))
    first[:, 3] = X[:, 3] + 0.1 * rng.normal(size=n)
    second = np.hstack([X + 1.3 * rng.normal(size=(n, d)), rng.normal(size=(n, 5))])
    second[:, 3] = rng.normal(size=n)
    others = [first, second]
    assert MaxCorr().rank(X, other_activations=others)[0] == 3
    assert MinCorr().rank(X, other_activations=others)[-1] == 3
    assert LinReg().rank(X, other_activations=others)[-1] == 3


@pytest.mark.parametrize("method", CROSS_MODEL, ids=CROSS_IDS)
def test_cross_model_contract(method):
    X, other = copied_neuron()
    X[:, 0] = 2.0  # dead: ranked last
    other[:, 3] = 0.0  # a dead neuron in the other model only drops out (ρ = 0)
    second = np.random.default_rng(1).normal(size=(len(X), 25)).astype(np.float32)
    before = checksum(X, other, second)
    ranking = method.rank(X, other_activations=[other, second])
    assert checksum(X, other, second) == before
    assert ranking.dtype == np.int64 and np.array_equal(np.sort(ranking), np.arange(X.shape[1]))
    assert ranking[-1] == 0
    assert np.array_equal(ranking, method.rank(X, other_activations=[other, second]))
    # correlations and standardized regressions ignore per-neuron affine maps
    assert np.array_equal(ranking, method.rank(3.0 * X + 1.0, other_activations=[0.5 * other - 2.0, second]))


@pytest.mark.parametrize("method", CROSS_MODEL, ids=CROSS_IDS)
def test_cross_model_bad_inputs_rejected(method):
    X, other = copied_neuron()
    bad = other.copy()
    bad[7, 2] = np.nan
    cases = {"other_activations\\[1\\]: 1 NaN/inf": [other, bad],
             "other_activations\\[0\\]: expected activations on the same": [other[:-1]],
             "other_activations\\[0\\]: no neuron varies": [np.ones_like(other)],
             "at least one other model": [],
             "needs \\['other_activations'\\]": None}
    for message, others in cases.items():
        inputs = {} if others is None else {"other_activations": others}
        with pytest.raises(NeuronbenchError, match=message):
            method.rank(X, **inputs)
    X[4, 4] = np.inf
    with pytest.raises(NeuronbenchError, match="first at word 4, neuron 4"):
        method.rank(X, other_activations=[other])


@pytest.mark.parametrize("layer, n_layers, other, n_other, mode, expected", [
    (3, 6, list(range(4)), 3, "relative", [2]),    # 1.5 rounds half up
    (1, 6, list(range(4)), 3, "relative", [1]),    # 0.5 rounds half up
    (0, 6, list(range(4)), 3, "relative", [0]),    # embeddings meet embeddings
    (6, 6, list(range(4)), 3, "relative", [3]),    # top meets top
    (2, 2, list(range(3)), 2, "relative", [2]),    # equal depths: layer with layer
    (1, 12, list(range(1, 4)), 3, "relative", [1]),  # mlp has no layer 0: clipped to layer 1
    (5, 6, list(range(1, 4)), 3, "all", [1, 2, 3]),
])
def test_matched_layers(layer, n_layers, other, n_other, mode, expected):
    assert matched_layers(layer, n_layers, other, n_other, mode) == expected


def test_matched_layers_rejects_unknown_mode():
    with pytest.raises(NeuronbenchError, match="method.other_layers must be one of"):
        matched_layers(1, 2, [0, 1, 2], 2, "same")
