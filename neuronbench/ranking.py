"""Rank a cell's neurons with any configured method, as a `neuronbench` job ranks them.

The method comes from conf/method/<name>.yaml (`bench.run.method_configs`), it sees the train split only, the
inputs its `needs` names are the runner's (the model context, the dev split, other models' activations), and its
generator is the runner's for the cell, so `rank("probeless", acts)` is the ranking a job saves for that cell.
"""

from __future__ import annotations

import inspect

import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate

from bench.cli import CONF_DIR
from bench.core.method import Method
from bench.errors import NeuronbenchError
from bench.run import method_configs, other_models_source
from bench.seeds import cell_rng
from neuronbench.experiment import Activations


def method(name: str, **params) -> Method:
    """The method of conf/method/<name>.yaml, with `params` replacing its values (`method("lca", l1=1e-2)`)."""
    config = method_configs([name], CONF_DIR)[name]
    accepted = inspect.signature(get_class(config["_target_"])).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise NeuronbenchError(f"method {name!r} has no parameter {', '.join(map(repr, unknown))}; its parameters: "
                               f"{', '.join(accepted) or 'none'} (conf/method/{name}.yaml)")
    try:
        return instantiate({**config, **params})
    except InstantiationException as err:  # a class's own check of its values is the message
        if isinstance(err.__cause__, NeuronbenchError):
            raise err.__cause__ from None
        raise


def rank(how: str | Method, acts: Activations, **params) -> np.ndarray:
    """A permutation of the cell's neurons, most important first: `how` is a conf/method name (with `params`
    replacing its values) or a Method instance of your own; fitted on the train split as the runner fits it."""
    if not isinstance(acts, Activations):
        raise NeuronbenchError(f"rank: expected the Activations of a cell (nb.load(...).activations(layer)), got "
                               f"{type(acts).__name__}")
    if isinstance(how, Method):
        if params:
            raise NeuronbenchError("rank: give parameters to your Method's constructor, not to rank()")
        ranker = how
    else:
        ranker = method(how, **params)
    X, y = acts.X["train"], acts.y["train"]
    available = {"model": acts.model_context, "cell": acts.cell, "dev": (acts.X["dev"], acts.y["dev"])}
    if "other_activations" in ranker.needs:  # cross-model methods: the runner's extraction in the other models
        others = other_models_source(acts.experiment.task, acts.cfg, ranker, acts.source)
        available["other_activations"] = others.activations(acts.site, acts.layer)
        X, y = X[others.keep], y[others.keep]
    if "model" in ranker.needs and acts.model_context is None:
        raise NeuronbenchError(f"{type(ranker).__name__} runs the model; {acts.name} is planted and has none")
    inputs = {need: available[need] for need in ranker.needs if need in available}
    return ranker.rank(X, y, rng=cell_rng(acts.cfg.seed, *acts.key, "method"), **inputs)
