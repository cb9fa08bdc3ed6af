"""Implanted ground truth (bench/implant.py): neurons edited into minilm_l6's FFN fire on their concept, the
simplest method finds them, the model is otherwise unharmed, ablating them moves the readout and a random
set does not, the build is deterministic, and a bad implant config fails with its key."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import yaml
from transformers import GPT2Config, GPT2Model

from bench.causal_scores import causal
from bench.core.types import SPLITS
from bench.errors import NeuronbenchError
from bench.examples import select_examples
from bench.implant import auc, check_spec, implant_truth, implanted_model
from bench.intervene import model_context, site_states
from bench.layer import LayerData
from bench.models import LoadedModel, load_model
from bench.probe import accuracy, fit_logistic
from bench.scorers import planted
from conftest import CONF
from methods.probeless import Probeless
from tasks.templated import templated_task

LAYER = 3
SENTENCES = 200  # implant measurement and every check: a few seconds of minilm_l6 each


def spec(name: str = "minilm_l6_implanted", **implant) -> dict:
    out = yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text())
    out["implant"].update({"max_sentences": SENTENCES, **implant})
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    cache = tmp_path_factory.mktemp("implant_cache")
    base = load_model("minilm_l6", yaml.safe_load((CONF / "model" / "minilm_l6.yaml").read_text()))
    return base, load_model("minilm_l6_implanted", spec(), cache_dir=cache)


def task_examples(feature: str, n_sentences: int = 300):
    task = templated_task(feature, f"templated_{feature}", "1", n_sentences=n_sentences)
    valid = {s: np.ones(sum(len(x) for x in task.sentences[s]), dtype=bool) for s in SPLITS}
    return task, select_examples(task, valid, seed=0, n_min=10)


def states(loaded, task, examples, site, layer):
    ctx = model_context(task, examples, loaded, pooling="last", site=site, layer=layer)
    return {s: site_states(loaded, ctx.inputs(s), site, layer) for s in SPLITS}, ctx


def test_implanted_neuron_fires_on_the_concept(models):
    _, implanted = models
    meta = implanted.implant
    (j,) = meta["neurons"]["templated_number"]
    task, examples = task_examples("number")
    X, _ = states(implanted, task, examples, "mlp", LAYER)
    plural = np.array(examples.label_names)[examples.y["test"]] == "Plur"
    a = X["test"][:, j]
    assert auc(a[plural], a[~plural]) > 0.97  # held-out words of a grammar the implant never saw
    assert a[plural].mean() > 1.0 and abs(np.median(a[~plural])) < 0.05
    assert meta["z_other_p99"][0] <= -3.0 + 1e-9 and meta["site"] == "mlp" and meta["layer"] == LAYER


def test_probeless_recovers_the_single_implant(models):
    _, implanted = models
    task, examples = task_examples("number")
    X, _ = states(implanted, task, examples, "mlp", LAYER)
    ranking = Probeless().rank(X["train"], examples.y["train"])
    truth = implant_truth(implanted.implant, "templated_number", "mlp", LAYER)
    data = LayerData(X, examples, truth=truth)
    scores = {(s.metric, s.k): s.value for s in planted(ranking, data, [1, 2], np.random.default_rng(0))}
    assert scores[("planted_recall", 1)] == 1.0 and scores[("planted_rprec", None)] == 1.0
    assert implant_truth(implanted.implant, "templated_number", "hidden", LAYER) == ()
    assert implant_truth(implanted.implant, "upos", "mlp", LAYER) is None


def test_do_no_harm_on_an_all_neuron_probe(models):
    """All-neuron word-class probe (the templated upos) at the implant's FFN and at the last layer, clean
    and implanted, within 1 point."""
    task, examples = task_examples("word_class")
    for site, layer in (("mlp", LAYER), ("hidden", 6)):
        accs = []
        for loaded in models:
            X, _ = states(loaded, task, examples, site, layer)
            mean, std = X["train"].mean(axis=0), X["train"].std(axis=0) + 1e-6
            z = {s: ((X[s] - mean) / std).astype(np.float32) for s in SPLITS}
            probe = fit_logistic(z["train"], examples.y["train"], examples.n_classes, C=0.1)
            accs.append(accuracy(probe, z["test"], examples.y["test"]))
        assert abs(accs[0] - accs[1]) <= 0.01, (site, layer, accs)


def test_ablating_the_implant_moves_the_readout_and_random_does_not(models):
    """causal (frozen-head readout, mean gold log-probability in nats): the implanted neuron mean-ablated
    drops it by >= 0.2, a random neuron by <= 0.02."""
    _, implanted = models
    (j,) = implanted.implant["neurons"]["templated_number"]
    task, examples = task_examples("number")
    X, ctx = states(implanted, task, examples, "mlp", LAYER)
    data = LayerData(X, examples)
    data.context = ctx
    ranking = np.concatenate([[j], np.delete(np.arange(X["train"].shape[1]), j)])
    scores = {(s.metric, s.k): s for s in causal(ranking, data, [1], np.random.default_rng(0))}
    drop = scores[("causal_logp_drop", 1)]
    assert drop.value >= 0.2 and abs(drop.chance) <= 0.02, (drop.value, drop.chance)


def test_same_parameters_same_weights(models):
    base, _ = models
    implant = spec()["implant"] | {"max_sentences": 60}
    first, meta = implanted_model(base, implant, "last")
    second, again = implanted_model(base, copy.deepcopy(implant), "last")
    a, b = first.state_dict(), second.state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a) and meta == again
    changed = [key for key in a if not torch.equal(a[key], base.model.state_dict()[key])]
    assert sorted(changed) == sorted(f"encoder.layer.{LAYER - 1}.{p}" for p in (
        "intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight", "output.dense.bias"))


def test_bad_implant_configs_fail_with_their_key(models):
    base, _ = models
    with pytest.raises(NeuronbenchError, match=r"implant.regime='sparse'; valid: single, redundant"):
        check_spec("m", spec(regime="sparse"), base)
    with pytest.raises(NeuronbenchError, match=r"implant.neurons=\[1536\]: expected FFN neuron indices in 0..1535"):
        check_spec("m", spec(neurons=[1536]), base)
    with pytest.raises(NeuronbenchError, match=r"implant.layer=7 is not an FFN layer of minilm_l6 \(valid: 1..6\)"):
        check_spec("m", spec(layer=7), base)
    gpt2 = LoadedModel("tiny_gpt2", "random", GPT2Model(GPT2Config(n_layer=2, n_embd=16, n_head=2)), None, True)
    with pytest.raises(NeuronbenchError, match=r"FFN input projections of architecture 'gpt2' are not mapped"):
        check_spec("m", spec(layer=1), gpt2)


def test_gated_silu_implant_fires_and_is_found():
    """smollm2's gated FFN has no bias: the implant gates on a near-constant mean-token direction, and its
    neuron still fires on plural nouns only and is probeless's first neuron."""
    base = load_model("smollm2_135m", yaml.safe_load((CONF / "model" / "smollm2_135m.yaml").read_text()))
    implant = spec("smollm2_135m_implanted")["implant"] | {"max_sentences": 80}
    model, meta = implanted_model(base, implant, "last")
    loaded = LoadedModel("smollm2_135m_implanted", "test", model, base.tokenizer, True, implant=meta)
    (j,) = meta["neurons"]["templated_number"]
    task, examples = task_examples("number", n_sentences=120)
    X, _ = states(loaded, task, examples, "mlp", 12)
    plural = np.array(examples.label_names)[examples.y["test"]] == "Plur"
    a = X["test"][:, j]
    assert auc(a[plural], a[~plural]) > 0.95 and meta["mean_token_cv"] < 0.2
    assert abs(np.median(a[~plural])) < 0.05 * a[plural].mean()
    assert Probeless().rank(X["train"], examples.y["train"])[0] == j


@pytest.fixture(scope="module")
def distributed(tmp_path_factory):
    cache = tmp_path_factory.mktemp("implant_cache_distributed")
    return load_model("minilm_l6_implanted", spec(regime="distributed"), cache_dir=cache)


def test_distributed_implant_is_spread_over_sixteen_weak_neurons(distributed):
    """The distributed regime builds: sixteen graded neurons, each a weak reader of plural nouns on its own
    (held-out AUC well under a detector's) and together a strong one; probeless ranks them on top."""
    meta = distributed.implant
    neurons = meta["neurons"]["templated_number"]
    assert len(set(neurons)) == 16 and meta["regime"] == "distributed"
    task, examples = task_examples("number")
    X, _ = states(distributed, task, examples, "mlp", LAYER)
    plural = np.array(examples.label_names)[examples.y["test"]] == "Plur"
    a = X["test"][:, neurons]
    single = [auc(a[plural, n], a[~plural, n]) for n in range(16)]
    together = a.sum(axis=1)
    print("distributed single AUCs", np.round(single, 3), "sum", auc(together[plural], together[~plural]))
    assert 0.55 < np.median(single) < 0.85 and max(single) < 0.9, single
    assert auc(together[plural], together[~plural]) > 0.85  # 0.90 measured (the shrinkage-LDA direction itself is the ceiling)
    ranking = Probeless().rank(X["train"], examples.y["train"])
    truth = implant_truth(meta, "templated_number", "mlp", LAYER)
    scores = {(s.metric, s.k): s.value for s in planted(ranking, LayerData(X, examples, truth=truth), [16],
                                                        np.random.default_rng(0))}
    # probeless is a single-neuron method: by design it recovers few of them (recall@16 0.125 measured)
    print("distributed probeless", scores)


def test_ablating_the_distributed_set_moves_the_readout_and_random_does_not(distributed):
    """causal (frozen head, mean gold log-probability, nats): the 16 mean-ablated drop it by >= 0.2, a random
    16 by <= 0.02, and no single implanted neuron alone by as much as a sixth of the set's drop."""
    neurons = distributed.implant["neurons"]["templated_number"]
    task, examples = task_examples("number")
    X, ctx = states(distributed, task, examples, "mlp", LAYER)
    data = LayerData(X, examples)
    data.context = ctx
    ranking = np.concatenate([neurons, np.setdiff1d(np.arange(X["train"].shape[1]), neurons)])
    scores = {(s.metric, s.k): s for s in causal(ranking, data, [1, 16], np.random.default_rng(0))}
    drop, one = scores[("causal_logp_drop", 16)], scores[("causal_logp_drop", 1)]
    print("distributed causal_logp_drop@16", drop.value, drop.chance, "@1", one.value)
    assert drop.value >= 0.2 and abs(drop.chance) <= 0.02, (drop.value, drop.chance)
    assert one.value < drop.value / 6, (one.value, drop.value)
