"""Cross-model methods through the runner (reference.md#method-crossmodel): tiny_random ranked against
tiny_random_seed1, the same architecture from another seed, on the same train words."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bench.cache import ActivationCache
from bench.core.method import order_by_scores
from bench.errors import NeuronbenchError
from bench.extract import extract
from bench.models import load_model
from bench.run import diagnostics_file, extracted_source, ranking_file, run_job
from conftest import CONF
from methods.cross_model import LinReg, MaxCorr

OVERRIDES = ["model=tiny_random", "task=templated_number", "task.loader.n_sentences=300", "task.n_min=20",
             "ks=[1,5]", "scorers=[probe_acc]", "method.other_models=[tiny_random_seed1]"]


def config(tmp_path, *extra):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[*OVERRIDES, f"results_dir={tmp_path / 'results'}",
                                            f"cache_dir={tmp_path / 'cache'}", *extra])


def train_activations(cfg):
    """(ranked model's train words at each hidden layer, tiny_random_seed1's at each hidden layer), read
    through the plain extraction path rather than the runner's cross-model helper."""
    task = instantiate(OmegaConf.to_container(cfg.task.loader, resolve=True), name=cfg.task.name,
                       version=str(cfg.task.version))
    source = extracted_source(task, cfg)
    spec = OmegaConf.to_container(OmegaConf.load(CONF / "model" / "tiny_random_seed1.yaml"), resolve=True)
    cache = ActivationCache(cfg.cache_dir)
    entry = extract(load_model("tiny_random_seed1", spec), task, cache, sites=["hidden"], quiet=True)
    index = source.examples.index["train"]
    other = [np.asarray(cache.load_layer(entry, "train", "hidden", layer)[index], dtype=np.float32)
             for layer in range(3)]
    return [source.load("hidden", layer)["train"] for layer in range(3)], other


@pytest.mark.parametrize("method, other_layers", [("maxcorr", "relative"), ("linreg", "all")])
def test_runner_feeds_the_other_model_on_the_same_words(tmp_path, method, other_layers):
    cfg = config(tmp_path, f"method={method}", f"method.other_layers={other_layers}")
    out = run_job(cfg, method)
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {r["layer"] for r in records} == {0, 1, 2}
    job = json.loads((out / "job.json").read_text())
    assert list(job["other_models"]) == ["tiny_random_seed1"]
    assert job["other_models"]["tiny_random_seed1"].startswith("random:")
    ranked, other = train_activations(cfg)
    ranker = {"maxcorr": MaxCorr(), "linreg": LinReg()}[method]
    for layer in range(3):
        # relative: equal depths pair layer with layer; all: the other model's three layers side by side
        compared = [other[layer]] if other_layers == "relative" else [np.hstack(other)]
        expected = ranker.rank(ranked[layer], other_activations=compared)
        np.testing.assert_array_equal(np.load(ranking_file(out, "hidden", layer)), expected)
        scores = np.load(diagnostics_file(out, "scores", "hidden", layer))
        np.testing.assert_array_equal(order_by_scores(scores), expected)


def test_the_ranked_model_is_left_out_of_its_own_comparison(tmp_path):
    cfg = config(tmp_path, "method=mincorr", "method.other_models=[tiny_random,tiny_random_seed1]",
                 "layers=[1]")
    mixed = np.load(ranking_file(run_job(cfg, "mincorr"), "hidden", 1))
    alone = np.load(ranking_file(run_job(config(tmp_path / "b", "method=mincorr", "layers=[1]"), "mincorr"),
                                 "hidden", 1))
    np.testing.assert_array_equal(mixed, alone)


@pytest.mark.parametrize("override, message", [
    ("method.other_models=[tiny_random]", "names no model but the ranked 'tiny_random'"),
    ("method.other_models=[no_such_model]", "no model config .*no_such_model.yaml; valid names: .*tiny_random_seed1"),
    ("method.other_layers=same", "method.other_layers must be one of"),
])
def test_bad_other_models_are_refused(tmp_path, override, message):
    with pytest.raises(NeuronbenchError, match=message):
        run_job(config(tmp_path, "method=maxcorr", override, "layers=[1]"), "maxcorr")


def test_planted_tasks_have_no_other_models(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["suite=planted", "task=planted_single", "method=maxcorr",
                                           "task.loader.n_neurons=64", "scorers=[planted]",
                                           f"results_dir={tmp_path}"])
    with pytest.raises(NeuronbenchError, match="compares models; planted tasks have none"):
        run_job(cfg, "maxcorr")
