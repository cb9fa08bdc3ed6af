"""Minimal pairs and the behavioural readout (reference addendum A): the templated pairs, the logit difference
against a causal LM's own logits, the filter, the beh scorer's known answers, and the bad-input errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bench.causal_scores import beh, check_beh
from bench.core.pairs import MinimalPairs, Pair
from bench.core.types import SPLITS
from bench.errors import NeuronbenchError
from bench.examples import select_examples
from bench.intervene import model_context, site_states
from bench.layer import LayerData
from bench.models import load_model
from bench.pair_readout import answer_ids, clean_logit_diffs, declared_pairs, pair_readout
from bench.run import run_job
from conftest import CONF
from tasks.templated import ANIMATE_NOUNS, INANIMATE_NOUNS, INTRANSITIVE_VERBS, minimal_pairs, templated_task
from test_causal_scores import LM_ARCHS, causal_lm
from test_end_to_end import config
from test_extract import TINY
from test_intervene import DECODERS


def tiny_lm(arch: str = "llama"):
    return load_model(f"tiny_{arch}_lm", {**TINY, "config": LM_ARCHS[arch][0], "decoder": True})


def hand_pairs(answers=("is", "are")) -> MinimalPairs:
    pairs = (Pair(("the", "dog", "near", "the", "boxes"), ("the", "dogs", "near", "the", "boxes"), (1, 1), answers),
             Pair(("my", "cats", "on", "a", "hill"), ("my", "cat", "on", "a", "hill"), (1, 1), answers[::-1]))
    return MinimalPairs("hand_pairs", "number", {"train": pairs, "test": pairs})


@pytest.mark.parametrize("attribute", ["number", "tense"])
def test_templated_pairs_differ_in_the_attribute_word_only(attribute):
    pairs = minimal_pairs(attribute, n_pairs=50)
    assert {split: len(p) for split, p in pairs.pairs.items()} == {"train": 50, "test": 50}
    bases = [p.base for split in pairs.pairs.values() for p in split]
    assert len(set(bases)) == 100  # no prompt twice, none shared by train and test
    number = {noun.singular: "Sing" for noun in ANIMATE_NOUNS + INANIMATE_NOUNS}
    number.update({noun.plural: "Plur" for noun in ANIMATE_NOUNS + INANIMATE_NOUNS})
    for pair in pairs.pairs["test"]:
        differ = [i for i, (b, c) in enumerate(zip(pair.base, pair.counter)) if b != c]
        assert len(pair.base) == len(pair.counter) and differ == [pair.where[0]] == [pair.where[1]]
        word = pair.base[pair.where[0]]
        if attribute == "number":  # the copula agrees with the subject noun, not with the attractor
            assert (pair.answers[0] in ("is", "was")) == (number[word] == "Sing"), pair
        else:  # a past first verb calls for a past copula
            assert (pair.answers[0] in ("was", "were")) == (word in {verb.past for verb in INTRANSITIVE_VERBS}), pair
    meta = templated_task(attribute, "t", "1", n_sentences=20).meta["minimal_pairs"]
    assert meta["concept"]["attribute"] == attribute and meta["off_target"]["attribute"] != attribute
    assert "minimal_pairs" not in templated_task("word_class", "t", "1", n_sentences=20).meta


@pytest.mark.parametrize("arch", sorted(LM_ARCHS))
def test_logit_difference_is_the_causal_lms_own(arch):
    """LD of every member = logit(own answer) − logit(other answer) of transformers' causal LM at the last
    prompt token, computed here from its forward."""
    loaded, pairs = tiny_lm(arch), hand_pairs()
    ld = clean_logit_diffs(loaded, pairs)
    full = causal_lm(loaded, arch)
    vocab = loaded.tokenizer.convert_tokens_to_ids
    for i, pair in enumerate(pairs.pairs["test"]):
        for m in range(2):
            encoded = loaded.tokenizer(" ".join(pair[m]), add_special_tokens=True)["input_ids"]
            prompt = encoded[:-1] if encoded[-1] == loaded.tokenizer.sep_token_id else encoded
            with torch.inference_mode():
                logits = full(input_ids=torch.tensor([prompt])).logits[0, -1]
            own, other = vocab(pair.answers[m]), vocab(pair.answers[1 - m])
            assert ld[i, m] == pytest.approx(float(logits[own] - logits[other]), abs=1e-4)


def test_bad_input_fails_before_any_forward_pass(tmp_path):
    encoder = load_model("tiny", TINY)
    with pytest.raises(NeuronbenchError, match=r"readout lm_logit_diff of hand_pairs: model 'tiny' has no output head"):
        answer_ids(encoder, hand_pairs())
    with pytest.raises(NeuronbenchError, match=r"model 'tiny_llama_lm': answer 'blorfingles' of train pair 0 of "
                                               r"hand_pairs \('the dog near the boxes' -> 'blorfingles'\) is not one token"):
        answer_ids(tiny_lm(), hand_pairs(("blorfingles", "are")))
    untied = load_model("tiny_llama_untied", {**TINY, "config": DECODERS["llama"], "decoder": True})
    with pytest.raises(NeuronbenchError, match="model 'tiny_llama_untied' has no output head .*not tied"):
        answer_ids(untied, hand_pairs())
    word_class = templated_task("word_class", "templated_word_class", "1", n_sentences=20)
    with pytest.raises(NeuronbenchError, match="task 'templated_word_class': .* declares no 'concept' pairs"):
        check_beh(tiny_lm(), word_class)
    # through the runner: tiny_random is an encoder, and the job stops before extraction writes anything
    with pytest.raises(NeuronbenchError, match="model 'tiny_random' has no output head"):
        run_job(config(tmp_path, "method=random", "scorers=[beh]"), "random")
    assert not list((tmp_path / "cache").rglob("*.npy"))


_SMOLLM2 = []


def smollm2():
    """SmolLM2, loaded once per process."""
    if not _SMOLLM2:
        spec = OmegaConf.to_container(OmegaConf.load(CONF / "model" / "smollm2_135m.yaml"), resolve=True)
        _SMOLLM2.append(load_model("smollm2_135m", spec))
    return _SMOLLM2[0]


def smollm2_layer(site: str, layer: int, pairs: dict):
    """SmolLM2 and the LayerData of a 40-sentence templated_number cell whose context reads the minimal-pair
    declaration `pairs`."""
    loaded = smollm2()
    task = templated_task("number", "templated_number", "1", n_sentences=40)
    valid = {s: np.ones(sum(map(len, task.sentences[s])), dtype=bool) for s in SPLITS}
    examples = select_examples(task, valid, seed=0, n_min=1)
    ctx = dataclasses.replace(model_context(task, examples, loaded, pooling="last", site=site, layer=layer),
                              pairs=pairs)
    X = {s: site_states(loaded, ctx.inputs(s), site, layer) for s in SPLITS}
    return loaded, LayerData(X, examples, context=ctx)


def test_beh_on_smollm2_known_answers():
    """On SmolLM2 (the offline decoder): the filter keeps exactly the pairs with both members right, ablating
    nothing drops nothing, and every row is there with its readout's meaning."""
    small = {role: {"_target_": "tasks.templated.minimal_pairs", "attribute": attribute, "n_pairs": 24, "seed": 0}
             for role, attribute in (("concept", "number"), ("off_target", "tense"))}
    loaded, data = smollm2_layer("mlp", 29, small)
    pairs = declared_pairs(small, "concept", "test")
    ld = clean_logit_diffs(loaded, pairs)
    readout = pair_readout(loaded, pairs, "last")
    assert np.array_equal(readout.kept, np.flatnonzero((ld > 0).all(axis=1))) and 0 < len(readout.kept) < 24
    assert np.allclose(readout.clean_ld, ld[readout.kept].reshape(-1))
    n = loaded.width("mlp")
    scores = {(s.metric, s.k): s for s in beh(np.arange(n), data, [0, 5], np.random.default_rng(0))}
    for metric in ("beh_drop", "beh_drop_top", "beh_drop_random", "beh_frac", "beh_off", "beh_sel"):
        assert scores[metric, 0].value == 0.0
    assert scores["beh_pairs", None].value == len(readout.kept)
    assert scores["beh_kept", None].value == len(readout.kept) / 24
    top, random = scores["beh_drop_top", 5].value, scores["beh_drop_random", 5].value
    assert scores["beh_drop", 5].value == pytest.approx(top - random)
    assert scores["beh_frac", 5].value == pytest.approx(top / (2 * readout.clean_ld.mean()))
    low, high = scores["beh_drop", 5].interval
    assert low <= scores["beh_drop", 5].value <= high
