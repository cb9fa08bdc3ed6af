"""Progress lines with an ETA: the formats, the sweep size Hydra's sweeper makes, and a real multirun's log."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from bench.progress import PROGRESS_FILE, Progress, duration, eta, sweep_size
from conftest import CONF


@pytest.mark.parametrize("seconds, text", [(4.4, "4s"), (200, "3m 20s"), (7500, "2h 05m")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_eta_is_the_rate_so_far_over_what_is_left():
    assert eta(125, 3, 7) == "3/7 in 2m 05s, about 2m 47s left"
    assert eta(125, 7, 7) == "7/7 in 2m 05s"
    assert eta(5, 0, 7) == "0/7 in 5s"


def test_progress_logs_at_most_every_interval_and_at_the_end(caplog):
    caplog.set_level(logging.INFO, logger="bench.progress")
    progress = Progress("extract train, batches", 3, every_s=3600)
    for _ in range(3):
        progress.advance()
    assert [r.getMessage() for r in caplog.records] == ["extract train, batches: 3/3 in 0s"]


@pytest.mark.parametrize("overrides, size", [(["suite=standard"], 42), (["suite=standard", "seed=0"], 14),
                                             ([], 16), (["method=probeless,random", "seed=0,1,2"], 24),
                                             (["suite=planted"], 15)])
def test_sweep_size_is_the_sweepers_product(overrides, size):
    """suite=standard 14 tasks x 3 seeds; the default suite=quick 4 tasks x 4 methods, with the command line's
    2 methods x 3 seeds replacing its methods; suite=planted glob(planted_*) (5 tasks) x 3 methods."""
    single = [o for o in overrides if "," not in o]  # compose refuses sweeps; Hydra records them as given
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = compose("config", overrides=single, return_hydra_config=True)
        config.hydra.overrides.task = overrides
        assert sweep_size(config) == size


def test_a_multirun_logs_its_jobs_with_an_eta_in_the_terminal_and_the_log_files(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "-m", "task=planted_single", "model=planted",
                           "scorers=[probe_acc]", "quiet=true", "method=probeless,random", "seed=0,1",
                           f"results_dir={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sweep: 4 jobs" in proc.stdout and "sweep: 4/4 jobs in" in proc.stdout
    (sweep,) = (tmp_path / "hydra").iterdir()
    head, *jobs = [json.loads(line) for line in (sweep / PROGRESS_FILE).read_text().splitlines()]
    assert head["total"] == 4 and sorted(job["job"] for job in jobs) == [0, 1, 2, 3]
    logged = "".join(path.read_text() for path in sweep.glob("*/*.log"))
    assert all(f"sweep: {n}/4 jobs in" in logged for n in range(1, 5))
