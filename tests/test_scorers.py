"""Known-answer tests for the shared scorers and for agreement."""

from __future__ import annotations

import numpy as np
import pytest

from bench.agreement import agreement, chance_jaccard, jaccard
from bench.core.types import SPLITS
from bench.errors import NeuronbenchError
from bench.examples import Examples
from bench.layer import LayerData
from bench.probe import accuracy
from bench.scorers import SCORERS, ablation, k_grid, log_area, min_subset, probe_acc, selectivity

probe_acc_gaussian, selectivity_gaussian = SCORERS["probe_acc_gaussian"], SCORERS["selectivity_gaussian"]

D, SIGNAL = 40, (3, 17, 29)


def planted_layer(control_equals_task=False, seed=0):
    """3 classes; neuron SIGNAL[c] is shifted by +3 on class c; the rest is noise."""
    rng = np.random.default_rng(seed)
    X, y = {}, {}
    for split, n in zip(SPLITS, (600, 300, 300)):
        y[split] = rng.integers(0, 3, size=n)
        X[split] = rng.normal(size=(n, D)).astype(np.float32)
        X[split][np.arange(n), np.array(SIGNAL)[y[split]]] += 3.0
    control = y if control_equals_task else {s: rng.integers(0, 3, size=len(y[s])) for s in SPLITS}
    ex = Examples(label_names=("a", "b", "c"), index={s: np.arange(len(y[s])) for s in SPLITS}, y=y,
                  control=control)
    return LayerData(X, ex)


def perfect():
    return np.array(list(SIGNAL) + [j for j in range(D) if j not in SIGNAL])


def by_metric(scores, metric):
    return {s.k: s.value for s in scores if s.metric == metric}


def test_k_grid_clips_and_adds_width():
    assert k_grid(40) == [1, 2, 3, 5, 10, 20, 30, 40]
    assert k_grid(8, [2, 4, 100]) == [2, 4, 8]
    with pytest.raises(NeuronbenchError, match="positive"):
        k_grid(8, [0, 2])


def test_log_area_known_values():
    assert log_area([1, 10, 100], [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert log_area([1, 10, 100], [0.0, 0.5, 1.0]) == pytest.approx(0.5)
    assert log_area([1, 100], [0.0, 1.0]) == pytest.approx(0.5)


def test_probe_acc_perfect_beats_reversed():
    data = planted_layer()
    ks = k_grid(D)
    good = by_metric(probe_acc(perfect(), data, ks, None), "probe_acc")
    bad = by_metric(probe_acc(perfect()[::-1], data, ks, None), "probe_acc")
    assert good[3] > 0.85 and bad[3] < 0.5
    assert good[D] == bad[D]  # all neurons: the ranking no longer matters
    auc_good = by_metric(probe_acc(perfect(), data, ks, None), "probe_auc")[None]
    auc_bad = by_metric(probe_acc(perfect()[::-1], data, ks, None), "probe_auc")[None]
    assert auc_good > auc_bad + 0.2


def test_selectivity_zero_when_control_equals_task():
    data = planted_layer(control_equals_task=True)
    values = by_metric(selectivity(perfect(), data, k_grid(D), None), "selectivity")
    assert all(v == 0.0 for v in values.values())


def test_selectivity_positive_for_signal_neurons():
    data = planted_layer()
    values = by_metric(selectivity(perfect(), data, k_grid(D), None), "selectivity")
    assert values[3] > 0.4


def test_ablation_known_answers():
    data = planted_layer()
    scores = ablation(perfect(), data, k_grid(D), np.random.default_rng(0))
    drop_top, drop_random = by_metric(scores, "ablate_drop_top"), by_metric(scores, "ablate_drop_random")
    keep_top = by_metric(scores, "ablate_keep_top")
    acc_all = data.ablated_accuracy(np.arange(D), kept=True)
    assert keep_top[D] == acc_all and drop_top[D] == pytest.approx(acc_all - data.majority(), abs=0.05)
    assert drop_top[3] > 0.4 and drop_random[3] < 0.1
    assert keep_top[3] > 0.8 and by_metric(scores, "ablate_keep_bottom")[3] < 0.5


def test_ablated_accuracy_is_the_probe_on_mean_ablated_columns():
    """The logit-difference shortcut against the definition: zero the columns in z-space, predict."""
    data = planted_layer()
    fitted = data.probe(np.arange(D))
    chosen = np.random.default_rng(3).choice(D, size=40, replace=False)
    for kept in (True, False):
        Z = data.Z["test"][:, data.live].copy()
        outside = ~np.isin(np.flatnonzero(data.live), chosen)
        Z[:, outside if kept else ~outside] = 0.0
        assert data.ablated_accuracy(chosen, kept) == accuracy(fitted.probe, Z, data.labels("test"))


def test_agreement_known_values():
    assert chance_jaccard(10, 768) == pytest.approx(0.0066, abs=1e-4)
    assert chance_jaccard(100, 768) == pytest.approx(0.070, abs=1e-3)
    a = np.arange(200)
    assert jaccard(a, a, 10) == 1.0 and jaccard(a, a[::-1], 10) == 0.0
    assert jaccard(a, np.r_[a[5:15], a[:5], a[15:]], 10) == pytest.approx(5 / 15)
    rows = agreement({"x": a, "y": a, "z": a[::-1]}, ks=(10,))
    avg = {m: s.value for m, other, s in rows if s.metric == "avg_overlap"}
    assert avg == {"x": 0.5, "y": 0.5, "z": 0.0}
    assert sum(1 for _, other, s in rows if s.metric == "jaccard") == 6


def test_gaussian_family_perfect_beats_reversed():
    data = planted_layer()
    ks = k_grid(D)
    good, bad = probe_acc_gaussian(perfect(), data, ks, None), probe_acc_gaussian(perfect()[::-1], data, ks, None)
    acc_good, acc_bad = by_metric(good, "probe_acc_gaussian"), by_metric(bad, "probe_acc_gaussian")
    assert acc_good[3] > 0.85 and acc_bad[3] < 0.5
    assert acc_good[D] == acc_bad[D] == by_metric(good, "acc_all_gaussian")[None]
    assert by_metric(good, "probe_auc_gaussian")[None] > by_metric(bad, "probe_auc_gaussian")[None] + 0.2
    assert data.gaussian_accuracy(np.array([], dtype=np.int64)) == data.majority()


def test_gaussian_selectivity_known_answers():
    same = by_metric(selectivity_gaussian(perfect(), planted_layer(control_equals_task=True), k_grid(D), None),
                     "selectivity_gaussian")
    assert all(v == 0.0 for v in same.values())
    data = planted_layer()
    good = selectivity_gaussian(perfect(), data, k_grid(D), None)
    bad = selectivity_gaussian(perfect()[::-1], data, k_grid(D), None)
    assert by_metric(good, "selectivity_gaussian")[3] > 0.4
    assert by_metric(good, "selectivity_auc_gaussian")[None] > by_metric(bad, "selectivity_auc_gaussian")[None] + 0.2


def test_min_subset_finds_the_signal_neurons():
    data = planted_layer()
    good = {s.metric: s.value for s in min_subset(perfect(), data, k_grid(D), None)}
    assert good["min_subset_k"] == len(SIGNAL)  # fewer than 3 misses a class entirely
    assert good["min_subset_saving"] == pytest.approx(1 - len(SIGNAL) / D)
    assert good["min_subset_within_test"] == 1.0 and good["min_subset_test_acc"] > 0.85
    bad = {s.metric: s.value for s in min_subset(perfect()[::-1], data, k_grid(D), None)}
    assert bad["min_subset_k"] == D and bad["min_subset_saving"] == 0.0  # the signal neurons come last


def test_min_subset_bisects_between_grid_points():
    """A ranking with the signal at positions 5, 6, 7 needs k = 8, which lies between grid points."""
    data = planted_layer()
    ranking = np.r_[[j for j in range(D) if j not in SIGNAL][:5], SIGNAL, [j for j in range(D) if j not in SIGNAL][5:]]
    scores = {s.metric: s.value for s in min_subset(ranking, data, [1, 2, 3, 5, 10, 20], None)}
    assert scores["min_subset_k"] == 8
