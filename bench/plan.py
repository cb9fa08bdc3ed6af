"""`neuronbench plan <overrides>`: what a run or a sweep will do and cost, before it starts and without loading
a model: its jobs, each job's cells, words and classes, the sentences to extract, and the time and memory that
the costs measured on published runs (the constants below) predict, for the basic launcher and n workers.
"""

from __future__ import annotations

import heapq
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from bench.core.types import SPLITS, PlantedData
from bench.errors import NeuronbenchError
from bench.progress import duration

# ---- Calibration: measured on this project's 2-core CPU machine (shared with other work), one BLAS thread ----
# Every cost is a power law in the cell's train words N, its width D and its classes C:
#     seconds (or bytes) = a * (N / 2000) * (D / 384) ** b * C ** c
# fitted by least squares on logs, a multiplied by the mean exp(residual) so that sums are unbiased. N enters
# linearly by assumption: the runs had N = 2000 (and 1146 for xpos_binary@NNPS) only. Widths measured: 384 (every
# hidden cell) and 1536 (every mlp cell), so b also carries the difference between the sites, and other widths are
# a guess from it: on mpnet_base (768, 3072) the upos seed-0 job of the standard sweep (2026-12-03, 2 cores shared
# with another sweep) took 39 min, 979 s of it rank() and 794 s scoring; the plan says 30 min, 941 s and 539 s.
# Refit with `python -m bench.plan` (reads the published boards' records and the raw run folder when present).
CALIBRATION_SOURCE = ("standard_minilm_l3 (2026-12-02, commit a64bf2a) and standard_minilm_l6 (2026-12-03, "
                      "05f81df) boards, leaderboard/published/")
RANK_BOARDS = ("standard_minilm_l3", "standard_minilm_l6")  # whose cost_time_s / cost_peak_mem_b records fit:
# rank() seconds of one method on one cell, (a, b, c): 13,650 calls (25 methods x 546 cells)
RANK_S = {
    'anova_f': (0.02796, 1.19, 0.0289),
    'ap': (0.07727, 1.13, 0.0033),
    'ap2': (0.109, 1.11, 0.0138),
    'cluster_rep': (0.04224, 1.66, 0.0147),
    'gaussian': (2.415, 0.959, 0.707),
    'ig_probe': (0.09313, 0.859, 1.11),
    'iou': (0.03446, 1.24, 0.268),
    'iou_prev': (0.03821, 1.21, 0.274),
    'lasso': (0.1644, 0.903, 1.1),
    'lca': (0.1352, 0.935, 1.14),
    'linear_meanw': (0.08397, 1.05, 1.18),
    'linreg': (0.07846, 1.88, -0.021),
    'maxcorr': (0.04607, 1.53, 0.00189),
    'mean_abs': (0.01181, 1.32, 0.0057),
    'meanselect': (0.01933, 1.21, 0.0159),
    'mi': (0.3934, 1.03, 0.0609),
    'mi_hist': (0.1596, 1.15, 0.0262),
    'mincorr': (0.04739, 1.53, -0.00933),
    'noreg': (0.4069, 0.331, 0.712),
    'probeless': (0.01877, 1.2, 0.0217),
    'probeless_ovr': (0.01867, 1.19, 0.0376),
    'random': (0.01028, 1.34, 0.00951),
    'ridge': (0.1169, 0.682, 1.11),
    'sparse_l1': (0.1632, 0.729, 0.614),
    'variance': (0.01605, 1.24, 0.0046),
}
# tracemalloc peak bytes of one rank() call, (a, b, c), from the same calls' cost_peak_mem_b records
RANK_PEAK_B = {
    'anova_f': (1.542e+07, 0.998, 0.00138),
    'ap': (3.917e+07, 1, 0.00186),
    'ap2': (3.916e+07, 1, 0.00246),
    'cluster_rep': (1.564e+07, 1.32, -0.00934),
    'gaussian': (3.084e+07, 0.719, 0.546),
    'ig_probe': (1.566e+07, 0.864, 0.214),
    'iou': (1.543e+07, 0.998, -0.000159),
    'iou_prev': (1.543e+07, 0.998, -0.000159),
    'lasso': (1.543e+07, 0.998, -0.000159),
    'lca': (1.543e+07, 0.998, -0.000159),
    'linear_meanw': (1.543e+07, 0.998, -0.000159),
    'linreg': (2.072e+07, 1.4, -0.0138),
    'maxcorr': (1.807e+07, 1.25, -0.00931),
    'mean_abs': (6.294e+06, 0.988, -0.000644),
    'meanselect': (1.543e+07, 0.998, -0.000159),
    'mi': (2.278e+07, 0.959, -3.42e-05),
    'mi_hist': (1.861e+07, 0.999, -0.000345),
    'mincorr': (1.807e+07, 1.25, -0.00931),
    'noreg': (1.543e+07, 0.998, -0.000159),
    'probeless': (1.543e+07, 0.998, -0.000159),
    'probeless_ovr': (1.543e+07, 0.998, -0.000159),
    'random': (6.294e+06, 0.988, -0.000642),
    'ridge': (1.543e+07, 0.998, -0.000159),
    'sparse_l1': (1.543e+07, 0.998, -0.000159),
    'variance': (9.365e+06, 0.993, -0.000465),
}
# Scorer seconds per distinct ranking of a cell (an alias's scoring costs nothing), (a, b, c), from the scorers_s
# of 6,300 method cells (36 jobs) in the job.json files of standard_minilm_l6/run (2026-12-03, not committed).
SCORER_S = {
    'ablation': (0.0128, 1.08, 0.462),
    'probe_acc': (0.04268, 0.189, 1.12),
    'selectivity': (0.0489, 0.167, 1.23),
}
MEASURED_WIDTHS = {384, 1536}
CALIBRATED_KS = (1, 3, 10, 30, 100)  # those scorer times are for this k grid; others scale by sum(k < D)
# Extraction: seconds per word of the sentences run = EXTRACT_WORD_S + EXTRACT_MAC_S x multiply-adds per token of
# the blocks run (n x (4 d^2 + 2 d f)). From the two whole-EWT extractions (254,818 words, every layer) in the
# standard_minilm_l6 run's log, 2026-12-03 05:36: minilm_l6 152.9 s and minilm_l3 90.4 s.
EXTRACT_WORD_S = 1.095e-4
EXTRACT_MAC_S = 4.62e-11
JOB_S = 0.7895  # per job outside its cells (task load, example selection, cache checks, writing records): l6 run
WORKER_START_S = 8.7  # a worker's imports, Hydra start and first model load: l6 run log, launch to model loaded
# Peak resident memory of one worker = PROCESS_B + fp32 weights of the models it loads + the largest rank()
# peak + one cell's arrays. PROCESS_B is the minilm_l3 run's peak (1.4 GB, /usr/bin/time) less those parts.
PROCESS_B = 6.969e+08
# The memory model holds for the minilm runs (the l6 run's process: 1.9 GB by ps during a deprel job, 1.4 GB
# estimated) but not for wider models, whose extra memory is outside rank() (its peaks match: 665 MB measured,
# 603 MB estimated for gaussian on an mpnet mlp cell), so the plan says so instead of scaling a guess:
WIDE_PEAK_NOTE = "the standard_mpnet_base sweep's process reached 5.4 GB resident on 2026-12-03, 2.2 GB estimated"
DEFAULT_VOCAB = 50_000  # embedding rows for the weights of a model whose config does not give vocab_size


@dataclass(frozen=True)
class PowerLaw:
    a: float
    b: float
    c: float

    def __call__(self, n_train: int, width: int, classes: int) -> float:
        return self.a * (n_train / 2000) * (width / 384) ** self.b * max(classes, 2) ** self.c


def fit_power_law(values, n_train, width, classes) -> tuple[float, float, float]:
    """(a, b, c) of values ~ a (N/2000) (D/384)^b C^c: least squares on logs, a times the mean exp(residual)."""
    values, n_train, width, classes = (np.asarray(v, dtype=np.float64) for v in (values, n_train, width, classes))
    design = np.column_stack([np.ones(len(values)), np.log(width / 384), np.log(classes)])
    target = np.log(np.maximum(values, 1e-4)) - np.log(n_train / 2000)
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    smear = float(np.mean(np.exp(target - design @ coef)))
    return float(np.exp(coef[0]) * smear), float(coef[1]), float(coef[2])


def _law(table: dict, name: str) -> PowerLaw | None:
    return PowerLaw(*table[name]) if name in table else None


# ---- The sweep: Hydra's own composition and basic sweeper, without launching anything ----

@dataclass(frozen=True)
class Sweep:
    jobs: list[tuple[list[str], DictConfig, str | None]]  # (overrides, job config, `method` group choice)
    launcher: DictConfig
    sweeper: str | None = None  # set when it is not the basic sweeper: its jobs are not expanded


def sweep_configs(overrides: list[str], multirun: bool = False) -> Sweep:
    """Each job `neuronbench <overrides>` would run, in launch order: the mode, the suite's sweeper params and
    the command line as Hydra's basic sweeper combines them, each job composed as the launchers compose it.
    A bad override raises Hydra's own exception."""
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    from bench.cli import CONF_DIR

    overrides = list(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="cli"):
        app = GlobalHydra.instance().hydra
        mode = app.get_mode(config_name="config", overrides=overrides)  # as hydra's _run_app decides it
        if mode is None or (multirun and mode == RunMode.RUN):
            mode = RunMode.MULTIRUN if multirun else RunMode.RUN
            overrides.append(f"hydra.mode={mode.name}")
        if mode == RunMode.RUN:
            cfg = app.compose_config("config", overrides, run_mode=RunMode.RUN)
            return Sweep([(overrides, _job(cfg), cfg.hydra.runtime.choices.get("method"))], cfg.hydra.launcher)
        cfg = app.compose_config("config", overrides, run_mode=RunMode.MULTIRUN)
        sweeper = cfg.hydra.sweeper.get("_target_")
        if sweeper != f"{BasicSweeper.__module__}.{BasicSweeper.__name__}":
            return Sweep([], cfg.hydra.launcher, str(sweeper))
        params = [f"{key}={value}" for key, value in (cfg.hydra.sweeper.get("params") or {}).items()]
        parser = OverridesParser.create(config_loader=app.config_loader)
        batches = BasicSweeper.split_arguments(parser.parse_overrides([*params, *cfg.hydra.overrides.task]), None)[0]
        jobs = []
        for job in batches:
            job_cfg = app.config_loader.load_sweep_config(cfg, list(job))
            jobs.append((list(job), _job(job_cfg), job_cfg.hydra.runtime.choices.get("method")))
        return Sweep(jobs, cfg.hydra.launcher)


def _job(cfg: DictConfig) -> DictConfig:
    """The config a job's task function receives: without the hydra node."""
    return OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])


def launcher_workers(launcher: DictConfig) -> dict[str, int]:
    """The parallelism the chosen launcher names, if any: joblib's n_jobs (-1: this machine's cores), submitit's
    array_parallelism; the basic launcher runs one job at a time."""
    target = str(launcher.get("_target_", "")).lower()
    if "joblib" in target:
        n_jobs = int(launcher.get("n_jobs", -1))
        return {f"joblib n_jobs={n_jobs}": n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)}
    if "submitit" in target and launcher.get("array_parallelism"):
        return {f"submitit array_parallelism={launcher.array_parallelism}": int(launcher.array_parallelism)}
    return {}


# ---- One job's size: what the run reads before its first forward pass, with every word assumed valid ----

@dataclass
class JobSize:
    """A job's cells, examples and methods, as the run would select them (the extractor's length filter aside)."""

    overrides: list[str]
    task: str  # the task form, task@concept
    model: str
    seed: int
    cells: list[tuple[str, int, int]]  # (site, layer, width)
    methods: dict[str, dict]  # every method of the job: name -> params
    finished: set[str]  # methods whose records exist (force=false): a resumed sweep skips them
    classes: int
    words: dict[str, int]
    scorers: list[str]
    ks: list[int] | None
    bootstrap: int
    model_cfg: dict
    pooling: str
    corpus: str | None = None  # the task's corpus_id (None: planted activations, nothing to extract)
    sentences: dict[str, np.ndarray] = field(default_factory=dict)  # split -> ids of sentences holding a word
    lengths: dict[str, np.ndarray] = field(default_factory=dict)  # split -> words per sentence of the corpus

    @property
    def pending(self) -> list[str]:
        return [name for name in self.methods if name not in self.finished]


@lru_cache(maxsize=8)
def _method_configs(names_json: str) -> dict[str, dict]:
    """bench.run.method_configs once per `methods` value of a sweep (it reads and instantiates every config)."""
    from bench.cli import CONF_DIR
    from bench.run import method_configs

    return method_configs(json.loads(names_json), CONF_DIR)


def size_job(overrides: list[str], cfg: DictConfig, choice: str | None) -> JobSize:
    """Check a job as the run checks it (method names, check_config, the concept) and select its examples; the
    same NeuronbenchError as the run's for a bad value. Loads the task (a few seconds), never a model."""
    from bench.examples import check_concept, select_examples
    from bench.run import (_load_task, check_config, extracted_source, job_dir, planted_source, selected_layers,
                           task_form)

    names = cfg.get("methods")
    methods = (_method_configs(json.dumps(OmegaConf.to_container(names) if isinstance(names, DictConfig | ListConfig)
                                          else names))
               if names is not None else {choice: OmegaConf.to_container(cfg.method, resolve=True)})
    check_config(cfg)
    task_cfg, model_cfg = cfg.task, cfg.model
    task = _load_task(json.dumps(OmegaConf.to_container(task_cfg.loader, resolve=True)), task_cfg.name,
                      task_cfg.version)
    finished = {name for name in methods if not cfg.force and (job_dir(cfg, name) / "records.jsonl").exists()}
    common = dict(overrides=overrides, task=task_form(task_cfg.name, task_cfg.get("concept")), model=model_cfg.name,
                  seed=int(cfg.seed), methods=methods, finished=finished, scorers=list(cfg.scorers),
                  ks=None if cfg.ks is None else list(cfg.ks), bootstrap=int(cfg.get("bootstrap") or 0),
                  model_cfg=OmegaConf.to_container(model_cfg, resolve=True),
                  pooling=cfg.get("pooling") or model_cfg.get("pooling") or "none")
    if isinstance(task, PlantedData):
        source = planted_source(task, cfg)  # no model: a model mismatch fails here as in the run
        width = int(task.X["train"].shape[1])
        return JobSize(cells=[(site, layer, width) for site, layer in source.layers],
                       classes=source.examples.n_classes, words=source.examples.sizes(), **common)
    if model_cfg.source == "planted":
        extracted_source(task, cfg)  # raises the run's error before anything loads
    check_concept(task, task_cfg.get("concept"), task_cfg.n_min, required=OmegaConf.is_missing(task_cfg, "concept"))
    lengths = {split: np.array([len(sentence) for sentence in task.sentences[split]], dtype=np.int64)
               for split in SPLITS}
    examples = select_examples(
        task, {split: np.ones(int(lengths[split].sum()), dtype=bool) for split in SPLITS}, seed=cfg.seed,
        concept=task_cfg.get("concept"), n_min=task_cfg.n_min, rare=task_cfg.rare,
        max_words=OmegaConf.to_container(task_cfg.max_words) if task_cfg.get("max_words") else None)
    layers = selected_layers(model_cfg.name, int(model_cfg.n_layers), list(cfg.sites), cfg.get("layers"),
                             cfg.get("depths"))
    first = {split: np.concatenate([[0], np.cumsum(lengths[split])]) for split in SPLITS}
    sentences = {split: np.unique(np.searchsorted(first[split], examples.index[split], side="right") - 1)
                 for split in SPLITS}
    return JobSize(cells=[(site, layer, int(model_cfg.widths[site])) for site, layer in layers],
                   classes=examples.n_classes, words=examples.sizes(), corpus=task.corpus_id,
                   sentences=sentences, lengths=lengths, **common)


# ---- Costs ----

# Methods whose rankings coincide, so the scorers run once for all of them (the published boards' README):
# anova_f and the two probeless forms on two classes, maxcorr and mincorr against a single other model.
def distinct_rankings(job: JobSize) -> int:
    names = set(job.pending)
    clones = 0
    if job.classes == 2:
        clones += max(0, len(names & {"anova_f", "probeless", "probeless_ovr"}) - 1)
    others = {name: tuple(m for m in job.methods[name].get("other_models", ()) if m != job.model)
              for name in names & {"maxcorr", "mincorr"}}
    if len(others) == 2 and len(set(others.values())) == 1 and len(next(iter(others.values()))) == 1:
        clones += 1
    return len(names) - clones


def ks_factor(width: int, ks: list[int] | None) -> float:
    """Scorer cost of a k grid relative to the calibrated one: the ratio of sum(k < D) (not measured; 1 for it)."""
    from bench.scorers import k_grid

    def load(grid):
        return sum(k for k in k_grid(width, grid) if k < width) or 1

    return load(ks) / load(list(CALIBRATED_KS))


@dataclass
class JobCost:
    rank_s: float = 0.0
    score_s: float = 0.0
    extract_s: float = 0.0
    extract: list[tuple[tuple, float, int, int]] = field(default_factory=list)  # (entry, seconds, sentences, words)
    memory_b: float = 0.0

    @property
    def compute_s(self) -> float:
        return self.rank_s + self.score_s + (JOB_S if self.rank_s or self.score_s else 0.0)

    @property
    def total_s(self) -> float:
        return self.compute_s + self.extract_s


def block_macs(model_cfg: dict) -> int:
    """Multiply-adds per token of one block: attention projections 4 d^2, the FFN 2 d f."""
    d, f = int(model_cfg["widths"]["hidden"]), int(model_cfg["widths"].get("mlp", 4 * model_cfg["widths"]["hidden"]))
    return 4 * d * d + 2 * d * f


def weights_bytes(model_cfg: dict) -> float:
    vocab = int((model_cfg.get("config") or {}).get("vocab_size") or DEFAULT_VOCAB)
    return 4.0 * (int(model_cfg["n_layers"]) * block_macs(model_cfg) + vocab * int(model_cfg["widths"]["hidden"]))


def other_model_configs(job: JobSize) -> dict[str, dict]:
    """The other models the job's pending cross-model methods extract (their conf/model configs)."""
    from bench.model_sources import MODEL_CONFIGS

    names = sorted({other for name in job.pending for other in job.methods[name].get("other_models", ())
                    if other != job.model})
    return {name: OmegaConf.to_container(OmegaConf.load(MODEL_CONFIGS / f"{name}.yaml"), resolve=True)
            for name in names if (MODEL_CONFIGS / f"{name}.yaml").is_file()}


def cost_jobs(jobs: list[JobSize]) -> list[JobCost]:
    """Each job's core-seconds and peak memory. Sentences are extracted once per cache entry (model, corpus,
    pooling): the first job in launch order that needs a sentence pays for it, assuming an empty cache."""
    done: dict[tuple, set] = {}
    costs = []
    for job in jobs:
        cost = JobCost()
        pending = job.pending
        n_train = max(job.words["train"], 1)
        for site, layer, width in job.cells:
            cost.rank_s += sum(law(n_train, width, job.classes) for name in pending
                               if (law := _law(RANK_S, name))) * (1 + job.bootstrap)
            scoring = sum(law(n_train, width, job.classes) for name in job.scorers if (law := _law(SCORER_S, name)))
            cost.score_s += distinct_rankings(job) * scoring * ks_factor(width, job.ks)
        if job.corpus is not None and pending:
            deepest = max(layer for _, layer, _ in job.cells)
            wanted = [((job.model, job.corpus, job.pooling), job.model_cfg, deepest, SPLITS)]
            for name, spec in other_model_configs(job).items():
                depth = math.ceil(deepest / int(job.model_cfg["n_layers"]) * int(spec["n_layers"]))
                wanted.append(((name, job.corpus, spec.get("pooling", "last")), spec, depth, ("train",)))
            for entry, spec, depth, splits in wanted:
                per_word = EXTRACT_WORD_S + EXTRACT_MAC_S * depth * block_macs(spec)
                n_sentences = n_words = 0
                for split in splits:
                    seen = done.setdefault((*entry, split), set())
                    new = [int(s) for s in job.sentences[split] if int(s) not in seen]
                    seen.update(new)
                    n_sentences += len(new)
                    n_words += int(job.lengths[split][new].sum()) if new else 0
                if n_sentences:
                    cost.extract.append((entry, n_words * per_word, n_sentences, n_words))
                    cost.extract_s += n_words * per_word
        if pending:
            models = [job.model_cfg, *other_model_configs(job).values()] if job.corpus is not None else []
            n_words = sum(job.words.values())
            cell_b = max((max((law(n_train, width, job.classes) for name in pending
                               if (law := _law(RANK_PEAK_B, name))), default=0.0) + 4.0 * n_words * width
                          for _, _, width in job.cells), default=0.0)
            cost.memory_b = PROCESS_B + sum(weights_bytes(spec) for spec in models) + cell_b
        costs.append(cost)
    return costs


def wall_seconds(costs: list[JobCost], workers: int) -> float:
    """Wall time of the jobs on `workers` parallel workers taking them in launch order, each worker starting once,
    and extractions into one cache entry taking turns (they hold the entry's lock)."""
    free = [WORKER_START_S] * max(1, min(workers, len(costs)))
    heapq.heapify(free)
    lock: dict[tuple, float] = {}
    for cost in costs:
        t = heapq.heappop(free)
        for entry, seconds, _, _ in cost.extract:
            t = max(t, lock.get(entry, 0.0)) + seconds
            lock[entry] = t
        heapq.heappush(free, t + cost.compute_s)
    return max(free)


# ---- The report ----

def _count(n: float) -> str:
    return f"{int(round(n)):,}"


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def _axes(jobs: list[JobSize]) -> str:
    """task x 14, seed x 3: the keys whose values differ between jobs, with their number of values."""
    values: dict[str, set] = {}
    for job in jobs:
        for override in job.overrides:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    return ", ".join(f"{key} x {len(v)}" for key, v in values.items() if len(v) > 1)


def _cells(job: JobSize) -> str:
    sites: dict[tuple[str, int], list[int]] = {}
    for site, layer, width in job.cells:
        sites.setdefault((site, width), []).append(layer)
    return "; ".join(f"{site} {','.join(map(str, layers))}: {width} neurons"
                     for (site, width), layers in sites.items())


def report(jobs: list[JobSize], costs: list[JobCost], workers: dict[str, int]) -> str:
    """The plan as text: jobs, cells, words, extraction, time per task and per launcher, memory."""
    lines = []
    methods = sorted({name for job in jobs for name in job.methods})
    models = sorted({job.model for job in jobs})
    axes = _axes(jobs)
    per_job = sorted({len(job.methods) for job in jobs})
    counts = "-".join(map(str, per_job)) + f" method{'s' * (per_job[-1] != 1)}"
    lines.append(f"{len(jobs)} job{'s' * (len(jobs) != 1)}{f' ({axes})' if axes else ''} on {', '.join(models)}: "
                 f"{counts} each{f' ({len(methods)} in all)' if len(methods) > per_job[-1] else ''}, scorers "
                 f"{', '.join(jobs[0].scorers)}")
    for model in models:
        cells = {(len(job.cells), _cells(job)) for job in jobs if job.model == model}
        for n, text in sorted(cells):
            lines.append(f"cells per job{f' ({model})' if len(models) > 1 else ''}: {n} ({text})")
    lines.append("")
    header = f"{'task':<20} {'jobs':>4} {'classes':>7}  {'words train/dev/test':<22} {'sentences':>9}  " \
             f"{'rank()':>8} {'scoring':>8} {'per job':>8}"
    lines.append(header)
    groups: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.task if len(models) == 1 else f"{job.task} {job.model}", []).append(i)
    for name, members in groups.items():
        n = len(members)
        mean = lambda f: sum(f(i) for i in members) / n  # noqa: E731
        words = "/".join(_count(mean(lambda i, s=s: jobs[i].words[s])) for s in SPLITS)
        sentences = mean(lambda i: sum(len(v) for v in jobs[i].sentences.values()))
        lines.append(f"{name:<20} {n:>4} {_count(mean(lambda i: jobs[i].classes)):>7}  {words:<22} "
                     f"{_count(sentences) if jobs[members[0]].corpus else '-':>9}  "
                     f"{duration(mean(lambda i: costs[i].rank_s)):>8} {duration(mean(lambda i: costs[i].score_s)):>8} "
                     f"{duration(mean(lambda i: costs[i].total_s)):>8}")
    lines.append("")
    extracted: dict[str, list[float]] = {}
    for cost in costs:
        for (model, _, _), seconds, n_sentences, n_words in cost.extract:
            total = extracted.setdefault(model, [0.0, 0, 0])
            total[0], total[1], total[2] = total[0] + seconds, total[1] + n_sentences, total[2] + n_words
    if extracted:
        parts = [f"{model} {_count(n_s)} sentences ({_count(n_w)} words) in {duration(s)}"
                 for model, (s, n_s, n_w) in extracted.items()]
        lines.append("extraction into an empty cache: " + "; ".join(parts) + " (a warm cache skips what it holds)")
    rank, score = sum(c.rank_s for c in costs), sum(c.score_s for c in costs)
    extract, total = sum(c.extract_s for c in costs), sum(c.total_s for c in costs)
    lines.append(f"core time: {duration(total)} = rank() {duration(rank)} + scoring {duration(score)}"
                 + (f" + extraction {duration(extract)}" if extract else "")
                 + f" + jobs {duration(total - rank - score - extract)}")
    busy = [i for i, cost in enumerate(costs) if cost.total_s > 0]
    if busy:
        longest = max(busy, key=lambda i: costs[i].total_s)
        memory = max(costs[i].memory_b for i in busy)
        job = jobs[longest]
        lines.append(f"longest job: {duration(costs[longest].total_s)} ({job.task} seed {job.seed}); "
                     f"peak memory: about {_gb(memory)} per worker")
        lines.append("")
        lines.append(f"{'launcher':<34} {'workers':>7} {'wall':>8} {'memory':>8}")
        rows = {"basic (one job at a time)": 1, **workers}
        for n in (2, 4, 8, 16, 32):
            if n < len(busy) and n not in rows.values():
                rows[f"{n} workers"] = n
        if len(busy) not in rows.values():
            rows["one worker per job (Slurm array, Ray)"] = len(busy)
        for name, n in sorted(rows.items(), key=lambda item: item[1]):
            lines.append(f"{name:<34} {n:>7} {duration(wall_seconds([costs[i] for i in busy], n)):>8} "
                         f"{_gb(memory * min(n, len(busy))):>8}")
    skipped = sum(len(job.finished) for job in jobs)
    if skipped:
        lines.append(f"{skipped} of {sum(len(job.methods) for job in jobs)} method runs have records in results_dir: "
                     "a resumed sweep skips them, and they are not counted (force=true reruns them)")
    missing = sorted({name for job in jobs for name in job.pending if name not in RANK_S})
    unscored = sorted({name for job in jobs for name in job.scorers if name not in SCORER_S})
    if missing or unscored:
        lines.append("no measured cost, left out of the estimate (their rankings' scoring is counted): " + "; ".join(
            part for part in (f"methods {', '.join(missing)}" if missing else "",
                              f"scorers {', '.join(unscored)}" if unscored else "") if part))
    widths = sorted({width for job in jobs for _, _, width in job.cells} - MEASURED_WIDTHS)
    lines.append(f"Core time of the 2-core machine that measured the costs ({CALIBRATION_SOURCE}); the walls assume a "
                 "core per worker.")
    if widths:
        lines.append(f"Width{'s' * (len(widths) > 1)} {', '.join(map(str, widths))}: extrapolated from the measured "
                     f"384 and 1536; memory is a lower bound there ({WIDE_PEAK_NOTE}).")
    return "\n".join(lines)


USAGE = """usage: neuronbench plan [-m] [--workers=N,N...] [OVERRIDE ...]

What `neuronbench OVERRIDE ...` would run, and its cost, without loading a model: the jobs of the sweep, the
cells, words and classes of each, the sentences to extract, core time and wall time for the basic launcher and
n parallel workers, and peak memory. Example: neuronbench plan suite=standard model=minilm_l3"""


def main(argv: Sequence[str]) -> int:
    from hydra._internal.utils import run_and_report

    multirun, workers, overrides = False, {}, []
    for arg in argv:
        if arg in ("-h", "--help"):
            print(USAGE)
            return 0
        if arg in ("-m", "--multirun"):
            multirun = True
        elif arg.startswith("--workers="):
            try:
                workers = {f"{int(n)} workers": int(n) for n in arg.split("=", 1)[1].split(",")}
            except ValueError:
                raise SystemExit(f"neuronbench plan: error: {arg}: expected --workers=N[,N...], e.g. --workers=2,16")
        elif arg.startswith("-"):
            raise SystemExit(f"neuronbench plan: error: unknown option {arg}\n{USAGE}")
        else:
            overrides.append(arg)
    sweep = run_and_report(lambda: sweep_configs(overrides, multirun))
    try:
        if sweep.sweeper is not None:
            raise NeuronbenchError(f"hydra.sweeper={sweep.sweeper}: plan expands the basic sweeper only")
        jobs = [size_job(*job) for job in sweep.jobs]
    except NeuronbenchError as err:
        raise SystemExit(f"neuronbench: error: {err}") from None
    print(report(jobs, cost_jobs(jobs), {**launcher_workers(sweep.launcher), **workers}))
    return 0


# ---- Calibration: refit the constants above from the published runs ----

MEASURED_PEAK_RSS_B = 1.4e9  # standard_minilm_l3 run, /usr/bin/time (leaderboard/published/README.md)


def calibrate(published: Path) -> dict:
    """The constants above, fitted again: rank() costs from the boards' records, scorer costs and JOB_S from the
    standard_minilm_l6 run folder's job.json files (jobs the board holds), PROCESS_B from the measured peak."""
    import pandas as pd

    sizes = [size_job(*job) for job in sweep_configs(["suite=standard", "model=minilm_l3", "force=true"]).jobs]
    classes = {(job.task, job.seed): job.classes for job in sizes}
    frames = []
    for board in RANK_BOARDS:
        frame = pd.read_parquet(published / board / "records.parquet",
                                columns=["task", "concept", "seed", "method", "n_neurons", "n_train", "metric",
                                         "value"],
                                filters=[("metric", "in", ["cost_time_s", "cost_peak_mem_b"])])
        frames.append(frame.assign(board=board))
    records = pd.concat(frames, ignore_index=True)
    records["form"] = [f"{t}@{c}" if isinstance(c, str) else t for t, c in zip(records.task, records.concept)]
    records["classes"] = [classes[(form, int(seed))] for form, seed in zip(records.form, records.seed)]
    fitted = {}
    for metric, key in (("cost_time_s", "RANK_S"), ("cost_peak_mem_b", "RANK_PEAK_B")):
        rows = records[records.metric == metric]
        fitted[key] = {name: fit_power_law(group.value, group.n_train, group.n_neurons, group.classes)
                       for name, group in rows.groupby("method")}
    run = published / "standard_minilm_l6" / "run" / "runs"
    held = set(zip(records.form[records.board == "standard_minilm_l6"],
                   records.seed[records.board == "standard_minilm_l6"].astype(int)))
    scored, overheads = [], []
    for form, seed in sorted(held):
        paths = sorted((run / form / "minilm_l6").glob(f"*/seed{seed}/job.json"))
        jobs = [json.loads(path.read_text()) for path in paths]
        if not jobs:
            continue
        overheads.append(jobs[0]["total_s"] - jobs[0]["extract_s"] - sum(cell["seconds"] for job in jobs
                                                                          for cell in job["layers"]))
        widths = jobs[0]["config"]["model"]["widths"]
        scored += [{"scorer": scorer, "value": seconds, "n_train": job["examples"]["train"],
                    "width": widths[cell["site"]], "classes": len(job["labels"])}
                   for job in jobs for cell in job["layers"] if "same_ranking_as" not in cell
                   for scorer, seconds in cell["scorers_s"].items()]
    if scored:
        frame = pd.DataFrame(scored)
        fitted["SCORER_S"] = {name: fit_power_law(group.value, group.n_train, group.width, group.classes)
                              for name, group in frame.groupby("scorer")}
        fitted["JOB_S"] = float(np.median(overheads))
    globals().update({key: value for key, value in fitted.items() if key in ("RANK_PEAK_B",)})
    saved, globals()["PROCESS_B"] = PROCESS_B, 0.0
    try:
        fitted["PROCESS_B"] = MEASURED_PEAK_RSS_B - max(cost.memory_b for cost in cost_jobs(sizes))
    finally:
        globals()["PROCESS_B"] = saved
    return fitted


def _constants(fitted: dict) -> str:
    """The fitted constants as the Python lines to paste above."""
    lines = []
    for key, value in fitted.items():
        if isinstance(value, dict):
            lines.append(f"{key} = {{")
            lines += [f"    {name!r}: ({a:.4g}, {b:.3g}, {c:.3g})," for name, (a, b, c) in sorted(value.items())]
            lines.append("}")
        else:
            lines.append(f"{key} = {value:.4g}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(_constants(calibrate(Path(__file__).resolve().parent.parent / "leaderboard" / "published")))
