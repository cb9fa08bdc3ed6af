"""Univariate, detector, mean-difference and label-free methods against scikit-learn and hand-computed values
(reference.md#method-probeless to #method-unsup)."""

from __future__ import annotations

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.feature_selection import f_classif, mutual_info_classif
from sklearn.metrics import average_precision_score

from bench.errors import NeuronbenchError
from conftest import CONF
from methods.activation_stats import MeanAbs, Variance
from methods.detectors import AveragePrecision, QuantileIoU
from methods.mean_difference import MeanSelect, ProbelessOVR
from methods.probeless import Probeless
from methods.univariate import (AnovaF, MutualInformationHistogram, MutualInformationKNN, count_within,
                                kth_neighbour_distance, mutual_info_knn)

LABELLED = ["probeless_ovr", "meanselect", "ap", "ap2", "iou", "iou_prev", "anova_f", "mi", "mi_hist"]


def config(name):
    return instantiate(OmegaConf.load(CONF / "method" / f"{name}.yaml"))


def tied_data(n_classes, seed=0, n=400, d=12):
    """Activations rounded to one decimal (many ties), post-ReLU zeros in two neurons, a signal in neuron 3."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    Z = np.round(rng.normal(size=(n, d)), 1)
    Z[:, :2] = np.maximum(Z[:, :2], 0.0)
    Z[:, 3] += y
    return Z.astype(np.float32), y


def sklearn_detector_score(Z, y, two_sided):
    """max over concept classes of (AP − p)/(1 − p), one sklearn call per column and class."""
    classes = [1] if y.max() == 1 else range(y.max() + 1)
    best = np.full(Z.shape[1], -np.inf)
    for c in classes:
        p = np.mean(y == c)
        for j in range(Z.shape[1]):
            ap = average_precision_score(y == c, Z[:, j])
            if two_sided:
                ap = max(ap, average_precision_score(y == c, -Z[:, j]))
            best[j] = max(best[j], (ap - p) / (1 - p))
    return best


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_ap_matches_sklearn_with_ties(n_classes, two_sided):
    Z, y = tied_data(n_classes)
    ours = AveragePrecision(two_sided=two_sided).scores(Z, y, np.random.default_rng(0))
    np.testing.assert_allclose(ours, sklearn_detector_score(Z, y, two_sided), rtol=0, atol=1e-12)


def test_ap_concept_form_rewards_only_rising_neurons():
    """Labels {0, 1}: a neuron that falls on the concept detects OTHER, which `ap` ignores and `ap2` counts."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=500)
    Z = rng.normal(size=(500, 5)).astype(np.float32)
    Z[:, 2] -= 3 * y
    assert AveragePrecision().rank(Z, y)[0] != 2
    assert AveragePrecision(two_sided=True).rank(Z, y)[0] == 2


def test_deadzone_zeroes_small_entries_on_a_copy():
    Z, y = tied_data(2, d=6)
    Z = Z / 10
    before = Z.copy()
    ours = AveragePrecision(deadzone=0.05).scores(Z, y, np.random.default_rng(0))
    np.testing.assert_array_equal(Z, before)
    zeroed = np.where(np.abs(before) < 0.05, 0.0, before)
    np.testing.assert_allclose(ours, sklearn_detector_score(zeroed, y, two_sided=False), atol=1e-12)
    assert not np.allclose(ours, sklearn_detector_score(before, y, two_sided=False))


def test_anova_f_matches_f_classif():
    Z, y = tied_data(5)
    ours = AnovaF().scores(Z, y, np.random.default_rng(0))
    np.testing.assert_allclose(ours, f_classif(Z.astype(np.float64), y)[0], rtol=1e-9)


def test_anova_f_is_infinite_for_a_neuron_constant_within_classes():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 50)
    Z = rng.normal(size=(150, 4)).astype(np.float32)
    Z[:, 2] = y * 0.5
    scores = AnovaF().scores(Z, y, rng)
    assert scores[2] == np.inf and np.isfinite(np.delete(scores, 2)).all()


@pytest.mark.parametrize("n_classes", [2, 17])
def test_mi_knn_matches_mutual_info_classif_without_ties(n_classes):
    """The sorting estimator is scikit-learn's: same scaling, noise, radius convention and digamma terms.

    A class with a single member (it drops out) and a small one included. scikit-learn switches to brute-force
    distances (||a||² − 2ab + ||b||², rounded) for a class of at most 2k + 1 members; ours stay exact, so those
    radii, hence a few counts, may differ there: the small class has 2k + 2 members.
    """
    rng = np.random.default_rng(5)
    n = 3000
    y = rng.integers(0, n_classes, size=n)
    y[:8] = n_classes
    y[8] = n_classes + 1  # alone in its class
    Z = rng.standard_t(3, size=(n, 40))
    Z[:, :5] += y[:, None] * np.array([0.1, 0.2, 0.5, 1.0, 3.0])
    Z *= rng.uniform(0.1, 10, size=40)  # the noise is scaled by max(1, mean|x|) after unit-std scaling
    expected = mutual_info_classif(Z, y, n_neighbors=3, random_state=11)
    assert (expected[:5] > 0).all() and (expected == 0).any()  # both sides of the clip at 0
    assert len(np.unique(Z)) == Z.size  # no exact ties
    np.testing.assert_allclose(mutual_info_knn(Z, y, 3, seed=11), expected, rtol=0, atol=1e-10)


def test_mi_is_mutual_info_classif_on_the_seeded_sample():
    """Ties make the estimator's tiny noise, hence its seed, matter: the cell generator must drive both. The noise
    is scikit-learn's own draw, so the estimates agree even with ties (up to summation order)."""
    Z, y = tied_data(3, n=600)
    rng = np.random.default_rng(3)
    sample = np.sort(rng.choice(600, size=250, replace=False))
    expected = mutual_info_classif(Z[sample], y[sample], n_neighbors=3,
                                   random_state=int(rng.integers(np.iinfo(np.uint32).max)))
    ours = MutualInformationKNN(max_samples=250).scores(Z, y, np.random.default_rng(3))
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(ours, MutualInformationKNN(max_samples=250).scores(Z, y, np.random.default_rng(3)))
    other_seed = MutualInformationKNN(max_samples=250).scores(Z, y, np.random.default_rng(4))
    assert not np.array_equal(ours, other_seed)


def test_kth_neighbour_distance_and_counts_by_brute_force():
    rng = np.random.default_rng(0)
    values = np.sort(np.round(rng.normal(size=(3, 50)), 1), axis=1)  # ties included
    for k in (1, 3):
        distances = np.abs(values[:, :, None] - values[:, None, :])
        distances[:, np.arange(50), np.arange(50)] = np.inf  # not its own neighbour
        np.testing.assert_array_equal(kth_neighbour_distance(values, k), np.sort(distances, axis=2)[:, :, k - 1])
    centres, radii = rng.normal(size=(3, 20)), rng.uniform(0, 1, size=(3, 20))
    radii[:, 0] = np.abs(values[:, 7] - centres[:, 0])  # an entry exactly on the radius counts
    brute = (np.abs(values[:, None, :] - centres[:, :, None]) <= radii[:, :, None]).sum(axis=2)
    np.testing.assert_array_equal(count_within(values, centres, radii), brute)


def test_mi_hist_informative_vs_independent_neuron():
    """4 balanced classes: a neuron that separates them carries H(y) = log 4 nats, an independent one ≈ 0
    (the uncorrected plug-in estimate would be ≈ 31·3/(2·1000) ≈ 0.047)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 250)
    informative = y + rng.uniform(0, 0.5, size=len(y))
    independent = rng.normal(size=len(y))
    Z = np.column_stack([informative, independent]).astype(np.float32)
    mi = MutualInformationHistogram().scores(Z, y, rng)
    assert mi[0] == pytest.approx(np.log(4), abs=0.01)
    assert abs(mi[1]) < 0.02


def test_meanselect_hand_computed():
    """sel = (mu+ − mu−)/(max − min + 1e-7); multi-class: max over one-vs-rest classes of |sel|."""
    rng = np.random.default_rng(0)
    Z = np.array([[4, 1], [2, 1], [0, 0], [2, 8]], dtype=np.float32)
    binary = MeanSelect().scores(Z, np.array([1, 1, 0, 0]), rng)
    np.testing.assert_allclose(binary, [2 / (4 + 1e-7), 3 / (8 + 1e-7)])
    column = np.array([[0], [6], [3], [3]], dtype=np.float32)
    multi = MeanSelect().scores(column, np.array([0, 1, 2, 2]), rng)  # gaps 4, 4, 0 over range 6
    np.testing.assert_allclose(multi, [4 / (6 + 1e-7)])


def test_iou_hand_computed_with_strict_threshold_on_ties():
    """Column 0 has six tied zeros at the threshold: strict `>` leaves 2 of 8 words on, not half."""
    Z = np.array([[0, 8], [0, 7], [0, 6], [0, 5], [0, 4], [0, 3], [1, 2], [2, 1]], dtype=np.float32)
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    rng = np.random.default_rng(0)
    # alpha 0.5: thresholds 0 and 4.5; on-masks {6, 7} and {0..3}; concept {5, 6, 7}.
    np.testing.assert_allclose(QuantileIoU(alpha=0.5).scores(Z, y, rng), [2 / 3, 0.0])
    # lower tail: -x > -4.5 puts {4..7} on, IoU 3/4; in -column 0 nothing lies above the tied zeros.
    np.testing.assert_allclose(QuantileIoU(alpha=0.5, lower_tail=True).scores(Z, y, rng), [0.0, 3 / 4])
    # prevalence 3/8: quantile 0.625 is 0 and 5.375.
    np.testing.assert_allclose(QuantileIoU(alpha="prevalence").scores(Z, y, rng), [2 / 3, 0.0])


def test_iou_multiclass_takes_the_best_class():
    Z = np.array([[5], [4], [0], [1], [2], [3]], dtype=np.float32)
    y = np.array([2, 2, 0, 0, 1, 1])
    np.testing.assert_allclose(QuantileIoU(alpha="prevalence").scores(Z, y, np.random.default_rng(0)), [1.0])


def test_probeless_ovr_ranks_like_probeless_on_binary_labels():
    Z, y = tied_data(2, d=40)
    Z = Z + np.random.default_rng(1).normal(scale=0.3, size=Z.shape).astype(np.float32)
    np.testing.assert_array_equal(ProbelessOVR().rank(Z, y), Probeless().rank(Z, y))


def test_anova_f_ranks_like_probeless_ovr_on_balanced_zscored_binary():
    """reference.md#method-probeless: F and the z-scored mean gap are both increasing in |r|."""
    rng = np.random.default_rng(2)
    y = rng.permutation(np.repeat([0, 1], 500))
    X = rng.normal(size=(1000, 60)) + np.outer(y, rng.uniform(0, 1, size=60)) * rng.uniform(0.5, 2, size=60)
    X = X.astype(np.float32)
    np.testing.assert_array_equal(AnovaF().rank(X, y), ProbelessOVR().rank(X, y))


@pytest.mark.parametrize("name", LABELLED)
def test_planted_neurons_rank_first(name):
    """Neuron 7c + 3 is shifted by +3 on class c. Even `iou` at alpha 0.005 (10 words on) puts only class-c
    words above a planted neuron's threshold, IoU 10/400, well above a noise neuron's best class."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=2000)
    X = rng.normal(size=(2000, 100)).astype(np.float32)
    planted = 7 * np.arange(5) + 3
    X[np.arange(2000), planted[y]] += 3.0
    top = config(name).rank(X, y, rng=np.random.default_rng(0))[:5]
    assert sorted(top.tolist()) == planted.tolist()


@pytest.mark.parametrize("name", ["variance", "mean_abs"])
def test_label_free_stats_rank_a_loud_decoy_first_whatever_the_labels(name):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 20)).astype(np.float32)
    X[:, 13] *= 10
    method = config(name)
    first = method.rank(X, rng.integers(0, 3, size=1000))
    assert first[0] == 13
    np.testing.assert_array_equal(first, method.rank(X, None))


@pytest.mark.parametrize("statistic", [Variance, MeanAbs])
def test_label_free_stats_refuse_zscored_input(statistic):
    X = np.random.default_rng(0).normal(size=(50, 4))
    with pytest.raises(NeuronbenchError, match="raw activations"):
        statistic(normalize="zscore").rank(X)
