"""Leaderboard submissions: rankings as data, validated, then scored by the runner like any built-in method.

A submission is a folder named after it, holding `submission.yaml` and one int64 permutation per task, model,
seed, site and layer, in the runner's own layout (bench.run.job_folder and ranking_file, with the submission's
name in the method's place):

    <name>/submission.yaml
    <name>/runs/<task>[@<concept>]/<model>/<name>/seed<s>/rankings/<site>_L<ll>.npy

It carries no scores. `score` runs bench.run.run_job with `SubmittedRankings` as the method, so the same LayerData
and scorers compute every number (design.md#leaderboard). Nothing in a submission is executed or unpickled: YAML is
read with yaml.safe_load and arrays with np.load(allow_pickle=False).
"""

from __future__ import annotations

import inspect
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

import bench
from bench.cache import atomic_write_bytes
from bench.cli import CONF_DIR
from bench.core.method import Method
from bench.errors import NeuronbenchError
from bench.models import SITES
from bench.run import Cell, job_folder, ranking_file, run_job, task_form
from leaderboard.board import BUILTIN_SOURCE, SUBMISSION_PREFIX
from leaderboard.records import jobs, ranking_path, read_records
from tasks.planted import planted_data

log = logging.getLogger(__name__)

SUBMISSIONS_DIR = Path(__file__).resolve().parent / "submissions"
META_FILE = "submission.yaml"
FIELDS = ("name", "authors", "contact", "url", "description", "neuronbench_version", "task_versions")
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
CONCEPT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=+-]{0,63}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
URL = re.compile(r"https?://[^\s/]+\S*")
VERSION = re.compile(r"\d+\.\d+(\.\d+)?([.+-]?[a-z0-9]+)*")
RANKING = re.compile(r"runs/(?P<task>[^/@]+)(@(?P<concept>[^/]+))?/(?P<model>[^/]+)/(?P<method>[^/]+)/"
                     r"seed(?P<seed>\d+)/rankings/(?P<site>[a-z]+)_L(?P<layer>\d+)\.npy")
NPY_MAGIC = b"\x93NUMPY"
PLANTED_LOADER = f"{planted_data.__module__}.{planted_data.__name__}"
PLANTED_WIDTH = inspect.signature(planted_data).parameters["n_neurons"].default

# Limits: an int64 permutation of 131,072 neurons is 1 MiB; a full submission (13 + 12 layers of BERT-base,
# 4 tasks x 3 models x 3 seeds) is about 13 MiB.
MAX_FILE_BYTES = 1 << 20
MAX_META_BYTES = 64 << 10
MAX_TOTAL_BYTES = 32 << 20
MAX_FILES = 20_000
SHOWN_CHARS = 80  # of a string value quoted in a problem line
# Minimum coverage: every (task, model) with >= MIN_SEEDS seeds and all layers of each submitted site, and at
# least MIN_TASKS tasks crossed with MIN_MODELS real (non-planted) models.
MIN_SEEDS, MIN_TASKS, MIN_MODELS = 3, 2, 2

SCORES = "submissions carry rankings, never scores"
SCORE_WORDS = re.compile(r"score|acc|auc|value|metric|result|record|selectiv|jaccard|overlap|f1|precision|recall")
SCORE_SUFFIXES = {".json", ".jsonl", ".csv", ".tsv", ".parquet", ".txt"}
PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".joblib", ".npz", ".ckpt"}


@dataclass(frozen=True)
class Job:
    """One runner job of a submission: the rankings of one task form x model x seed, over its sites."""

    task: str
    concept: str | None
    model: str
    seed: int
    sites: tuple[str, ...]


@dataclass(frozen=True)
class Submission:
    name: str
    folder: Path
    meta: dict
    jobs: tuple[Job, ...]


def read_ranking(path: Path, width: int) -> np.ndarray:
    """The int64 permutation of range(width) saved at `path`; NeuronbenchError says what is wrong otherwise."""
    fix = "save it with np.save(path, ranking.astype(np.int64))"
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(NPY_MAGIC))
    except OSError as err:
        raise NeuronbenchError(f"{path}: cannot read the ranking ({err.strerror})") from err
    if magic != NPY_MAGIC:
        raise NeuronbenchError(f"{path}: not a .npy array (a pickle or archive?); {fix}")
    try:
        ranking = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:  # object dtype, or a header that promises more than is there
        if "allow_pickle" in str(err):
            raise NeuronbenchError(f"{path}: an object array, which only loads by unpickling; {fix}") from err
        raise NeuronbenchError(f"{path}: unreadable .npy ({err}); {fix}") from err
    if ranking.dtype.kind in "fc":
        raise NeuronbenchError(f"{path}: {ranking.dtype} values look like scores; {SCORES}: {fix}")
    if ranking.dtype.kind != "i" or ranking.dtype.itemsize != 8:
        raise NeuronbenchError(f"{path}: dtype {ranking.dtype}, expected int64; {fix}")
    if ranking.ndim != 1:
        raise NeuronbenchError(f"{path}: shape {ranking.shape}, expected a 1-D permutation")
    if len(ranking) != width:
        raise NeuronbenchError(f"{path}: {len(ranking)} entries, but the site has {width} neurons (wrong width)")
    counts = np.bincount(ranking[(ranking >= 0) & (ranking < width)], minlength=width)
    if not (counts == 1).all():
        raise NeuronbenchError(f"{path}: not a permutation of 0..{width - 1}: {int((counts == 0).sum())} "
                               f"neurons missing, {int((counts > 1).sum())} repeated")
    return ranking.astype(np.int64)


def site_shapes(model_cfg, task_cfg) -> dict[str, tuple[list[int], int]]:
    """Layers and width of each site of a task x model, from the configs alone (no weights are loaded).

    A real model's yaml states `n_layers` and `widths` (tests check them against the loaded model); planted
    tasks carry their own single layer, as bench.run.planted_source says.
    """
    planted_task = task_cfg.loader.get("_target_") == PLANTED_LOADER
    if model_cfg.source == "planted" or planted_task:
        if not (model_cfg.source == "planted" and planted_task):
            raise NeuronbenchError(f"model {model_cfg.name!r} and task {task_cfg.name!r} do not go together: "
                                   "planted tasks run on model planted only, and it serves nothing else")
        return {"hidden": ([0], int(task_cfg.loader.get("n_neurons", PLANTED_WIDTH)))}
    if model_cfg.get("n_layers") is None or model_cfg.get("widths") is None:
        raise NeuronbenchError(f"conf/model/{model_cfg.name}.yaml has no `n_layers` and `widths`; add them "
                               "(e.g. n_layers: 6, widths: {hidden: 384, mlp: 1536}) to accept rankings for it")
    n_layers, widths = int(model_cfg.n_layers), model_cfg.widths
    return {"hidden": (list(range(n_layers + 1)), int(widths.hidden)),
            "mlp": (list(range(1, n_layers + 1)), int(widths.mlp))}


class _Configs:
    """conf/<group>/<name>.yaml read once per validation; None for a name with no config."""

    def __init__(self, conf_dir: Path):
        self.conf_dir = conf_dir
        self.loaded: dict[tuple[str, str], DictConfig | None] = {}

    def get(self, group: str, name: str) -> DictConfig | None:
        if (group, name) not in self.loaded:
            path = self.conf_dir / group / f"{name}.yaml"
            self.loaded[group, name] = OmegaConf.load(path) if NAME.fullmatch(name) and path.is_file() else None
        return self.loaded[group, name]

    def names(self, group: str) -> list[str]:
        return sorted(path.stem for path in (self.conf_dir / group).glob("*.yaml"))


def validate(folder: Path, conf_dir: Path = CONF_DIR, submissions_dir: Path = SUBMISSIONS_DIR) -> list[str]:
    """Every problem of the submission in `folder`, one line each (empty: valid)."""
    problems, _ = _inspect(Path(folder), _Configs(Path(conf_dir)), Path(submissions_dir))
    return problems


def load_submission(folder: Path, conf_dir: Path = CONF_DIR,
                    submissions_dir: Path = SUBMISSIONS_DIR) -> Submission:
    """The validated submission, or NeuronbenchError listing every problem."""
    folder = Path(folder)
    problems, submission = _inspect(folder, _Configs(Path(conf_dir)), Path(submissions_dir))
    if problems:
        raise NeuronbenchError(f"submission {folder} is not valid ({len(problems)} problems; "
                               "`neuronbench-board validate` lists them):\n" + "\n".join(problems))
    return submission


def _inspect(folder: Path, configs: _Configs, submissions_dir: Path) -> tuple[list[str], Submission | None]:
    if folder.is_symlink() or not folder.is_dir():
        return [f"{folder}: not a folder"], None
    meta, problems = _check_meta(folder, configs, submissions_dir)
    name = meta.get("name") if isinstance(meta.get("name"), str) and NAME.fullmatch(meta["name"]) else folder.name
    files, walk_problems = _walk(folder)
    problems += walk_problems
    found: dict[tuple, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    files_with: dict[str, list[str]] = defaultdict(list)  # problem -> files, so one cause is one line
    for path in files:
        relative = path.relative_to(folder).as_posix()
        if relative == META_FILE:
            continue
        problem, cell = _check_ranking(folder, relative, name, configs)
        if problem:
            files_with[problem].append(relative)
        if cell:
            task, concept, model, seed, site, layer = cell
            found[task, concept, model, seed][site].add(layer)
    for problem, paths in files_with.items():
        more = f" (and {len(paths) - 1} more files)" if len(paths) > 1 else ""
        problems.append(f"{paths[0]}{more}: {problem}")
    problems += _check_coverage(found, name, meta.get("task_versions"), configs)
    jobs = tuple(Job(task, concept, model, seed, tuple(sorted(sites, key=SITES.index)))
                 for (task, concept, model, seed), sites in sorted(found.items(), key=str))
    return problems, Submission(name=name, folder=folder, meta=meta, jobs=jobs)


def _check_meta(folder: Path, configs: _Configs, submissions_dir: Path) -> tuple[dict, list[str]]:
    path = folder / META_FILE
    if path.is_symlink() or not path.is_file():
        return {}, [f"{META_FILE}: missing (fields: {', '.join(FIELDS)})"]
    if path.stat().st_size > MAX_META_BYTES:
        return {}, [f"{META_FILE}: {path.stat().st_size} bytes, over the {MAX_META_BYTES} byte limit"]
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as err:  # ValueError: an int of over 4,300 digits
        return {}, [f"{META_FILE}: not valid YAML ({err})".replace("\n", " ")]
    if not isinstance(meta, dict):
        return {}, [f"{META_FILE}: expected a mapping of fields ({', '.join(FIELDS)})"]
    problems = []
    for key in meta:
        if key in FIELDS:
            continue
        if SCORE_WORDS.search(str(key).lower()):
            problems.append(f"{META_FILE}: field {_shown(key)} looks like scores; {SCORES}")
        else:
            problems.append(f"{META_FILE}: unknown field {_shown(key)} (fields: {', '.join(FIELDS)})")
    for key in FIELDS:
        if meta.get(key) in (None, "", [], {}):
            problems.append(f"{META_FILE}: field {key!r} is missing or empty")
            continue
        problem = _field_problem(key, meta[key], folder, configs, submissions_dir)
        if problem:
            problems.append(f"{META_FILE}: {key}: {problem}")
    return meta, problems


def _shown(value) -> str:
    """A submission's value as a problem line shows it: a string quoted, cut after SHOWN_CHARS characters, anything
    else by its type alone. Never the whole value: a 1 KB nest of YAML aliases prints as billions of characters."""
    if not isinstance(value, str):
        return f"a value of type {type(value).__name__}"
    return repr(value[:SHOWN_CHARS]) + (f"... ({len(value)} characters)" if len(value) > SHOWN_CHARS else "")


def _field_problem(key: str, value, folder: Path, configs: _Configs, submissions_dir: Path) -> str | None:
    if key == "name":
        if not isinstance(value, str) or not NAME.fullmatch(value):
            return (f"{_shown(value)} is not a safe name: lowercase letters, digits, '_' and '-', starting with a "
                    "letter or digit, at most 64 characters")
        if value != folder.name:
            return f"{value!r} differs from the folder's name {folder.name!r}; rename one of them"
        if configs.get("method", value) is not None:
            return f"{value!r} is a built-in method (conf/method/{value}.yaml); choose a new name"
        other = submissions_dir / value
        if other.exists() and other.resolve() != folder.resolve():
            return f"{value!r} is taken by another submission ({other}); choose a new name"
        return None
    if key == "authors":
        if not isinstance(value, list) or not all(isinstance(a, str) and a.strip() for a in value):
            return "expected a list of names, e.g. [Ada Lovelace, Alan Turing]"
        return None
    if key == "contact":
        ok = isinstance(value, str) and (EMAIL.fullmatch(value) or URL.fullmatch(value))
        return None if ok else f"{_shown(value)} is neither an e-mail address nor an http(s) URL"
    if key == "url":
        return None if isinstance(value, str) and URL.fullmatch(value) else \
            f"{_shown(value)} is not an http(s) URL of the paper or code"
    if key == "description":
        if not isinstance(value, str):
            return "expected one paragraph of text"
        if re.search(r"\n\s*\n", value.strip()) or len(value) > 2000:
            return "expected one paragraph (no blank lines) of at most 2,000 characters"
        return None
    if key == "neuronbench_version":
        ok = isinstance(value, str) and VERSION.fullmatch(value)
        return None if ok else f"{_shown(value)} is not a version string; quote it, e.g. \"{bench.__version__}\""
    if key == "task_versions":
        return _versions_problem(value, configs)
    raise AssertionError(key)


def _versions_problem(value, configs: _Configs) -> str | None:
    if not isinstance(value, dict):
        return "expected a mapping from task name to the task version the rankings were made for"
    problems = []
    for task, version in value.items():
        task_cfg = configs.get("task", str(task))
        if task_cfg is None:
            problems.append(f"unknown task {_shown(task)}")
        elif not isinstance(version, str):
            problems.append(f"{task}: the version must be a quoted string, e.g. \"{task_cfg.version}\", not "
                            f"{_shown(version)}")
        elif version != str(task_cfg.version):
            problems.append(f"{task}: stale task version {_shown(version)}, the task is now at version "
                            f"{str(task_cfg.version)!r}; regenerate its rankings on the current task")
    return "; ".join(problems) or None


def _walk(folder: Path) -> tuple[list[Path], list[str]]:
    """Plain files under folder, refusing links, special files and oversized content."""
    files, problems, total = [], [], 0
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in sorted(dirs):
            if (Path(root) / name).is_symlink():
                problems.append(f"{(Path(root) / name).relative_to(folder).as_posix()}: a symbolic link; "
                                "submissions hold plain files only")
                dirs.remove(name)
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            relative = path.relative_to(folder).as_posix()
            if path.is_symlink() or not path.is_file():
                problems.append(f"{relative}: a symbolic link or special file; submissions hold plain files only")
                continue
            size = path.stat().st_size
            total += size
            if size > MAX_FILE_BYTES:
                problems.append(f"{relative}: {size} bytes, over the {MAX_FILE_BYTES} byte limit per file")
                continue
            files.append(path)
    if len(files) > MAX_FILES:
        problems.append(f"{len(files)} files, over the limit of {MAX_FILES}")
    if total > MAX_TOTAL_BYTES:
        problems.append(f"{total} bytes in all, over the {MAX_TOTAL_BYTES} byte limit")
    return files, problems


def _check_ranking(folder: Path, relative: str, name: str, configs: _Configs) -> tuple[str | None, tuple | None]:
    """(problem, cell) of one file; cell = (task, concept, model, seed, site, layer) once the path names a real
    layer, so a file with bad content is not reported a second time as a missing layer."""
    suffix = Path(relative).suffix.lower()
    match = RANKING.fullmatch(relative)
    if match is None:
        if suffix in PICKLE_SUFFIXES:
            return f"a {suffix} file; nothing in a submission is unpickled: save rankings with np.save", None
        if suffix in SCORE_SUFFIXES or SCORE_WORDS.search(Path(relative).stem.lower()):
            return f"looks like scores; {SCORES}", None
        return (f"unexpected file; a submission holds {META_FILE} and "
                f"runs/<task>[@<concept>]/<model>/{name}/seed<s>/rankings/<site>_L<ll>.npy only"), None
    task, concept, model, method = match.group("task", "concept", "model", "method")
    seed, site, layer = int(match["seed"]), match["site"], int(match["layer"])
    expected = ranking_file(job_folder(folder, task, concept, model, name, seed), site, layer)
    layout = (f"method folder {method!r} must be the submission's name {name!r}" if method != name else
              f"not in the runner's layout; expected {expected.relative_to(folder).as_posix()}"
              if expected != folder / relative else None)
    if concept is not None and not CONCEPT.fullmatch(concept):
        return f"concept {concept!r} has characters outside [A-Za-z0-9_.:=+-]", None
    task_cfg, model_cfg = configs.get("task", task), configs.get("model", model)
    if task_cfg is None:
        return f"unknown task {task!r} (tasks: {', '.join(configs.names('task'))})", None
    if model_cfg is None:
        return f"unknown model {model!r} (models: {', '.join(configs.names('model'))})", None
    try:
        shapes = site_shapes(model_cfg, task_cfg)
    except NeuronbenchError as err:
        return str(err), None
    if site not in shapes:
        return f"unknown site {site!r} for model {model!r} (sites: {', '.join(shapes)})", None
    layers, width = shapes[site]
    if layer not in layers:
        return f"model {model!r} has no layer {layer} at site {site!r} (layers {layers[0]}..{layers[-1]})", None
    cell = (task, concept, model, seed, site, layer)
    if layout:
        return layout, cell
    try:
        read_ranking(folder / relative, width)
    except NeuronbenchError as err:
        return str(err).removeprefix(f"{folder / relative}: "), cell
    return None, cell


def _check_coverage(found: dict, name: str, task_versions, configs: _Configs) -> list[str]:
    """Missing layers, too few seeds, tasks without a recorded version, and the minimum task x model grid."""
    problems = []
    seeds: dict[tuple, set[int]] = defaultdict(set)
    complete: dict[tuple, bool] = {}
    for (task, concept, model, seed), sites in sorted(found.items(), key=str):
        pair = (task, concept, model)
        seeds[pair].add(seed)
        complete.setdefault(pair, True)
        shapes = site_shapes(configs.get("model", model), configs.get("task", task))
        for site, layers in sorted(sites.items()):
            missing = sorted(set(shapes[site][0]) - layers)
            if missing:
                complete[pair] = False
                where = job_folder("", task, concept, model, name, seed).as_posix()
                problems.append(f"{where}: missing layer(s) {', '.join(f'L{m}' for m in missing)} at site "
                                f"{site!r} (model {model!r} has L{shapes[site][0][0]}..L{shapes[site][0][-1]}); "
                                "submit every layer")
    for (task, concept, model), pair_seeds in sorted(seeds.items(), key=str):
        if len(pair_seeds) < MIN_SEEDS:
            complete[task, concept, model] = False
            problems.append(f"runs/{task_form(task, concept)}/{model}: seeds {sorted(pair_seeds)}; at least "
                            f"{MIN_SEEDS} seeds are needed (seed stability is scored)")
    versions = task_versions if isinstance(task_versions, dict) else {}
    tasks = {task for task, _, _ in seeds}
    problems += [f"{META_FILE}: task_versions lacks {task!r}, which has rankings"
                 for task in sorted(tasks - set(versions))]
    problems += [f"{META_FILE}: task_versions lists {_shown(task)}, which has no rankings"
                 for task in sorted(set(versions) - tasks)]
    covered: dict[str, set] = defaultdict(set)
    for (task, concept, model), ok in complete.items():
        if ok and configs.get("model", model).source != "planted":
            covered[model].add((task, concept))
    models = sorted(covered)
    best = max((len(covered[a] & covered[b]) for i, a in enumerate(models) for b in models[i + 1:]), default=0)
    if best < MIN_TASKS:
        problems.append(f"too little coverage: at least {MIN_TASKS} tasks x {MIN_MODELS} models (not planted), "
                        f"each with every layer and >= {MIN_SEEDS} seeds, are needed; complete tasks per model: "
                        + (", ".join(f"{m} {len(covered[m])}" for m in models) or "none"))
    return problems


class SubmittedRankings(Method):
    """A submission as the runner's method: `rank` returns the saved permutation of the cell it is asked for."""

    needs = frozenset({"cell"})
    uses_labels = False

    def __init__(self, folder: str, name: str):
        self.folder = folder
        self.name = name

    @property
    def source(self) -> str:
        """The records' `source`, which keeps a submission apart from built-in methods on the board."""
        return f"{SUBMISSION_PREFIX}{self.name}"

    def rank(self, X, y=None, *, rng=None, cell: Cell | None = None, **inputs) -> np.ndarray:
        if cell is None:
            raise NeuronbenchError(f"submission {self.name!r}: the runner must pass the cell to rank()")
        job = job_folder(self.folder, cell.task, cell.concept, cell.model, self.name, cell.seed)
        return read_ranking(ranking_file(job, cell.site, cell.layer), np.shape(X)[1])


def compose_config(overrides: list[str]) -> DictConfig:
    """The runner's config (conf/config.yaml) with Hydra overrides, as `neuronbench` would compose it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def score(folder: Path, results: Path, overrides: list[str] = (), models: list[str] | None = None,
          force: bool = False) -> list[Path]:
    """Validate, then run one runner job per (task form, model, seed) of the submission; returns the job folders.

    Records land in `results` with `source: submission:<name>` beside the built-in methods' records; the runner's
    defaults (scorers, ks, task caps) apply, and `overrides` change them as on the `neuronbench` command line.
    """
    submission = load_submission(folder)
    unknown = set(models or ()) - {job.model for job in submission.jobs}
    if unknown:
        raise NeuronbenchError(f"submission {submission.name!r} has no rankings for models {sorted(unknown)}")
    outs = []
    for job in submission.jobs:
        if models and job.model not in models:
            continue
        cfg = compose_config([f"task={job.task}", f"model={job.model}", f"seed={job.seed}",
                              f"sites=[{','.join(job.sites)}]", "layers=null", f"results_dir={results}",
                              f"force={str(force).lower()}", *overrides])
        if job.concept is not None:
            OmegaConf.update(cfg, "task.concept", job.concept)
        OmegaConf.update(cfg, "method", {"_target_": f"{__name__}.{SubmittedRankings.__name__}",
                                         "folder": str(submission.folder), "name": submission.name},
                         merge=False, force_add=True)
        outs.append(run_job(cfg, submission.name))
    return outs


def export(results: Path, method: str, name: str, out: Path, meta: dict) -> Path:
    """Copy one method's saved rankings from a results folder into a new submission folder `out`.

    `meta` holds the descriptive fields (authors, contact, url, description); the name, package version and the
    task versions the runs used are filled in. Returns the submission.yaml written; `validate` it next.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise NeuronbenchError(f"{out} already holds files; export into a new folder")
    if out.name != name:
        raise NeuronbenchError(f"the submission folder must be named after the submission: {out.name!r} != {name!r}")
    records = read_records(results)
    runs = records[(records["method"] == method) & (records["source"] == BUILTIN_SOURCE)]
    if runs.empty:
        raise NeuronbenchError(f"no records of method {method!r} under {results}/runs; run it first")
    versions = {}
    cells = jobs(runs)
    for row in cells.itertuples():
        concept = row.concept if isinstance(row.concept, str) else None
        target = ranking_file(job_folder(out, row.task, concept, row.model, name, row.seed), row.site, row.layer)
        atomic_write_bytes(target, ranking_path(results, row).read_bytes())
        versions[row.task] = str(row.task_version)
    fields = {"name": name, **{key: meta.get(key, "") for key in ("authors", "contact", "url", "description")},
              "neuronbench_version": bench.__version__, "task_versions": dict(sorted(versions.items()))}
    path = out / META_FILE
    atomic_write_bytes(path, yaml.safe_dump(fields, sort_keys=False, allow_unicode=True, width=100).encode())
    log.info("exported %d rankings of %s to %s", len(cells), method, out)
    return path
