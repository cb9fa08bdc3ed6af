"""`datasets` where users meet it: a token-classification dataset saved with save_to_disk (or named on the
hub) is a task with one config line, run end to end on the tiny random model; each bad input's one error;
a packed records.parquet read as a datasets.Dataset."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import datasets
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from bench.errors import NeuronbenchError
from bench.run import run_job
from conftest import CONF, REPO
from leaderboard.records import pack, records_dataset
from tasks.hf_dataset import hf_tokens_task

datasets.disable_progress_bars()
WORDS = ("the", "cat", "saw", "a", "dog", "near", "river", "ran", "old", "house")
NUMBERS = ("3", "17", "42", "2005", "9", "88")
TAGS = datasets.Sequence(datasets.ClassLabel(names=["O", "NUM"]))
SIZES = {"train": 40, "validation": 10, "test": 10}  # 60 sentences


def toy_rows(n: int, seed: int) -> dict[str, list]:
    """`n` sentences of 4-8 words; a word is tagged NUM (1) exactly when it is written in digits."""
    rng = random.Random(seed)
    rows = {"tokens": [], "ner_tags": []}
    for _ in range(n):
        words = [rng.choice(WORDS + NUMBERS) for _ in range(rng.randint(4, 8))]
        rows["tokens"].append(words)
        rows["ner_tags"].append([int(word.isdigit()) for word in words])
    return rows


def toy(sizes: dict[str, int] = SIZES, tags=TAGS) -> datasets.DatasetDict:
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")), "ner_tags": tags})
    return datasets.DatasetDict({name: datasets.Dataset.from_dict(toy_rows(n, seed), features=features)
                                 for seed, (name, n) in enumerate(sizes.items())})


def saved(dataset, folder) -> str:
    dataset.save_to_disk(str(folder))
    return str(folder)


def with_row(dataset: datasets.DatasetDict, split: str, **row) -> datasets.DatasetDict:
    """`dataset` with one more row at the end of `split` (plain lists, so any value can be written)."""
    columns = dataset[split].to_dict()
    for name, value in row.items():
        columns[name].append(value)
    return datasets.DatasetDict({**dataset, split: datasets.Dataset.from_dict(columns)})


def config(tmp_path, *extra):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["model=tiny_random", "task=hf_tokens", "task.name=toy_ner",
                                            "task.n_min=5", "ks=[1,2,5]", "method=probeless",
                                            f"results_dir={tmp_path / 'results'}",
                                            f"cache_dir={tmp_path / 'cache'}", *extra])


def test_saved_dataset_is_a_task_with_one_config_line(tmp_path):
    path = saved(toy(), tmp_path / "toy")
    out = run_job(config(tmp_path, f"task.path={path}", "task.tokens=tokens", "task.tags=ner_tags",
                         "task.max_words={train:120,dev:60,test:60}"), "probeless")
    records = pd.read_json(out / "records.jsonl", lines=True)
    assert set(records["task"]) == {"toy_ner"} and set(records["layer"]) == {0, 1, 2}
    assert set(records["n_train"]) == {120}  # the cap, as for every task
    full = records[(records["metric"] == "probe_acc") & (records["k"] == records["n_neurons"])]
    assert full["value"].min() > 0.9  # NUM is a function of the word: labels aligned with words are learnt
    meta = json.loads((out / "job.json").read_text())["task_meta"]
    assert meta["splits"] == {"train": "train", "dev": "validation", "test": "test"}
    assert meta["fingerprints"]["train"] == datasets.load_from_disk(path)["train"]._fingerprint

    packed = pack(tmp_path / "results", tmp_path / "records.parquet")
    table = records_dataset(packed)
    assert isinstance(table, datasets.Dataset)
    pd.testing.assert_frame_equal(table.to_pandas(), pd.read_parquet(packed))


def test_published_records_load_as_a_dataset():
    path = REPO / "leaderboard" / "published" / "standard_minilm_l3" / "records.parquet"
    table, frame = records_dataset(path), pd.read_parquet(path)
    assert table.num_rows == len(frame) and table.column_names == list(frame.columns)
    with pytest.raises(NeuronbenchError, match=re.escape(f"{REPO / 'README.md'}: not a packed records file")):
        records_dataset(REPO / "README.md")


def test_labels_splits_context_and_corpus_id(tmp_path):
    dataset = toy()
    base = hf_tokens_task("toy", "1", saved(dataset, tmp_path / "base"))
    first = dataset["train"][0]
    assert base.sentences["train"][0] == first["tokens"]
    assert base.labels["train"][0] == [["O", "NUM"][tag] for tag in first["ner_tags"]]

    renamed = datasets.DatasetDict(train=dataset["train"], dev=dataset["test"], heldout=dataset["validation"])
    other = hf_tokens_task("toy", "1", saved(renamed, tmp_path / "renamed"), splits={"test": "heldout"},
                           context=["O"])
    assert other.meta["splits"] == {"train": "train", "dev": "dev", "test": "heldout"}
    assert {label for sent in other.labels["train"] for label in sent} == {"NUM", None}
    assert other.corpus_id != base.corpus_id  # other words in dev and test: another activation cache

    as_strings = dataset.map(lambda row: {"ner_tags": [["O", "NUM"][t] for t in row["ner_tags"]]},
                             features=datasets.Features({"tokens": dataset["train"].features["tokens"],
                                                         "ner_tags": datasets.Sequence(datasets.Value("string"))}))
    strings = hf_tokens_task("toy", "1", saved(as_strings, tmp_path / "strings"))
    assert strings.labels == base.labels and strings.corpus_id == base.corpus_id  # same words, same cache

    ints = with_row(dataset.cast_column("ner_tags", datasets.Sequence(datasets.Value("int64"))), "train",
                    tokens=["x", "5"], ner_tags=[-100, 1])
    ints = with_row(ints, "train", tokens=[], ner_tags=[])
    plain = hf_tokens_task("toy", "1", saved(ints, tmp_path / "ints"))
    assert plain.labels["train"][-1] == [None, "1"] and len(plain.sentences["train"]) == 41
    assert plain.meta["skipped_empty_rows"] == {"train": 1, "dev": 0, "test": 0}


def test_hub_name_goes_to_load_dataset(monkeypatch, tmp_path):
    calls = []

    def load_dataset(path, name=None, revision=None):
        calls.append((path, name, revision))
        return toy()

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    task = hf_tokens_task("toy", "1", "someone/toy_ner", subset="en", revision="abc123")
    assert calls == [("someone/toy_ner", "en", "abc123")] and len(task.sentences["test"]) == 10


def test_hub_name_offline_is_one_error():
    with pytest.raises(NeuronbenchError, match=re.escape(
            "task.path='nobody/no_such_dataset': neither a folder written by save_to_disk nor a dataset "
            "load_dataset can load (ConnectionError: ")):
        hf_tokens_task("toy", "1", "nobody/no_such_dataset")


BAD = {  # case: (dataset, task kwargs, the whole message, {path} standing for the saved folder)
    "missing_column": (toy(), {"tags": "pos_tags"},
                       "{path}: split 'train' has no column 'pos_tags'; its columns: tokens, ner_tags"),
    "tags_not_a_list": (toy().map(lambda row: {"label": 1.5}), {"tags": "label"},
                        "{path}: column 'label' of split 'train' is Value('float64'), not a list of ints "
                        "(ClassLabel names become the classes) or of strings"),
    "float_tags": (toy().cast_column("ner_tags", datasets.Sequence(datasets.Value("float32"))), {},
                   "{path}: column 'ner_tags' of split 'train' is List(Value('float32')), not a list of ints "
                   "(ClassLabel names become the classes) or of strings"),
    "tokens_not_strings": (toy().map(lambda row: {"ids": [len(w) for w in row["tokens"]]}), {"tokens": "ids"},
                           "{path}: column 'ids' of split 'train' is List(Value('int64')), not a list of strings"),
    "length_mismatch": (with_row(toy(), "validation", tokens=["a", "b", "c"], ner_tags=[0, 0]), {},
                        "{path}: row 10 of split 'validation' has 3 tokens ('tokens') but 2 tags ('ner_tags')"),
    "empty_token": (with_row(toy(), "test", tokens=["a", " ", "c"], ner_tags=[0, 0, 0]), {},
                    "{path}: row 10 of split 'test': token 1 of 'tokens' is empty (' ')"),
    "missing_split": (toy({"train": 4, "test": 2}), {},
                      "{path}: no dev split (looked for 'validation' or 'dev'); its splits: train, test; "
                      "name one with task.splits.dev=NAME"),
    "split_used_twice": (toy(), {"splits": {"dev": "test"}},
                         "{path}: split 'test' would be both dev and test; each of train, dev, test needs its "
                         "own (task.splits)"),
    "no_splits": (toy()["train"], {},
                  "{path}: one Dataset without splits; save a DatasetDict with train, validation and test "
                  "splits instead"),
    "unknown_context_tag": (toy(), {"context": ["0"]},
                            "{path}: task.context names tags the data does not have: ['0']; its tags: NUM, O"),
    "subset_on_a_folder": (toy(), {"subset": "en"},
                           "{path}: a folder written by save_to_disk has no subset or revision; task.subset and "
                           "task.revision are for hub datasets"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_clear_error(tmp_path, case):
    dataset, kwargs, message = BAD[case]
    path = saved(dataset, tmp_path / case)
    with pytest.raises(NeuronbenchError) as raised:
        hf_tokens_task("toy", "1", path, **kwargs)
    assert str(raised.value) == message.replace("{path}", path)


def test_missing_path_through_the_config(tmp_path):
    missing = tmp_path / "no_such_folder"
    with pytest.raises(NeuronbenchError) as raised:
        run_job(config(tmp_path, f"task.path={missing}"), "probeless")
    assert str(raised.value) == (f"task.path='{missing}': no such folder ({missing}); give a folder written by "
                                 "save_to_disk or a hub dataset name")


def test_importing_neuronbench_does_not_import_datasets():
    code = ("import sys, bench.cli, leaderboard.cli, tasks.hf_dataset, leaderboard.records; "
            "assert 'datasets' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)
