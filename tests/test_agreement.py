"""Known answers for agreement extras and seed stability (reference.md#metric-overlap, #metric-stability)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from bench.agreement import (FAMILIES, agreement, bootstrap_stability, chance_jaccard, consensus, dead_tail, family,
                             seed_stability, spearman)
from bench.errors import NeuronbenchError
from leaderboard.records import agreement_records
from bench.run import bootstrap_rows, run_job
from methods.baselines import RandomRanking
from methods.causal import AblateSingle
from methods.univariate import AnovaF
from test_end_to_end import config, read

D = 200


def rows_of(rows, metric):
    return {(method, other, score.k): score.value for method, other, score in rows if score.metric == metric}


def test_spearman_identical_reversed_and_known_value():
    a = np.random.default_rng(0).permutation(D)
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, a[::-1]) == pytest.approx(-1.0)
    # one adjacent swap in n = 4: 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman(np.array([0, 1, 2, 3]), np.array([1, 0, 2, 3])) == pytest.approx(0.8)


def test_rank_corr_rows_and_average():
    a = np.arange(D)
    rows = agreement({"x": a, "y": a.copy(), "z": a[::-1].copy()}, ks=(10,))
    pairs = rows_of(rows, "rank_corr")
    assert pairs[("x", "y", None)] == pytest.approx(1.0) and pairs[("x", "z", None)] == pytest.approx(-1.0)
    assert len(pairs) == 6
    avg = rows_of(rows, "avg_rank_corr")
    assert avg[("x", None, None)] == pytest.approx(0.0) and avg[("z", None, None)] == pytest.approx(-1.0)


def test_dead_tail_is_left_out_of_rank_corr():
    rng = np.random.default_rng(1)
    live = 50
    dead = np.arange(live, D)  # appended in increasing index order by every method
    a, b = np.r_[rng.permutation(live), dead], np.r_[rng.permutation(live), dead]
    assert dead_tail([a, b]) == D - live
    rho = rows_of(agreement({"a": a, "b": b}, ks=()), "rank_corr")[("a", "b", None)]
    assert rho == pytest.approx(spearman(a[:live], b[:live]))
    assert abs(rho) < 0.5  # with the shared dead tail counted, rho would be near 1
    assert dead_tail([np.arange(D), np.arange(D)]) == D - 2


def test_neuron_vote_where_all_others_agree():
    rng = np.random.default_rng(2)
    shared, own = rng.permutation(D), rng.permutation(D)
    rankings = {"anova_f": shared, "ap": shared.copy(), "mi": shared.copy(), "variance": own}
    rows = agreement(rankings, ks=(10, 100))
    vote, pairs = rows_of(rows, "neuron_vote"), rows_of(rows, "jaccard")
    # the others of `variance` all agree, so their consensus is their common ranking
    assert vote[("variance", None, 10)] == pairs[("variance", "ap", 10)]
    assert vote[("variance", None, 100)] == pairs[("variance", "ap", 100)]
    # `variance` is left out of its own consensus: a method that agrees with unanimous others scores 1
    rankings["variance"] = shared.copy()
    vote = rows_of(agreement(rankings, ks=(10, 100)), "neuron_vote")
    assert all(value == 1.0 for value in vote.values())
    chance = {score.k: score.chance for _, _, score in rows if score.metric == "neuron_vote"}
    assert chance[10] == pytest.approx(chance_jaccard(10, D))


def test_family_weighting_halves_two_same_family_methods():
    assert family("lca") == family("linear_meanw") == "linear" and family("anova_f") == family("probeless")
    assert family("random") != family("my_submission") and "random" not in FAMILIES
    top_linear, top_other = np.arange(D), np.r_[np.arange(100, D), np.arange(100)]
    voters = {"lca": top_linear, "linear_meanw": top_linear.copy(), "gaussian": top_other}
    votes = consensus(voters, D)
    # lca and linear_meanw each weigh 1/2: their shared neuron 0 gets 100, exactly as the gaussian's neuron 100
    # does; the tie goes to the lower index, then the two lists alternate
    assert votes[:4].tolist() == [0, 100, 1, 101]
    unweighted = consensus({"lca": top_linear, "ridge_copy": top_linear.copy(), "gaussian": top_other}, D)
    assert unweighted[:2].tolist() == [0, 1]  # without a shared family, two voters outvote one


def test_stab_seed_identical_and_disjoint():
    a = np.arange(D)
    stab = {s.k: s.value for s in seed_stability([a, a.copy(), a.copy()], ks=(10, 50))}
    assert stab == {10: 1.0, 50: 1.0}
    mixed = {s.k: s.value for s in seed_stability([a, a.copy(), a[::-1].copy()], ks=(10,))}
    assert mixed[10] == pytest.approx(1 / 3)
    assert seed_stability([a], ks=(10,)) == []


def test_agreement_records_adds_stability_per_method(tmp_path):
    rng = np.random.default_rng(3)
    base = {"source": "builtin", "task": "pos", "task_version": "1", "concept": None, "model": "tiny",
            "model_revision": "r", "pooling": "mean", "site": "hidden", "layer": 0, "n_neurons": D,
            "metric": "probe_acc", "k": 5, "value": 0.5}
    fixed = rng.permutation(D)
    rows = []
    for method in ("lca", "random"):
        for seed in (0, 1):
            folder = tmp_path / "runs" / "pos" / "tiny" / method / f"seed{seed}" / "rankings"
            folder.mkdir(parents=True)
            np.save(folder / "hidden_L00.npy", fixed if method == "lca" else rng.permutation(D))
            rows.append({**base, "method": method, "seed": seed})
    out = agreement_records(pd.DataFrame(rows), tmp_path)
    stab = out[out["metric"] == "stab_seed"]
    assert stab["seed"].isna().all() and set(stab["k"]) == {10, 20, 30, 40, 50, 100}
    assert (stab.loc[stab["method"] == "lca", "value"] == 1.0).all()
    assert (stab.loc[stab["method"] == "random", "value"] < 0.5).all()
    per_seed = out[out["metric"] == "avg_rank_corr"]
    assert sorted(per_seed["seed"].tolist()) == [0, 0, 1, 1]
    assert {"jaccard", "avg_overlap", "rank_corr", "neuron_vote"} <= set(out["metric"])


# --- bootstrap stability -------------------------------------------------------------------------------

def by_metric(scores):
    return {(s.metric, s.k): s.value for s in scores}


def test_stab_boot_is_one_when_every_sentence_is_the_same():
    """All sentences identical: every resample is the full data itself, so a deterministic method repeats."""
    rng = np.random.default_rng(5)
    block, labels = rng.normal(size=(6, D)).astype(np.float32), np.array([0, 1, 0, 1, 1, 0])
    X, y, groups = np.tile(block, (30, 1)), np.tile(labels, 30), np.repeat(np.arange(30), 6)
    method = AnovaF()
    reference = method.rank(X, y)
    scores = by_metric(bootstrap_stability(method, X, y, groups, reference, np.random.default_rng(0), 4,
                                           ks=(10, 50)))
    assert scores == {("stab_boot", 10): 1.0, ("stab_boot", 50): 1.0, ("stab_boot_pairwise", 10): 1.0,
                      ("stab_boot_pairwise", 50): 1.0, ("stab_boot_rho", None): 1.0}


def test_stab_boot_of_the_random_ranking_is_chance():
    rng = np.random.default_rng(6)
    X, y, groups = rng.normal(size=(300, D)), rng.integers(0, 2, 300), np.repeat(np.arange(60), 5)
    method = RandomRanking()
    reference = method.rank(X, y, rng=1)
    scores = bootstrap_stability(method, X, y, groups, reference, np.random.default_rng(0), 10, ks=(10, 50, 100))
    for s in scores:
        if s.metric == "stab_boot_rho":
            assert abs(s.value) < 0.1
        else:
            assert s.chance == pytest.approx(chance_jaccard(s.k, D))
            assert abs(s.value - s.chance) < 0.05, s


class Spy:
    """Records the rows it is asked to rank and returns a fixed permutation."""

    def __init__(self, ranking):
        self.ranking, self.seen = ranking, []

    def rank(self, X, y, rng):
        self.seen.append((X.copy(), y.copy()))
        return self.ranking


def test_stab_boot_resamples_whole_sentences_against_the_reference():
    n_groups, size = 40, 3
    X = np.repeat(np.arange(n_groups * size, dtype=np.float64)[:, None], D, axis=1)  # row id in every column
    groups = np.repeat(np.arange(n_groups), size)[np.random.default_rng(7).permutation(n_groups * size)]
    y = groups % 2
    fixed, reference = np.arange(D), np.r_[np.arange(5, D), np.arange(5)]
    spy = Spy(fixed)
    scores = by_metric(bootstrap_stability(spy, X, y, groups, reference, np.random.default_rng(0), 3, ks=(10,)))
    assert scores[("stab_boot", 10)] == pytest.approx(5 / 15)  # |{5..9}| / |{0..14}|
    assert scores[("stab_boot_pairwise", 10)] == 1.0
    for rows, labels in spy.seen:
        ids = rows[:, 0].astype(int)
        drawn = groups[ids]
        assert len(ids) == len(X)  # n_groups sentences of equal size
        np.testing.assert_array_equal(labels, y[ids])
        for g in np.unique(drawn):  # a drawn sentence comes whole, as often as it was drawn
            members = np.flatnonzero(groups == g)
            counts = np.bincount(ids, minlength=len(X))[members]
            assert len(set(counts.tolist())) == 1 and counts[0] * size == np.sum(drawn == g)
    assert len({tuple(rows[:, 0]) for rows, _ in spy.seen}) == 3  # three different resamples


def test_stab_boot_input_errors():
    X, y = np.zeros((4, D)), np.zeros(4, dtype=int)
    with pytest.raises(NeuronbenchError, match="one sentence id per word"):
        bootstrap_stability(Spy(np.arange(D)), X, y, [0, 1], np.arange(D), np.random.default_rng(0), 2)
    with pytest.raises(NeuronbenchError, match="positive number of resamples"):
        bootstrap_stability(Spy(np.arange(D)), X, y, [0, 0, 1, 1], np.arange(D), np.random.default_rng(0), 0)


def test_bootstrap_through_the_runner(tmp_path, caplog):
    out = run_job(config(tmp_path, "method=probeless", "layers=[1]", "scorers=[]", "bootstrap=3"), "probeless")
    records = [r for r in read(out / "records.jsonl") if r["metric"].startswith("stab_boot")]
    assert {(r["metric"], r["k"]) for r in records} == {
        *{(m, k) for m in ("stab_boot", "stab_boot_pairwise") for k in (10, 20, 30)}, ("stab_boot_rho", None)}
    assert all(0.0 <= r["value"] <= 1.0 for r in records)
    values = {(r["metric"], r["k"]): r["value"] for r in records}
    assert values[("stab_boot", 10)] > 2 * chance_jaccard(10, 32) and values[("stab_boot_rho", None)] > 0.3
    assert "bootstrap" in json.loads((out / "job.json").read_text())["layers"][0]["scorers_s"]
    with caplog.at_level(logging.WARNING, logger="bench.run"):  # model-based methods are not resampled
        assert bootstrap_rows(AblateSingle(), "ablate_single", None, None, None, None, None, 3) == []
    assert "skipped for ablate_single" in caplog.text
