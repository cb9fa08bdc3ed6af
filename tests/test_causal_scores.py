"""Model-level scorers (causal ablation with head, LM and off-target readouts, interventions, faithfulness) on
the tiny random BERT (tiny random decoders for the LM readout) and the hand-made three-class task of
test_intervene."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel, LlamaForCausalLM

from bench.causal_scores import (capped_ks, causal, faithfulness, faithfulness_curve, intervention, lm, rank_alpha,
                                 tpp)
from bench.core.types import SPLITS
from bench.errors import NeuronbenchError
from bench.extract import tokenize_words
from bench.intervene import Edit, FinalHead, final_head, model_context, model_inputs, run_with_edit, site_states
from bench.layer import LayerData
from bench.models import load_model
from bench.probe import LogisticProbe, fit_select
from bench.run import run_job
from test_end_to_end import config, read
from test_extract import TINY
from test_intervene import DECODERS, LAST, no_hooks, tiny_setup

WIDTH = TINY["config"]["hidden_size"]


@pytest.fixture(scope="module")
def setup():
    return tiny_setup()


def layer_data(setup, site, layer, form="multi", head=None):
    loaded, task, examples, concept = setup
    ex = examples if form == "multi" else concept
    ctx = model_context(task, ex, loaded, pooling="mean", site=site, layer=layer,
                        family=examples if form == "concept" else None)  # as bench.run builds concept jobs
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
    for scorer, name in ((causal, "causal"), (intervention, "intervention"), (faithfulness, "faithfulness"),
                         (lm, "lm"), (tpp, "tpp")):
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
    for metric in ("translate_success", "clamp_success", "clamp_noharm"):
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


# --- do-no-harm row of clamping ------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["multi", "concept"])
def test_clamp_noharm_clamping_everything_at_the_last_layer(setup, form):
    """At hidden L with mean pooling, clamping all neurons makes a word's read-out its class median, so
    the row is the share of kept words whose own class median the head predicts as that class."""
    data, X = layer_data(setup, "hidden", LAST, form=form)
    ctx = data.context
    head = final_head(ctx)
    y_train, y_test = ctx.y["train"], ctx.y["test"]  # every test word is sampled (< 500)
    medians = np.stack([np.median(X["train"][y_train == c], axis=0) for c in range(ctx.n_classes)])
    median_class = head.predict(torch.as_tensor(medians))
    kept = y_test == 1 if form == "concept" else np.ones(len(y_test), dtype=bool)
    clean = head.predict(run_with_edit(ctx.loaded, ctx.inputs("test")))
    scores = intervention(np.arange(WIDTH), data, [0, WIDTH], rng())
    assert by(scores, "clamp_noharm", 0) == pytest.approx(np.mean(clean[kept] == y_test[kept]), abs=1e-12)
    expected = np.mean(median_class[y_test[kept]] == y_test[kept])
    assert by(scores, "clamp_noharm", WIDTH) == pytest.approx(expected, abs=1e-12)
    if form == "concept":  # negatives clamped to the same (concept) median: the same constant prediction
        assert by(scores, "clamp_success", WIDTH) == by(scores, "clamp_noharm", WIDTH)


# --- off-target specificity (TPP) -------------------------------------------------------------------------

def recalls(predicted: np.ndarray, gold: np.ndarray, n_classes: int) -> np.ndarray:
    return np.array([np.mean(predicted[gold == j] == j) for j in range(n_classes)])


def test_tpp_skips_multi_class_jobs(setup, caplog):
    data, _ = layer_data(setup, "hidden", 1)
    with caplog.at_level(logging.INFO, logger="bench.causal_scores"):
        assert tpp(np.arange(WIDTH), data, [1, 5], rng()) == []
    assert "TPP needs one per concept" in caplog.text


@pytest.mark.parametrize("site,layer", [("hidden", 1), ("mlp", 2)])
def test_tpp_matches_a_direct_per_class_recomputation(setup, site, layer):
    """Every family test word is sampled (10 NOUN <= 250, 20 DET and 10 VERB <= 125), so an unbatched pass
    with Edit.ablate and the family head's predictions must give the scorer's values exactly."""
    data, X = layer_data(setup, site, layer, form="concept")
    family = data.context.family
    assert family.labels == ("DET", "NOUN", "VERB") and data.context.labels == ("OTHER", "NOUN")
    ranking = np.random.default_rng(4).permutation(data.n_neurons)
    scores = tpp(ranking, data, [0, 5], rng())
    for metric in ("causal_tpp", "causal_tpp_intended", "causal_tpp_unintended"):
        assert by(scores, metric, 0) == 0.0  # ablating nothing
    head = final_head(family)
    gold = family.y["test"]
    inputs = family.inputs("test", batch_size=1)
    means = site_states(family.loaded, family.inputs("train"), site, layer).mean(axis=0)
    top = ranking[:5]
    clean = recalls(head.predict(run_with_edit(family.loaded, inputs)), gold, 3)
    ablated = recalls(head.predict(run_with_edit(family.loaded, inputs, site, layer, Edit.ablate(top, means[top]))),
                      gold, 3)
    drop = clean - ablated
    assert by(scores, "causal_tpp_intended", 5) == pytest.approx(drop[1], abs=1e-12)
    assert by(scores, "causal_tpp_unintended", 5) == pytest.approx((drop[0] + drop[2]) / 2, abs=1e-12)
    assert by(scores, "causal_tpp", 5) == pytest.approx(drop[1] - (drop[0] + drop[2]) / 2, abs=1e-12)
    assert no_hooks(family.loaded)


def test_tpp_ablating_the_whole_last_layer_leaves_one_class(setup):
    """Mean-ablating every final neuron makes the family head constant: recall 1 for the class it picks."""
    data, _ = layer_data(setup, "hidden", LAST, form="concept")
    family = data.context.family
    head = final_head(family)
    gold = family.y["test"]
    clean = recalls(head.predict(run_with_edit(family.loaded, family.inputs("test"))), gold, 3)
    means = site_states(family.loaded, family.inputs("train"), "hidden", LAST).mean(axis=0)
    constant = np.zeros(3)
    constant[head.predict(torch.as_tensor(means[None]))[0]] = 1.0
    drop = clean - constant
    scores = tpp(np.arange(WIDTH), data, [WIDTH], rng())
    assert by(scores, "causal_tpp", WIDTH) == pytest.approx(drop[1] - (drop[0] + drop[2]) / 2, abs=1e-12)


# --- LM readout ----------------------------------------------------------------------------------------------

LM_ARCHS = {"llama": ({**DECODERS["llama"], "tie_word_embeddings": True}, LlamaForCausalLM, "model"),
            "gpt2": (DECODERS["gpt2"], GPT2LMHeadModel, "transformer")}  # GPT-2 ties by default


def lm_data(setup, arch: str, site: str = "hidden", layer: int = 1):
    _, task, examples, _ = setup
    config, _, _ = LM_ARCHS[arch]
    loaded = load_model(f"tiny_{arch}_lm", {**TINY, "config": config, "decoder": True})
    ctx = model_context(task, examples, loaded, pooling="last", site=site, layer=layer)
    X = {s: site_states(loaded, ctx.inputs(s), site, layer) for s in SPLITS}
    return LayerData(X, examples, context=ctx), X


def causal_lm(loaded, arch: str):
    """The transformers causal-LM class around the loaded base model's weights (lm_head tied to them)."""
    config, cls, attr = LM_ARCHS[arch]
    full = cls(loaded.model.config)
    getattr(full, attr).load_state_dict(loaded.model.state_dict())
    assert torch.equal(full.lm_head.weight, loaded.model.get_input_embeddings().weight)
    return full.eval()


@pytest.mark.parametrize("arch", sorted(LM_ARCHS))
def test_lm_clean_loss_and_ablation_match_the_causal_lm_forward(setup, arch):
    data, X = lm_data(setup, arch)
    ctx = data.context
    full = causal_lm(ctx.loaded, arch)
    sentences, words = ctx.sentences["test"], ctx.words["test"]
    ids, token_words = tokenize_words(ctx.loaded, sentences)
    with torch.inference_mode():
        logits = [full(input_ids=torch.tensor([i])).logits[0] for i in ids]
    losses = []
    for s, w in words:  # the token after the word's last piece (MiniLM's tokenizer ends with [SEP])
        last = int(np.flatnonzero(token_words[s] == w)[-1])
        losses.append(float(-torch.log_softmax(logits[s][last].double(), -1)[ids[s][last + 1]]))
    ranking = np.random.default_rng(5).permutation(WIDTH)
    scores = lm(ranking, data, [0, 4], rng())
    assert by(scores, "causal_lm_clean_loss") == pytest.approx(np.mean(losses), abs=1e-5)
    for metric in ("causal_lm_drop", "causal_lm_gain", "causal_lm_drop_random"):
        assert by(scores, metric, 0) == 0.0  # ablating nothing
    # the top-4 mean ablation, unreplicated: final states at the last piece through the causal LM's own head
    top = ranking[:4]
    inputs = model_inputs(ctx.loaded, sentences, words, "last")
    states = run_with_edit(ctx.loaded, inputs, "hidden", 1, Edit.ablate(top, X["train"].mean(axis=0)[top]))
    with torch.inference_mode():
        logp = torch.log_softmax(full.lm_head(states).double(), -1)
    following = [ids[s][int(np.flatnonzero(token_words[s] == w)[-1]) + 1] for s, w in words]
    ablated = float(-logp[torch.arange(len(words)), torch.tensor(following)].mean())
    assert by(scores, "causal_lm_drop", 4) == pytest.approx(ablated - np.mean(losses), abs=1e-5)
    assert no_hooks(ctx.loaded)


def test_lm_emits_nothing_without_a_tied_lm_head(setup, caplog):
    encoder, _ = layer_data(setup, "hidden", 1)
    with caplog.at_level(logging.WARNING, logger="bench.causal_scores"):
        assert lm(np.arange(WIDTH), encoder, [1], rng()) == []
    assert "no usable LM head: bert encoder" in caplog.text
    _, task, examples, _ = setup
    untied = load_model("tiny_llama_untied", {**TINY, "config": DECODERS["llama"], "decoder": True})
    ctx = model_context(task, examples, untied, pooling="last", site="hidden", layer=1)
    X = {s: site_states(untied, ctx.inputs(s), "hidden", 1) for s in SPLITS}
    with caplog.at_level(logging.WARNING, logger="bench.causal_scores"):
        assert lm(np.arange(WIDTH), LayerData(X, examples, context=ctx), [1], rng()) == []
    assert "not tied" in caplog.text


def test_concept_job_through_the_runner_reads_the_family(tmp_path):
    """bench.run hands a concept job its task's multi-class form: tpp rows come out; the encoder has no LM
    head, so lm writes none; job.json times each scorer."""
    out = run_job(config(tmp_path, "task=templated_word_class", "task.concept=NOUN", "method=probeless",
                         "layers=[2]", "scorers=[tpp,lm]"), "probeless")
    records = read(out / "records.jsonl")
    metrics = {r["metric"] for r in records}
    assert {"causal_tpp", "causal_tpp_intended", "causal_tpp_unintended", "causal_tpp_auc"} == metrics
    tpp_rows = [r for r in records if r["metric"] == "causal_tpp"]
    assert {r["k"] for r in tpp_rows} == {1, 2, 3, 5, 10, 32} and all(-2.0 <= r["value"] <= 2.0 for r in tpp_rows)
    timing = json.loads((out / "job.json").read_text())["layers"][0]
    assert set(timing["scorers_s"]) == {"tpp", "lm"}
