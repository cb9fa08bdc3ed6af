"""Submissions: the committed example validates and scores exactly like the built-in method it was exported from;
each kind of broken submission is refused with its own line (design.md#leaderboard)."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from bench.errors import NeuronbenchError
from bench.models import load_model
from bench.run import job_folder, ranking_file, run_job
from conftest import REPO
from leaderboard.cli import build, main
from leaderboard.submission import SUBMISSIONS_DIR, compose_config, export, load_submission, score, validate

EXAMPLE = REPO / "leaderboard" / "submissions" / "example_probeless"
NAME = EXAMPLE.name
L3_SEED0 = f"runs/templated_number/minilm_l6/{NAME}/seed0/rankings/hidden_L03.npy"


@pytest.fixture
def copy(tmp_path):
    """A private copy of the example; validated against its own parent, so its name is not taken."""
    folder = tmp_path / NAME
    shutil.copytree(EXAMPLE, folder)
    return folder


def problems(folder):
    return validate(folder, submissions_dir=folder.parent)


def edit_meta(folder, **fields):
    meta = yaml.safe_load((folder / "submission.yaml").read_text())
    meta.update(fields)
    (folder / "submission.yaml").write_text(yaml.safe_dump(meta))


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_example_is_valid_and_covers_two_tasks_two_models_three_seeds():
    assert validate(EXAMPLE) == []
    submission = load_submission(EXAMPLE)
    assert {(job.task, job.model) for job in submission.jobs} == {
        (task, model) for task in ("templated_number", "templated_tense") for model in ("minilm_l3", "minilm_l6")}
    assert {job.seed for job in submission.jobs} == {0, 1, 2} and {job.sites for job in submission.jobs} == {
        ("hidden",)}
    assert main(["validate", str(EXAMPLE)]) == 0


@pytest.mark.parametrize("folder", sorted(path.name for path in SUBMISSIONS_DIR.iterdir()))
def test_every_committed_submission_is_valid(folder):
    """A pull request adding an invalid submission fails `make test` with the validator's lines."""
    assert validate(SUBMISSIONS_DIR / folder) == []


@pytest.mark.parametrize("name", ["tiny_random", "minilm_l6"])
def test_declared_layers_and_widths_match_the_loaded_model(name):
    spec = compose_config([f"model={name}"]).model
    loaded = load_model(name, OmegaConf.to_container(spec, resolve=True))
    assert (spec.n_layers, spec.widths.hidden, spec.widths.mlp) == (
        loaded.n_layers, loaded.width("hidden"), loaded.width("mlp"))


def break_permutation(folder):
    ranking = np.arange(384, dtype=np.int64)
    ranking[5] = ranking[6]
    np.save(folder / L3_SEED0, ranking)


def break_width(folder):
    np.save(folder / L3_SEED0, np.arange(383, dtype=np.int64))


def break_dtype(folder):
    np.save(folder / L3_SEED0, np.arange(384, dtype=np.int32))


def object_array(folder):
    np.save(folder / L3_SEED0, np.array(list(range(384)), dtype=object), allow_pickle=True)


def pickle_file(folder):
    (folder / L3_SEED0).with_name("ranking.pkl").write_bytes(pickle.dumps(list(range(384))))


def missing_layer(folder):
    (folder / L3_SEED0).unlink()


def off_layout(folder):
    (folder / L3_SEED0).rename((folder / L3_SEED0).with_name("hidden_L3.npy"))


def stale_version(folder):
    edit_meta(folder, task_versions={"templated_number": "0", "templated_tense": "1"})


def traversal(folder):
    edit_meta(folder, name="../evil")


def builtin_name(folder):
    edit_meta(folder, name="probeless")
    folder.rename(folder.with_name("probeless"))


def too_little_coverage(folder):
    for model_dir in folder.glob("runs/*/minilm_l3"):
        shutil.rmtree(model_dir)


def too_few_seeds(folder):
    shutil.rmtree(folder / f"runs/templated_tense/minilm_l3/{NAME}/seed2")


def score_file(folder):
    (folder / L3_SEED0).parent.parent.joinpath("records.jsonl").write_text('{"metric": "probe_acc"}\n')


def score_field(folder):
    edit_meta(folder, probe_acc=0.93)


def float_scores(folder):
    np.save(folder / L3_SEED0, np.random.default_rng(0).random(384))


def symlink(folder):
    os.symlink(folder / L3_SEED0, (folder / L3_SEED0).with_name("hidden_L07.npy"))


def unknown_model(folder):
    shutil.copytree(folder / "runs/templated_number/minilm_l6", folder / "runs/templated_number/bert_huge")


def bad_contact(folder):
    edit_meta(folder, contact="someone", description="One.\n\nTwo paragraphs.")


BROKEN = {
    # case: (break it, the line that must be printed, how many lines in all)
    "not a permutation": (break_permutation, f"{L3_SEED0}: not a permutation of 0..383: 1 neurons missing, "
                                             "1 repeated", 1),
    "wrong width": (break_width, f"{L3_SEED0}: 383 entries, but the site has 384 neurons (wrong width)", 1),
    "int32": (break_dtype, f"{L3_SEED0}: dtype int32, expected int64", 1),
    "object array": (object_array, f"{L3_SEED0}: an object array, which only loads by unpickling", 1),
    "pickle file": (pickle_file, f"{L3_SEED0[:-len('hidden_L03.npy')]}ranking.pkl: a .pkl file; nothing in a "
                                 "submission is unpickled", 1),
    "missing layer": (missing_layer, f"runs/templated_number/minilm_l6/{NAME}/seed0: missing layer(s) L3 at site "
                                     "'hidden' (model 'minilm_l6' has L0..L6); submit every layer", 2),
    "layout": (off_layout, f"{L3_SEED0[:-len('L03.npy')]}L3.npy: not in the runner's layout; expected {L3_SEED0}", 1),
    "stale task version": (stale_version, "submission.yaml: task_versions: templated_number: stale task version "
                                          "'0', the task is now at version '1'", 1),
    "path traversal": (traversal, "submission.yaml: name: '../evil' is not a safe name", 1),
    "built-in name": (builtin_name, "submission.yaml: name: 'probeless' is a built-in method", 2),
    "too little coverage": (too_little_coverage, "too little coverage: at least 2 tasks x 2 models", 1),
    "too few seeds": (too_few_seeds, "runs/templated_tense/minilm_l3: seeds [0, 1]; at least 3 seeds are needed",
                      2),
    "records file": (score_file, f"runs/templated_number/minilm_l6/{NAME}/seed0/records.jsonl: looks like scores; "
                                 "submissions carry rankings, never scores", 1),
    "score field": (score_field, "submission.yaml: field 'probe_acc' looks like scores; submissions carry "
                                 "rankings, never scores", 1),
    "float scores": (float_scores, f"{L3_SEED0}: float64 values look like scores; submissions carry rankings", 1),
    "symlink": (symlink, f"{L3_SEED0[:-len('L03.npy')]}L07.npy: a symbolic link or special file", 1),
    "unknown model": (unknown_model, f"runs/templated_number/bert_huge/{NAME}/seed0/rankings/hidden_L00.npy "
                                     "(and 20 more files): unknown model 'bert_huge'", 1),
    "bad fields": (bad_contact, "submission.yaml: contact: 'someone' is neither an e-mail address nor", 2),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_submission_is_refused_with_its_line(copy, case, capsys):
    breaker, line, count = BROKEN[case]
    breaker(copy)
    folder = copy if copy.exists() else copy.with_name("probeless")
    found = problems(folder)
    assert any(problem.startswith(line) for problem in found) and len(found) == count, found
    assert main(["validate", str(folder)]) == 1
    assert f"{folder}: {line}" in capsys.readouterr().out
    with pytest.raises(NeuronbenchError, match="is not valid"):
        load_submission(folder, submissions_dir=folder.parent)


def test_one_paragraph_description(copy):
    edit_meta(copy, description="One.\n\nTwo paragraphs.")
    assert problems(copy) == ["submission.yaml: description: expected one paragraph (no blank lines) of at most "
                              "2,000 characters"]


def test_planted_rankings_go_with_the_planted_model_only(copy):
    """Planted tasks carry one 768-wide layer of their own (bench.run.planted_source); they add no coverage."""
    for seed in (0, 1, 2):
        path = ranking_file(job_folder(copy, "planted_single", None, "planted", NAME, seed), "hidden", 0)
        path.parent.mkdir(parents=True)
        np.save(path, np.arange(768, dtype=np.int64)[::-1].copy())
    edit_meta(copy, task_versions={"templated_number": "1", "templated_tense": "1", "planted_single": "1"})
    assert problems(copy) == []
    assert ("planted_single", "planted", ("hidden",)) in {(j.task, j.model, j.sites) for j in
                                                         load_submission(copy, submissions_dir=copy.parent).jobs}
    wrong = ranking_file(job_folder(copy, "planted_single", None, "minilm_l6", NAME, 0), "hidden", 0)
    wrong.parent.mkdir(parents=True)
    np.save(wrong, np.arange(384, dtype=np.int64))
    assert problems(copy) == [f"{wrong.relative_to(copy)}: model 'minilm_l6' and task 'planted_single' do not go "
                              "together: planted tasks run on model planted only, and it serves nothing else"]


def test_name_of_another_submission_is_taken(copy, tmp_path):
    (tmp_path / "others" / NAME).mkdir(parents=True)
    assert any("is taken by another submission" in p for p in validate(copy, submissions_dir=tmp_path / "others"))


def test_example_scores_exactly_like_the_builtin_method_and_joins_the_board(tmp_path):
    """The exported rankings, scored as a submission, give the built-in probeless job's records to the bit."""
    results = tmp_path / "results"
    common = ["layers=[3]", "scorers=[probe_acc,selectivity]", "ks=[1,10,30]"]
    outs = score(EXAMPLE, results, common, models=["minilm_l6"])
    assert len(outs) == 6  # 2 tasks x 3 seeds on minilm_l6
    builtin = run_job(compose_config(["task=templated_number", "model=minilm_l6", "method=probeless", "seed=0",
                                      f"results_dir={results}", *common]), "probeless")
    submitted = job_folder(results, "templated_number", None, "minilm_l6", NAME, 0)
    assert submitted in outs
    ours, theirs = read(submitted / "records.jsonl"), read(builtin / "records.jsonl")
    assert {r["source"] for r in ours} == {f"submission:{NAME}"} and {r["method"] for r in ours} == {NAME}
    key = ("metric", "k", "layer", "site", "value", "chance", "n_train", "task_version", "model_revision")
    assert [tuple(r[f] for f in key) for r in ours] == [tuple(r[f] for f in key) for r in theirs]
    assert not (submitted / "cost.jsonl").exists() and (builtin / "cost.jsonl").exists()
    np.testing.assert_array_equal(np.load(ranking_file(submitted, "hidden", 3)),
                                  np.load(EXAMPLE / L3_SEED0))

    table = pd.read_csv(build(results, headline_k=10).with_suffix(".csv"))
    rows = table[table["method"] == NAME]
    assert set(rows["source"]) == {f"submission:{NAME}"}
    assert {"probe_acc", "selectivity", "avg_overlap", "stab_seed"} <= set(rows["metric"])
    overlap = rows[(rows["metric"] == "avg_overlap") & (rows["task"] == "templated_number")]
    assert (overlap["mean"] == 1.0).all()  # identical to probeless, its only partner in that cell

    exported = tmp_path / "again"
    export(results, "probeless", "again", exported, {"authors": ["A"]})
    again = job_folder(exported, "templated_number", None, "minilm_l6", "again", 0)
    assert ranking_file(again, "hidden", 3).read_bytes() == (builtin / "rankings" / "hidden_L03.npy").read_bytes()
    assert yaml.safe_load((exported / "submission.yaml").read_text())["task_versions"] == {"templated_number": "1"}


def test_score_refuses_an_invalid_submission_before_running(copy, tmp_path):
    missing_layer(copy)
    with pytest.raises(NeuronbenchError, match="missing layer"):
        score(copy, tmp_path / "results")
    assert not (tmp_path / "results").exists()
