"""Metric declarations (bench.core.metrics, gathered by bench.metrics): every scorer emits exactly the metrics its
module declares, with the declared k-ness, and the leaderboard reads its ranked set and families from them, so a
new scorer's rows cannot reach the board undeclared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import agreement as agreement_module
from bench import causal_scores, scorers
from bench.agreement import agreement, bootstrap_stability, seed_stability
from bench.core.metrics import GRID, Metric
from bench.metrics import FAMILIES, METRICS, RANKED
from bench.scorers import SCORERS, k_grid
from leaderboard import board, headline, html, validity
from test_behavioural import smollm2_layer
from test_causal_scores import layer_data, lm_data, setup  # noqa: F401  (setup: the tiny model, a fixture)
from test_scorers import SIGNAL, perfect, planted_layer

KS = (1, 2, 5, 10, 20)
PUBLISHED = Path(__file__).parents[1] / "leaderboard" / "published"


def emitted(scores, width: int) -> set[str]:
    """The metric names of `scores`, each checked against its declaration: declared, per-k exactly when declared
    so, and on the reference grid when declared GRID."""
    for score in scores:
        assert score.metric in METRICS, f"scorer row {score.metric!r} is not declared (bench.metrics)"
        declared = METRICS[score.metric]
        assert (score.k is not None) == declared.per_k, score
        assert declared.ks != GRID or score.k in k_grid(width, KS), score
    return {score.metric for score in scores}


def declared(module) -> set[str]:
    return {metric.name for metric in module.METRICS}


def test_activation_scorers_emit_what_they_declare():
    data = planted_layer()
    data.truth = tuple(frozenset({j}) for j in SIGNAL)
    rng = np.random.default_rng(0)
    names = set().union(*(emitted(scorer(perfect(), data, KS, rng), data.n_neurons) for scorer in SCORERS.values()))
    assert names == declared(scorers)


class Variance:
    def rank(self, X, y=None, rng=None):
        return np.argsort(-X.var(axis=0), kind="stable")


def test_agreement_emits_what_it_declares():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, len(perfect())))
    rankings = {"perfect": perfect(), "reversed": perfect()[::-1].copy(), "variance": Variance().rank(X)}
    rows = [score for _, _, score in agreement(rankings)] + seed_stability(list(rankings.values()))
    rows += bootstrap_stability(Variance(), X, None, np.arange(len(X)) // 10, rankings["variance"], rng, 3)
    assert emitted(rows, X.shape[1]) == declared(agreement_module)


def test_model_scorers_emit_what_they_declare(setup):  # noqa: F811
    rng = np.random.default_rng(0)
    cells = [(layer_data(setup, "hidden", 1)[0], ("causal", "intervention", "faithfulness")),
             (layer_data(setup, "hidden", 1, form="concept")[0], ("tpp",)),
             (lm_data(setup, "llama")[0], ("lm",))]
    pairs = {"concept": {"_target_": "tasks.templated.minimal_pairs", "attribute": "number", "n_pairs": 8, "seed": 0},
             "off_target": {"_target_": "tasks.templated.minimal_pairs", "attribute": "tense", "n_pairs": 8,
                            "seed": 0},
             "crossed": {"_target_": "tasks.templated.crossed_pairs", "n_pairs": 8, "seed": 0}}
    cells.append((smollm2_layer("mlp", 28, pairs)[1], ("beh", "interchange")))
    names = set()
    for data, scorer_names in cells:
        ranking = rng.permutation(data.n_neurons)
        for name in scorer_names:
            names |= emitted(causal_scores.SCORERS[name](ranking, data, KS, rng), data.n_neurons)
    assert names == declared(causal_scores)


def test_the_board_reads_the_declarations():
    assert set(board.RANKED_METRICS) == {name for name, metric in METRICS.items() if metric.ranked} == set(RANKED)
    assert headline.FAMILIES == FAMILIES and set(board.FAMILY_NAMES) == set(FAMILIES)
    # every family's per-k metrics, in-model ones included (implanted models give those a truth), and the
    # candidates' (shown metrics the report checks before a headline may use them)
    assert set(validity.PER_K) == {name for names in FAMILIES.values() for name in names} | set(
        validity.CANDIDATES.values())
    assert all(METRICS[name].per_k for name in validity.PER_K)
    assert all(not METRICS[area].per_k and not METRICS[area].ranked for area in validity.CANDIDATES)
    shown = {*board.HEADLINE_METRICS, board.DEPTH_METRIC, validity.TRUTH, html.AGREEMENT_METRIC, *html.CURVE_INPUTS}
    assert shown <= set(METRICS), shown - set(METRICS)


def test_published_records_hold_declared_metrics_only():
    names = set().union(*(pd.read_parquet(path, columns=["metric"])["metric"].unique()
                          for path in PUBLISHED.glob("*/records.parquet")))
    assert names and names <= set(METRICS), names - set(METRICS)


def test_a_declaration_the_board_cannot_use_fails():
    with pytest.raises(ValueError, match="ranks higher-is-better values only"):
        Metric("loss", ranked=True, higher_is_better=False)
    with pytest.raises(ValueError, match="needs ks"):
        Metric("area", family="probe")
    with pytest.raises(ValueError, match="ks must be"):
        Metric("curve", ks="budgets")
