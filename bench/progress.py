"""Progress of long work as log lines with an ETA, so a log file shows what a terminal shows (tqdm bars
appear on a TTY only): extraction batches, a job's cells, and a sweep's jobs (a Hydra callback).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

PROGRESS_FILE = "progress.jsonl"  # in the sweep folder: the total first, then one line per finished job
SKIPPED_S = 2.0  # a sweep job that ends this fast found its records and skipped: it says nothing of the rate


def duration(seconds: float) -> str:
    """4s, 3m 20s, 2h 05m: short enough for a log line."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def eta(elapsed: float, done: int, total: int) -> str:
    """'3/7 in 2m 05s, about 2m 47s left': the rate so far, over what is left."""
    left = elapsed / done * (total - done) if done else float("nan")
    return f"{done}/{total} in {duration(elapsed)}" + (f", about {duration(left)} left" if 0 < done < total else "")


class Progress:
    """Counts units of work and logs `what: done/total in T, about T' left` at most every `every_s` seconds
    and when the last unit is done."""

    def __init__(self, what: str, total: int, every_s: float = 30.0):
        self.what, self.total, self.every_s, self.done = what, total, every_s, 0
        self.started = self.shown = time.perf_counter()

    def advance(self, units: int = 1) -> None:
        self.done += units
        now = time.perf_counter()
        if now - self.shown >= self.every_s or self.done == self.total:
            self.shown = now
            log.info("%s: %s", self.what, eta(now - self.started, self.done, self.total))


def sweep_size(config: DictConfig) -> int:
    """The number of jobs Hydra's basic sweeper makes of the suite's sweeper params and the command line
    (the cartesian product, a later value of a key replacing an earlier one, as the sweeper does)."""
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    axes = {}
    loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() else None
    parser = OverridesParser.create(config_loader=loader)  # the loader expands glob(planted_*)
    for override in parser.parse_overrides([*params, *config.hydra.overrides.task]):
        axes[override.get_key_element()] = (len(list(override.sweep_string_iterator()))
                                            if override.is_sweep_override() else 1)
    size = 1
    for count in axes.values():
        size *= count
    return size


class SweepProgress(Callback):
    """`sweep: 12/42 jobs in 1h 02m, about 2h 41m left`, logged as each job of a multirun ends, also when the
    jobs run in launcher workers: they share the count through PROGRESS_FILE in the sweep folder. Jobs a
    resumed sweep skips are counted as done but not in the rate, so the ETA is that of the work left."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        folder = Path(config.hydra.sweep.dir)
        folder.mkdir(parents=True, exist_ok=True)
        total = sweep_size(config)
        (folder / PROGRESS_FILE).write_text(json.dumps({"total": total, "started": time.time()}) + "\n")
        log.info("sweep: %d jobs", total)

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        self.job_started = time.time()

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        path = Path(config.hydra.sweep.dir) / PROGRESS_FILE
        if config.hydra.mode.name != "MULTIRUN" or not path.exists():
            return
        line = json.dumps({"job": config.hydra.job.num, "seconds": round(time.time() - self.job_started, 1)})
        with open(path, "a") as handle:  # one short O_APPEND write per job: workers do not interleave
            handle.write(line + "\n")
        head, *jobs = [json.loads(text) for text in path.read_text().splitlines()]
        worked = [job for job in jobs if job["seconds"] >= SKIPPED_S]
        elapsed = time.time() - head["started"]
        left = head["total"] - len(jobs)
        rate = elapsed / len(worked) if worked else 0.0
        log.info("sweep: %d/%d jobs in %s%s", len(jobs), head["total"], duration(elapsed),
                 f", about {duration(rate * left)} left" if worked and left else "")

