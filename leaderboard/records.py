"""Reading job outputs: records of every job, and the agreement records computed from saved rankings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from bench.agreement import agreement
from bench.errors import NeuronbenchError

log = logging.getLogger(__name__)
CELL = ["source", "task", "task_version", "concept", "model", "model_revision", "pooling", "seed",
        "site", "layer", "n_neurons"]


def read_records(results: Path) -> pd.DataFrame:
    """All `runs/**/records.jsonl` under `results`, one frame; a malformed line names its file."""
    frames = []
    for path in sorted(Path(results).glob("runs/**/records.jsonl")):
        try:
            frames.append(pd.read_json(path, lines=True, dtype=False))
        except ValueError as err:
            raise NeuronbenchError(f"{path}: not valid JSON Lines ({err})") from err
    if not frames:
        raise NeuronbenchError(f"no records under {results}/runs; run `neuronbench` first")
    return pd.concat(frames, ignore_index=True)


def agreement_records(records: pd.DataFrame, results: Path) -> pd.DataFrame:
    """Jaccard@k between the methods of each cell, from the rankings each job saved beside its records."""
    jobs = (records.drop_duplicates(["task", "concept", "model", "method", "seed", "site", "layer"])
            .reset_index(drop=True))
    rows = []
    for _, cell in jobs.groupby(CELL[1:], dropna=False, sort=True):
        rankings = {}
        for job in cell.itertuples():
            concept = f"@{job.concept}" if isinstance(job.concept, str) else ""
            path = (Path(results) / "runs" / f"{job.task}{concept}" / job.model / job.method
                    / f"seed{job.seed}" / "rankings" / f"{job.site}_L{int(job.layer):02d}.npy")
            if path.exists():
                rankings[job.method] = np.load(path, allow_pickle=False)
        if len(rankings) < 2:
            continue
        first = cell.iloc[0]
        base = {c: first[c] for c in CELL}
        for method, other, score in agreement(rankings):
            rows.append({**base, "method": method, "other": other, "metric": score.metric,
                         "k": score.k, "value": score.value, "chance": score.chance})
    return pd.DataFrame(rows)
