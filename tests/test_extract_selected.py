"""Extract only what is read (issue 12 item 3): a cache entry stores the sentences a job's examples sit in,
at the cells it reads; growing it runs only what is missing and keeps every stored row as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import bench.extract
from bench.cache import LAYOUT, ActivationCache
from bench.core.types import SPLITS, Task
from bench.errors import NeuronbenchError
from bench.extract import _block, extract, word_validity
from bench.models import load_model
from bench.run import _load_task, run_job
from conftest import CONF
from test_extract import TINY, XLNET

# Six sentences per split; the zero-width space of sentence 2 has no subword, so it is never valid.
SENTENCES = [["The", "cats", "sat", "quietly", "."], ["Dogs", "bark"], ["Unbelievably", "so", "\u200b"],
             ["A", "bird", "sang", "at", "dawn"], ["Rain", "fell"], ["They", "left", "early", "today"]]
FIRST = np.cumsum([0] + [len(s) for s in SENTENCES])  # first word of each sentence
N_WORDS = int(FIRST[-1])


def _task(sentences=SENTENCES):
    return Task("t", "1", {s: sentences for s in SPLITS}, {s: [[None] * len(x) for x in sentences] for s in SPLITS})


def words_of(*sentences):
    return np.concatenate([np.arange(FIRST[s], FIRST[s + 1]) for s in sentences])


@pytest.fixture(scope="module")
def loaded():
    return load_model("tiny", TINY)


@contextmanager
def counted(loaded):
    """Sentences the model is run on, per forward pass: its distinct rows (a batch is filled up to its
    whole-split row count with copies of its first sentence; these sentences are all different)."""
    runs = []
    handle = loaded.model.register_forward_pre_hook(
        lambda _m, args, kwargs: runs.append(len({tuple(row) for row in kwargs["input_ids"].tolist()})),
        with_kwargs=True)
    try:
        yield runs
    finally:
        handle.remove()


def cell_rows(cache, entry, split, site, layer):
    return np.load(cache.layer_path(entry, split, site, layer))


def test_only_the_selected_sentences_at_the_requested_cells_are_stored(loaded, tmp_path):
    cache = ActivationCache(tmp_path)
    # One word of sentence 1 and one of sentence 4 in train, one of sentence 0 in dev, none in test
    selected = {"train": np.array([FIRST[1] + 1, FIRST[4]]), "dev": np.array([FIRST[0] + 2])}
    with counted(loaded) as runs:
        entry = extract(loaded, _task(), cache, cells=[("hidden", 1)], words=selected, quiet=True)
    assert entry.relative_to(tmp_path).parts[0] == LAYOUT  # a new layout: old whole-corpus entries are not read
    assert sum(runs) == 3  # sentences 1 and 4 of train, 0 of dev
    files = sorted(str(p.relative_to(entry)) for p in entry.rglob("*_L*.npy"))
    assert files == ["dev/hidden_L01.npy", "train/hidden_L01.npy"]
    # every word of those sentences (the context the model read), not only the selected ones
    assert cell_rows(cache, entry, "train", "hidden", 1)["word"].tolist() == words_of(1, 4).tolist()
    assert cell_rows(cache, entry, "dev", "hidden", 1)["word"].tolist() == words_of(0).tolist()
    assert cache.read_words(entry, "train", "hidden", 1, selected["train"]).shape == (2, 32)
    with pytest.raises(NeuronbenchError, match=r"train/hidden_L01\.npy holds no row for 1 of the 2 words read "
                                               r"\(words \[0\] of train\): the extraction before this read"):
        cache.read_words(entry, "train", "hidden", 1, [0, FIRST[1]])


def test_validity_needs_no_forward_pass_and_matches_the_tokens(loaded, tmp_path):
    task = _task([["word"] * 40, *SENTENCES])  # TINY reads 24 tokens at most: the first sentence is dropped
    with counted(loaded) as runs:
        valid = word_validity(loaded, task, ActivationCache(tmp_path), "last")
    assert not runs
    assert valid["dev"].tolist() == [False] * 40 + [True] * 9 + [False] + [True] * 11
    # cached: a second call reads valid.npy, and a damaged one is computed again
    path = ActivationCache(tmp_path).valid_path(ActivationCache(tmp_path).entry(
        loaded.name, loaded.revision, task.corpus_id, "last"), "dev")
    np.save(path, np.ones(3, bool))
    assert word_validity(loaded, task, ActivationCache(tmp_path), "last")["dev"].tolist() == valid["dev"].tolist()


def test_growing_runs_only_the_missing_sentence_cells_and_keeps_old_rows(loaded, tmp_path):
    cache, task = ActivationCache(tmp_path), _task()
    entry = extract(loaded, task, cache, cells=[("hidden", 1)], words={"train": words_of(1)}, quiet=True)
    before = cell_rows(cache, entry, "train", "hidden", 1)
    # sentence 1 lacks hidden 2 and mlp 1 only, sentence 3 lacks everything: each runs once, for all it lacks
    cells = [("hidden", 1), ("hidden", 2), ("mlp", 1)]
    with counted(loaded) as runs:
        extract(loaded, task, cache, cells=cells, words={"train": np.array([FIRST[1], FIRST[3] + 2])}, quiet=True)
    assert runs == [2]
    after = cell_rows(cache, entry, "train", "hidden", 1)
    assert after["word"].tolist() == words_of(1, 3).tolist()
    assert after[:len(before)].tobytes() == before.tobytes()  # the old rows, byte for byte
    for site, layer in cells[1:]:
        assert cell_rows(cache, entry, "train", site, layer)["word"].tolist() == words_of(1, 3).tolist()
    # another seed's selection in the stored sentences, or fewer cells: nothing to run
    with counted(loaded) as runs:
        extract(loaded, task, cache, cells=cells[:2], words={"train": np.array([FIRST[3], FIRST[1] + 1])},
                quiet=True)
    assert not runs
    # the sentences run to grow an entry give the rows a whole extraction of the corpus gives
    whole = ActivationCache(tmp_path / "whole")
    whole_entry = extract(loaded, task, whole, sites=["hidden", "mlp"], quiet=True)
    for site, layer in cells:
        np.testing.assert_array_equal(cache.read_words(entry, "train", site, layer, words_of(1, 3)),
                                      whole.read_words(whole_entry, "train", site, layer, words_of(1, 3)))


# Tiny random models of each mapped architecture (MiniLM's tokenizer: only the vocabulary size has to fit).
ARCHITECTURES = {
    "bert": (TINY, False),
    "xlnet": (XLNET, False),
    "roberta": ({**TINY, "config": {**TINY["config"], "model_type": "roberta", "max_position_embeddings": 40}},
                False),
    "mpnet": ({**TINY, "config": {**TINY["config"], "model_type": "mpnet"}}, False),
    "gpt2": ({**TINY, "config": {"model_type": "gpt2", "vocab_size": 30522, "n_embd": 32, "n_layer": 2,
                                 "n_head": 2, "n_inner": 64, "n_positions": 40}}, True),
    "gpt_neox": ({**TINY, "config": {"model_type": "gpt_neox", "vocab_size": 30522, "hidden_size": 32,
                                     "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                                     "max_position_embeddings": 40}}, True),
    "llama": ({**TINY, "config": {"model_type": "llama", "vocab_size": 30522, "hidden_size": 32,
                                  "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
                                  "intermediate_size": 64, "max_position_embeddings": 40}}, True),
}


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_a_pass_stopped_after_the_deepest_cell_gives_the_full_passes_rows(arch, tmp_path):
    """Cells up to layer 1 stop the pass at block 1's input (block 1's FFN never runs); their rows are those
    of a pass through every block, bit for bit, for every architecture the FFN table maps."""
    spec, decoder = ARCHITECTURES[arch]
    model = load_model(f"tiny_{arch}", {**spec, "decoder": decoder})
    assert _block(model, 1) is not None
    task, shallow = _task(), [("hidden", 0), ("hidden", 1), ("mlp", 1)]
    deep_ffn = []
    handle = model.ffn_module(2).register_forward_hook(lambda *_: deep_ffn.append(1))
    try:
        early = extract(model, task, ActivationCache(tmp_path / "early"), cells=shallow, quiet=True, batch_size=4)
        assert not deep_ffn
        full = extract(model, task, ActivationCache(tmp_path / "full"), cells=[*shallow, ("hidden", 2)], quiet=True,
                       batch_size=4)
        assert deep_ffn
    finally:
        handle.remove()
    for split in SPLITS:
        for site, layer in shallow:
            a = np.load(ActivationCache.layer_path(early, split, site, layer))
            b = np.load(ActivationCache.layer_path(full, split, site, layer))
            assert a.tobytes() == b.tobytes(), (split, site, layer)


CHILD = """
import json, logging, sys, time
from pathlib import Path
import numpy as np
import bench.extract
from bench.cache import ActivationCache
from bench.extract import extract
from bench.models import load_model
from test_extract import TINY
from test_extract_selected import _task
root, me, words, cells = json.loads(sys.argv[1])
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
loaded, task = load_model("tiny", TINY), _task()
signals = Path(root) / "signals"
signals.mkdir(parents=True, exist_ok=True)
real = bench.extract._run_batches
def holding(*args, **kwargs):  # child a holds the lock until child b is a second away from it
    (signals / f"{me}-holds").touch()
    while me == "a" and not (signals / "b-started").exists():
        time.sleep(0.05)
    time.sleep(1.0 if me == "a" else 0)
    return real(*args, **kwargs)
bench.extract._run_batches = holding
if me == "b":
    while not (signals / "a-holds").exists():
        time.sleep(0.05)
    (signals / "b-started").touch()
extract(loaded, task, ActivationCache(root), cells=[tuple(c) for c in cells], words={"train": np.array(words)},
        quiet=True)
"""


def test_two_processes_growing_one_entry_end_with_both_selections(loaded, tmp_path):
    root = tmp_path / "cache"
    jobs = {"a": (words_of(0, 1)[[0, 6]].tolist(), [["hidden", 1], ["hidden", 2]]),
            "b": (words_of(1, 4)[[1, 3]].tolist(), [["hidden", 2], ["mlp", 1]])}
    children = {me: subprocess.Popen([sys.executable, "-c", CHILD, json.dumps([str(root), me, *job])],
                                     cwd=Path(__file__).parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True) for me, job in jobs.items()}
    logs = {me: child.communicate(timeout=300) for me, child in children.items()}
    for me, child in children.items():
        assert child.returncode == 0, logs[me][1][-3000:]
    assert "waiting for another job filling" in logs["b"][1]
    cache, task = ActivationCache(root), _task()
    entry = cache.entry(loaded.name, loaded.revision, task.corpus_id, "last")
    assert not list(root.rglob("*.partial"))
    stored = {cell: cell_rows(cache, entry, "train", *cell)["word"].tolist()
              for cell in [("hidden", 1), ("hidden", 2), ("mlp", 1)]}
    assert stored == {("hidden", 1): words_of(0, 1).tolist(), ("hidden", 2): words_of(0, 1, 4).tolist(),
                      ("mlp", 1): words_of(1, 4).tolist()}
    whole = ActivationCache(tmp_path / "whole")
    whole_entry = extract(loaded, task, whole, sites=["hidden", "mlp"], quiet=True)
    for cell, words in stored.items():
        np.testing.assert_array_equal(cache.read_words(entry, "train", *cell, words),
                                      whole.read_words(whole_entry, "train", *cell, words))


OVERRIDES = ["model=tiny_random", "task=templated_number", "task.loader.n_sentences=400", "task.n_min=20",
             "ks=[1,2,5,10]", "method=probeless", "quiet=true", "task.max_words={train:300,dev:100,test:100}"]


def config(results, cache, *extra):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[*OVERRIDES, f"results_dir={results}", f"cache_dir={cache}", *extra])


def test_a_jobs_records_equal_those_it_makes_from_a_whole_extraction(tmp_path, caplog):
    """The job on a cold cache extracts its sentences at layer 1; the same job on a cache that a whole
    extraction filled (every sentence, every layer, batched as before this change) reads those rows instead,
    and writes the same records."""
    cold = config(tmp_path / "cold", tmp_path / "cold_cache", "layers=[1]", "sites=[hidden,mlp]")
    records = (run_job(cold, "probeless") / "records.jsonl").read_text()
    cache = ActivationCache(tmp_path / "cold_cache")
    files = sorted({p.name for p in cache.root.rglob("*_L*.npy")})
    assert files == ["hidden_L01.npy", "mlp_L01.npy"]
    task = _load_task(json.dumps(OmegaConf.to_container(cold.task.loader, resolve=True)), cold.task.name,
                      cold.task.version)
    train_rows = len(np.load(next(cache.root.rglob("train/hidden_L01.npy"))))
    assert 300 <= train_rows < sum(map(len, task.sentences["train"]))  # the selected sentences, not the corpus

    whole_cache = tmp_path / "whole_cache"
    loaded = load_model("tiny_random", OmegaConf.to_container(cold.model, resolve=True), cold.cache_dir)
    extract(loaded, task, ActivationCache(whole_cache), sites=["hidden", "mlp"], quiet=True)
    warm = config(tmp_path / "warm", whole_cache, "layers=[1]", "sites=[hidden,mlp]")
    with caplog.at_level("INFO", logger="bench.extract"):
        again = (run_job(warm, "probeless") / "records.jsonl").read_text()
    assert "activation cache hit" in caplog.text
    assert [json.loads(line) for line in again.splitlines()] == [json.loads(line) for line in records.splitlines()]


def test_tokens_are_not_rerun_for_stored_sentences(loaded, tmp_path, monkeypatch):
    """A job whose cells hold its sentences loads no batch: only valid.npy and the cells' word columns."""
    cache, task = ActivationCache(tmp_path), _task()
    extract(loaded, task, cache, cells=[("hidden", 2)], words={"dev": words_of(2)}, quiet=True)
    monkeypatch.setattr(bench.extract, "_TOKENS", bench.extract.BoundedMemo(6))  # a fresh process
    monkeypatch.setattr(bench.extract, "tokenize_words", lambda *a: pytest.fail("tokenized again"))
    with counted(loaded) as runs:
        extract(loaded, task, cache, cells=[("hidden", 2)], words={"dev": words_of(2)[:1]}, quiet=True)
    assert not runs


def test_a_sparse_selection_on_minilm_gives_a_whole_extractions_rows_bit_for_bit(tmp_path):
    """A real model, where float32 rounding follows the batch's shape: a few hundred selected words leave
    short batches, which are padded and filled as their whole-split batches are, so every stored row (of
    layer 3, the pass stopped after block 3) equals the whole extraction's, bit for bit."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["model=minilm_l6", "task=templated_number", "task.loader.n_sentences=600"])
    task = _load_task(json.dumps(OmegaConf.to_container(cfg.task.loader, resolve=True)), cfg.task.name,
                      cfg.task.version)
    model = load_model("minilm_l6", OmegaConf.to_container(cfg.model, resolve=True))
    rng = np.random.default_rng(0)
    words = {split: np.sort(rng.choice(sum(map(len, task.sentences[split])), 40, replace=False)) for split in SPLITS}
    cells = [("hidden", 3), ("mlp", 3)]
    cache, whole = ActivationCache(tmp_path / "selected"), ActivationCache(tmp_path / "whole")
    entry = extract(model, task, cache, cells=cells, words=words, quiet=True)
    whole_entry = extract(model, task, whole, cells=[*cells, ("hidden", 6)], quiet=True)  # every block runs
    for split in SPLITS:
        for cell in cells:
            rows = cell_rows(cache, entry, split, *cell)
            assert len(rows) < sum(map(len, task.sentences[split])) / 2
            every = cell_rows(whole, whole_entry, split, *cell)
            assert every[np.searchsorted(every["word"], rows["word"])].tobytes() == rows.tobytes(), (split, cell)
