"""The public Python API (neuronbench/): the arrays, rankings and scores a notebook gets are the runner's, and bad
input is one NeuronbenchError naming what is wrong."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

import neuronbench as nb
from bench.errors import NeuronbenchError
from bench.run import job_folder, ranking_file, run_job
from leaderboard.submission import compose_config

PLANTED = ["task.loader.n_neurons=64"]  # planted_single at 64 neurons: probes fit in a fraction of a second
TINY = ["task.loader.n_sentences=600", "task.n_min=30"]


@pytest.fixture(scope="module")
def planted():
    return nb.load("planted_single", "planted", PLANTED).activations(0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """templated_number on the 32-wide random BERT, extracted into a fresh cache (seconds)."""
    cache = tmp_path_factory.mktemp("cache")
    return nb.load("templated_number", "tiny_random", [*TINY, f"cache_dir={cache}"])


def test_planted_cell_has_the_tasks_arrays(planted):
    assert planted.name == "planted_single/planted/hidden/L0"
    assert {split: x.shape for split, x in planted.X.items()} == {"train": (2000, 64), "dev": (500, 64),
                                                                   "test": (500, 64)}
    assert planted.label_names == ("class0", "class1", "class2", "class3", "class4")
    assert all(len(planted.y[s]) == len(planted.X[s]) for s in planted.X)


def test_rank_and_score_are_the_runners(planted, tmp_path):
    """A job's saved ranking and records equal what the API returns for the same cell, value for value."""
    overrides = ["task=planted_single", "model=planted", *PLANTED, "scorers=[probe_acc,planted]", "ks=[1,5]"]
    folder = run_job(compose_config([*overrides, "method=probeless", f"results_dir={tmp_path}"]), "probeless")
    assert folder == job_folder(tmp_path, "planted_single", None, "planted", "probeless", 0)
    ranking = nb.rank("probeless", planted)
    np.testing.assert_array_equal(ranking, np.load(ranking_file(folder, "hidden", 0)))
    truth = sorted(n for group in planted.source.truth for n in group)
    assert sorted(ranking[:5].tolist()) == truth  # the five planted neurons first

    scores = nb.score(ranking, planted, scorers=["probe_acc", "planted"], ks=[1, 5])
    records = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]
    assert {(r["metric"], r["k"]): r["value"] for r in records} == {
        (row.metric, None if pd.isna(row.k) else int(row.k)): row.value for row in scores.itertuples()}


def test_a_ks_list_without_d_is_scored_with_d(planted):
    """probe_auc is the area up to the all-neuron probe at k = D, whether or not the caller lists D."""
    short = nb.score(nb.rank("probeless", planted), planted, scorers=["probe_acc"], ks=[1, 5])
    full = nb.score(nb.rank("probeless", planted), planted, scorers=["probe_acc"], ks=[1, 5, 64])
    assert short["k"].dropna().tolist() == [1, 5, 64]
    assert short.equals(full)
    with pytest.raises(NeuronbenchError, match=r"ks=\[1, 100\]: k=100 is above the 64 neurons of "
                                               r"planted_single/planted/hidden/L0"):
        nb.score(nb.rank("probeless", planted), planted, scorers=["probe_acc"], ks=[1, 100])


def test_the_configs_ks_lose_their_ks_above_d_as_in_a_job():
    acts = nb.load("planted_single", "planted", [*PLANTED, "ks=null"]).activations(0)  # the reference grid, to 500
    scores = nb.score(nb.rank("probeless", acts), acts, scorers=["probe_acc"])
    assert scores["k"].dropna().tolist() == [1, 2, 3, 5, 10, 20, 30, 50, 64]


def test_a_neuron_set_is_scored_at_its_size(planted):
    truth = [n for group in planted.source.truth for n in sorted(group)]
    as_set = nb.score(truth, planted, scorers=["probe_acc", "ablation"])
    assert set(as_set["k"]) == {5}
    assert sorted(as_set["metric"]) == ["ablate_drop_random", "ablate_drop_top", "ablate_keep_random",
                                        "ablate_keep_top", "probe_acc"]
    ranked = nb.score(nb.rank("probeless", planted), planted, scorers=["probe_acc"], ks=[5])
    at_five = ranked[(ranked["metric"] == "probe_acc") & (ranked["k"] == 5)]["value"].item()
    assert as_set[as_set["metric"] == "probe_acc"]["value"].item() == at_five  # the same five neurons


def test_method_parameters_and_own_methods(planted):
    from methods.probeless import Probeless

    np.testing.assert_array_equal(nb.rank(Probeless(), planted), nb.rank("probeless", planted))
    raw = nb.rank("probeless", planted, normalize="raw")
    assert sorted(raw.tolist()) == list(range(64))


def test_real_cell_and_free_sentences(tiny):
    acts = tiny.activations(1)
    assert acts.X["train"].shape[1] == 32 and acts.label_names == ("Plur", "Sing")
    sentence = 7
    corpus = acts.sentence_activations("test", [sentence])[0]
    words = tiny.task.sentences["test"][sentence]
    free = acts.text_activations([" ".join(words)])[0]
    assert corpus.shape == free.shape == (len(words), 32)
    np.testing.assert_allclose(free, corpus, atol=2e-3)  # float16 cache; batches shaped differently
    rows = np.flatnonzero(acts.refs["test"][:, 0] == sentence)  # the examples of that sentence read the same rows
    np.testing.assert_array_equal(acts.X["test"][rows], corpus[acts.refs["test"][rows, 1]])


ERRORS = [
    (lambda p, t: nb.load("templated_numbr", "minilm_l6"),
     "task 'templated_numbr': no conf/task/templated_numbr.yaml; valid: conllu, deprel"),
    (lambda p, t: nb.load("templated_number", "minilm_l7"), "model 'minilm_l7': no conf/model/minilm_l7.yaml"),
    (lambda p, t: t.activations(3), "layer 3: model 'tiny_random' has layers 0..2 at site 'hidden'"),
    (lambda p, t: t.activations(0, "mlp"), "layer 0: model 'tiny_random' has layers 1..2 at site 'mlp'"),
    (lambda p, t: t.activations(1, "attn"), "unknown site 'attn'; valid sites: hidden, mlp"),
    (lambda p, t: nb.load("planted_single", "planted", PLANTED).activations(1),
     "planted_single/planted: no layer 1 at site 'hidden'; this task has hidden layer 0"),
    (lambda p, t: nb.rank("probeles", p), "methods: unknown 'probeles'; valid: "),
    (lambda p, t: nb.rank("lca", p, l3=1.0), "method 'lca' has no parameter 'l3'; its parameters: l1, l2"),
    (lambda p, t: nb.rank("ablate_single", p), "AblateSingle runs the model; planted_single/planted/hidden/L0 is "
                                               "planted and has none"),
    (lambda p, t: nb.rank("probeless", p.X["train"]), "rank: expected the Activations of a cell"),
    (lambda p, t: nb.score(np.zeros((2, 3), dtype=int), p), r"score: expected a 1-D list of neuron indices, got "
                                                            r"shape (2, 3)"),
    (lambda p, t: nb.score([3, 3], p), "score: a neuron appears twice"),
    (lambda p, t: nb.score([64], p), "score: neuron 64 is outside the layer's 64 neurons (0..63)"),
    (lambda p, t: nb.score([0.5], p), "score: neuron indices must be integers, got dtype float64"),
    (lambda p, t: nb.score([1, 2], p, ks=[1]), "score: a set of 2 neurons is scored at k = 2 only"),
    (lambda p, t: nb.score([1, 2], p, scorers=["probe_accc"]), "unknown scorer 'probe_accc'; valid: probe_acc"),
    (lambda p, t: p.sentence_activations("test", [0]), "planted_single/planted/hidden/L0: a planted task has no "
                                                       "sentences"),
    (lambda p, t: t.activations(1).sentence_activations("val", [0]), "split 'val': expected one of train, dev"),
    (lambda p, t: t.activations(1).sentence_activations("test", [10**6]), "sentence ids 1000000..1000000 outside"),
]


@pytest.mark.parametrize("call, message", ERRORS, ids=[message.split(":")[0][:40] for _, message in ERRORS])
def test_bad_input_is_one_clear_error(planted, tiny, call, message):
    with pytest.raises(NeuronbenchError, match=re.escape(message)):
        call(planted, tiny)
