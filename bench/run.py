"""One benchmark job: a task x model x method x seed over every layer and site, to records on disk.

Side effects live here: the job reads the activation cache (filling it first if needed), saves one
ranking per layer and site, and writes its records last, atomically, so a job whose records exist is
finished and a stopped sweep resumes by skipping it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import tracemalloc
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits

import bench
from bench.cache import ActivationCache, atomic_save_npy, atomic_write_bytes
from bench.errors import NeuronbenchError
from bench.examples import Examples, control_labels, select_examples
from bench.extract import extract
from bench.intervene import model_context
from bench.layer import LayerData
from bench.models import LoadedModel, load_model
from bench.scorers import get_scorer, k_grid, needs_model
from bench.seeds import cell_rng
from methods.base import Method
from tasks.base import SPLITS
from tasks.planted import PlantedData

log = logging.getLogger(__name__)


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
    return instantiate(json.loads(loader_json), name=name, version=str(version))


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


def extracted_source(task, cfg: DictConfig) -> CellSource:
    """Extract (or reuse) the task corpus's activations, then select this task form's examples."""
    model_cfg, task_cfg = cfg.model, cfg.task
    if model_cfg.source == "planted":
        raise NeuronbenchError(f"model=planted only serves planted tasks; task {task_cfg.name!r} "
                               "needs a real model (e.g. model=minilm_l6)")
    loaded = load_model(model_cfg.name, OmegaConf.to_container(model_cfg, resolve=True))
    cache = ActivationCache(cfg.cache_dir)
    pooling = cfg.get("pooling") or model_cfg.pooling
    entry = extract(loaded, task, cache, sites=list(cfg.sites), pooling=pooling,
                    batch_size=cfg.batch_size, quiet=cfg.quiet)
    examples = select_examples(
        task, {s: cache.load_valid(entry, s) for s in SPLITS}, seed=cfg.seed,
        concept=task_cfg.get("concept"), n_min=task_cfg.n_min,
        max_words=OmegaConf.to_container(task_cfg.max_words) if task_cfg.get("max_words") else None)

    def load(site: str, layer: int) -> dict[str, np.ndarray]:
        return {s: np.asarray(cache.load_layer(entry, s, site, layer)[examples.index[s]],
                              dtype=np.float32) for s in SPLITS}

    wanted = set(cfg.layers) if cfg.get("layers") is not None else None
    layers = [(site, layer) for site in cfg.sites for layer in loaded.layers(site)
              if wanted is None or layer in wanted]
    if not layers:
        raise NeuronbenchError(f"layers={list(cfg.layers)} selects nothing: model {model_cfg.name!r} "
                               f"has layers {loaded.layers(cfg.sites[0])} at site {cfg.sites[0]!r}")
    return CellSource(revision=loaded.revision, pooling=pooling, examples=examples, layers=layers,
                      load=load, model=loaded)


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


def job_folder(results_dir, task: str, concept: str | None, model: str, method: str, seed: int) -> Path:
    """Where one job's records, costs and rankings live (the board and submissions read the same layout)."""
    name = f"{task}@{concept}" if concept else task
    return Path(results_dir) / "runs" / name / model / method / f"seed{int(seed)}"


def ranking_file(job: Path, site: str, layer: int) -> Path:
    """One int64 permutation per (site, layer) of a job."""
    return job / "rankings" / f"{site}_L{int(layer):02d}.npy"


def job_dir(cfg: DictConfig, method_name: str) -> Path:
    return job_folder(cfg.results_dir, cfg.task.name, cfg.task.get("concept"), cfg.model.name,
                      method_name, cfg.seed)


def run_job(cfg: DictConfig, method_name: str) -> Path:
    """Run (or skip, if its records exist and force is off) one job; returns its folder."""
    out = job_dir(cfg, method_name)
    records_path = out / "records.jsonl"
    if records_path.exists() and not cfg.force:
        log.info("skip %s: records exist (force=true reruns)", out)
        return out
    single_threaded_blas()  # also in launcher worker processes, which skip the CLI's main()
    started = time.perf_counter()
    task_cfg, model_cfg = cfg.task, cfg.model
    task = _load_task(json.dumps(OmegaConf.to_container(task_cfg.loader, resolve=True)),
                      task_cfg.name, task_cfg.version)
    source = (planted_source(task, cfg) if isinstance(task, PlantedData)
              else extracted_source(task, cfg))
    t_extract = time.perf_counter() - started
    examples = source.examples
    method_params = OmegaConf.to_container(cfg.method, resolve=True)
    method: Method = instantiate(method_params)
    for name in cfg.scorers:
        get_scorer(name)  # an unknown scorer fails before any work
    context = None
    if "model" in method.needs or any(needs_model(name) for name in cfg.scorers):
        if source.model is None:
            raise NeuronbenchError(f"method {method_name!r} or scorers {list(cfg.scorers)} run the "
                                   "model; planted tasks have none")
        context = model_context(task, examples, source.model, pooling=source.pooling,
                                batch_size=cfg.batch_size)
    base = {"task": task_cfg.name, "task_version": str(task_cfg.version),
            "concept": task_cfg.get("concept"), "model": model_cfg.name,
            "model_revision": source.revision, "pooling": source.pooling, "method": method_name,
            "method_params": json.dumps(method_params, sort_keys=True), "seed": int(cfg.seed),
            "source": "builtin", "package_version": bench.__version__, "git_commit": git_commit(),
            "n_train": len(examples.y["train"]), "n_test": len(examples.y["test"])}
    records, costs, timings = [], [], []
    for site, layer in source.layers:
        t0 = time.perf_counter()
        cell = f"{task_cfg.name}/{model_cfg.name}/{site}/L{layer}"
        X = source.load(site, layer)
        cell_context = context.at(site, layer) if context is not None else None
        data = LayerData(X, examples, where=cell, truth=source.truth, context=cell_context)
        key = (task_cfg.name, model_cfg.name, layer, site, task_cfg.get("concept"))
        inputs = {"model": cell_context} if "model" in method.needs else {}
        ranking, seconds, peak = timed_rank(method, X["train"], examples.y["train"],
                                            cell_rng(cfg.seed, *key, "method"), inputs)
        cell_fields = {**base, "layer": layer, "site": site, "n_neurons": data.n_neurons,
                       "other": None, "chance": None, "k": None}
        costs += [{**cell_fields, "metric": "cost_time_s", "value": seconds},
                  {**cell_fields, "metric": "cost_peak_mem_b", "value": peak}]
        atomic_save_npy(ranking_file(out, site, layer), ranking.astype(np.int64))
        ks = k_grid(data.n_neurons, cfg.ks)
        for name in cfg.scorers:
            for score in get_scorer(name)(ranking, data, ks, cell_rng(cfg.seed, *key, name)):
                records.append({**cell_fields, "metric": score.metric, "k": score.k,
                                "value": score.value, "chance": score.chance})
        t_layer = time.perf_counter() - t0
        timings.append({"site": site, "layer": layer, "seconds": round(t_layer, 3)})
        log.info("%s %s: rank %.2fs, load + rank + score %.2fs", method_name, cell, seconds, t_layer)
    atomic_write_bytes(out / "job.json", json.dumps(
        {"config": OmegaConf.to_container(cfg, resolve=True), "method": method_name,
         "examples": examples.sizes(), "labels": list(examples.label_names),
         "dropped_classes": list(examples.dropped), "extract_s": round(t_extract, 2),
         "total_s": round(time.perf_counter() - started, 2), "layers": timings},
        indent=1, default=str).encode())
    atomic_write_bytes(out / "cost.jsonl", "".join(json.dumps(r) + "\n" for r in costs).encode())
    atomic_write_bytes(records_path, "".join(json.dumps(r) + "\n" for r in records).encode())
    log.info("wrote %d records to %s in %.1fs", len(records), records_path,
             time.perf_counter() - started)
    return out
