"""Edited forward passes, the frozen head, the batched sweeps and the model-based methods, on the tiny
random BERT of test_extract and a hand-made three-class task."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from bench.cache import ActivationCache
from bench.core.types import SPLITS, Task
from bench.errors import NeuronbenchError
from bench.examples import select_examples
from bench.extract import extract
from bench.intervene import (Edit, FinalHead, ModelInputs, WordBatch, ablation_sweep, edit_hook, final_head,
                             integrated_gradients, mean_gold_log_prob, model_context, model_inputs, next_token_ids,
                             run_with_edit, site_states, tied_lm_head, word_refs)
from bench.models import load_model
from bench.probe import LogisticProbe
from methods.attribution import integrated_gradients as closed_form_ig
from methods.attribution import path_points
from methods.causal import AblateSingle, IGHead
from test_extract import TINY, XLNET

DET, NOUN, VERB = ["the", "a", "this"], ["cat", "dog", "house", "unbelievability", "tree"], ["runs", "sleeps", "eats"]
LAST = TINY["config"]["num_hidden_layers"]
CELLS = [("hidden", 0), ("hidden", 1), ("hidden", LAST), ("mlp", 1), ("mlp", LAST)]


def toy_task() -> Task:
    """DET NOUN VERB DET NOUN sentences; "unbelievability" has several subword pieces."""
    sentences, labels = {}, {}
    for i, (split, n) in enumerate([("train", 24), ("dev", 10), ("test", 10)]):
        rng = np.random.default_rng(i)
        sentences[split] = [[str(rng.choice(DET)), str(rng.choice(NOUN)), str(rng.choice(VERB)),
                             str(rng.choice(DET)), str(rng.choice(NOUN))] for _ in range(n)]
        labels[split] = [["DET", "NOUN", "VERB", "DET", None] for _ in range(n)]  # last noun: context
    return Task("toy", "1", sentences, labels)


def tiny_setup():
    """The tiny random BERT, the toy task, and its multi-class and NOUN-concept examples."""
    loaded = load_model("tiny", TINY)
    task = toy_task()
    valid = {s: np.ones(sum(map(len, task.sentences[s])), dtype=bool) for s in SPLITS}
    examples = select_examples(task, valid, seed=0, n_min=5)
    concept = select_examples(task, valid, seed=0, n_min=5, concept="NOUN")
    return loaded, task, examples, concept


@pytest.fixture(scope="module")
def setup():
    loaded, task, examples, concept = tiny_setup()
    return loaded, task, examples, concept, model_context(task, examples, loaded, pooling="mean")


def checksum(*arrays):
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()


def hook_ids(loaded) -> set[int]:
    return {id(h) for m in loaded.model.modules() for d in (m._forward_hooks, m._forward_pre_hooks)
            for h in d.values()}


def no_hooks(loaded) -> bool:
    """No hooks beyond transformers' own output recorders (installed for good by output_hidden_states)."""
    recorders = {id(h) for m in loaded.model.modules() for h in m._forward_hooks.values()
                 if getattr(h, "__name__", "") == "output_capturing_hook"}
    return hook_ids(loaded) <= recorders


# --- inputs, hooks, clean and edited passes -----------------------------------------------------------

def test_word_refs_and_inputs_keep_word_order(setup):
    loaded, task, examples, _, ctx = setup
    refs = word_refs([["a", "b"], [], ["c"], ["d", "e", "f"]], [0, 1, 2, 3, 5])
    assert refs.tolist() == [[0, 0], [0, 1], [2, 0], [3, 0], [3, 2]]
    assert len(ctx.words["train"]) == len(examples.y["train"])
    inputs = ctx.inputs("train", batch_size=5)
    assert sorted(np.concatenate([b.words for b in inputs.batches]).tolist()) == list(range(inputs.n_words))
    with pytest.raises(NeuronbenchError, match="no subword"):
        model_inputs(loaded, [["so", "\u200b"]], [[0, 1]])


@pytest.mark.parametrize("pooling", ["first", "last", "mean"])
def test_site_states_match_extraction(setup, tmp_path, pooling):
    """The read-out pools what extraction caches: same alignment, pieces, pooling and sites."""
    loaded, task, examples, _, _ = setup
    ctx = model_context(task, examples, loaded, pooling=pooling)
    entry = extract(loaded, task, ActivationCache(tmp_path), sites=["hidden", "mlp"], pooling=pooling, quiet=True)
    inputs = ctx.inputs("dev", batch_size=4)
    for site, layer in CELLS:
        cached = ActivationCache(tmp_path).load_layer(entry, "dev", site, layer)[examples.index["dev"]]
        np.testing.assert_allclose(site_states(loaded, inputs, site, layer), cached, atol=3e-3, rtol=2e-3)
    final = run_with_edit(loaded, inputs).numpy()
    np.testing.assert_array_equal(final, site_states(loaded, inputs, "hidden", LAST))


@pytest.mark.parametrize("site,layer", CELLS)
def test_hooks_removed_even_on_error(setup, site, layer):
    loaded = setup[0]
    with pytest.raises(RuntimeError, match="boom"):
        with edit_hook(loaded, site, layer, ([0], [1]), lambda v: v):
            assert not no_hooks(loaded)
            raise RuntimeError("boom")
    assert no_hooks(loaded)
    with pytest.raises(NeuronbenchError, match="no layer"):
        edit_hook(loaded, site, 99, ([0], [1]), lambda v: v).__enter__()


@pytest.mark.parametrize("site,layer", CELLS)
def test_editing_nothing_reproduces_the_clean_pass(setup, site, layer):
    loaded, _, _, _, ctx = setup
    inputs = ctx.inputs("train", batch_size=7)
    clean = run_with_edit(loaded, inputs)
    width = loaded.width(site)
    for edit in (Edit.ablate([], []), Edit.translate(np.arange(width), np.zeros(width))):
        assert torch.equal(run_with_edit(loaded, inputs, site, layer, edit), clean)
    assert not torch.equal(run_with_edit(loaded, inputs, site, layer, Edit.zero(np.arange(width))), clean)
    assert no_hooks(loaded)


def test_edits_at_the_last_layer_set_the_read_out(setup):
    """At hidden L the pooled read-out is the edited state itself (mean pooling over edited pieces)."""
    loaded, _, _, _, ctx = setup
    inputs = ctx.inputs("dev")
    clean = run_with_edit(loaded, inputs).numpy()
    S = np.array([3, 7, 11])
    clamped = run_with_edit(loaded, inputs, "hidden", LAST, Edit.clamp(S, [1.5, -2.0, 0.25])).numpy()
    np.testing.assert_allclose(clamped[:, S], np.tile([1.5, -2.0, 0.25], (len(clamped), 1)), atol=1e-6)
    np.testing.assert_array_equal(np.delete(clamped, S, axis=1), np.delete(clean, S, axis=1))
    delta = np.random.default_rng(0).normal(size=(inputs.n_words, len(S))).astype(np.float32)
    moved = run_with_edit(loaded, inputs, "hidden", LAST, Edit.translate(S, delta)).numpy()
    np.testing.assert_allclose(moved[:, S], clean[:, S] + delta, atol=1e-5)
    # only edited words change; the read-only ones keep their clean state at the last layer
    edited = np.arange(inputs.n_words) % 2 == 0
    part = ctx.inputs("dev", edited=edited)
    half = run_with_edit(loaded, part, "hidden", LAST, Edit.zero(S)).numpy()
    np.testing.assert_array_equal(half[~edited], clean[~edited])
    assert np.all(half[edited][:, S] == 0)


def test_mean_ablating_the_whole_last_layer_makes_the_head_constant(setup):
    loaded, _, examples, _, ctx = setup
    head = final_head(ctx)
    inputs = ctx.inputs("test")
    y = examples.y["test"]
    clean = run_with_edit(loaded, inputs)
    majority = np.bincount(y).max() / len(y)
    assert np.mean(head.predict(clean) == y) > majority + 0.2
    means = run_with_edit(loaded, ctx.inputs("train")).numpy().mean(axis=0)
    ablated = run_with_edit(loaded, inputs, "hidden", LAST, Edit.ablate(np.arange(len(means)), means))
    predicted = head.predict(ablated)
    assert len(set(predicted.tolist())) == 1
    assert np.mean(predicted == y) <= majority
    assert final_head(ctx) is head  # cached by content


# --- batched sweeps --------------------------------------------------------------------------------

@pytest.mark.parametrize("site,layer", [("hidden", 0), ("hidden", 1), ("mlp", 2), ("hidden", LAST)])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_replicated_sweep_equals_one_neuron_at_a_time(setup, site, layer, batch_size):
    loaded, _, examples, _, ctx = setup
    head = final_head(ctx)
    rows = np.arange(0, len(examples.y["train"]), 3)
    inputs = ctx.inputs("train", rows, batch_size=batch_size)
    gold = examples.y["train"][rows]
    neurons = np.array([0, 5, 9, 17, 30])
    values = np.random.default_rng(1).normal(size=len(neurons)).astype(np.float32)
    swept = ablation_sweep(loaded, inputs, site, layer, neurons, values, head, gold, block=2)
    loop = [mean_gold_log_prob(loaded, inputs, head, gold, site, layer, Edit.ablate([j], [v]))
            for j, v in zip(neurons, values)]
    np.testing.assert_allclose(swept, loop, rtol=1e-5, atol=1e-5)
    assert no_hooks(loaded)


def test_ig_completeness_gap_shrinks_with_steps(setup):
    """Σ_j A_j → F(x) − F(b): O(1/m²) for the midpoint rule, O(1/m) for the left rule. From the train
    mean the path stays near the data and converges fast; from 0 it crosses the post-LayerNorm
    residual stream's far region and needs hundreds of steps (why `mean` is the default baseline)."""
    loaded, _, examples, _, ctx = setup
    head = final_head(ctx)
    word = np.flatnonzero(examples.y["train"] == 2)[:1]  # a verb: one piece
    target = examples.y["train"][word]
    inputs = ctx.inputs("train", word, per_word=True, batch_size=1)
    assert len(inputs.batches[0].piece_rows) == 1
    train = ctx.inputs("train")

    def gaps(site, layer, baseline, rule, steps):
        out = [integrated_gradients(loaded, inputs, site, layer, head, target, baseline, path_points(m, rule))
               for m in steps]
        assert abs(out[0].f_input[0] - out[0].f_baseline[0]) > 1e-3
        return [float(r.completeness_gap[0]) for r in out]

    mean = site_states(loaded, train, "hidden", 1).mean(axis=0)
    midpoint = gaps("hidden", 1, mean, "midpoint", (2, 8, 32))
    assert midpoint[0] > 10 * midpoint[1] > 100 * midpoint[2] and midpoint[2] < 1e-4  # ~16x per 4x steps
    left = gaps("hidden", 1, mean, "left", (2, 8, 32))
    assert left[0] > 2 * left[1] > 4 * left[2]
    # the random model's FFN barely moves its output (F(x) − F(b) ~ 1e-3 here), but completeness holds
    mean = site_states(loaded, train, "mlp", 2).mean(axis=0)
    assert np.all(np.diff(gaps("mlp", 2, mean, "left", (2, 8, 32))) < 0)
    zero = gaps("hidden", 1, np.zeros(loaded.width("hidden")), "midpoint", (8, 512))
    assert zero[1] < zero[0] / 100


def test_ig_at_the_last_layer_matches_the_closed_form(setup):
    """At hidden L, F is the head itself: autograd IG over a word's pieces must equal ig_probe's closed
    form on the pooled state (mean pooling), in the head's z-space, which gives the same A_j."""
    loaded, _, examples, _, ctx = setup
    head = final_head(ctx)
    rows = np.arange(0, len(examples.y["train"]), 3)
    inputs = ctx.inputs("train", rows, per_word=True, batch_size=3)
    assert any(len(b.piece_rows) > b.n_rows for b in inputs.batches)  # some word has several pieces
    targets = examples.y["train"][rows]
    baseline = run_with_edit(loaded, ctx.inputs("train")).numpy().mean(axis=0)
    alphas = path_points(5, "midpoint")
    result = integrated_gradients(loaded, inputs, "hidden", LAST, head, targets, baseline, alphas)
    pooled = run_with_edit(loaded, inputs).numpy()
    z = (pooled - head.mean) / head.scale
    expected = closed_form_ig(head.probe, z, targets, (baseline - head.mean) / head.scale, alphas)
    np.testing.assert_allclose(result.attributions, expected, atol=2e-5)
    np.testing.assert_allclose(result.f_input, np.exp(head.gold_log_prob(torch.as_tensor(pooled), targets).numpy()),
                               atol=1e-5)


# --- the methods ------------------------------------------------------------------------------------

METHODS = [AblateSingle(n_words=40, block=16), AblateSingle(n_words=30, value="zero"),
           IGHead(n_words=30, steps=4), IGHead(n_words=20, steps=3, baseline="zero", rule="left")]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: f"{type(m).__name__}")
@pytest.mark.parametrize("form", ["multi", "concept"])
@pytest.mark.parametrize("site,layer", [("hidden", 1), ("mlp", 2)])
def test_method_contract(setup, method, form, site, layer):
    loaded, task, examples, concept, _ = setup
    ex = examples if form == "multi" else concept
    ctx = model_context(task, ex, loaded, pooling="last", site=site, layer=layer)
    X = site_states(loaded, ctx.inputs("train"), site, layer)
    X[:, 4] = 1.0  # a dead neuron goes last
    y = ex.y["train"]
    before = checksum(X, y)
    first = method.rank(X, y, rng=np.random.default_rng(3), model=ctx)
    assert checksum(X, y) == before
    assert first.dtype == np.int64 and np.array_equal(np.sort(first), np.arange(X.shape[1]))
    assert first[-1] == 4
    assert np.array_equal(first, method.rank(X, y, rng=np.random.default_rng(3), model=ctx))
    assert no_hooks(loaded)


def test_method_input_errors(setup):
    loaded, task, examples, _, ctx = setup
    X = site_states(loaded, ctx.inputs("train"), "hidden", 1)
    y = examples.y["train"]
    method = AblateSingle(n_words=5)
    with pytest.raises(NeuronbenchError, match="needs \\['model'\\]"):
        method.rank(X, y)
    with pytest.raises(NeuronbenchError, match="names no cell"):
        method.rank(X, y, model=ctx)
    with pytest.raises(NeuronbenchError, match="rows"):
        method.rank(X[:-1], y[:-1], model=ctx.at("hidden", 1))
    with pytest.raises(NeuronbenchError, match="neurons"):
        method.rank(X[:, :10], y, model=ctx.at("hidden", 1))
    with pytest.raises(NeuronbenchError, match="value"):
        AblateSingle(value="median").rank(X, y, model=ctx.at("hidden", 1))
    with pytest.raises(NeuronbenchError, match="baseline"):
        IGHead(baseline="blur").rank(X, y, model=ctx.at("hidden", 1))


def test_planted_head_neuron_ranks_first_at_the_last_layer(setup):
    """A hand-made head that reads only final neuron 7: at hidden L only neuron 7 can matter."""
    loaded, task, examples, _, _ = setup
    width = loaded.width("hidden")
    W = np.zeros((3, width), dtype=np.float32)
    W[:, 7] = [2.0, -1.0, 0.5]
    head = FinalHead(probe=LogisticProbe(W=W, b=np.zeros(3, np.float32), n_classes=3),
                     mean=np.zeros(width, np.float32), scale=np.ones(width, np.float32), C=1.0, dev_accuracy=0.0)
    ctx = model_context(task, examples, loaded, pooling="mean", site="hidden", layer=LAST)
    ctx = dataclasses.replace(ctx, head=head)
    X = site_states(loaded, ctx.inputs("train"), "hidden", LAST)
    y = examples.y["train"]
    for method in (AblateSingle(n_words=50), IGHead(n_words=50, steps=4)):
        ranking = method.rank(X, y, rng=np.random.default_rng(0), model=ctx)
        assert ranking[0] == 7
    # every other neuron has exactly no effect on this head
    inputs = ctx.inputs("train", np.arange(20), batch_size=1)
    effect = ablation_sweep(loaded, inputs, "hidden", LAST, np.arange(width), X.mean(axis=0), head, y[:20])
    clean = mean_gold_log_prob(loaded, inputs, head, y[:20])
    assert np.count_nonzero(np.abs(clean - effect) > 1e-6) == 1


# --- decoders: the hidden-site table (final norm at L) and in-hook replication under causal masks ---

DECODERS = {
    "gpt2": {"model_type": "gpt2", "vocab_size": 30522, "n_embd": 32, "n_layer": 2, "n_head": 2,
             "n_positions": 32, "bos_token_id": None, "eos_token_id": None},
    "llama": {"model_type": "llama", "vocab_size": 30522, "hidden_size": 32, "intermediate_size": 48,
              "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
              "max_position_embeddings": 32, "bos_token_id": None, "eos_token_id": None},
}


@pytest.mark.parametrize("arch", sorted(DECODERS))
def test_decoder_sites_and_sweep(setup, arch):
    _, task, examples, _, _ = setup
    loaded = load_model(f"tiny_{arch}", {**TINY, "config": DECODERS[arch], "decoder": True})
    ctx = model_context(task, examples, loaded, pooling="last")
    inputs = ctx.inputs("dev", batch_size=4)
    batch = inputs.batches[0]
    with torch.inference_mode():
        out = loaded.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           output_hidden_states=True, use_cache=False)
    for layer, states in enumerate(out.hidden_states):  # hidden_states[L] is after the final norm
        expected = (batch.pool @ states.reshape(-1, states.shape[-1])).numpy()
        np.testing.assert_allclose(site_states(loaded, inputs, "hidden", layer)[batch.words], expected, atol=1e-6)
    head = final_head(ctx)
    gold = examples.y["dev"]
    neurons, values = np.array([0, 3, 8]), np.array([0.5, -1.0, 2.0], dtype=np.float32)
    for site, layer in [("hidden", 0), ("hidden", LAST), ("mlp", 1)]:
        loop = [mean_gold_log_prob(loaded, inputs, head, gold, site, layer, Edit.ablate([j], [v]))
                for j, v in zip(neurons, values)]
        for batch_size in (1, 4):
            swept = ablation_sweep(loaded, ctx.inputs("dev", batch_size=batch_size), site, layer, neurons,
                                   values, head, gold, block=2)
            np.testing.assert_allclose(swept, loop, rtol=1e-5, atol=1e-5)


# --- a sequence-first model: XLNet's blocks pass (T, B, D) --------------------------------------------

def test_sequence_first_xlnet_edits_exactly_the_edited_pieces(setup):
    """Mean-ablating every mlp neuron of the edited words writes the means at exactly their pieces of
    the (T, B, D) input of `ff.layer_2` (read by a plain hook) and leaves all else clean; hidden
    states are transformers' own; the in-hook replicated sweep equals the loop; hooks go on error."""
    _, task, examples, _, _ = setup
    loaded = load_model("tiny_xlnet", XLNET)
    ctx = model_context(task, examples, loaded, pooling="mean")
    edited = np.arange(len(ctx.words["dev"])) % 2 == 0
    inputs = ctx.inputs("dev", edited=edited, batch_size=4)
    batch = inputs.batches[0]
    assert batch.n_rows == 4 and len(batch.piece_rows) > batch.n_rows  # several rows; a word of several pieces
    with torch.inference_mode():
        out = loaded.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           output_hidden_states=True)
    for layer, states in enumerate(out.hidden_states):
        expected = (batch.pool @ states.reshape(-1, states.shape[-1])).numpy()
        np.testing.assert_allclose(site_states(loaded, inputs, "hidden", layer)[batch.words], expected, atol=1e-6)
    means = site_states(loaded, ctx.inputs("train"), "mlp", 1).mean(axis=0)
    seen = []
    handle = loaded.model.layer[0].ff.layer_2.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    try:
        clean = run_with_edit(loaded, inputs)
        ablated = run_with_edit(loaded, inputs, "mlp", 1, Edit.ablate(np.arange(len(means)), means))
    finally:
        handle.remove()
    assert not torch.equal(clean, ablated)
    rows, cols = batch.piece_rows, batch.piece_cols
    before, after = seen[0].transpose(0, 1), seen[len(inputs.batches)].transpose(0, 1)  # batch 0, (B, T, D)
    np.testing.assert_allclose(after[rows, cols].numpy(), np.tile(means, (len(rows), 1)), atol=1e-6)
    untouched = torch.ones(after.shape[:2], dtype=torch.bool)
    untouched[rows, cols] = False
    assert torch.equal(after[untouched], before[untouched])
    head = final_head(ctx)
    gold = examples.y["dev"]
    neurons, values = np.array([0, 3, 8]), np.array([0.5, -1.0, 2.0], dtype=np.float32)
    for site, layer in [("hidden", 0), ("mlp", 1)]:
        loop = [mean_gold_log_prob(loaded, inputs, head, gold, site, layer, Edit.ablate([j], [v]))
                for j, v in zip(neurons, values)]
        for batch_size in (1, 4):
            swept = ablation_sweep(loaded, ctx.inputs("dev", edited=edited, batch_size=batch_size), site, layer,
                                   neurons, values, head, gold, block=2)
            np.testing.assert_allclose(swept, loop, rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="boom"):
        with edit_hook(loaded, "mlp", 1, ([0], [1]), lambda v: v):
            raise RuntimeError("boom")
    assert no_hooks(loaded)


# --- the LM head and the token after a word ------------------------------------------------------------

def test_next_token_ids_and_sentence_ends():
    """Two padded rows; the word read at the last real token of a row has no next token (-1)."""
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    pool = torch.zeros((4, 8))
    for word, column in enumerate([1, 2, 4, 7]):  # (row 0, col 1), (0, 2), (1, 0), (1, 3)
        pool[word, column] = 1.0
    empty = torch.zeros(0, dtype=torch.long)
    batch = WordBatch(input_ids=ids, attention_mask=mask, words=np.array([3, 0, 2, 1]), piece_rows=empty,
                      piece_cols=empty, piece_word=empty, pool=pool)
    inputs = ModelInputs(batches=[batch], n_words=4, pooling="last", per_word=False)
    assert next_token_ids(inputs).tolist() == [-1, -1, 9, 7]


def test_tied_lm_head_table(setup):
    loaded = setup[0]
    assert tied_lm_head(loaded)[0] is None and "encoder" in tied_lm_head(loaded)[1]
    tied = load_model("tiny_gpt2", {**TINY, "config": DECODERS["gpt2"], "decoder": True})
    weight, _ = tied_lm_head(tied)
    assert weight is tied.model.get_input_embeddings().weight  # GPT-2 ties by default
    untied = load_model("tiny_llama", {**TINY, "config": DECODERS["llama"], "decoder": True})
    assert tied_lm_head(untied) == (None, "the output embedding is not tied to the input one, and AutoModel "
                                          "does not load lm_head")
