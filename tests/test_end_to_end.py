"""The spine end to end on a tiny random model: config -> extraction -> methods -> scorers -> board."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from bench.errors import NeuronbenchError
from bench.run import run_job
from bench.scorers import scorer_registry
from conftest import CONF
from leaderboard.cli import build
from leaderboard.records import pack

OVERRIDES = ["model=tiny_random", "task=templated_number", "task.loader.n_sentences=400",
             "task.n_min=20", "ks=[1,2,5,10]"]


def config(tmp_path, *extra):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[*OVERRIDES, f"results_dir={tmp_path / 'results'}",
                                            f"cache_dir={tmp_path / 'cache'}", *extra])


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jobs_records_rankings_board_and_resume(tmp_path, caplog):
    for method in ("random", "probeless"):
        out = run_job(config(tmp_path, f"method={method}"), method)
    records = read(out / "records.jsonl")
    assert {r["layer"] for r in records} == {0, 1, 2}
    assert {"probe_acc", "probe_auc", "selectivity", "ablate_drop_top", "control_acc"} <= {
        r["metric"] for r in records}
    first = records[0]
    for field in ("task", "task_version", "model", "model_revision", "layer", "site", "method",
                  "metric", "k", "seed", "value", "source", "git_commit", "method_params"):
        assert field in first
    assert first["source"] == "builtin" and first["method"] == "probeless"
    assert sorted((out / "rankings").iterdir())[0].name == "hidden_L00.npy"
    costs = read(out / "cost.jsonl")
    assert {(c["metric"], c["layer"]) for c in costs} == {
        (m, layer) for m in ("cost_time_s", "cost_peak_mem_b") for layer in (0, 1, 2)}
    assert all(c["value"] >= 0 for c in costs)

    stamp = (out / "records.jsonl").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="bench.run"):
        run_job(config(tmp_path, "method=probeless"), "probeless")  # finished job: skipped
        assert "records exist (force" in caplog.text and "other values" not in caplog.text
        run_job(config(tmp_path, "method=probeless", "ks=[1,2]", "scorers=[probe_acc]"), "probeless")
    assert "made with other values of ks, scorers (force=true reruns)" in caplog.text  # kept, but said
    assert (out / "records.jsonl").stat().st_mtime_ns == stamp
    run_job(config(tmp_path, "method=probeless", "force=true"), "probeless")
    assert read(out / "records.jsonl") == records  # same config, same records

    board = build(tmp_path / "results", headline_k=10)
    text = board.read_text()
    assert "probeless" in text and "random" in text
    cost = text.split("## Cost of `rank()`", 1)[1]
    assert "| templated_number | tiny_random | probeless |" in cost
    table = pd.read_csv(board.with_suffix(".csv"))
    assert {"avg_overlap", "jaccard"} <= set(table["metric"])

    packed = pack(tmp_path / "results", tmp_path / "published" / "records.parquet")  # no rankings needed
    rebuilt = build(packed, headline_k=10)
    assert rebuilt == tmp_path / "published" / "leaderboard.md"
    for suffix in (".md", ".csv", ".html"):
        assert rebuilt.with_suffix(suffix).read_text() == board.with_suffix(suffix).read_text(), suffix

    earlier = pd.read_parquet(packed)
    earlier.assign(task="templated_tense").to_parquet(packed)  # as if an earlier session had run another task
    merged = pd.read_parquet(pack(tmp_path / "results", packed, merge=True))
    assert sorted(merged["task"].unique()) == ["templated_number", "templated_tense"]
    assert len(merged) == 2 * len(earlier)
    again = pd.read_parquet(pack(tmp_path / "results", packed, merge=True))  # a rerun task is replaced, not added
    pd.testing.assert_frame_equal(again, merged)


def test_cli_rejects_unknown_config_name(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "method=no_such_method",
                           f"results_dir={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "no_such_method" in proc.stderr and "method" in proc.stderr


def test_help_lists_every_scorer_without_loading_torch():
    """--help reads the scorer tables from source: every registered scorer is listed, and torch stays out."""
    code = ("import runpy, sys; sys.argv = ['neuronbench', '--help']\n"
            "try: runpy.run_module('bench.cli', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print('torch loaded:', 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = proc.stdout.split("== Scorers ==", 1)[1].split("== Config ==", 1)[0]
    assert [line.split(":")[0] for line in listed.splitlines() if ": " in line] == list(scorer_registry())
    assert "probe_acc_gaussian: Test accuracy of a probe retrained on the top-k neurons" in listed
    assert proc.stdout.rstrip().endswith("torch loaded: False")


def test_parallel_launcher_gives_the_basic_launchers_records(tmp_path):
    """hydra/launcher=joblib (the `launchers` extra) runs jobs in worker processes: same records."""
    common = ["task=planted_single", "model=planted", "task.loader.n_neurons=64",
              "scorers=[probe_acc,planted]", "quiet=true"]
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "-m", *common, "method=probeless,random",
                           "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"results_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for method in ("probeless", "random"):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=[*common, f"method={method}",
                                               f"results_dir={tmp_path / 'basic'}"])
        parallel = read(tmp_path / "runs" / "planted_single" / "planted" / method / "seed0" / "records.jsonl")
        assert parallel == read(run_job(cfg, method) / "records.jsonl")


@pytest.mark.parametrize("group", ["task", "model", "method", "suite"])
def test_every_config_composes(group):
    for path in sorted((CONF / group).glob("*.yaml")):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=[f"{group}={path.stem}"], return_hydra_config=True)
        if group == "task":
            assert cfg.task.name == path.stem and cfg.task.version and cfg.task.loader._target_
        elif group == "model":
            assert cfg.model.name == path.stem and cfg.model.source in {"pypi", "hub", "random", "planted", "implant"}
        elif group == "method":
            assert cfg.method._target_.startswith("methods.")
        else:
            assert cfg.hydra.sweeper.params


def test_layer_subset_and_empty_selection(tmp_path):
    out = run_job(config(tmp_path, "method=probeless", "layers=[1]"), "probeless")
    assert {r["layer"] for r in read(out / "records.jsonl")} == {1}
    with pytest.raises(NeuronbenchError, match=r"layers=\[9\] selects nothing"):
        run_job(config(tmp_path, "method=random", "layers=[9]"), "random")


def test_planted_job_scores_ground_truth(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["suite=planted", "task=planted_single", "method=probeless",
                                           "task.loader.n_neurons=64", "scorers=[planted]",
                                           f"results_dir={tmp_path}"])
    records = read(run_job(cfg, "probeless") / "records.jsonl")
    values = {(r["metric"], r["k"]): r["value"] for r in records}
    assert values[("planted_rprec", None)] == 1.0 and values[("planted_recall", 5)] == 1.0
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["task=planted_single", "model=tiny_random",
                                           "method=random", f"results_dir={tmp_path}"])
    with pytest.raises(NeuronbenchError, match="use model=planted"):
        run_job(cfg, "random")


@pytest.mark.parametrize("method", ["ablate_single", "ig_head"])
def test_model_based_methods_run_through_the_runner(tmp_path, method):
    out = run_job(config(tmp_path, f"method={method}", "method.n_words=40", "layers=[1,2]",
                         "scorers=[probe_acc]"), method)
    assert {r["layer"] for r in read(out / "records.jsonl")} == {1, 2}
    for layer in (1, 2):
        ranking = np.load(out / "rankings" / f"hidden_L{layer:02d}.npy")
        assert np.array_equal(np.sort(ranking), np.arange(32))


def test_model_level_scorers_run_through_the_runner(tmp_path):
    out = run_job(config(tmp_path, "method=probeless", "layers=[2]",
                         "scorers=[causal,intervention,faithfulness]"), "probeless")
    metrics = {r["metric"] for r in read(out / "records.jsonl")}
    assert {"causal_drop", "causal_gain", "translate_success", "clamp_success", "faith_cpr"} <= metrics


def test_unknown_scorer_fails_before_work(tmp_path):
    with pytest.raises(NeuronbenchError, match="unknown scorer 'nope'"):
        run_job(config(tmp_path, "method=random", "scorers=[nope]"), "random")
