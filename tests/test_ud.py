"""UD tasks on a hand-written German treebank, EWT location and download (offline), and real EWT."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

import tasks.ud as ud
from bench.errors import NeuronbenchError
from tasks.ud import ewt_files, ud_task

EWT_NAMES = {split: f"en_ewt-ud-{split}.conllu" for split in ("train", "dev", "test")}


@pytest.fixture
def fresh_parse_memo():
    """A test that counts parses must not see files parsed by earlier tests."""
    ud._read_conllu_memo.cache_clear()
    yield
    ud._read_conllu_memo.cache_clear()


# --- ud_task on any treebank, via files= ---------------------------------------------------------

def test_upos_task_from_files(german):
    task = ud_task("upos", "de_upos", "1", files=german)
    # The multiword token "im" is represented by its syntactic words "in dem".
    assert task.sentences["train"][0] == ["Die", "Kinder", "spielen", "in", "dem", "Garten", "."]
    assert task.labels["train"][0] == ["DET", "NOUN", "VERB", "ADP", "DET", "NOUN", "PUNCT"]
    assert [len(task.sentences[split]) for split in ("train", "dev", "test")] == [3, 1, 1]
    assert task.labels["dev"] == [["PRON", "VERB", None, "PUNCT"]]  # UPOS "_" -> None
    assert (task.name, task.version) == ("de_upos", "1")
    resolved = {split: str(Path(path).resolve()) for split, path in german.items()}
    assert task.meta == {"source": "conllu files", "column": "upos", "files": resolved}


def test_xpos_underscore_is_none(german):
    task = ud_task("xpos", "de_xpos", "1", files=german)
    assert task.labels["train"][0] == ["ART", "NN", "VVFIN", "APPR", "ART", "NN", "$."]
    assert task.labels["test"] == [[None, None]]


def test_feature_column_is_none_where_absent(german):
    task = ud_task("feats:Number", "de_number", "1", files=german)
    assert task.labels["train"][0] == ["Plur", "Plur", "Plur", None, "Sing", "Sing", None]
    assert task.labels["dev"] == [["Plur", "Plur", None, None]]
    possessor = ud_task("feats:Number[psor]", "de_number_psor", "1", files=german)
    assert possessor.labels["train"][2] == [None, None, "Sing", None, None, None]


def test_deprel_is_the_base_relation(german):
    task = ud_task("deprel", "de_deprel", "1", files=german)
    assert task.labels["train"][1] == ["det", "nsubj", "aux", "advmod", "root", "punct"]
    assert task.labels["train"][2] == ["nsubj", "root", "det", "obj", "compound", "punct"]


def test_tasks_on_one_treebank_share_corpus_and_parse(fresh_parse_memo, german):
    calls = []
    original = ud.read_conllu

    def counting_reader(path):
        calls.append(Path(path).name)
        return original(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ud, "read_conllu", counting_reader)
        upos = ud_task("upos", "de_upos", "1", files=german)
        number = ud_task("feats:Number", "de_number", "1", files=german)
    assert sorted(calls) == sorted(Path(path).name for path in german.values())
    assert upos.corpus_id == number.corpus_id


def test_edited_file_is_parsed_again(tmp_path):
    files = {split: tmp_path / f"{split}.conllu" for split in ("train", "dev", "test")}
    for path in files.values():
        path.write_text("1\tHaus\tHaus\tNOUN\tNN\t_\t0\troot\t_\t_\n", encoding="utf-8")
    assert ud_task("upos", "t", "1", files=files).labels["train"] == [["NOUN"]]
    edited = "1\tlaufen\tlaufen\tVERB\tVVINF\t_\t0\troot\t_\t_\n"
    files["train"].write_text(edited, encoding="utf-8")
    assert ud_task("upos", "t", "1", files=files).labels["train"] == [["VERB"]]


@pytest.mark.parametrize("column", ["lemma", "UPOS", "feats:", "feats", "misc:SpaceAfter"])
def test_unknown_column_lists_valid_forms(column, german):
    message = f"unknown UD column {column!r}: use upos, xpos, deprel (base relation) or feats:<Name>"
    with pytest.raises(NeuronbenchError, match=re.escape(message)):
        ud_task(column, "t", "1", files=german)


def test_files_need_every_split(german):
    with pytest.raises(NeuronbenchError, match="one CoNLL-U path per split"):
        ud_task("upos", "t", "1", files={"train": german["train"], "dev": german["dev"]})


def test_missing_file_is_a_neuronbench_error(tmp_path, german):
    files = dict(german, dev=str(tmp_path / "missing.conllu"))
    message = f"{tmp_path / 'missing.conllu'}: CoNLL-U file not found"
    with pytest.raises(NeuronbenchError, match=re.escape(message)):
        ud_task("upos", "t", "1", files=files)


# --- ewt_files: local copies and the download cache (offline, with fake files) -------------------

def fake_ewt(folder: Path) -> dict[str, str]:
    """Write three small distinct stand-in files; return their sha256 per split."""
    folder.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for split, filename in EWT_NAMES.items():
        content = f"1\t{split}\t{split}\tNOUN\tNN\t_\t0\troot\t_\t_\n".encode()
        (folder / filename).write_bytes(content)
        hashes[split] = hashlib.sha256(content).hexdigest()
    return hashes


@pytest.fixture
def remote(tmp_path, monkeypatch):
    """A file:// "release" whose hashes are pinned, and an empty cache; no local data configured."""
    folder = tmp_path / "remote"
    monkeypatch.setattr(ud, "EWT_SHA256", fake_ewt(folder))
    monkeypatch.setattr(ud, "EWT_BASE_URL", folder.as_uri() + "/")
    monkeypatch.delenv("NEURONBENCH_DATA", raising=False)
    monkeypatch.setenv("NEURONBENCH_CACHE", str(tmp_path / "cache"))
    return folder


def test_download_verifies_and_caches(remote, tmp_path):
    cache = tmp_path / "cache" / "data" / "ud_english_ewt"
    files = ewt_files()
    assert files == {split: cache / name for split, name in EWT_NAMES.items()}
    for split, path in files.items():
        assert path.read_bytes() == (remote / EWT_NAMES[split]).read_bytes()
    assert sorted(os.listdir(cache)) == sorted(EWT_NAMES.values())

    for path in remote.iterdir():  # the cache is reused: no download needed any more
        path.unlink()
    assert ewt_files() == files


def test_cached_file_with_wrong_sha_is_downloaded_again(remote, tmp_path):
    files = ewt_files()
    files["dev"].write_text("tampered", encoding="utf-8")
    assert ewt_files()["dev"].read_bytes() == (remote / EWT_NAMES["dev"]).read_bytes()


def test_download_sha_mismatch_leaves_nothing_behind(remote, tmp_path, monkeypatch):
    monkeypatch.setitem(ud.EWT_SHA256, "dev", "0" * 64)
    message = r"en_ewt-ud-dev\.conllu does not match the pinned .* sha256"
    with pytest.raises(NeuronbenchError, match=message):
        ewt_files()
    cache = tmp_path / "cache" / "data" / "ud_english_ewt"
    assert os.listdir(cache) == [EWT_NAMES["train"]]  # no dev file, no temporary file


def test_download_failure_points_to_neuronbench_data(remote, tmp_path, monkeypatch):
    monkeypatch.setattr(ud, "EWT_BASE_URL", (tmp_path / "offline").as_uri() + "/")
    with pytest.raises(NeuronbenchError, match="could not download .*set NEURONBENCH_DATA"):
        ewt_files()
    assert os.listdir(tmp_path / "cache" / "data" / "ud_english_ewt") == []


def test_default_cache_is_relative_to_working_directory(remote, tmp_path, monkeypatch):
    monkeypatch.delenv("NEURONBENCH_CACHE")
    monkeypatch.chdir(tmp_path)
    expected = tmp_path / ".cache" / "neuronbench" / "data" / "ud_english_ewt" / EWT_NAMES["test"]
    assert ewt_files()["test"] == expected


@pytest.mark.parametrize("layout", ["flat", "subfolder"])
def test_neuronbench_data_layouts(tmp_path, monkeypatch, layout):
    root = tmp_path / "data"
    folder = root if layout == "flat" else root / "ud_english_ewt"
    monkeypatch.setattr(ud, "EWT_SHA256", fake_ewt(folder))
    monkeypatch.setattr(ud, "EWT_BASE_URL", (tmp_path / "offline").as_uri() + "/")  # never used
    monkeypatch.setenv("NEURONBENCH_DATA", str(root))
    assert ewt_files() == {split: folder / name for split, name in EWT_NAMES.items()}


def test_data_dir_wins_over_environment(tmp_path, monkeypatch):
    monkeypatch.setattr(ud, "EWT_SHA256", fake_ewt(tmp_path / "argument"))
    monkeypatch.setenv("NEURONBENCH_DATA", str(tmp_path / "empty"))
    argument = tmp_path / "argument"
    assert ewt_files(str(argument))["train"] == argument / EWT_NAMES["train"]
    with pytest.raises(NeuronbenchError, match="no UD English-EWT files in .*empty"):
        ewt_files()


def test_local_file_with_wrong_sha_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(ud, "EWT_SHA256", fake_ewt(tmp_path))
    (tmp_path / EWT_NAMES["test"]).write_text("an older release", encoding="utf-8")
    message = f"{tmp_path / EWT_NAMES['test']} is not the UD English-EWT r2.16 release"
    with pytest.raises(NeuronbenchError, match=re.escape(message)):
        ewt_files(str(tmp_path))


def test_ud_task_reads_ewt_from_data_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(ud, "EWT_SHA256", fake_ewt(tmp_path / "ud_english_ewt"))
    task = ud_task("upos", "ewt_upos", "1", data_dir=str(tmp_path))
    assert task.sentences["dev"] == [["dev"]]
    assert task.meta["source"] == "UD_English-EWT r2.16"


# --- the real UD English-EWT r2.16, when a local copy is present ---------------------------------

EWT_ROOT = Path(os.environ.get("NEURONBENCH_DATA")
                or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(scope="module")
def ewt_upos():
    """Parsed once per session; the other EWT tasks below reuse the in-process parse."""
    train = EWT_NAMES["train"]
    if not ((EWT_ROOT / train).is_file() or (EWT_ROOT / "ud_english_ewt" / train).is_file()):
        pytest.skip(f"UD English-EWT r2.16 not found in {EWT_ROOT} (set NEURONBENCH_DATA)")
    return ud_task("upos", "ewt_upos", "1", data_dir=str(EWT_ROOT))


def test_ewt_sizes_match_the_release(ewt_upos):
    splits = ("train", "dev", "test")
    assert [len(ewt_upos.sentences[split]) for split in splits] == [12_544, 2_001, 2_077]
    n_words = [sum(map(len, ewt_upos.sentences[split])) for split in splits]
    assert n_words == [204_577, 25_147, 25_094]
    assert len({label for sent in ewt_upos.labels["train"] for label in sent}) == 17


def test_ewt_label_inventories(ewt_upos):
    def inventory(column):
        task = ud_task(column, column, "1", data_dir=str(EWT_ROOT))
        assert task.corpus_id == ewt_upos.corpus_id
        return {label for sent in task.labels["train"] for label in sent}

    assert len(inventory("xpos")) == 49
    assert len(inventory("deprel")) == 36
    assert inventory("feats:Number") == {"Sing", "Plur", "Ptan", None}  # Ptan: plurale tantum
