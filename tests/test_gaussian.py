"""The Gaussian probe and its incremental greedy (reference.md#method-gaussian, #metric-planted)."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from bench.core.gaussian import gaussian_log_posterior
from bench.errors import NeuronbenchError
from methods.gaussian import (
    GaussianProbe,
    IncrementalGaussianMI,
    gaussian_mutual_information,
)


@pytest.fixture(autouse=True)
def single_threaded_blas():
    """These matrices are tiny: BLAS threads would only spin against each other on a shared machine."""
    with threadpool_limits(1, user_api="blas"):
        yield


def zscore(X):
    return ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)


def correlated_data(n=400, d=14, n_classes=3, seed=0):
    """Class-dependent means and correlated neurons, so that conditioning on T matters."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + rng.normal(size=(n, d))
    X += rng.normal(size=(n_classes, d))[y]
    return zscore(X), y


def planted(n_per_class=400, d=100, n_classes=5, copies=1, type_channel=False, seed=0):
    """reference.md#metric-planted: `copies` neurons per class shifted by +3 on that class, with independent
    noise; optionally the word-type channel (300 types with fixed labels, u_t ~ N(0, 0.5^2 I))."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(n_classes), n_per_class))
    X = rng.normal(size=(len(y), d))
    if type_channel:
        type_labels = rng.integers(0, n_classes, size=300)
        type_vectors = rng.normal(scale=0.5, size=(300, d))
        X += type_vectors[[rng.choice(np.flatnonzero(type_labels == c)) for c in y]]
    groups = rng.choice(d, size=(n_classes, copies), replace=False)
    for copy in range(copies):
        X[np.arange(len(y)), groups[y, copy]] += 3.0
    return zscore(X), y, groups


@pytest.mark.parametrize("compat", [None, "published_shrinkage"])
@pytest.mark.parametrize("tiny_class", [False, True], ids=["binary", "tiny_class"])
def test_incremental_mi_matches_direct_cholesky(compat, tiny_class):
    """Every candidate's MI(T u {j}) along a random path equals a fresh Cholesky fit to 1e-6 relative."""
    Z, y = correlated_data(n_classes=3 if tiny_class else 2)
    if tiny_class:
        y[:3] = 3  # a fourth class with three words
    n_classes = int(y.max()) + 1
    rng = np.random.default_rng(1)
    model = IncrementalGaussianMI(Z, y, n_classes, compat=compat)
    assert model.dtype == np.float64
    for j in rng.permutation(Z.shape[1])[:6]:
        incremental = model.candidate_mi()
        for candidate in np.setdiff1d(np.arange(Z.shape[1]), model.selected):
            direct = gaussian_mutual_information(Z, y, model.selected + [candidate], n_classes, compat)
            assert incremental[candidate] == pytest.approx(direct, rel=1e-6)
        assert np.all(incremental[model.selected] == -np.inf)
        model.add(j)


def test_float32_residuals_stay_close_to_direct():
    """The float32 path used for large layers loses only rounding (measured ~5e-6 relative)."""
    Z, y = correlated_data()
    model = IncrementalGaussianMI(Z, y, 3, dtype=np.float32)
    for j in [3, 8, 0, 11]:
        model.add(j)
    incremental = model.candidate_mi()
    for candidate in [1, 5, 13]:
        direct = gaussian_mutual_information(Z, y, model.selected + [candidate], 3)
        assert incremental[candidate] == pytest.approx(direct, rel=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_outlier_takes_the_exact_path(dtype):
    """A far outlier (about 1000 nats below every class bound) underflows exp() even in float64; the greedy
    must still score it exactly rather than as log 0."""
    Z, y = correlated_data(n=4000, d=6, n_classes=2)
    Z[0, 5] = 1e4
    mi = IncrementalGaussianMI(Z, y, 2, dtype=dtype).candidate_mi()
    assert mi[5] == pytest.approx(gaussian_mutual_information(Z, y, [5], 2), rel=1e-4)


def test_degenerate_classes_stay_positive_definite():
    """A one-word class borrows the overall variance; a neuron constant within a class is held up by the
    jitter. Both stay finite and the greedy agrees with the direct fit."""
    Z, y = correlated_data()
    y[0] = 3  # a class with a single word
    Z[y == 1, 4] = 2.5  # constant within class 1
    model = IncrementalGaussianMI(Z, y, 4)
    mi = model.candidate_mi()
    assert np.all(np.isfinite(mi))
    for j in (0, 4):
        assert mi[j] == pytest.approx(gaussian_mutual_information(Z, y, [j], 4), rel=1e-6)
    ranking = GaussianProbe(k_max=5).rank(Z, y)
    assert np.array_equal(np.sort(ranking), np.arange(Z.shape[1]))


def test_direct_log_posterior_on_eval_rows():
    """Eval rows are scored with train statistics: normalized, -inf for a class absent from train."""
    Z, y = correlated_data()
    log_posterior = gaussian_log_posterior(Z[:300], y[:300], Z[300:], [0, 4, 7], n_classes=4)
    assert log_posterior.shape == (100, 4)
    assert np.allclose(np.exp(log_posterior).sum(axis=1), 1.0)
    assert np.all(log_posterior[:, 3] == -np.inf)
    assert (log_posterior.argmax(axis=1) == y[300:]).mean() > 0.5
    empty = gaussian_log_posterior(Z[:300], y[:300], Z[300:], [], n_classes=4)
    assert np.allclose(np.exp(empty[0, :3]), np.bincount(y[:300]) / 300)


def test_planted_neurons_are_the_first_picks():
    Z, y, groups = planted()
    ranking = GaussianProbe(k_max=10).rank(Z, y)
    assert set(ranking[:5].tolist()) == set(groups[:, 0].tolist())


def test_redundant_copies_one_per_class_first():
    """Greedy selection keeps one member of a redundant group before a second (reference.md#metric-planted)."""
    Z, y, groups = planted(copies=2)
    first = GaussianProbe(k_max=5).rank(Z, y)[:5]
    owner = {int(j): c for c, group in enumerate(groups) for j in group}
    assert sorted(owner.get(int(j), -1) for j in first) == list(range(5))


def test_published_shrinkage_regression_guard():
    """reference.md#method-gaussian: with N_c = 300 and D = 768, a_c = N_c + 2D + 4 makes every single-neuron
    MI negative and lets a noise neuron win the first pick; a_c(t) recovers the planted neurons."""
    Z, y, groups = planted(n_per_class=300, d=768, type_channel=True)
    signal = groups[:, 0]
    noise = np.setdiff1d(np.arange(768), signal)
    published_mi = IncrementalGaussianMI(Z, y, 5, compat="published_shrinkage").candidate_mi()
    default_mi = IncrementalGaussianMI(Z, y, 5).candidate_mi()
    assert np.all(published_mi < 0)
    assert np.all(default_mi[noise] > 0) and default_mi[signal].min() > 10 * default_mi[noise].max()

    published = GaussianProbe(k_max=5, compat="published_shrinkage").rank(Z, y)[:5]
    default = GaussianProbe(k_max=5).rank(Z, y)[:5]
    assert set(default.tolist()) == set(signal.tolist())
    assert published[0] not in signal
    assert len(set(published.tolist()) & set(signal.tolist())) < 5


def test_tie_goes_to_the_lower_index_and_copy_is_not_repicked():
    Z, y, groups = planted(n_per_class=200, d=20)
    signal = int(groups[2, 0])
    partner = int(np.setdiff1d(np.arange(20), groups)[[0, -1]][int(signal < 10)])  # on the other side
    Z[:, partner] = Z[:, signal]
    low, high = sorted([signal, partner])
    mi = IncrementalGaussianMI(Z, y, 5).candidate_mi()
    assert mi[low] == mi[high]
    ranking = GaussianProbe(k_max=6).rank(Z, y)
    assert low in ranking[:5] and high not in ranking[:5]


def test_deterministic_and_independent_of_threads():
    Z, y = correlated_data(n=900)
    sequences = []
    for n_threads in (1, 3):
        model = IncrementalGaussianMI(Z, y, 3, dtype=np.float32, n_threads=n_threads)
        model.add(2)
        sequences.append(model.candidate_mi())
    assert np.array_equal(sequences[0], sequences[1])
    method = GaussianProbe(k_max=4)
    assert np.array_equal(method.rank(Z, y), method.rank(Z, y))


def test_min_gain_ends_the_greedy_phase_and_tail_follows_single_neuron_mi():
    Z, y, groups = planted(n_per_class=200, d=30)
    single = IncrementalGaussianMI(Z, y, 5).candidate_mi()
    ranking = GaussianProbe(min_gain=0.05).rank(Z, y)
    assert set(ranking[:5].tolist()) == set(groups[:, 0].tolist())
    tail = ranking[5:]
    assert np.all(np.diff(single[tail]) <= 0)


def test_unknown_compat_rejected():
    Z, y = correlated_data()
    with pytest.raises(NeuronbenchError, match="compat"):
        GaussianProbe(compat="neurox").rank(Z, y)
