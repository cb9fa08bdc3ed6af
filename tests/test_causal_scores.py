"""Model-level scorers (causal ablation, interventions, faithfulness) on the tiny random BERT and the
hand-made three-class task of test_intervene."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.causal_scores import (capped_ks, causal, faithfulness, faithfulness_curve, intervention, rank_alpha)
from bench.errors import NeuronbenchError
from bench.intervene import FinalHead, final_head, model_context, site_states
from bench.layer import LayerData
from bench.probe import LogisticProbe, fit_select
from tasks.base import SPLITS
from test_extract import TINY
from test_intervene import LAST, no_hooks, tiny_setup

WIDTH = TINY["config"]["hidden_size"]


@pytest.fixture(scope="module")
def setup():
    return tiny_setup()


def layer_data(setup, site, layer, form="multi", head=None):
    loaded, task, examples, concept = setup
    ex = examples if form == "multi" else concept
    ctx = model_context(task, ex, loaded, pooling="mean", site=site, layer=layer)
    if head is not None:
        ctx = dataclasses.replace(ctx, head=head)
    X = {s: site_states(loaded, ctx.inputs(s), site, layer) for s in SPLITS}
    data = LayerData(X, ex)
    data.context = ctx
    return data, X


def by(scores, metric, k=None):
    hits = [s.value for s in scores if s.metric == metric and s.k == k]
    assert len(hits) == 1, (metric, k, hits)
    return hits[0]


def rng():
    return np.random.default_rng(0)


def decisive_head(setup) -> tuple[FinalHead, int]:
    """A head that reads one final neuron only: the one whose single-neuron probe fits train best."""
    loaded, task, examples, _ = setup
    ctx = model_context(task, examples, loaded, pooling="mean")
    final = {s: site_states(loaded, ctx.inputs(s), "hidden", LAST) for s in ("train", "dev")}
    mean, std = final["train"].mean(axis=0), final["train"].std(axis=0)
    z = {s: ((final[s] - mean) / std).astype(np.float32) for s in final}
    y = examples.y
    best, best_acc, best_probe = None, -1.0, None
    for j in range(WIDTH):
        probe, _ = fit_select(z["train"][:, [j]], y["train"], z["dev"][:, [j]], y["dev"], 3)
        acc = float(np.mean(probe.predict(z["train"][:, [j]]) == y["train"]))
        if acc > best_acc:
            best, best_acc, best_probe = j, acc, probe
    W = np.zeros((3, WIDTH), dtype=np.float32)
    W[:, best] = best_probe.W[:, 0]
    head = FinalHead(probe=LogisticProbe(W=W, b=best_probe.b.astype(np.float32), n_classes=3),
                     mean=mean.astype(np.float32), scale=std.astype(np.float32), C=1.0, dev_accuracy=0.0)
    return head, best


def test_missing_context_raises(setup):
    data, _ = layer_data(setup, "hidden", 1)
    data.context = None
    for scorer, name in ((causal, "causal"), (intervention, "intervention"), (faithfulness, "faithfulness")):
        with pytest.raises(NeuronbenchError, match=f"scorer '{name}' needs the model; planted tasks have none"):
            scorer(np.arange(WIDTH), data, [1, 2], rng())


def test_k_cap():
    assert capped_ks([1, 2, 50, 100, 150, 500, 768], 768) == [1, 2, 50, 77, 100]
    assert capped_ks([1, 5, 32], 32) == [1, 3, 5, 32]
    alpha = rank_alpha(np.array([2, 0, 1]))
    np.testing.assert_allclose(alpha[[2, 0, 1]], [8.0, np.sqrt(8e-3), 1e-3])


@pytest.mark.parametrize("site,layer", [("hidden", 1), ("mlp", 2)])
def test_ablating_nothing_drops_nothing(setup, site, layer):
    data, _ = layer_data(setup, site, layer)
    width = data.n_neurons
    ranking = np.random.default_rng(1).permutation(width)
    scores = causal(ranking, data, [0, 1, 5], rng())
    for metric in ("causal_drop", "causal_logp_drop", "causal_gain", "causal_drop_random"):
        assert by(scores, metric, 0) == 0.0
    assert {s.k for s in scores if s.metric == "causal_drop"} == {0, 1, 5, round(0.1 * width)}
    assert scores == causal(ranking, data, [0, 1, 5], rng())  # seeded
    assert no_hooks(data.context.loaded)


def test_ablating_the_whole_last_layer_leaves_at_most_the_majority(setup):
    data, _ = layer_data(setup, "hidden", LAST)
    y = data.context.y["test"]
    majority = np.bincount(y).max() / len(y)  # all test words are sampled (< 500)
    scores = causal(np.arange(WIDTH), data, [WIDTH], rng())
    clean = by(scores, "causal_clean_acc")
    assert clean > majority
    drop = by(scores, "causal_drop", WIDTH)
    assert clean - drop <= majority + 1e-12
    assert by(scores, "causal_gain", WIDTH) == pytest.approx(0.0)  # every random D-set is everything


def test_decisive_neuron_first_beats_its_reverse(setup):
    head, j = decisive_head(setup)
    data, _ = layer_data(setup, "hidden", LAST, head=head)
    ranking = np.concatenate([[j], np.delete(np.arange(WIDTH), j)])
    top = causal(ranking, data, [1], rng())
    reverse = causal(ranking[::-1].copy(), data, [1], rng())
    assert by(reverse, "causal_drop", 1) == 0.0 and by(reverse, "causal_logp_drop", 1) == 0.0
    assert by(top, "causal_drop", 1) > 0.1
    assert by(top, "causal_logp_drop", 1) > 0.1
    assert by(top, "causal_gain", 1) > by(reverse, "causal_gain", 1)
    # the zero-ablation compat option runs and also sees the neuron
    assert by(causal(ranking, data, [1], rng(), value="zero"), "causal_logp_drop", 1) != 0.0
    # faithfulness: keeping the decisive neuron alone keeps almost everything
    faith = faithfulness(ranking, data, None, rng())
    assert by(faith, "faith", 1) == pytest.approx(1.0, abs=1e-5)
    assert by(faith, "faith_cpr") > by(faithfulness(ranking[::-1].copy(), data, None, rng()), "faith_cpr")


def test_faithfulness_ends_and_area(setup):
    data, X = layer_data(setup, "hidden", 1)
    head = final_head(data.context)
    ranking = np.argsort(-np.abs(X["train"] - X["train"].mean(axis=0)).mean(axis=0), kind="stable")
    f, m_full, m_empty = faithfulness_curve(ranking, data, [0, WIDTH], rng())
    assert f.tolist() == [0.0, 1.0]
    assert abs(m_full - m_empty) >= 1e-3
    scores = faithfulness(ranking, data, None, rng())
    cpr, cmd, cpr_log = by(scores, "faith_cpr"), by(scores, "faith_cmd"), by(scores, "faith_cpr_log")
    assert 0.0 <= cpr <= 1.0 and 0.0 <= cpr_log <= 1.0 and -1.0 <= cmd <= 0.0
    assert by(scores, "faith", WIDTH) == 1.0
    assert {s.k for s in scores if s.metric == "faith"} == {1, 2, 3, 6, 16, 32}  # D = 32, deduplicated
    # a head that reads nothing: m(N) = m(∅), the cell is NaN
    flat = dataclasses.replace(head, probe=LogisticProbe(W=np.zeros_like(head.probe.W), b=head.probe.b,
                                                         n_classes=head.n_classes))
    data.context = dataclasses.replace(data.context, head=flat)
    nan = faithfulness(ranking, data, None, rng())
    assert np.isnan(by(nan, "faith_cpr")) and np.isnan(by(nan, "faith_cmd"))


@pytest.mark.parametrize("form", ["multi", "concept"])
@pytest.mark.parametrize("site,layer", [("hidden", 1), ("mlp", 2), ("hidden", LAST)])
def test_intervention_contract(setup, form, site, layer):
    data, _ = layer_data(setup, site, layer, form=form)
    ranking = np.random.default_rng(2).permutation(data.n_neurons)
    scores = intervention(ranking, data, [0, 1, 10], rng())
    for metric in ("translate_success", "clamp_success"):
        zero = [s for s in scores if s.metric == metric and s.k == 0][0]
        assert zero.value == zero.chance  # editing nothing: the clean share predicting the target
        assert all(0.0 <= s.value <= 1.0 for s in scores if s.metric == metric)
    assert scores == intervention(ranking, data, [0, 1, 10], rng())
    assert no_hooks(data.context.loaded)


def test_intervention_at_the_last_layer_steers(setup):
    """At hidden L the head reads the edited state: translating or clamping every neuron works."""
    data, _ = layer_data(setup, "hidden", LAST)
    scores = intervention(np.arange(WIDTH), data, [WIDTH], rng())
    assert by(scores, "clamp_success", WIDTH) > 0.8
    assert by(scores, "translate_success", WIDTH) > by(scores, "translate_success", 3)


def test_hooks_are_gone_after_an_error_mid_scorer(setup):
    data, _ = layer_data(setup, "hidden", 1)
    loaded = data.context.loaded
    final_head(data.context)  # fitted and memoized before the failing hook goes in
    site_module = loaded.model.get_submodule("encoder.layer.0")  # hidden 1 is its output
    seen, before = [], len(site_module._forward_hooks)

    def boom(*_):
        seen.append(len(site_module._forward_hooks))
        raise RuntimeError("boom")

    handle = loaded.model.get_submodule(f"encoder.layer.{LAST - 1}").register_forward_hook(boom)
    try:
        for scorer in (causal, intervention, faithfulness):
            with pytest.raises(RuntimeError, match="boom"):
                scorer(np.arange(WIDTH), data, [1, 2], rng())
    finally:
        handle.remove()
    assert seen == [before + 1] * 3  # each failed with the scorer's site hook in place
    assert no_hooks(loaded)
