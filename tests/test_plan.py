"""`neuronbench plan`: a sweep's jobs, cells and words as the run would make them, and a cost estimate that stays
within a factor 2 of the published standard_minilm_l3 run (its records' rank() costs, its README's timings)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from bench.plan import RANK_S, WORKER_START_S, cost_jobs, report, size_job, sweep_configs, wall_seconds
from conftest import REPO
from test_ud_tasks import EWT_ROOT, needs_ewt

BOARD = REPO / "leaderboard" / "published" / "standard_minilm_l3"
# leaderboard/published/README.md on that run (2026-12-02): wall time with two joblib workers on 2 cores, and
# one UPOS job's time, of which rank() and the evaluation probes
MEASURED_WALL_S = 2 * 3600 + 5 * 60
MEASURED_UPOS_JOB_S, MEASURED_UPOS_RANK_S, MEASURED_UPOS_PROBES_S = 909, 494, 394


def ratio_ok(estimate: float, measured: float) -> bool:
    return 0.5 <= estimate / measured <= 2.0


@pytest.fixture(scope="module")
def rank_records() -> pd.DataFrame:
    """The published run's rank() costs: one row per (task form, seed, method, cell)."""
    frame = pd.read_parquet(BOARD / "records.parquet", columns=["task", "concept", "seed", "method", "value"],
                            filters=[("metric", "==", "cost_time_s")])
    frame["form"] = [f"{t}@{c}" if isinstance(c, str) else t for t, c in zip(frame.task, frame.concept)]
    return frame


@pytest.fixture(scope="module")
def standard_l3(rank_records, tmp_path_factory):
    """The plan of the published run: suite=standard on minilm_l3 with the methods it ranked."""
    methods = sorted(rank_records.method.unique())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEURONBENCH_DATA", str(EWT_ROOT))
        sweep = sweep_configs(["suite=standard", "model=minilm_l3", f"methods=[{','.join(methods)}]",
                               f"results_dir={tmp_path_factory.mktemp('results')}"])
        jobs = [size_job(*job) for job in sweep.jobs]
    return jobs, cost_jobs(jobs)


@needs_ewt
def test_standard_suite_on_minilm_l3_is_42_jobs_of_7_cells(standard_l3):
    jobs, _ = standard_l3
    assert len(jobs) == 42
    assert all(job.cells == [("hidden", 0, 384), ("hidden", 1, 384), ("hidden", 2, 384), ("hidden", 3, 384),
                             ("mlp", 1, 1536), ("mlp", 2, 1536), ("mlp", 3, 1536)] for job in jobs)
    assert [(job.task, job.seed) for job in jobs[:4]] == [("upos", 0), ("upos", 1), ("upos", 2), ("deprel", 0)]
    upos, nnps = jobs[0], next(job for job in jobs if job.task == "xpos_binary@NNPS")
    assert (upos.classes, upos.words) == (15, {"train": 2000, "dev": 1000, "test": 2000})  # the suite's caps
    assert (nnps.classes, nnps.words["train"]) == (2, 1146)  # NNPS has fewer train words than the cap
    assert all(len(job.methods) == 25 and not job.finished for job in jobs)


@needs_ewt
def test_estimate_is_within_a_factor_2_of_the_published_run(standard_l3, rank_records):
    jobs, costs = standard_l3
    measured = rank_records.groupby(["form", "seed"]).value.sum()
    for job, cost in zip(jobs, costs):  # every job's rank() time, against the records of that job
        assert ratio_ok(cost.rank_s, measured[(job.task, job.seed)]), (job.task, job.seed, cost.rank_s)
    assert ratio_ok(sum(cost.rank_s for cost in costs), measured.sum())
    upos = costs[0]
    assert ratio_ok(upos.total_s, MEASURED_UPOS_JOB_S)
    assert ratio_ok(upos.rank_s, MEASURED_UPOS_RANK_S) and ratio_ok(upos.score_s, MEASURED_UPOS_PROBES_S)
    assert ratio_ok(wall_seconds(costs, 2), MEASURED_WALL_S)
    # the basic launcher runs the jobs one after another; more workers than jobs change nothing
    assert wall_seconds(costs, 1) == pytest.approx(sum(cost.total_s for cost in costs) + WORKER_START_S, rel=1e-6)
    assert wall_seconds(costs, 64) == wall_seconds(costs, 42) >= max(cost.total_s for cost in costs)


@needs_ewt
def test_report_names_what_is_not_calibrated(standard_l3):
    jobs, costs = standard_l3
    text = report(jobs, costs, {"joblib n_jobs=2": 2})
    assert text.startswith("42 jobs (task x 14, seed x 3) on minilm_l3: 25 methods each")
    assert "joblib n_jobs=2" in text and "no measured cost" not in text
    assert set(RANK_S) == set(jobs[0].methods)  # every published method has a measured cost


def test_planted_job_has_one_cell_and_nothing_to_extract(tmp_path):
    sweep = sweep_configs(["~suite", "task=planted_single", "model=planted", "method=random",
                           f"results_dir={tmp_path}"])
    jobs = [size_job(*job) for job in sweep.jobs]
    [cost] = cost_jobs(jobs)
    assert len(jobs) == 1 and len(jobs[0].cells) == 1 and jobs[0].corpus is None
    assert cost.extract == [] and cost.rank_s > 0
    text = report(jobs, [cost], {})
    assert text.startswith("1 job on planted: 1 method each") and "extraction" not in text


@pytest.mark.parametrize("args, named", [(["model=no_such_model"], "no_such_model"),
                                         (["~suite", "task=upos", "depths=[2]"], "depths=[2]")],
                         ids=["hydra", "check_config"])
def test_a_bad_override_fails_as_the_run_does(args, named, tmp_path):
    """The same message and exit status as `neuronbench ARGS`: a Hydra composition error, and a value the run's
    check_config refuses before a model loads."""
    def neuronbench(*extra):
        return subprocess.run([sys.executable, "-m", "bench.cli", *extra, *args, f"results_dir={tmp_path}"],
                              capture_output=True, text=True, timeout=300)

    run, plan = neuronbench(), neuronbench("plan")
    assert run.returncode != 0 and plan.returncode == run.returncode
    assert plan.stderr == run.stderr and named in plan.stderr
    assert plan.stdout == ""
