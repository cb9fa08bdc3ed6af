"""The cluster bootstrap over test sentences behind every probe value's interval (reference addendum E.1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from bench.core.types import SPLITS
from bench.errors import NeuronbenchError
from bench.examples import Examples
from bench.layer import LayerData
from bench.run import run_job, score_cell
from bench.scorers import k_grid
from bench.seeds import cluster_resamples
from conftest import CONF
from test_end_to_end import OVERRIDES

D, SIGNAL = 40, (3, 17, 29)


def layer(resamples=None, n_test=2000, seed=0):
    """3 classes with neuron SIGNAL[c] shifted on class c (as tests/test_scorers.py), iid test words."""
    rng = np.random.default_rng(seed)
    X, y = {}, {}
    for split, n in zip(SPLITS, (600, 300, n_test)):
        y[split] = rng.integers(0, 3, size=n)
        X[split] = rng.normal(size=(n, D)).astype(np.float32)
        X[split][np.arange(n), np.array(SIGNAL)[y[split]]] += 1.5
    control = {s: rng.integers(0, 3, size=len(y[s])) for s in SPLITS}
    examples = Examples(label_names=("a", "b", "c"), index={s: np.arange(len(y[s])) for s in SPLITS}, y=y,
                        control=control)
    return LayerData(X, examples, resamples=resamples)


def ranking():
    return np.array(list(SIGNAL) + [j for j in range(D) if j not in SIGNAL])


def test_cluster_resamples_draw_whole_sentences():
    groups = np.array([5, 5, 5, 9, 9, 2, 7, 7, 7, 7])  # 4 sentences of 3, 2, 1 and 4 words
    weights = cluster_resamples(groups, 500, np.random.default_rng(0))
    assert weights.shape == (500, 10) and weights.dtype == np.float32
    for members in ([0, 1, 2], [3, 4], [6, 7, 8, 9]):  # the words of a sentence always weigh alike
        assert (weights[:, members] == weights[:, members[:1]]).all()
    per_sentence = weights[:, [0, 3, 5, 6]]
    assert (per_sentence.sum(axis=1) == 4).all()  # each resample draws as many sentences as there are
    assert per_sentence.mean() == pytest.approx(1.0, abs=0.05)


def test_replicates_are_weighted_accuracies_and_point_values_stay():
    resamples = cluster_resamples(np.arange(2000), 50, np.random.default_rng(1))
    data, plain = layer(resamples), layer()
    columns = np.array(SIGNAL[:2])
    point = data.retrained_accuracy(columns)
    assert point == plain.retrained_accuracy(columns)  # the probe and its accuracy are those without resamples
    with data.replicated():
        replicates = data.retrained_accuracy(columns)
    correct = data.probe(columns).test_correct.astype(np.float64)
    assert replicates[0] == point
    np.testing.assert_allclose(replicates[1:], resamples @ correct / resamples.sum(axis=1), rtol=1e-5)
    assert not data.replicating
    with pytest.raises(NeuronbenchError, match="test_bootstrap = 0"):
        with plain.replicated():
            pass


def test_interval_matches_the_binomial_width_and_is_paired_for_differences():
    """On iid test words the 95% interval of an accuracy p over n words is about 2 x 1.96 sqrt(p(1-p)/n); selectivity's
    replicates are the task's minus the control's on the same resamples, so its interval is not their sum."""
    resamples = cluster_resamples(np.arange(2000), 1000, np.random.default_rng(2))
    data = layer(resamples)
    rows, _ = score_cell(ranking(), data, k_grid(D, [1, 3, 10]), ["probe_acc", "selectivity", "ablation"], 0,
                         ("t", "m", 0, "hidden", None))
    scores = {(s.metric, s.k): s for _, s in rows}
    acc = scores["probe_acc", 3]
    expected = 2 * 1.96 * np.sqrt(acc.value * (1 - acc.value) / 2000)
    assert acc.interval[1] - acc.interval[0] == pytest.approx(expected, rel=0.15)
    assert acc.interval[0] < acc.value < acc.interval[1]
    with data.replicated():
        task, control = data.retrained_accuracy(ranking()[:3]), data.retrained_accuracy(ranking()[:3], "control")
    low, high = np.percentile(task[1:] - control[1:], [2.5, 97.5])
    assert scores["selectivity", 3].interval == pytest.approx((low, high))
    assert scores["majority", None].interval is None  # a chance level is no test estimate
    assert scores["ablate_drop_random", 10].interval is not None


def test_records_carry_intervals_and_keep_their_values(tmp_path):
    def records(*extra):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=[*OVERRIDES, "method=probeless", f"results_dir={tmp_path / str(len(extra))}",
                                               f"cache_dir={tmp_path / 'cache'}", *extra])
        out = run_job(cfg, "probeless")
        return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]

    with_ci, without = records(), records("test_bootstrap=0")
    assert [(r["metric"], r["k"], r["value"]) for r in with_ci] == [(r["metric"], r["k"], r["value"]) for r in without]
    assert not any("ci_low" in r for r in without)
    probe = [r for r in with_ci if r["metric"] == "probe_acc"]
    assert probe and all(r["ci_low"] <= r["value"] <= r["ci_high"] for r in probe)


def test_a_negative_number_of_resamples_is_refused(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*OVERRIDES, "method=probeless", f"results_dir={tmp_path}",
                                           "test_bootstrap=-5"])
    with pytest.raises(NeuronbenchError, match=r"test_bootstrap=-5: expected a non-negative number of resamples"):
        run_job(cfg, "probeless")
