"""Linear-probe rankers (reference.md#method-lca, #method-linear-meanw): solver optimality, the
weight-mass order and its agreement with NeuroX's chunks, and the ranking contract."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bench.errors import NeuronbenchError
from bench.run import diagnostics_file, ranking_file, run_job
from conftest import CONF
from bench.probe import LogisticProbe, accuracy, fit_logistic
from methods.linear import (PENALTY_GRID, LinearProbeRanker, contiguous_transpose, elastic_net_penalty, fit_elastic_net,
                            fit_smooth_probe, prox_elastic_net, weight_mass_cutoffs, weight_mass_order)


def sparse_gaussian_classes(n_classes: int, n: int = 600, d: int = 30, informative: int = 6, seed: int = 0):
    """Classes that differ only in the first `informative` neurons, so the lasso part zeroes the rest."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    centers = np.zeros((n_classes, d))
    centers[:, :informative] = rng.normal(size=(n_classes, informative))
    return (rng.normal(size=(n, d)) + centers[y]).astype(np.float32), y


def exact_gradients(W, b, Z, y):
    """Gradient of the mean cross-entropy w.r.t. W (n_outputs, D) and b, in float64."""
    logits = np.asarray(W, np.float64) @ Z.T.astype(np.float64) + b[:, None]
    single = len(logits) == 1
    if single:
        logits = np.vstack([np.zeros_like(logits), logits])
    p = np.exp(logits - logits.max(axis=0))
    p /= p.sum(axis=0)
    p[y, np.arange(len(y))] -= 1.0
    p /= len(y)
    if single:
        p = p[1:]
    return p @ Z.astype(np.float64), p.sum(axis=1)


def mean_cross_entropy(W, b, Z, y) -> float:
    logits = np.asarray(W, np.float64) @ Z.T.astype(np.float64) + np.asarray(b, np.float64)[:, None]
    if len(logits) == 1:
        logits = np.vstack([np.zeros_like(logits), logits])
    top = logits.max(axis=0)
    log_partition = top + np.log(np.exp(logits - top).sum(axis=0))
    return float(np.mean(log_partition - logits[y, np.arange(len(y))]))


@pytest.mark.parametrize("solver", ["auto", "fista"])
@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("l1, l2", [(1e-2, 1e-2), (1e-2, 0.0), (0.0, 1e-2), (1e-3, 1e-3)])
def test_elastic_net_meets_its_optimality_conditions(n_classes, l1, l2, solver):
    Z, y = sparse_gaussian_classes(n_classes)
    W, b, n_iter = fit_elastic_net(Z, y, n_classes, l1, l2, tol=1e-10, solver=solver)
    assert W.shape == (1 if n_classes == 2 else n_classes, Z.shape[1]) and 0 < n_iter < 5000
    grad_W, grad_b = exact_gradients(W, b, Z, y)
    nonzero = W != 0
    norm = np.linalg.norm(W)
    # Subgradient (KKT) conditions, checked in float64. Run to tol=1e-10 the residuals are ~1e-6
    # here; 2e-5 (2% of the smallest nonzero penalty) leaves a 10x margin and still fails a solver
    # that stops short or solves a different objective.
    assert np.abs(grad_b).max() < 2e-5
    stationarity = grad_W + l1 * np.sign(W) + (l2 * W / norm if norm > 0 else 0.0)
    assert np.abs(stationarity[nonzero]).max() < 2e-5
    if l1 > 0:
        assert (~nonzero).any()
        assert np.abs(grad_W[~nonzero]).max() <= l1 + 2e-5


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("l1, l2", [(1e-2, 0.0), (0.0, 1e-2), (1e-3, 1e-3)])
def test_default_stopping_rule_is_close_to_the_optimum(n_classes, l1, l2):
    # The default stop (relative decrease < 1e-7) ends within ~7e-7 of the optimal value here. With 4 classes
    # and l1 = l2 = 1e-3 the split solver takes one nearly null step before descending on: judged on that one
    # step it stopped at 8e-4 above the optimum, hence its rule over SPLIT_WINDOW iterations.
    Z, y = sparse_gaussian_classes(n_classes)
    values = []
    for tol in (1e-7, 1e-10):
        W, b, _ = fit_elastic_net(Z, y, n_classes, l1, l2, tol=tol)
        values.append(mean_cross_entropy(W, b, Z, y) + elastic_net_penalty(W, l1, l2))
    assert values[1] <= values[0] <= values[1] * (1 + 1e-5)


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("l2", [1e-2, 1e-3, 0.0])
def test_smooth_solver_agrees_with_fista(n_classes, l2):
    # l1 = 0 goes to L-BFGS on the same objective; 1,500 words in 12 dimensions are not separable, so
    # even noreg has a minimizer. FISTA run far past its default tolerance is the reference point.
    Z, y = sparse_gaussian_classes(n_classes, n=1500, d=12)
    W_fista, b_fista, _ = fit_elastic_net(Z, y, n_classes, 0.0, l2, solver="fista", tol=1e-12)
    W, b, n_iter = fit_elastic_net(Z, y, n_classes, 0.0, l2)
    assert n_iter < 100
    scale = np.abs(W_fista).max()
    assert np.abs(W - W_fista).max() < 1e-4 * scale
    assert np.abs(b - b_fista).max() < 1e-4 * scale
    np.testing.assert_array_equal(weight_mass_order(W), weight_mass_order(W_fista))


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("l1, l2", [(1e-2, 1e-2), (1e-2, 0.0), (1e-3, 1e-3)])
def test_split_solver_agrees_with_fista(n_classes, l1, l2):
    # Two different algorithms on one objective: the same minimum value, weights, support and ranking. Only the
    # value for the multi-class lasso: adding c to one neuron's weights in every class leaves the cross-entropy
    # as it is, and with an even number of classes sum_c |W_cj + c| is flat between the two middle weights, so
    # that objective has a segment of minimizers (here the solvers end 0.13 apart on one weight).
    Z, y = sparse_gaussian_classes(n_classes)
    W_fista, b_fista, _ = fit_elastic_net(Z, y, n_classes, l1, l2, solver="fista", tol=1e-12)
    W, b, _ = fit_elastic_net(Z, y, n_classes, l1, l2, tol=1e-10)
    ours = mean_cross_entropy(W, b, Z, y) + elastic_net_penalty(W, l1, l2)
    reference = mean_cross_entropy(W_fista, b_fista, Z, y) + elastic_net_penalty(W_fista, l1, l2)
    assert abs(ours - reference) <= 1e-9 * reference
    if l2 == 0 and n_classes > 2:
        return
    scale = np.abs(W_fista).max()
    assert np.abs(W - W_fista).max() < 1e-3 * scale
    np.testing.assert_array_equal(W != 0, W_fista != 0)
    np.testing.assert_array_equal(weight_mass_order(W), weight_mass_order(W_fista))


def test_split_solver_warm_started_at_its_optimum_stops_there():
    Z, y = sparse_gaussian_classes(4)
    W, b, n_iter = fit_elastic_net(Z, y, 4, 1e-3, 1e-3, tol=1e-10)
    W2, b2, n_iter2 = fit_elastic_net(Z, y, 4, 1e-3, 1e-3, tol=1e-10, start=LogisticProbe(W, b, 4))
    assert n_iter2 < n_iter / 2
    assert (mean_cross_entropy(W2, b2, Z, y) + elastic_net_penalty(W2, 1e-3, 1e-3)
            <= mean_cross_entropy(W, b, Z, y) + elastic_net_penalty(W, 1e-3, 1e-3) + 1e-12)


@pytest.mark.parametrize("shape", [(1, 3), (255, 7), (256, 2), (1000, 33)])
def test_contiguous_transpose(shape):
    Z = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    out = contiguous_transpose(Z)
    assert out.flags.c_contiguous and out.dtype == np.float32
    np.testing.assert_array_equal(out, Z.T)


def test_smooth_solver_returns_zero_weights_when_the_penalty_dominates():
    # W = 0 is optimal iff the CE gradient there, with the bias fitted, has Frobenius norm <= l2.
    Z, y = sparse_gaussian_classes(3)
    onehot = np.eye(3)[y]
    gradient_at_zero = (onehot.mean(axis=0)[:, None] * Z.mean(axis=0) - onehot.T @ Z / len(y))
    threshold = np.linalg.norm(gradient_at_zero)
    W, b, n_iter = fit_smooth_probe(Z, y, 3, 1.01 * threshold)
    assert n_iter == 0 and not W.any()
    np.testing.assert_allclose(np.exp(b) / np.exp(b).sum(), np.bincount(y) / len(y))
    W_fista, _, _ = fit_elastic_net(Z, y, 3, 0.0, 1.01 * threshold, solver="fista")
    assert not W_fista.any()
    W, _, n_iter = fit_smooth_probe(Z, y, 3, 0.9 * threshold)
    assert n_iter > 0 and W.any()


def test_solver_choice_is_checked():
    Z, y = sparse_gaussian_classes(2)
    with pytest.raises(NeuronbenchError, match="solver must be one of"):
        fit_elastic_net(Z, y, 2, 0.0, 1e-3, solver="adam")
    with pytest.raises(NeuronbenchError, match="needs l1 = 0"):
        fit_elastic_net(Z, y, 2, 1e-3, 1e-3, solver="lbfgs")


def test_elastic_net_improves_on_its_ridge_warm_start():
    l1 = l2 = 1e-3
    Z, y = sparse_gaussian_classes(4)
    W, b, _ = fit_elastic_net(Z, y, 4, l1, l2)
    ridge = fit_logistic(Z, y, 4, C=1.0 / (len(y) * (l1 + l2)))
    ours = mean_cross_entropy(W, b, Z, y) + elastic_net_penalty(W, l1, l2)
    warm = mean_cross_entropy(ridge.W, ridge.b, Z, y) + elastic_net_penalty(ridge.W, l1, l2)
    assert ours < warm


def test_elastic_net_is_deterministic():
    Z, y = sparse_gaussian_classes(3)
    first, second = fit_elastic_net(Z, y, 3, 1e-3, 1e-3), fit_elastic_net(Z, y, 3, 1e-3, 1e-3)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_prox_is_the_exact_elastic_net_prox():
    # The prox minimizes 0.5||W - V||^2 + t1 |W|_1 + t2 ||W||_F; no random nearby point does better.
    rng = np.random.default_rng(0)
    V = rng.normal(size=(3, 8))
    t1, t2 = 0.3, 0.5
    W = prox_elastic_net(V, t1, t2)

    def value(X):
        return 0.5 * np.sum((X - V) ** 2) + t1 * np.abs(X).sum() + t2 * np.linalg.norm(X)

    assert (W == 0).any() and (W != 0).any()
    assert all(value(W) <= value(W + 1e-3 * rng.normal(size=W.shape)) for _ in range(200))
    np.testing.assert_array_equal(prox_elastic_net(V, 0.0, 100.0), np.zeros_like(V))


@pytest.mark.parametrize("W, expected", [
    # class 0: mass 5, shares ahead j0 0, j1 .6, j2 .8 (tie with j1 broken by index), j3 1;
    # class 1: mass 4, j2 0, j3 .5, j0 1, j1 1. e = (0, .6, 0, .5); j0 beats j2 on peak share .6 > .5.
    ([[3, 1, 1, 0], [0, 0, 2, 2]], [0, 2, 3, 1]),
    # a zero-mass class is skipped: only class 1 counts, j1 and j2 tie on |w| and go by index
    ([[0, 0, 0], [1, 2, 2]], [1, 2, 0]),
    # equal keys go by index
    ([[1, 0], [0, 1]], [0, 1]),
    ([[0, 1], [1, 0]], [0, 1]),
    # one logit: |w| descending, ties by index
    ([[0.5, -2, 0, 2]], [1, 3, 0, 2]),
    # no weight at all: index order
    ([[0, 0, 0], [0, 0, 0]], [0, 1, 2]),
])
def test_weight_mass_order_by_hand(W, expected):
    np.testing.assert_array_equal(weight_mass_order(np.array(W, dtype=float)), expected)


def test_weight_mass_order_of_one_logit_is_abs_weight_order():
    w = np.round(np.random.default_rng(0).normal(size=50), 1)  # rounding makes ties
    np.testing.assert_array_equal(weight_mass_order(w[None, :]), np.argsort(-np.abs(w), kind="stable"))


def neurox_ordering(W: np.ndarray, search_stride: int) -> tuple[list[set[int]], list[int]]:
    """A small reference of NeuroX's `get_neuron_ordering` (linear_probe.py): (chunks of neurons, cutoffs).

    For p = 0, 1/S, ..., 1 each class keeps the shortest prefix of its neurons sorted by |w| that
    reaches p * M_c (at least its top neuron); newly admitted neurons form a chunk, and the cutoff of
    the step is the number admitted so far. Two deviations, both normative in reference.md#method-lca:
    classes with M_c = 0 are skipped (NeuroX would admit an arbitrary neuron for them), and neurons
    never admitted form a final chunk.
    """
    magnitude = np.abs(W)
    admitted: set[int] = set()
    chunks, cutoffs = [], []
    for step in range(search_stride + 1):
        selected = set()
        for row in magnitude:
            total = row.sum()
            if total == 0:
                continue
            by_weight = np.argsort(-row, kind="stable")
            reaching = np.flatnonzero(np.cumsum(row[by_weight]) >= total * step / search_stride)
            length = reaching[0] + 1 if len(reaching) else len(row)
            selected |= set(by_weight[:length].tolist())
        chunks.append(selected - admitted)
        admitted |= selected
        cutoffs.append(len(admitted))
    chunks.append(set(range(W.shape[1])) - admitted)
    return [chunk for chunk in chunks if chunk], cutoffs


def lasso_probe_weights():
    Z, y = sparse_gaussian_classes(5, n=800, d=60, informative=20, seed=3)
    return fit_elastic_net(Z, y, 5, 1e-2, 1e-3)[0]


def random_weights_with_gaps():
    W = np.random.default_rng(1).laplace(size=(4, 80))
    W[np.random.default_rng(2).random(W.shape) < 0.2] = 0.0
    W[:, 5] = 0.0  # a neuron no class uses
    W[2] = 0.0  # a class with no weight
    return W


@pytest.mark.parametrize("make_weights", [random_weights_with_gaps, lasso_probe_weights])
@pytest.mark.parametrize("search_stride", [10, 100])
def test_weight_mass_order_refines_neurox_chunks(make_weights, search_stride):
    W = make_weights()
    order = weight_mass_order(W)
    np.testing.assert_array_equal(np.sort(order), np.arange(W.shape[1]))
    chunks, cutoffs = neurox_ordering(W, search_stride)
    start = 0
    for chunk in chunks:
        assert set(order[start:start + len(chunk)].tolist()) == chunk
        start += len(chunk)
    assert start == W.shape[1]
    ours = weight_mass_cutoffs(W, search_stride)
    np.testing.assert_array_equal(ours[:-1], cutoffs[:-1])
    # p = 1: NeuroX admits zero-weight neurons whenever a float cumsum falls short of the row's sum
    # (reference.md#method-lca, "Defects"); the exact rule admits the neurons with some weight
    assert ours[-1] == (np.abs(W).sum(axis=0) > 0).sum() <= cutoffs[-1]


def test_ranker_leaves_the_cutoffs_of_its_probe():
    X, y, _ = planted_data()
    ranker = LinearProbeRanker()
    ranking = ranker.rank(X, y)
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    W, _, _ = fit_elastic_net(Z, y, 5, 1e-3, 1e-3)
    np.testing.assert_array_equal(ranker.cutoffs_, weight_mass_cutoffs(W))
    assert ranker.cutoffs_[0] >= 5 and ranker.cutoffs_[-1] <= len(ranking)  # every class's top neuron first
    mean_abs = LinearProbeRanker(ordering="mean_abs")
    mean_abs.rank(X, y)
    assert mean_abs.cutoffs_ is None
    assert np.array_equal(weight_mass_cutoffs(np.zeros((2, 4)), 3), [0, 0, 0, 0])


def dev_split(seed=0):
    """Train and dev words of one planted task, the dev words on another scale (raw activations)."""
    X, y, planted = planted_data(n=1500, d=40, seed=seed)
    return X[:1000] * 3 + 1, y[:1000], X[1000:] * 3 + 1, y[1000:]


@pytest.mark.parametrize("l1, l2", [(1e-3, 0.0), (1e-3, 1e-3)])
def test_select_on_dev_takes_the_grid_fit_with_the_best_dev_accuracy(l1, l2):
    X, y, X_dev, y_dev = dev_split()
    ranker = LinearProbeRanker(l1=l1, l2=l2, select_on_dev=True)
    assert ranker.needs == {"dev"} and not LinearProbeRanker().needs
    ranking = ranker.rank(X, y, dev=(X_dev, y_dev))
    mean, std = X.mean(axis=0), X.std(axis=0)  # dev is standardized by the train statistics
    Z, Z_dev = (X - mean) / std, (X_dev - mean) / std
    fits = {}
    for a in (PENALTY_GRID if l1 else (0.0,)):
        for b in (PENALTY_GRID if l2 else (0.0,)):
            W, bias, _ = fit_elastic_net(Z, y, 5, a, b)
            fits[a, b] = (accuracy(LogisticProbe(W.astype(np.float32), bias.astype(np.float32), 5), Z_dev, y_dev), W)
    best = max(fits.values(), key=lambda fit: fit[0])[0]
    chosen = max(pair for pair, fit in fits.items() if fit[0] == best)  # ties: the larger l1, then l2
    np.testing.assert_array_equal(ranking, weight_mass_order(fits[chosen][1]))
    assert len({fit[0] for fit in fits.values()}) > 1  # the grid matters on this data


def test_select_on_dev_needs_dev_data():
    X, y, X_dev, y_dev = dev_split()
    with pytest.raises(NeuronbenchError, match="needs \\['dev'\\] passed to rank"):
        LinearProbeRanker(select_on_dev=True).rank(X, y)
    with pytest.raises(NeuronbenchError, match="dev activations have 39 neurons, train 40"):
        LinearProbeRanker(select_on_dev=True).rank(X, y, dev=(X_dev[:, 1:], y_dev))


def planted_data(n_classes=5, n=2000, d=100, seed=0):
    """Neuron planted[c] is shifted by +3 for class c; every other neuron is pure noise."""
    rng = np.random.default_rng(seed)
    planted = rng.choice(d, n_classes, replace=False)
    y = rng.integers(0, n_classes, n)
    X = rng.normal(size=(n, d))
    X[np.arange(n), planted[y]] += 3.0
    return X.astype(np.float32), y, planted


@pytest.mark.parametrize("ranker", [LinearProbeRanker(), LinearProbeRanker(1e-3, 1e-2, ordering="mean_abs")])
def test_planted_neurons_rank_first(ranker):
    X, y, planted = planted_data()
    ranking = ranker.rank(X, y)
    np.testing.assert_array_equal(np.sort(ranking), np.arange(X.shape[1]))
    assert set(ranking[:5].tolist()) == set(planted.tolist())


def test_binary_labels():
    X, y, planted = planted_data(n_classes=2)
    for ordering in ("weight_mass", "mean_abs"):
        ranking = LinearProbeRanker(ordering=ordering).rank(X, y)
        assert set(ranking[:2].tolist()) == set(planted.tolist())


def test_float16_input():
    X, y, planted = planted_data()
    ranking = LinearProbeRanker().rank(X.astype(np.float16), y)
    assert set(ranking[:5].tolist()) == set(planted.tolist())


def test_inputs_are_not_mutated():
    X, y, _ = planted_data()
    before = hashlib.sha256(X.tobytes() + y.tobytes()).hexdigest()
    LinearProbeRanker().rank(X, y)
    assert hashlib.sha256(X.tobytes() + y.tobytes()).hexdigest() == before


def test_dead_neurons_go_last():
    X, y, _ = planted_data()
    X[:, 3] = 1.5
    assert LinearProbeRanker().rank(X, y)[-1] == 3


def test_init_only_stores_parameters():
    ranker = LinearProbeRanker(l1=0.0, l2=0.5, ordering="nonsense", normalize="raw", max_iter=7, tol=0.1)
    assert (ranker.l1, ranker.l2, ranker.ordering, ranker.normalize, ranker.max_iter, ranker.tol) == (
        0.0, 0.5, "nonsense", "raw", 7, 0.1)
    X, y, _ = planted_data()
    with pytest.raises(NeuronbenchError, match="ordering"):
        ranker.rank(X, y)


def test_single_class_labels_raise():
    X, _, _ = planted_data()
    with pytest.raises(NeuronbenchError, match="a labelled method needs at least two"):
        LinearProbeRanker().rank(X, np.zeros(len(X), dtype=np.int64))


def test_runner_hands_dev_data_and_keeps_the_cutoffs(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["suite=planted", "task=planted_single", "method=lasso",
                                           "method.select_on_dev=true", "task.loader.n_neurons=64",
                                           "scorers=[planted]", f"results_dir={tmp_path}"])
    out = run_job(cfg, "lasso")
    planted = instantiate(OmegaConf.to_container(cfg.task.loader, resolve=True), name=cfg.task.name,
                          version=str(cfg.task.version))
    ranker = LinearProbeRanker(l1=1e-3, l2=0.0, select_on_dev=True)
    expected = ranker.rank(planted.X["train"], planted.y["train"], dev=(planted.X["dev"], planted.y["dev"]))
    np.testing.assert_array_equal(np.load(ranking_file(out, "hidden", 0)), expected)
    np.testing.assert_array_equal(np.load(diagnostics_file(out, "cutoffs", "hidden", 0)), ranker.cutoffs_)
    assert not diagnostics_file(out, "scores", "hidden", 0).exists()  # weight mass has no per-neuron score
