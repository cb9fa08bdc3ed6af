"""`nmf_load`, `pca_load`, `ica_load` (methods/factorization.py; reference-causal-and-uncertainty.md#method-mf, G.2).

The Method contract is checked for every config by test_methods_conformance.py and the five planted regimes by
test_planted_recovery.py (EXPECTED rows); here: a concept planted in a few neurons that form one component, a
known-answer matrix whose loading order follows by hand, determinism and seeding, the non-negative input rule,
dev selection of the probe's penalty, and the edge cases of the factorization step.
"""

from __future__ import annotations

import logging
import warnings
from functools import lru_cache

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from scipy.special import erf

from bench.errors import NeuronbenchError
from conftest import CONF
from methods.factorization import GELU_FLOOR, ICALoad, NMFLoad, PCALoad, component_standardizer, fit_quietly
from tasks.planted import planted_data

STEMS = ("nmf_load", "pca_load", "ica_load")


def make(stem: str, **params):
    return instantiate(OmegaConf.load(CONF / "method" / f"{stem}.yaml"), **params)


@lru_cache(maxsize=None)
def redundant(n_neurons: int = 128, n_classes: int = 5):
    """planted `redundant`: 3 neurons per class share the class's shift of 3, so they move together."""
    return planted_data("redundant", n_neurons=n_neurons, n_classes=n_classes,
                        sizes={"train": 2000, "dev": 500, "test": 10}, seed=0)


def concept(data, split: str, c: int = 0) -> np.ndarray:
    """The concept form of class c: 1 on its words, 0 elsewhere."""
    return (data.y[split] == c).astype(np.int64)


def prepared(method, X: np.ndarray) -> np.ndarray:
    """X as Method.rank hands it to the method (planted layers have no dead neurons)."""
    return (X - X.mean(axis=0)) / X.std(axis=0) if method.normalize == "zscore" else X


@pytest.mark.parametrize("stem", STEMS)
def test_planted_concept_in_few_neurons_is_recovered_through_components(stem):
    """A binary concept planted in 6 of 128 neurons (3 rise on the concept's words, 3 on the others': all six follow
    one indicator) comes first in every ranking, found through the factorization's units:
    - PCA and ICA: one component's six largest loadings are exactly the six (the indicator is their top source of
      shared variance, and a very non-Gaussian, bimodal one);
    - NMF (split input): each planted neuron is a part of its own, the top loading (>= 0.9 of a unit row) of some
      component: a non-negative part cannot hold neurons that rise on opposite sides, and at r = 32 a neuron whose
      x+ carries a shift of 3 on half the words is worth a component alone (measured 0.99 each).
    With five classes the class directions share a subspace that PCA and ICA may rotate freely, so no single
    component need hold one class's neurons; hence two classes here."""
    data = redundant(n_classes=2)
    truth = data.truth[0] | data.truth[1]
    method = make(stem)
    ranking = method.rank(data.X["train"], data.y["train"], rng=np.random.default_rng(0))
    assert set(ranking[:6].tolist()) == truth
    factors = fit_quietly(stem, lambda: method.factorize(prepared(method, data.X["train"]), method.n_components, 0))
    if stem == "nmf_load":
        parts = {int(row.argmax()) for row in factors.loadings if row.max() >= 0.9}
        assert truth <= parts, f"planted neurons without a part of their own: {sorted(truth - parts)}"
    else:
        tops = [set(np.argsort(-row, kind="stable")[:6].tolist()) for row in factors.loadings]
        assert truth in tops, f"no component has {sorted(truth)} as its top-6 loadings"


def hand_matrix() -> tuple[np.ndarray, np.ndarray]:
    """X = t·a + s·b + 1·e_4 over all four (t, s) in {0, 2} x {0, 1}, 50 times each, and y = [t > 0].

    a = 0.6 e_1 + 0.8 e_3 and b = 0.6 e_0 + 0.8 e_2 are orthogonal unit loadings with disjoint support, t and s are
    independent (and, centred, of variance 1 and 1/4), so PCA, ICA and NMF with r = 2 all recover the units (t, a)
    and (s, b). s is balanced inside each class, so the L1 probe leaves its weight at 0 and s_j = |v_t|·a_j:
    neuron 3 (0.8) first, then neuron 1 (0.6), neurons 0 and 2 score 0, and the constant neuron 4 is dead (last).
    """
    t, s = (grid.ravel() for grid in np.meshgrid([0.0, 2.0], [0.0, 1.0]))
    t, s = np.tile(t, 50), np.tile(s, 50)
    a, b = np.array([0, 0.6, 0, 0.8, 0]), np.array([0.6, 0, 0.8, 0, 0])
    X = np.outer(t, a) + np.outer(s, b)
    X[:, 4] = 1.0
    return X.astype(np.float32), (t > 0).astype(np.int64)


@pytest.mark.parametrize("method", [PCALoad(n_components=2, normalize="raw"), ICALoad(n_components=2, normalize="raw"),
                                    NMFLoad(n_components=2), PCALoad(normalize="raw")],
                         ids=["pca", "ica", "nmf", "pca-r32-capped"])
def test_known_answer_loading_order(method):
    """Raw input, because z-scoring would make neurons 1 and 3 identical copies of t. With r = 32 (capped at D = 4),
    PCA's two flat components must carry no weight: their scores are rounding noise, set to 0, not z-scored."""
    X, y = hand_matrix()
    for seed in range(3):
        ranking = method.rank(X, y, rng=np.random.default_rng(seed))
        s = method.scores_
        assert ranking[:2].tolist() == [3, 1] and ranking[-1] == 4
        assert s[1] / s[3] == pytest.approx(0.75, abs=1e-3)
        assert max(s[0], s[2]) <= 1e-3 * s[3]


@pytest.mark.parametrize("stem", STEMS)
def test_same_seed_same_ranking_and_seed_reaches_the_factorization(stem):
    """Same cell generator: the same ranking and scores. ICA starts from a random unmixing matrix drawn from the
    generator, so another seed moves its scores: random_state comes from the cell's generator, not a constant."""
    data = redundant(64)
    X, y = data.X["train"][:600], concept(data, "train")[:600]
    first = make(stem).rank(X, y, rng=np.random.default_rng(3))
    method = make(stem)
    again = method.rank(X, y, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(first, again)
    scores = method.scores_.copy()
    method.rank(X, y, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(method.scores_, scores)
    if stem == "ica_load":
        method.rank(X, y, rng=np.random.default_rng(4))
        assert not np.array_equal(method.scores_, scores)


def gelu(A: np.ndarray) -> np.ndarray:
    return 0.5 * A * (1 + erf(A / np.sqrt(2)))


def test_auto_clips_gelu_outputs_and_splits_signed_activations():
    """G.2 step 1 read from the data: GELU outputs (never below -0.17) are clipped, signed activations split."""
    data = redundant(64)
    X, y = data.X["train"], concept(data, "train")
    G = gelu(X - 1).astype(np.float32)
    assert G.min() >= GELU_FLOOR > X.min()

    def ranking(A, nonnegative):
        return NMFLoad(max_iter=100, nonnegative=nonnegative).rank(A, y, rng=np.random.default_rng(0))

    for A, rule, other in ((G, "clip", "split"), (X, "split", "clip")):
        auto = ranking(A, "auto")
        np.testing.assert_array_equal(auto, ranking(A, rule))
        assert not np.array_equal(auto, ranking(A, other))


def test_split_input_sees_neurons_that_fall_on_the_concept():
    """Under the split [x+, x-] a neuron's loading is the sum of its two halves' (G.2 step 4): negated activations,
    where the planted neurons drop by 3 on the concept and only x- carries it, rank the same neurons first."""
    data = redundant(64)
    y = concept(data, "train")
    for X in (data.X["train"], -data.X["train"]):
        ranking = NMFLoad(max_iter=100).rank(X, y, rng=np.random.default_rng(0))
        assert set(ranking[:3].tolist()) == data.truth[0]


def test_flat_components_are_zeroed_not_scaled_up():
    """A component that carries only rounding noise (std 1e-9 of the largest) gets z = 0 on train and on dev; a
    real component is z-scored by its train mean and std."""
    rng = np.random.default_rng(0)
    T = np.column_stack([rng.normal(3.0, 2.0, 500), 1e-9 * rng.normal(size=500), np.zeros(500)])
    standardized = component_standardizer(T)
    Z = standardized(T)
    assert Z[:, 0].mean() == pytest.approx(0, abs=1e-6) and Z[:, 0].std() == pytest.approx(1, abs=1e-5)
    assert not Z[:, 1:].any() and not standardized(T[:10] + 1.0)[:, 1:].any()


def test_nmf_on_z_scored_input_recovers_variance_confounded():
    """nmf_load's designed failure on variance_confounded (raw input, test_planted_recovery.py) is the scale, not the
    method: split z-scores, and the x0.1 planted neurons come first (measured 1.0; 0.0 raw)."""
    data = planted_data("variance_confounded", n_neurons=128, sizes={"train": 2000, "dev": 10, "test": 10}, seed=0)
    truth = frozenset().union(*data.truth)
    for normalize, expected in (("zscore", True), ("raw", False)):
        ranking = NMFLoad(normalize=normalize).rank(data.X["train"], data.y["train"], rng=np.random.default_rng(0))
        assert (set(ranking[:len(truth)].tolist()) == truth) is expected, normalize


@pytest.mark.parametrize("stem", STEMS)
def test_select_on_dev_needs_dev_and_recovers(stem):
    data = redundant(64)
    method = make(stem, select_on_dev=True)
    assert method.needs == {"dev"} and make(stem).needs == frozenset()
    X, y = data.X["train"], concept(data, "train")
    with pytest.raises(NeuronbenchError, match=r"needs \['dev'\]"):
        method.rank(X, y)
    ranking = method.rank(X, y, rng=np.random.default_rng(0), dev=(data.X["dev"], concept(data, "dev")))
    assert set(ranking[:3].tolist()) == data.truth[0]


def test_convergence_failure_is_logged_once_not_raised(caplog):
    """A fit stopped at max_iter ranks from where it stopped; scikit-learn's ConvergenceWarning becomes one log line
    and never escapes as a Python warning (even under -W error)."""
    data = redundant(64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.WARNING, logger="methods.factorization"):
            for method in (NMFLoad(max_iter=2), ICALoad(max_iter=2)):
                ranking = method.rank(data.X["train"], concept(data, "train"), rng=np.random.default_rng(0))
                assert np.array_equal(np.sort(ranking), np.arange(64))
    messages = [r.getMessage() for r in caplog.records if r.name == "methods.factorization"]
    assert len(messages) == 2, messages
    assert "NMFLoad: Maximum number of iterations 2 reached" in messages[0]
    assert "ICALoad: FastICA did not converge" in messages[1]


@pytest.mark.parametrize("stem", STEMS)
def test_fewer_words_than_components(stem):
    """r is capped at min(N, D): 10 words and 32 components still give a permutation."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 40)).astype(np.float32), np.array([0, 1] * 5)
    ranking = make(stem).rank(X, y, rng=np.random.default_rng(0))
    assert np.array_equal(np.sort(ranking), np.arange(40))


@pytest.mark.parametrize("params, message", [
    ({"nonnegative": "shift"}, r"nonnegative must be one of \('auto', 'clip', 'split'\), got 'shift'"),
    ({"n_components": 0}, "n_components must be a positive integer, got 0"),
])
def test_bad_parameters_name_the_key(params, message):
    data = redundant(64)
    with pytest.raises(NeuronbenchError, match=message):
        NMFLoad(**params).rank(data.X["train"], concept(data, "train"))
