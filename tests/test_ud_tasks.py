"""The standard suite's concept tasks: EWT label counts against the raw CoNLL-U, lexical labels on
hand-made sentences, a user's own treebank end to end, concept and rare-class rules, every task
config, and the standard suite's sweep."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from bench.core.types import SPLITS, PlantedData, Task
from bench.errors import NeuronbenchError
from bench.examples import OTHER, check_concept, select_examples
from bench.run import _load_task, method_configs, run_job
from conftest import CONF
from tasks.lexical import lexical_labels, lexical_task

EWT_ROOT = Path(os.environ.get("NEURONBENCH_DATA")
                or Path(__file__).resolve().parents[1].parent / "shared" / "data")
EWT_DIR = EWT_ROOT if (EWT_ROOT / "en_ewt-ud-dev.conllu").is_file() else EWT_ROOT / "ud_english_ewt"
HAS_EWT = (EWT_DIR / "en_ewt-ud-dev.conllu").is_file()
STANDARD_TASKS = 14  # suite=standard (v2): its header says which and why
needs_ewt = pytest.mark.skipif(not HAS_EWT, reason=f"UD English-EWT r2.16 not found in {EWT_ROOT} (set NEURONBENCH_DATA)")


@pytest.fixture(autouse=True)
def ewt_location(monkeypatch):
    """The configs read EWT from NEURONBENCH_DATA: point it at the copy these tests found, if any."""
    if HAS_EWT:
        monkeypatch.setenv("NEURONBENCH_DATA", str(EWT_ROOT))


def config(*overrides, hydra=False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def load(cfg) -> Task | PlantedData:
    """The task a job of this config reads (the runner's own loader, so its in-process memo too)."""
    loader = json.dumps(OmegaConf.to_container(cfg.task.loader, resolve=True))
    return _load_task(loader, cfg.task.name, cfg.task.version)


def task_configs() -> list[str]:
    return sorted(str(path.relative_to(CONF / "task").with_suffix(""))
                  for path in (CONF / "task").rglob("*.yaml"))


def labels_of(task: Task, split: str) -> Counter:
    return Counter(label for sent in task.labels[split] for label in sent)


# --- known answers on EWT dev, counted again from the raw CoNLL-U columns -----------------------

def raw_words(split: str) -> list[list[str]]:
    """The 10 columns of every syntactic word line (integer ID) of an EWT split, read as plain text."""
    lines = (EWT_DIR / f"en_ewt-ud-{split}.conllu").read_text(encoding="utf-8").splitlines()
    return [cols for cols in (line.split("\t") for line in lines if line and line[0] != "#")
            if cols[0].isdigit()]


@needs_ewt
@pytest.mark.parametrize("task_name, raw_label, expected", [
    # (config, label of one raw word (None: not an example), {label: count in dev})
    ("morph_number", lambda c: dict(f.split("=", 1) for f in c[5].split("|") if "=" in f).get("Number"),
     {"Sing": 7821, "Plur": 1780, "Ptan": 28}),
    ("morph_degree", lambda c: dict(f.split("=", 1) for f in c[5].split("|") if "=" in f).get("Degree"),
     {"Pos": 1778, "Sup": 102, "Cmp": 82}),
    ("deprel", lambda c: c[7].split(":")[0], {"nsubj": 2137, "punct": 3061, "root": 2001}),
    ("xpos", lambda c: c[4], {"NN": 3353, "VBZ": 641, "NNPS": 70}),
    ("lex_calendar", lambda c: "calendar" if c[1] in {
        "January", "February", "March", "April", "May", "June", "July", "August", "September",
        "October", "November", "December", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
        "Saturday", "Sunday"} else OTHER, {"calendar": 54, OTHER: 25_147 - 54}),
])
def test_ewt_dev_counts_match_the_raw_columns(task_name, raw_label, expected):
    task = load(config(f"task={task_name}"))
    counts = labels_of(task, "dev")
    raw = Counter(raw_label(cols) for cols in raw_words("dev"))
    assert counts == raw  # every label, None (not an example) included
    assert {label: counts[label] for label in expected} == expected


@needs_ewt
def test_feature_tasks_only_label_words_that_carry_the_feature():
    task = load(config("task=morph_tense"))
    carriers = sum(1 for cols in raw_words("dev") if re.search(r"(^|\|)Tense=", cols[5]))
    counts = labels_of(task, "dev")
    assert counts[None] == 25_147 - carriers and set(counts) == {None, "Past", "Pres"}


# --- lexical labels, exact by rule ----------------------------------------------------------------

@pytest.mark.parametrize("prop, words, labels", [
    ("capitalised", ["The", "USA", "iPhone", "ǅemal", "1st", "Émile", "-"],
     ["capitalised", "capitalised", OTHER, "capitalised", OTHER, "capitalised", OTHER]),
    ("numeral", ["3", "1,000", "3.5", "10:30", "2005-06", "1/2", "٣", "3rd", "$5", "1990s", "-", "three"],
     ["numeral"] * 7 + [OTHER] * 5),
    ("punctuation", [".", "--", "(", "...", "'s", "$", "+", "a."],
     ["punctuation"] * 4 + [OTHER] * 4),
    ("calendar", ["May", "may", "Sunday", "SUNDAY", "Jan", "Mondays", "December"],
     ["calendar", OTHER, "calendar", OTHER, OTHER, OTHER, "calendar"]),
    ("suffix", ["quickly", "only", "Nothing", "thing", "walked", "red", "station", "nation",
                "regardless", "unless", "x-ing", "runs"],  # 3 letters before the suffix, at least
     ["ly", None, "ing", None, "ed", None, "tion", None, "less", None, None, None]),
    ("position", list("abcdefg"), ["begin"] * 3 + ["middle"] * 2 + ["end"] * 2),
    ("position", ["Ja", "!"], ["begin", "middle"]),
    ("position", ["Hi"], ["begin"]),
])
def test_lexical_labels_on_hand_made_sentences(prop, words, labels):
    assert lexical_labels(prop, words) == labels



@pytest.fixture
def german_files(german) -> list[str]:
    """The hand-written German treebank as task.files overrides."""
    return [f"task.files.{split}={path}" for split, path in german.items()]


def test_unknown_lexical_property_lists_valid_ones(german):
    message = ("unknown lexical property 'vowels'; valid properties: capitalised, numeral, "
               "punctuation, calendar, position, suffix")
    with pytest.raises(NeuronbenchError, match=re.escape(message)):
        lexical_task("vowels", "t", "1", files=german)


def test_lexical_task_shares_the_ud_corpus(german_files, german):
    task = lexical_task("capitalised", "de_caps", "1", files=german)
    assert task.labels["test"] == [["capitalised", OTHER]]  # "Ja !"
    assert task.meta["property"] == "capitalised" and task.meta["source"] == "conllu files"
    assert task.corpus_id == load(config("task=conllu", *german_files)).corpus_id


# --- a user's own CoNLL-U: config -> tasks API -> a real job --------------------------------------

def test_german_treebank_task_from_one_config_line(german_files, german):
    task = load(config("task=conllu", *german_files, "task.loader.column=feats:Case"))
    assert task.sentences["train"][0] == ["Die", "Kinder", "spielen", "in", "dem", "Garten", "."]
    assert task.labels["train"][0] == ["Nom", "Nom", None, None, "Dat", "Dat", None]
    assert task.meta["files"] == {split: str(Path(path).resolve()) for split, path in german.items()}


def test_every_ewt_task_takes_the_users_files(german_files, german):
    cfg = config("task=morph_number", *german_files)
    assert load(cfg).labels["dev"] == [["Plur", "Plur", None, None]]
    with pytest.raises(NeuronbenchError, match=r"one CoNLL-U path per split .* got \['train'\]"):
        load(config("task=morph_number", f"task.files.train={german['train']}"))


def test_german_job_end_to_end_with_merge(tmp_path, german_files):
    """deprel on the German fixture: root and punct occur in every split; with rare=merge the other
    relations become OTHER, which the one-sentence test split lacks, so OTHER is dropped too."""
    cfg = config("task=conllu", *german_files, "task.loader.column=deprel", "task.name=de_deprel",
                 "task.n_min=1", "task.rare=merge", "model=tiny_random", "method=probeless",
                 "scorers=[probe_acc,selectivity]", "ks=[1,5]", "layers=[2]",
                 f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}")
    out = run_job(cfg, "probeless")
    job = json.loads((out / "job.json").read_text())
    assert out == tmp_path / "results" / "runs" / "de_deprel" / "tiny_random" / "probeless" / "seed0"
    assert job["labels"] == ["punct", "root"]
    assert job["examples"] == {"train": 6, "dev": 2, "test": 2}
    assert job["merged_classes"] == ["advmod", "aux", "case", "compound", "det", "nsubj", "obj", "obl"]
    assert job["dropped_classes"] == [OTHER]
    assert job["task_meta"]["source"] == "conllu files" and job["task_meta"]["column"] == "deprel"
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {r["metric"] for r in records} >= {"probe_acc", "selectivity"}


# --- concepts: unknown or unset fails before any forward pass, listing the valid ones -------------

@pytest.fixture
def german_xpos(german) -> list[str]:
    """The German dev sentence as test split too: the fixture's test sentence has no XPOS at all."""
    return [f"task.files.train={german['train']}", f"task.files.dev={german['dev']}",
            f"task.files.test={german['dev']}", "task.n_min=1", "model=tiny_random"]


def test_unknown_concept_fails_before_the_model(tmp_path, german_xpos):
    cfg = config("task=xpos_binary", *german_xpos, "task.concept=VBZ",
                 f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}")
    message = ("task 'xpos_binary': concept 'VBZ' is not a kept class (needs 1 words per split); "
               "valid concepts: '$.', 'PPER', 'VVFIN'")
    with pytest.raises(NeuronbenchError, match=re.escape(message) + "$"):
        run_job(cfg, "random")
    assert not (tmp_path / "cache").exists()  # no extraction happened


def test_unset_concept_lists_the_valid_ones(tmp_path, german_files, german_xpos):
    cfg = config("task=xpos_binary", *german_xpos, f"results_dir={tmp_path / 'results'}",
                 f"cache_dir={tmp_path / 'cache'}")
    with pytest.raises(NeuronbenchError, match=re.escape(
            "task 'xpos_binary' is one-vs-rest: choose its class with task.concept=<class>; "
            "valid concepts (1 words in every split): '$.', 'PPER', 'VVFIN'")):
        run_job(cfg, "random")
    with pytest.raises(NeuronbenchError, match=r"concept 'VBZ' .* valid concepts: none$"):
        run_job(config("task=xpos_binary", *german_files, "task.n_min=1", "task.concept=VBZ",
                       f"results_dir={tmp_path / 'results'}"), "random")


def test_conllu_task_without_files_names_the_keys(tmp_path):
    cfg = config("task=conllu", f"results_dir={tmp_path}")
    message = ("config values left unset (???): task.files.dev, task.files.test, task.files.train; "
               "give them on the command line, e.g. task.files.dev=...")
    with pytest.raises(NeuronbenchError, match=re.escape(message)):
        run_job(cfg, "random")


# --- rare classes: drop or merge into OTHER --------------------------------------------------------

def toy_task(counts_per_split):
    labels = {s: [[label for label, n in counts.items() for _ in range(n)] + [None]]
              for s, counts in counts_per_split.items()}
    sentences = {s: [[f"w{i % 5}" for i in range(len(sent))] for sent in labels[s]] for s in SPLITS}
    return Task("toy", "1", sentences, labels)


def all_valid(task):
    return {s: np.ones(sum(map(len, task.sentences[s])), dtype=bool) for s in SPLITS}


def test_merge_rule_pools_rare_classes_into_other():
    task = toy_task({s: {"A": 30, "B": 25, "C": 12, "D": 3 if s == "dev" else 15} for s in SPLITS})
    drop = select_examples(task, all_valid(task), seed=0, n_min=10)
    assert drop.label_names == ("A", "B", "C") and drop.dropped == ("D",) and drop.merged == ()
    merge = select_examples(task, all_valid(task), seed=0, n_min=10, rare="merge")
    assert merge.label_names == ("A", "B", "C") and merge.merged == ("D",) and merge.dropped == (OTHER,)
    merge = select_examples(task, all_valid(task), seed=0, n_min=13, rare="merge")  # C (12) + D: OTHER
    assert merge.label_names == ("A", "B", OTHER) and merge.merged == ("C", "D")
    assert merge.dropped == () and merge.sizes() == {"train": 82, "dev": 70, "test": 82}
    assert np.bincount(merge.y["dev"]).tolist() == [30, 25, 15]
    concept = select_examples(task, all_valid(task), seed=0, n_min=13, rare="merge", concept="B")
    assert concept.label_names == (OTHER, "B") and concept.sizes()["train"] == 50  # balanced 25/25
    negatives = concept.index["train"][concept.y["train"] == 0]
    assert np.isin(negatives, np.arange(55, 82)).any()  # C and D words may now be negatives


def test_rare_rule_must_be_drop_or_merge():
    task = toy_task({s: {"A": 30, "B": 30} for s in SPLITS})
    with pytest.raises(NeuronbenchError, match=r"rare='pool' is not a rule; set task.rare to drop"):
        select_examples(task, all_valid(task), seed=0, n_min=10, rare="pool")


# --- every task config composes and loads; the standard suite ------------------------------------

@pytest.mark.parametrize("name", [n for n in task_configs() if n not in ("conllu", "hf_tokens")])
def test_every_task_config_loads(name):
    cfg = config(f"task={name}")
    assert cfg.task.version == "1" and cfg.task.rare in ("drop", "merge")
    if cfg.task.loader._target_.startswith(("tasks.ud.", "tasks.lexical.", "tasks.silver.")) and not HAS_EWT:
        pytest.skip("needs UD English-EWT (set NEURONBENCH_DATA)")
    task = load(cfg)
    if isinstance(task, Task):
        check_concept(task, cfg.task.get("concept"), cfg.task.n_min)


def suite_jobs(suite: str) -> list[list[str]]:
    """The override list of every job a suite launches, expanded by Hydra's own sweeper."""
    cfg = config(f"suite={suite}", hydra=True)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
        (jobs,) = BasicSweeper.split_arguments(parser.parse_overrides(params), None)
    assert cfg.hydra.mode.name == "MULTIRUN" and list(cfg.sites) == ["hidden", "mlp"]
    return jobs


def suite_methods(suite: str, jobs: list[list[str]]) -> set[str]:
    """The methods a suite's jobs rank: its `methods` list (cell jobs), else their method= overrides."""
    cfg = config(f"suite={suite}")
    if cfg.get("methods") is not None:
        return set(method_configs(cfg.methods, CONF))
    return {o.split("=", 1)[1] for job in jobs for o in job if o.startswith("method=")}


@pytest.mark.parametrize("suite, n_tasks", [("standard", STANDARD_TASKS), ("standard_full", 36),
                                            ("standard_model", 36)])
def test_suite_size_matches_its_header(suite, n_tasks):
    jobs = suite_jobs(suite)
    axes = {axis: {o for job in jobs for o in job if o.startswith(f"{axis}=")} for axis in ("task", "seed")}
    methods = suite_methods(suite, jobs)
    header = (CONF / "suite" / f"{suite}.yaml").read_text()
    if any(o.startswith("method=") for o in jobs[0]):
        stated = re.search(r"(\d+) tasks x (\d+) methods x (\d+) seeds? = ([\d,]+) jobs", header)
        counts = [len(axes["task"]), len(methods), len(axes["seed"]), len(jobs)]
    else:  # cell jobs rank every method of `methods: all`: a method added to conf/method/ changes no count
        stated = re.search(r"(\d+) tasks x (\d+) seeds? = ([\d,]+) jobs, each ranking every method", header)
        counts = [len(axes["task"]), len(axes["seed"]), len(jobs)]
    assert stated, f"{suite}.yaml's header must state the job count as the other suites do"
    assert [int(g.replace(",", "")) for g in stated.groups()] == counts, \
        f"update the job count in conf/suite/{suite}.yaml"
    assert len(axes["task"]) == n_tasks
    model_based = {"ablate_single", "ig_head"}
    if suite == "standard_model":
        assert methods == model_based and all("method.n_words=200" in job for job in jobs)
        return
    assert axes["seed"] == {"seed=0", "seed=1", "seed=2"} and model_based.isdisjoint(methods)
    if suite == "standard_full":
        binary = sorted(t.split("/")[1] for t in axes["task"] if t.startswith("task=xpos_binary/"))
        assert binary == sorted("VBG VBZ NNPS DT TO CD JJ PRP MD RB VBP VB NNS VBN POS IN NN CC NNP "
                                "VBD".split())


@pytest.mark.parametrize("suite, n_tasks", [("standard", STANDARD_TASKS), ("standard_full", 36)])
def test_standard_suite_tasks_are_distinct_jobs(suite, n_tasks):
    folders = set()
    for name in {job[0].split("=", 1)[1] for job in suite_jobs(suite)}:
        task = config(f"task={name}").task
        folders.add(f"{task.name}@{task.concept}" if task.get("concept") else task.name)
    assert len(folders) == n_tasks
