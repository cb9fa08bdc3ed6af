"""nb.manipulate and `neuronbench manipulate`: the output before and after an edit of neurons, on a tiny random GPT-2
(tied output embedding) and templated_number on the tiny random BERT; known answers where they are cheap, and one
clear error per bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import neuronbench as nb
from bench.errors import NeuronbenchError
from bench.extract import tokenize_words
from bench.intervene import final_head
from bench.models import load_model
from neuronbench.cli import manipulate_main
from test_extract import TINY
from test_intervene import DECODERS

SMALL = ["task.loader.n_sentences=600", "task.n_min=30"]  # templated_number on tiny_random: seconds
WORDS = ["the", "dogs", "near", "the", "house"]


@pytest.fixture(scope="module")
def decoder():
    return load_model("tiny_gpt2_manipulate", {**TINY, "config": DECODERS["gpt2"], "decoder": True})


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def encoder(cache):
    return nb.load("templated_number", "tiny_random", [*SMALL, f"cache_dir={cache}"])


def test_empty_set_and_scale_one_leave_the_output_bit_identical(decoder, encoder):
    for source, cell in ((decoder, {"layer": 1, "site": "mlp"}), (encoder, {"layer": 1, "site": "hidden"})):
        for neurons, edit in (([], "zero"), ([0, 3, 7], ("scale", 1.0))):
            result = nb.manipulate(source, WORDS, neurons, edit=edit, **cell)
            assert result.after == result.before, (source, neurons, edit)


def test_the_next_tokens_and_continuation_are_the_models_own(decoder):
    """Known answer: a plain forward pass (no hook) through the tied output embedding, and greedy decoding by hand."""
    result = nb.manipulate(decoder, WORDS, [5], layer=2, site="hidden", top=3, tokens=3)
    ids, word_of = (x[0] for x in tokenize_words(decoder, [WORDS]))
    ids = list(ids[:int(np.flatnonzero(word_of >= 0).max()) + 1])  # up to the last word ([SEP] left out)
    wte = decoder.model.get_input_embeddings().weight
    generated = []
    with torch.inference_mode():
        for step in range(4):
            logits = decoder.model(input_ids=torch.tensor([ids]), use_cache=False).last_hidden_state[0, -1] @ wte.T
            if step == 0:
                probs = torch.softmax(logits.double(), dim=0)
                best = torch.topk(probs, 3)
            ids.append(int(logits.argmax()))
            generated.append(ids[-1])
    assert [token for token, _ in result.before.top] == [decoder.tokenizer.decode([int(i)]) for i in best.indices]
    np.testing.assert_allclose([p for _, p in result.before.top], best.values.numpy(), rtol=1e-5)
    assert result.before.continuation == decoder.tokenizer.decode(generated[:3])


def test_a_decoder_edit_changes_the_next_token_distribution(decoder):
    everything = list(range(decoder.width("mlp")))
    zeroed = nb.manipulate(decoder, WORDS, everything, layer=1, site="mlp", edit="zero", compare=("is", "are"))
    assert zeroed.after.top != zeroed.before.top
    assert zeroed.after.compared != zeroed.before.compared and zeroed.compared == ("is", "are")
    assert abs(zeroed.after.compared[2] - zeroed.before.compared[2]) > 1e-3
    p_is, p_are, logit_diff = zeroed.before.compared
    assert np.isclose(np.log(p_is / p_are), logit_diff)  # the logit difference is the log odds of the two
    scaled = nb.manipulate(decoder, WORDS, everything, layer=1, site="mlp", edit=("scale", 0.0), compare=("is", "are"))
    assert scaled.after == zeroed.after  # scale by 0 is zeroing
    text = str(zeroed)
    assert "tiny_gpt2_manipulate mlp L1: 128 neurons" in text and "p('is')" in text and "continuation after" in text


def test_clamp_sets_the_hooked_activation_at_the_chosen_words_only(decoder):
    """Read back what enters the FFN output projection (the mlp site): the clamped neurons hold the values at every
    piece of word 1 ("dogs"), and everything else is the clean pass's."""
    seen = []
    handle = decoder.ffn_module(1).register_forward_hook(lambda _m, args, _out: seen.append(args[0][0].clone()))
    try:
        nb.manipulate(decoder, WORDS, [3, 40], layer=1, site="mlp", edit=("clamp", [2.5, -1.0]), at=[1], tokens=0)
    finally:
        handle.remove()
    clean, edited = seen
    word_of = tokenize_words(decoder, [WORDS])[1][0][:len(clean)]
    pieces = np.flatnonzero(word_of == 1)
    assert len(pieces) and np.all(edited[pieces][:, [3, 40]].numpy() == [2.5, -1.0])
    other = np.ones(clean.shape, dtype=bool)
    other[np.ix_(pieces, [3, 40])] = False
    assert torch.equal(edited[other], clean[other])


def test_encoder_reads_the_frozen_head_at_every_word(encoder):
    acts = encoder.activations(2, "hidden")  # the final layer: zeroing all of it leaves the head a zero vector
    result = nb.manipulate(acts, WORDS, list(range(acts.n_neurons)), edit="zero")
    assert [p.word for p in result.before] == WORDS and result.labels == acts.label_names
    assert all(np.isclose(sum(p.probabilities), 1) and p.label in acts.label_names for p in result.before)
    with torch.inference_mode():
        at_zero = final_head(acts.model_context).log_prob(torch.zeros(acts.n_neurons)).exp().double().numpy()
    for prediction in result.after:
        np.testing.assert_allclose(prediction.probabilities, at_zero, rtol=1e-5)
    assert "frozen head over Plur, Sing" in str(result)


def test_mean_is_the_train_mean(encoder):
    acts = encoder.activations(1, "mlp")
    neurons = [2, 9, 30]
    mean = nb.manipulate(encoder, WORDS, neurons, layer=1, site="mlp", edit="mean")
    clamp = nb.manipulate(acts, WORDS, neurons, edit=("clamp", acts.X["train"][:, neurons].mean(axis=0)))
    assert mean.after == clamp.after and mean.edit == "mean"


@pytest.mark.parametrize("kwargs, message", [
    ({"edit": "ablate"}, r"edit 'ablate': expected 'zero', 'mean', \('clamp', value\) or \('scale', factor\)"),
    ({"edit": ("clamp",)}, r"edit \('clamp',\): expected 'zero'"),
    ({"edit": ("clamp", "high")}, r"the clamp value must be one finite number or one per neuron \(2\)"),
    ({"edit": ("scale", [1.0, 2.0, 3.0])}, r"the scale factor must be one finite number or one per neuron \(2\)"),
    ({"edit": "mean"}, r"edit 'mean' is each neuron's mean over a task's train words: pass nb.load\(task, model\)"),
    ({"neurons": [1, 128]}, r"manipulate tiny_gpt2_manipulate mlp L1: neuron 128 is outside the layer's 128 neurons"),
    ({"neurons": [4, 4]}, r"a neuron appears twice"),
    ({"layer": 3}, r"layer 3: model 'tiny_gpt2_manipulate' has layers 1..2 at site 'mlp'"),
    ({"site": "attn"}, r"unknown site 'attn'; valid sites: hidden, mlp"),
    ({"at": [5]}, r"at=\[5\]: expected word indices 0..4 of the sentence"),
    ({"compare": ("is", "unbelievability")},
     r"compare: 'unbelievability' is not one token after the sentence for model 'tiny_gpt2_manipulate' \(it reads "
     r"\['un', '##bel"),
    ({"compare": "is"}, r"compare='is': expected two words"),
    ({"tokens": 40}, r"more than the 32 of model 'tiny_gpt2_manipulate'; ask for fewer tokens"),
    ({"sentence": ""}, r"the sentence has no words"),
])
def test_bad_input_is_one_clear_error(decoder, kwargs, message):
    call = {"sentence": WORDS, "neurons": [1, 2], "layer": 1, "site": "mlp", **kwargs}
    with pytest.raises(NeuronbenchError, match=message):
        nb.manipulate(decoder, call.pop("sentence"), call.pop("neurons"), **call)


def test_an_encoder_has_no_next_token(encoder):
    acts = encoder.activations(1, "hidden")
    with pytest.raises(NeuronbenchError, match=r"model 'tiny_random' is an encoder: it predicts no next token, so "
                                               r"tokens cannot be shown"):
        nb.manipulate(acts, WORDS, [1], tokens=4)
    with pytest.raises(NeuronbenchError, match=r"so compare cannot be shown"):
        nb.manipulate(acts, WORDS, [1], compare=("is", "are"))
    with pytest.raises(NeuronbenchError, match=r"is an encoder, whose output here is a task's frozen head"):
        nb.manipulate(acts.source.model, WORDS, [1], layer=1)
    with pytest.raises(NeuronbenchError, match=r"L1 is one cell; layer=2 is not it"):
        nb.manipulate(acts, WORDS, [1], layer=2)
    with pytest.raises(NeuronbenchError, match=r"model 'nope': no conf/model/nope.yaml"):
        nb.manipulate("nope", WORDS, [1], layer=1)
    planted = nb.load("planted_single", "planted", ["task.loader.n_neurons=64"])
    with pytest.raises(NeuronbenchError, match=r"planted_single/planted is planted: it has no model to run"):
        nb.manipulate(planted, WORDS, [1], layer=0)


def test_the_command_prints_the_table_or_json(encoder, cache, capsys):
    base = ["task=templated_number", "model=tiny_random", *SMALL, f"cache_dir={cache}", "--layer", "1",
            "--sentence", " ".join(WORDS)]
    assert manipulate_main([*base, "--method", "probeless", "--count", "3", "--edit", "scale=0", "--at", "1"]) == 0
    out = capsys.readouterr().out
    ranked = nb.rank("probeless", encoder.activations(1, "hidden"))[:3]
    assert out.startswith(f"tiny_random hidden L1: 3 neurons [{', '.join(map(str, ranked))}], edit scale=0.0, at "
                          "words 'dogs' of 'the dogs near the house'")
    assert manipulate_main([*base, "--neuron", "4", "--edit", "clamp=2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["neurons"] == [4] and shown["edit"] == "clamp=2.0" and len(shown["after"]) == len(WORDS)
    assert manipulate_main([*base, "--neuron", "4", "--count", "3"]) == 2
    assert "error: --count goes with --method" in capsys.readouterr().err
    assert manipulate_main([*base, "--neuron", "4", "--compare", "is", "are"]) == 2
    assert "is an encoder: it predicts no next token, so compare cannot be shown" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        manipulate_main([*base, "--neuron", "4", "--edit", "clamp"])
    assert "'clamp': expected zero, mean, clamp=<value> or scale=<factor>" in capsys.readouterr().err
