"""One benchmark job: a task x model x method x seed over every layer and site, to records on disk.

Side effects live here: the job reads the activation cache (filling it first if needed), saves one
ranking per layer and site, and writes its records last, atomically, so a job whose records exist is
finished and a stopped sweep resumes by skipping it.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache, partial
from pathlib import Path
from typing import Callable

import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits

import bench
from bench.agreement import bootstrap_stability
from bench.cache import ActivationCache, atomic_save_npy, atomic_write_bytes
from bench.causal_scores import READOUTS, check_scorer_inputs
from bench.core.method import Method
from bench.core.metrics import Metric
from bench.core.types import SPLITS, PlantedData, Task
from bench.errors import NeuronbenchError
from bench.examples import Examples, check_concept, control_labels, select_examples
from bench.extract import POOLINGS, extract, word_validity
from bench.implant import implant_truth
from bench.intervene import model_context, word_refs
from bench.layer import LayerData
from bench.model_sources import MODEL_CONFIGS
from bench.models import SITES, LoadedModel, load_model, matched_layers, resolve_device, site_layers
from bench.progress import duration, eta
from bench.scorers import TEST_BOOTSTRAP, Score, checked_ks, get_scorer, is_count, k_grid, needs_model
from bench.seeds import cell_rng, cluster_resamples

log = logging.getLogger(__name__)

METHOD_CONFIGS = MODEL_CONFIGS.parent / "method"  # conf/method: the built-in methods
# The runner's own cost rows (bench.metrics gathers them with the scorers'): rank()'s wall seconds and peak bytes
# per layer, and each scorer's wall seconds on one ranking of one layer (job.json's `scorers_s`, packed as cost
# rows by leaderboard.records); shown in the board's cost sections, never ranked.
METRICS = (Metric("cost_time_s", higher_is_better=False), Metric("cost_peak_mem_b", higher_is_better=False),
           Metric("cost_scorer_s", higher_is_better=False))


def single_threaded_blas() -> None:
    """Pin numpy/scipy BLAS to one thread: probe fits are many small solves, and on 2 shared cores
    multi-threaded BLAS spin-waits made them up to 50x slower. Torch keeps its threads for extraction."""
    threadpool_limits(limits=1, user_api="blas")


@lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@lru_cache(maxsize=4)
def _load_task(loader_json: str, name: str, version: str):
    try:
        return instantiate(json.loads(loader_json), name=name, version=str(version))
    except InstantiationException as err:  # a loader's own message (bad files, column) is the error
        if isinstance(err.__cause__, NeuronbenchError):
            raise err.__cause__ from None
        raise


@dataclass(frozen=True)
class CellSource:
    """Where a job's layers come from: the activation cache of a real model, or a planted generator."""

    revision: str
    pooling: str
    examples: Examples
    layers: list[tuple[str, int]]
    load: Callable[[str, int], dict[str, np.ndarray]]
    truth: tuple | None = None
    model: LoadedModel | None = None
    cell_truth: Callable[[str, int], tuple | None] | None = None  # an implanted model's truth per cell
    family: Callable[[], Examples] | None = None  # a concept job's multi-class form, made when the model runs


@dataclass(frozen=True)
class Cell:
    """The cell a ranking is asked for: what a ranking source that `needs` "cell" receives (a
    submission's saved permutation is looked up by it, leaderboard/submission.py)."""

    task: str
    concept: str | None
    model: str
    seed: int
    site: str
    layer: int


def job_device(cfg: DictConfig) -> str:
    """The torch device of the job's models (conf/config.yaml `device`, auto where a config predates it)."""
    return resolve_device(cfg.get("device") or "auto")


def extracted_source(task, cfg: DictConfig) -> CellSource:
    """Select this task form's examples (which words can have activations follows from tokenization), then
    extract (or reuse) the activations of the sentences that hold them, at the cells the job reads only."""
    model_cfg, task_cfg = cfg.model, cfg.task
    if model_cfg.source == "planted":
        raise NeuronbenchError(f"model=planted only serves planted tasks; task {task_cfg.name!r} "
                               "needs a real model (e.g. model=minilm_l6)")
    check_concept(task, task_cfg.get("concept"), task_cfg.n_min,
                  required=OmegaConf.is_missing(task_cfg, "concept"))  # before any forward pass
    loaded = load_model(model_cfg.name, OmegaConf.to_container(model_cfg, resolve=True), cfg.cache_dir,
                        job_device(cfg))
    check_scorer_inputs(cfg.scorers, loaded, task)  # e.g. beh's output head and single-token answers
    cache = ActivationCache(cfg.cache_dir)
    pooling = cfg.get("pooling") or model_cfg.pooling
    layers = selected_layers(loaded.name, loaded.n_layers, list(cfg.sites), cfg.get("layers"), cfg.get("depths"))
    select = partial(
        select_examples, task, word_validity(loaded, task, cache, pooling), seed=cfg.seed,
        n_min=task_cfg.n_min, rare=task_cfg.rare,
        max_words=OmegaConf.to_container(task_cfg.max_words) if task_cfg.get("max_words") else None)
    examples = select(concept=task_cfg.get("concept"))
    entry = extract(loaded, task, cache, cells=layers, words=examples.index, pooling=pooling,
                    batch_size=cfg.batch_size, quiet=cfg.quiet)

    def load(site: str, layer: int) -> dict[str, np.ndarray]:
        return {s: cache.read_words(entry, s, site, layer, examples.index[s]) for s in SPLITS}

    return CellSource(revision=loaded.extraction_id, pooling=pooling, examples=examples, layers=layers,
                      load=load, model=loaded, cell_truth=partial(implant_truth, loaded.implant, task_cfg.name),
                      family=partial(select, concept=None) if task_cfg.get("concept") else None)


def selected_layers(model: str, n_layers: int, sites: list[str], layers, depths) -> list[tuple[str, int]]:
    """The (site, layer) cells a job reads: every layer, the `layers` listed, or at each fractional depth f of
    `depths` the layer round(f x L) at the sites that have it (mlp has no layer 0), so models of different
    depth are compared at the same relative depths. Needs only the model config's n_layers, so check_config
    runs it before any model is loaded."""
    if layers is not None and depths is not None:
        raise NeuronbenchError(f"give layers={list(layers)} or depths={list(depths)}, not both")
    if depths is not None:
        if not _is_list(depths) or not depths or not all(_is_fraction(f) for f in depths):
            raise NeuronbenchError(f"depths={_shown(depths)}: expected a non-empty list of fractions of the "
                                   "model's depth in [0, 1], e.g. depths=[0,0.3333,0.6667,1]")
        layers = {int(np.floor(float(f) * n_layers + 0.5)) for f in depths}
    elif layers is not None and not (_is_list(layers) and layers and all(is_count(layer) for layer in layers)):
        raise NeuronbenchError(f"layers={_shown(layers)}: expected a non-empty list of layer indices, e.g. "
                               f"layers=[0,{n_layers}], or null for every layer")
    wanted = set(layers) if layers is not None else None
    cells = [(site, layer) for site in sites for layer in site_layers(site, n_layers)
             if wanted is None or layer in wanted]
    if not cells:
        raise NeuronbenchError(f"layers={sorted(wanted)} selects nothing: model {model!r} has layers "
                               f"{site_layers(sites[0], n_layers)} at site {sites[0]!r}")
    return cells


def _is_list(value) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _is_fraction(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def _shown(value):
    return list(value) if _is_list(value) else repr(value)


def planted_source(planted: PlantedData, cfg: DictConfig) -> CellSource:
    """Planted activations need no model: one layer whose ground truth the `planted` scorer reads."""
    if cfg.model.source != "planted":
        raise NeuronbenchError(f"task {cfg.task.name!r} carries its own activations: use model=planted")
    n_classes = len(planted.truth)
    control = control_labels(planted.types, planted.y["train"], n_classes,
                             cell_rng(cfg.seed, cfg.task.name, None, "control"))
    examples = Examples(label_names=tuple(f"class{c}" for c in range(n_classes)),
                        index={s: np.arange(len(planted.y[s])) for s in SPLITS}, y=planted.y,
                        control=control)
    return CellSource(revision="synthetic", pooling="none", examples=examples,
                      layers=[("hidden", 0)], load=lambda site, layer: planted.X, truth=planted.truth)


@dataclass(frozen=True)
class OtherModels:
    """What a cross-model method compares with (reference.md#method-crossmodel): other models' activations
    on this job's train words, at the layers `bench.models.matched_layers` pairs with each layer."""

    revisions: dict[str, str]
    keep: np.ndarray  # train examples every other model encodes too: rank() sees only these
    activations: Callable[[str, int], list[np.ndarray]]


def other_models_source(task, cfg: DictConfig, method: Method, source: CellSource) -> OtherModels:
    """Extract (or reuse) the job's train words in each model of `method.other_models` but the ranked one,
    at the layers each of the job's layers is matched with.

    The corpus is the same, so the examples' word indices select the same words in every cache entry.
    """
    ranked = source.model
    if ranked is None:
        raise NeuronbenchError(f"method {type(method).__name__} compares models; planted tasks have "
                               "none (use a real model)")
    names = [name for name in method.other_models if name != cfg.model.name]
    if not names:
        raise NeuronbenchError(f"method.other_models={list(method.other_models)} names no model but the "
                               f"ranked {cfg.model.name!r}; add another conf/model name")
    cache, index = ActivationCache(cfg.cache_dir), source.examples.index["train"]
    keep = np.ones(len(index), dtype=bool)
    others = []
    for name in names:
        path = MODEL_CONFIGS / f"{name}.yaml"
        if not path.is_file():
            raise NeuronbenchError(f"method.other_models: no model config {path}; valid names: "
                                   f"{', '.join(sorted(p.stem for p in MODEL_CONFIGS.glob('*.yaml')))}")
        spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        loaded = load_model(name, spec, cfg.cache_dir, job_device(cfg))
        pooling = cfg.get("pooling") or spec["pooling"]
        keep &= word_validity(loaded, task, cache, pooling)["train"][index]
        others.append((loaded, pooling))
    if not keep.all():
        log.info("cross-model: %d of %d train words have no activations in some other model; rank() "
                 "reads the other %d", (~keep).sum(), len(keep), keep.sum())
    words = index[keep]
    matched = {}  # (other model, site, ranked layer) -> its layers
    entries = []
    for loaded, pooling in others:
        for site, layer in source.layers:
            matched[(loaded.name, site, layer)] = matched_layers(layer, ranked.n_layers, loaded.layers(site),
                                                                 loaded.n_layers, method.other_layers)
        cells = sorted({(site, other) for (name, site, _), layers in matched.items() if name == loaded.name
                        for other in layers})
        entries.append((loaded, extract(loaded, task, cache, cells=cells, words={"train": words},
                                        pooling=pooling, batch_size=cfg.batch_size, quiet=cfg.quiet)))

    def activations(site: str, layer: int) -> list[np.ndarray]:
        return [np.concatenate([cache.read_words(entry, "train", site, other, words)
                                for other in matched[(loaded.name, site, layer)]], axis=1, dtype=np.float32)
                for loaded, entry in entries]

    return OtherModels({loaded.name: loaded.extraction_id for loaded, _ in entries}, keep, activations)


def timed_rank(method: Method, X, y, rng, inputs: dict) -> tuple[np.ndarray, float, int]:
    """rank() alone, activations already in memory: (ranking, wall seconds, tracemalloc peak bytes).

    Measurements vary run to run, so they go to cost.jsonl, never into the deterministic records
    (reference.md#metric-cost; CPU timings are single-threaded BLAS, see single_threaded_blas).
    """
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base_memory, _ = tracemalloc.get_traced_memory()
    started = time.perf_counter()
    try:
        ranking = method.rank(X, y, rng=rng, **inputs)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not tracing:
            tracemalloc.stop()
    return ranking, seconds, int(peak - base_memory)


def bootstrap_rows(method: Method, method_name: str, X, y, groups, ranking, rng, n_boot: int) -> list:
    """stab_boot rows of one cell (bench.agreement.bootstrap_stability; groups = train sentence ids), or
    none for a method that needs more than X and y (the model, a submission's cell)."""
    if method.needs:
        log.warning("bootstrap: skipped for %s, which needs %s besides X and y", method_name,
                    sorted(method.needs))
        return []
    return bootstrap_stability(method, X, y, groups, ranking, rng, n_boot)


def task_form(task: str, concept: str | None) -> str:
    """A task's name in folders and cell ids: `task@concept` for a concept job."""
    return f"{task}@{concept}" if concept else task


def job_folder(results_dir, task: str, concept: str | None, model: str, method: str, seed: int) -> Path:
    """Where one job's records, costs and rankings live (the board and submissions read the same layout)."""
    return Path(results_dir) / "runs" / task_form(task, concept) / model / method / f"seed{int(seed)}"


def ranking_file(job: Path, site: str, layer: int) -> Path:
    """One int64 permutation per (site, layer) of a job."""
    return job / "rankings" / f"{site}_L{int(layer):02d}.npy"


# What a method may leave after rank() as attribute `<kind>_` (Method.scores_, LinearProbeRanker.cutoffs_):
# saved beside the ranking for diagnostics, never read by a scorer (reference.md#ranking-contract, item 5).
DIAGNOSTICS = ("scores", "cutoffs")


def diagnostics_file(job: Path, kind: str, site: str, layer: int) -> Path:
    return job / kind / f"{site}_L{int(layer):02d}.npy"


def job_dir(cfg: DictConfig, method_name: str) -> Path:
    return job_folder(cfg.results_dir, cfg.task.name, cfg.task.get("concept"), cfg.model.name,
                      method_name, cfg.seed)


# The config keys that shape a job's records (paths, verbosity and batch size do not).
RECORD_KEYS = ("task", "model", "method", "seed", "sites", "layers", "depths", "pooling", "scorers", "ks", "bootstrap",
               "test_bootstrap")


def _flat(tree, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    if isinstance(tree, dict) and tree:
        return {key: value for name, sub in tree.items()
                for key, value in _flat(sub, f"{prefix}.{name}" if prefix else name).items()}
    return {prefix: tree}


def changed_since(job_json: Path, cfg: DictConfig) -> list[str]:
    """Dotted config keys whose values differ from those a finished job recorded, so a resumed sweep
    never keeps records of another configuration without saying so."""
    try:
        stored = json.loads(job_json.read_text())["config"]
    except (OSError, ValueError, KeyError):
        return ["job.json (unreadable)"]
    current = OmegaConf.to_container(cfg, resolve=True)
    before, now = (_flat({key: tree.get(key) for key in RECORD_KEYS}) for tree in (stored, current))
    return sorted(key for key in before.keys() | now.keys() if before.get(key) != now.get(key))


def method_configs(names, conf_dir: Path) -> dict[str, dict]:
    """`methods: [...]` as {name: params} from conf/method/<name>.yaml; `all` is every method that does not
    run the model. An unknown name fails here, before any forward pass, listing the valid ones."""
    valid = sorted(path.stem for path in (conf_dir / "method").glob("*.yaml"))
    wanted = valid if names == "all" else [names] if isinstance(names, str) else list(names)
    unknown = [name for name in wanted if name not in valid]
    if unknown or not wanted:
        raise NeuronbenchError(f"methods: unknown {', '.join(map(repr, unknown)) or 'empty list'}; valid: "
                               f"{', '.join(valid)} (or methods=all)")
    configs = {name: OmegaConf.to_container(OmegaConf.load(conf_dir / "method" / f"{name}.yaml"), resolve=True)
               for name in wanted}
    if names == "all":
        configs = {name: params for name, params in configs.items()
                   if "model" not in instantiate(params).needs}
    return configs


def with_method(cfg: DictConfig, params: dict) -> DictConfig:
    """The job's config as a one-method job of `params` would have it: what that method's job.json keeps."""
    single = cfg.copy()
    OmegaConf.update(single, "method", params, merge=False, force_add=True)
    return single


def finished(out: Path, cfg: DictConfig) -> bool:
    """True if the method's records exist and force is off; a skip made with other record keys is a warning."""
    if not (out / "records.jsonl").exists() or cfg.force:
        return False
    changed = changed_since(out / "job.json", cfg)
    if changed:
        log.warning("skip %s: records exist but were made with other values of %s (force=true reruns)",
                    out, ", ".join(changed))
    else:
        log.info("skip %s: records exist (force=true reruns)", out)
    return True


def method_source(name: str, params, method: Method) -> str:
    """The records' `source`: what a ranking source names itself (a submission: "submission:<name>"), "builtin" for
    the class of conf/method/<name>.yaml, else "custom:<module.Class>" (method._target_=... given, or a name with no
    such config), so a user's class never passes for the built-in method of its name."""
    if hasattr(method, "source"):
        return method.source
    path = METHOD_CONFIGS / f"{name}.yaml"
    target = params.get("_target_")
    return "builtin" if path.is_file() and OmegaConf.load(path).get("_target_") == target else f"custom:{target}"


@dataclass
class MethodJob:
    """One method's share of a job: its config and folder, and the rows it collects over the cells."""

    name: str
    cfg: DictConfig
    method: Method
    out: Path
    others: OtherModels | None = None
    records: list = field(default_factory=list)
    costs: list = field(default_factory=list)
    timings: list = field(default_factory=list)

    @cached_property
    def source(self) -> str:
        return method_source(self.name, self.cfg.method, self.method)

    @cached_property
    def params(self) -> str:
        """The records' `method_params`: the method's config as sorted JSON."""
        return json.dumps(OmegaConf.to_container(self.cfg.method, resolve=True), sort_keys=True)


def check_results_folder(results_dir) -> None:
    """Create results_dir and write a file there before any work, so an unwritable folder fails in a second."""
    folder = Path(results_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise NeuronbenchError(f"results_dir={results_dir}: cannot write there ({err.strerror}); give a folder you "
                               "can write, e.g. results_dir=results") from None


@contextmanager
def writing_results(folder: Path):
    """An OSError while a job saves its results (a full disk, say) becomes one error naming the folder."""
    try:
        yield
    except OSError as err:
        existing = next(path for path in (folder, *folder.parents) if path.exists())
        room = (f"; {shutil.disk_usage(existing).free:,} bytes free on its disk"
                if err.errno in (errno.ENOSPC, errno.EDQUOT) else "")
        raise NeuronbenchError(f"cannot write the results of {folder}: {err.strerror}{room}; finished jobs are "
                               "kept, so free space (or choose another results_dir=) and rerun the same command"
                               ) from None


def run_job(cfg: DictConfig, method_name: str) -> Path:
    """Run (or skip, if its records exist and force is off) the one-method job of `cfg.method`."""
    return run_methods(cfg, {method_name: OmegaConf.to_container(cfg.method, resolve=True)})[method_name]


def check_config(cfg: DictConfig) -> None:
    """The values a job reads from its config, checked before the task, a model or a method is loaded: a bad one
    fails here with its key, its value and what is valid, instead of deep inside numpy or a probe fit."""
    # ??? in a task config (conllu's files): concept is left to check_concept, which lists the valid ones
    unset = sorted(OmegaConf.missing_keys(cfg.task) - {"task.concept"})
    if unset:
        raise NeuronbenchError(f"config values left unset (???): {', '.join(unset)}; give them on the "
                               f"command line, e.g. {unset[0]}=...")
    for name in cfg.scorers:
        get_scorer(name)  # an unknown scorer fails before any work
    if not is_count(cfg.seed):
        raise NeuronbenchError(f"seed={cfg.seed!r}: expected a non-negative integer (it fixes the word sample, the "
                               "control labels and every method's generator)")
    sites = cfg.sites
    if not (_is_list(sites) and sites and all(site in SITES for site in sites) and len(set(sites)) == len(sites)):
        raise NeuronbenchError(f"sites={_shown(sites)}: expected a non-empty list of distinct sites from "
                               f"{', '.join(SITES)}, e.g. sites=[hidden,mlp]")
    if cfg.model.get("n_layers") is not None:  # planted models have one layer of their own
        selected_layers(cfg.model.name, int(cfg.model.n_layers), list(sites), cfg.get("layers"), cfg.get("depths"))
    pooling = cfg.get("pooling") or cfg.model.pooling
    if cfg.model.source != "planted" and pooling not in POOLINGS:
        raise NeuronbenchError(f"pooling={pooling!r}: expected one of {', '.join(POOLINGS)}, or null for the "
                               f"model's default ({cfg.model.pooling})")
    checked_ks(cfg.ks)  # k > D is dropped per layer by k_grid, which refuses ks with no k <= D
    for key in ("bootstrap", "test_bootstrap"):
        if not is_count(cfg.get(key, 0)):
            raise NeuronbenchError(f"{key}={cfg.get(key)!r}: expected a non-negative number of resamples (0: none)")
    job_device(cfg)  # device=cuda on a machine without one fails before any work
    caps = cfg.task.get("max_words")
    if caps is not None and not isinstance(caps, Mapping):
        raise NeuronbenchError(f"task.max_words={caps!r}: expected a cap per split, e.g. "
                               "task.max_words={train:5000,dev:2000,test:5000}, or null for no cap")
    for split, cap in (caps or {}).items():
        if split not in SPLITS or not is_count(cap, 1):
            raise NeuronbenchError(f"task.max_words.{split}={cap!r}: expected a positive number of words for "
                                   f"each split of {', '.join(SPLITS)}")


def run_methods(cfg: DictConfig, methods: dict[str, dict]) -> dict[str, Path]:
    """One task x model x seed job for several methods: each cell is loaded once, every method ranks it, and
    each distinct ranking is scored once on the cell's shared LayerData. Each method's records, rankings and
    job.json land in its own folder, as its one-method job would write them (same values).

    Returns {method: folder}; methods whose records exist (and force is off) are skipped.
    """
    check_config(cfg)
    check_results_folder(cfg.results_dir)
    folders = {name: job_dir(cfg, name) for name in methods}
    jobs = [MethodJob(name, single, instantiate(params), folders[name])
            for name, params in methods.items()
            for single in [with_method(cfg, params)] if not finished(folders[name], single)]
    if not jobs:
        return folders
    single_threaded_blas()  # also in launcher worker processes, which skip the CLI's main()
    started = time.perf_counter()
    task_cfg, model_cfg = cfg.task, cfg.model
    task = _load_task(json.dumps(OmegaConf.to_container(task_cfg.loader, resolve=True)),
                      task_cfg.name, task_cfg.version)
    source = (planted_source(task, cfg) if isinstance(task, PlantedData)
              else extracted_source(task, cfg))
    t_extract = time.perf_counter() - started
    examples = source.examples
    for job in jobs:
        if "other_activations" in job.method.needs:
            job.others = other_models_source(task, cfg, job.method, source)
    context = None
    if any("model" in job.method.needs for job in jobs) or any(needs_model(name) for name in cfg.scorers):
        if source.model is None:
            raise NeuronbenchError(f"methods {[job.name for job in jobs]} or scorers {list(cfg.scorers)} run "
                                   "the model; planted tasks have none")
        wants_family = source.family is not None and "tpp" in cfg.scorers  # only tpp reads the multi-class form
        context = model_context(task, examples, source.model, pooling=source.pooling,
                                batch_size=cfg.batch_size, family=source.family() if wants_family else None)
    common = {"task": task_cfg.name, "task_version": str(task_cfg.version),
              "concept": task_cfg.get("concept"), "model": model_cfg.name,
              "model_revision": source.revision, "pooling": source.pooling}
    stamp = {"package_version": bench.__version__, "git_commit": git_commit(),
             "n_train": len(examples.y["train"]), "n_test": len(examples.y["test"])}
    groups = (None if not cfg.get("bootstrap")  # train sentence ids, what stab_boot resamples
              else np.arange(len(examples.y["train"])) if isinstance(task, PlantedData)  # planted words are iid
              else word_refs(task.sentences["train"], examples.index["train"])[:, 0])
    resamples = test_resamples(cfg, task, examples)
    for done, (site, layer) in enumerate(source.layers):
        t0 = time.perf_counter()
        cell = f"{task_cfg.name}/{model_cfg.name}/{site}/L{layer}"
        X = source.load(site, layer)
        cell_context = context.at(site, layer) if context is not None else None
        truth = source.cell_truth(site, layer) if source.cell_truth is not None else source.truth
        data = LayerData(X, examples, where=cell, truth=truth, context=cell_context, resamples=resamples)
        key = (task_cfg.name, model_cfg.name, layer, site, task_cfg.get("concept"))
        ks = k_grid(data.n_neurons, cfg.ks)
        scored: dict[bytes, tuple[str, list[tuple[str, Score]], dict]] = {}  # ranking -> first method, rows, times
        shared = {"model": cell_context, "cell": Cell(task_cfg.name, task_cfg.get("concept"), model_cfg.name,
                                                      int(cfg.seed), site, layer),
                  "dev": (X["dev"], examples.y["dev"])}
        for job in jobs:
            t_method = time.perf_counter()
            available, rows = shared, slice(None)  # a cross-model method reads the words every model encodes
            if job.others is not None:
                available = {**shared, "other_activations": job.others.activations(site, layer)}
                rows = job.others.keep
            inputs = {need: available[need] for need in job.method.needs if need in available}
            ranking, seconds, peak = timed_rank(job.method, X["train"][rows], examples.y["train"][rows],
                                                cell_rng(cfg.seed, *key, "method"), inputs)
            with writing_results(job.out):
                atomic_save_npy(ranking_file(job.out, site, layer), ranking.astype(np.int64))
                for kind in DIAGNOSTICS:
                    if getattr(job.method, f"{kind}_", None) is not None:
                        atomic_save_npy(diagnostics_file(job.out, kind, site, layer),
                                        getattr(job.method, f"{kind}_"))
            fingerprint = ranking.astype(np.int64).tobytes()
            if fingerprint not in scored:
                scored[fingerprint] = (job.name, *score_cell(ranking, data, ks, cfg.scorers, cfg.seed, key))
            first, scores, scorer_s = scored[fingerprint]
            scorer_s = dict(scorer_s) if first == job.name else {}  # an alias's scoring cost nothing
            if cfg.get("bootstrap"):  # needs the method itself, so it is the runner's, not a scorer's
                t_boot = time.perf_counter()
                scores = scores + [("bootstrap", score) for score in bootstrap_rows(
                    job.method, job.name, X["train"], examples.y["train"], groups, ranking,
                    cell_rng(cfg.seed, *key, "bootstrap"), int(cfg.bootstrap))]
                scorer_s["bootstrap"] = round(time.perf_counter() - t_boot, 3)
            base = {**common, "method": job.name, "method_params": job.params, "seed": int(cfg.seed),
                    "source": job.source, **stamp, "layer": layer, "site": site, "n_neurons": data.n_neurons,
                    "other": None, "chance": None, "k": None}
            job.costs += [{**base, "metric": "cost_time_s", "value": seconds},
                          {**base, "metric": "cost_peak_mem_b", "value": peak}]
            job.records += [{**base, "metric": score.metric, "k": score.k, "value": score.value, "chance": score.chance,
                             **({} if score.interval is None else dict(zip(("ci_low", "ci_high"), score.interval))),
                             **({"readout": READOUTS[name]} if name in READOUTS else {})}
                            for name, score in scores]
            job.timings.append({"site": site, "layer": layer, "seconds": round(time.perf_counter() - t_method, 3),
                                "scorers_s": scorer_s,
                                **({"same_ranking_as": first} if first != job.name else {})})
        log.info("cell %s: %d methods, %d distinct rankings in %s; cells %s", cell, len(jobs), len(scored),
                 duration(time.perf_counter() - t0),
                 eta(time.perf_counter() - started - t_extract, done + 1, len(source.layers)))
    for job in jobs:
        with writing_results(job.out):
            write_job(job, examples, task, {"extract_s": round(t_extract, 2),
                                            **({"other_models": job.others.revisions} if job.others else {}),
                                            "total_s": round(time.perf_counter() - started, 2)})
    return folders


def test_resamples(cfg: DictConfig, task, examples: Examples) -> np.ndarray | None:
    """The job's test-sentence resamples (`test_bootstrap` of them; None for 0). They are drawn per (task,
    concept, seed), not per model, layer or method: every value of a corpus shares them, so differences
    between methods keep their pairing (reference addendum E.1, common random numbers)."""
    if not cfg.get("test_bootstrap"):
        return None
    groups = (np.arange(len(examples.y["test"])) if isinstance(task, PlantedData)  # planted words are iid
              else word_refs(task.sentences["test"], examples.index["test"])[:, 0])
    return cluster_resamples(groups, int(cfg.test_bootstrap),
                             cell_rng(cfg.seed, cfg.task.name, cfg.task.get("concept"), "test_bootstrap"))


def score_cell(ranking: np.ndarray, data: LayerData, ks: list[int], scorers, seed: int,
               key: tuple) -> tuple[list[tuple[str, Score]], dict[str, float]]:
    """Every scorer on one ranking: (scorer, score) rows in scorer order and each scorer's seconds. Each
    scorer's generator depends on the cell, not the method, so every ranking of a cell meets the same draws.
    A TEST_BOOTSTRAP scorer runs once more on the cell's test resamples, from the memoized probes, for the
    intervals of its values."""
    rows, seconds = [], {}
    for name in scorers:
        t_scorer = time.perf_counter()
        scorer = get_scorer(name)
        scores = scorer(ranking, data, ks, cell_rng(seed, *key, name))
        if data.resamples is not None and name in TEST_BOOTSTRAP:
            with data.replicated():
                scores = [with_interval(score, replicates) for score, replicates
                          in zip(scores, scorer(ranking, data, ks, cell_rng(seed, *key, name)), strict=True)]
        rows += [(name, score) for score in scores]
        seconds[name] = round(time.perf_counter() - t_scorer, 3)
    return rows, seconds


def with_interval(score: Score, replicated: Score) -> Score:
    """`score` with the 95% percentile interval of its bootstrap replicates (`replicated.value[1:]`); a value
    that is no function of test accuracies (a chance level) stays without one."""
    if replicated.metric != score.metric or replicated.k != score.k:
        raise NeuronbenchError(f"replicated scores out of step: {replicated.metric}@{replicated.k} for "
                               f"{score.metric}@{score.k}")
    if np.ndim(replicated.value) == 0:
        return score
    low, high = np.percentile(np.asarray(replicated.value[1:], dtype=np.float64), [2.5, 97.5])
    return replace(score, interval=(float(low), float(high)))


def write_job(job: MethodJob, examples: Examples, task, timing: dict) -> None:
    """A method's job.json, cost.jsonl and, last, its records: a job whose records exist is finished."""
    atomic_write_bytes(job.out / "job.json", json.dumps(
        {"config": OmegaConf.to_container(job.cfg, resolve=True), "method": job.name,
         "examples": examples.sizes(), "labels": list(examples.label_names),
         "dropped_classes": list(examples.dropped), "merged_classes": list(examples.merged),
         **({"task_meta": task.meta} if isinstance(task, Task) else {}),  # sources; silver labels say so
         **timing, "layers": job.timings},
        indent=1, default=str).encode())
    if not hasattr(job.method, "source"):  # a submission names its source; reading its ranking costs nothing
        atomic_write_bytes(job.out / "cost.jsonl", "".join(json.dumps(r) + "\n" for r in job.costs).encode())
    atomic_write_bytes(job.out / "records.jsonl", "".join(json.dumps(r) + "\n" for r in job.records).encode())
    log.info("wrote %d records to %s", len(job.records), job.out / "records.jsonl")
