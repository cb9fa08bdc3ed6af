"""Reading job outputs: records of every job, and the agreement and stability records computed from saved rankings."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bench.agreement import agreement, seed_stability
from bench.cache import atomic_write_bytes
from bench.errors import NeuronbenchError
from bench.run import job_folder, ranking_file

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)
CELL = ["source", "task", "task_version", "concept", "model", "model_revision", "pooling", "seed",
        "site", "layer", "n_neurons"]


def read_records(results: Path, name: str = "records.jsonl") -> pd.DataFrame:
    """All `runs/**/<name>` under `results` (records, or `cost.jsonl` measurements), one frame;
    a malformed line names its file."""
    frames = []
    for path in sorted(Path(results).glob(f"runs/**/{name}")):
        try:
            frames.append(pd.read_json(path, lines=True, dtype=False))
        except ValueError as err:
            raise NeuronbenchError(f"{path}: not valid JSON Lines ({err})") from err
    if not frames:
        raise NeuronbenchError(f"no {name} under {results}/runs; run `neuronbench` first")
    return pd.concat(frames, ignore_index=True)


def board_records(results: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """What a board is built from: job records with the agreement records of their saved rankings, and the
    rank() costs (None when no job measured any). `results` is a results folder or a packed Parquet file."""
    if Path(results).suffix == ".parquet":
        return unpack(Path(results))
    records = read_records(results)
    overlap = agreement_records(records, results)
    merged = pd.concat([records, overlap], ignore_index=True) if len(overlap) else records
    costs = read_records(results, "cost.jsonl") if list(Path(results).glob("runs/**/cost.jsonl")) else None
    scorer_costs = scorer_cost_rows(results, records)
    if len(scorer_costs):
        costs = scorer_costs if costs is None else pd.concat([costs, scorer_costs], ignore_index=True)
    return merged, costs


SCORER_COST = "cost_scorer_s"  # a costs row: one scorer's wall seconds on one ranking of one (site, layer) cell


def scorer_cost_rows(results: Path, records: pd.DataFrame) -> pd.DataFrame:
    """Per job, (site, layer) and scorer: the seconds the scorer took on that job's ranking (job.json's
    `layers[].scorers_s`; a ranking equal to another method's was scored once, and its job has none), as costs rows
    (metric SCORER_COST, `scorer`) that carry every column of the cell's records but the value's own, so packing
    them beside the records keeps each column's type. Empty when no job.json has timings."""
    keys = ["source", "task", "concept", "model", "method", "seed"]
    value_columns = [c for c in ("metric", "k", "value", "ci_low", "ci_high") if c in records.columns]
    cells = records.drop_duplicates([*keys, "site", "layer"]).drop(columns=value_columns)
    rows = []
    for path in sorted(Path(results).glob("runs/**/job.json")):
        try:
            job = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        cfg = job.get("config", {})
        task, model = cfg.get("task", {}), cfg.get("model", {})
        seed, method = cfg.get("seed"), job.get("method")
        match = cells[(cells["task"] == task.get("name")) & (cells["model"] == model.get("name"))
                      & (cells["method"] == method) & (cells["seed"] == seed)]
        for cell in job.get("layers", []):
            at = match[(match["site"] == cell.get("site")) & (match["layer"] == cell.get("layer"))]
            if at.empty:
                continue
            base = at.iloc[0].to_dict()
            rows += [{**base, "metric": SCORER_COST, "scorer": scorer, "value": float(seconds)}
                     for scorer, seconds in (cell.get("scorers_s") or {}).items()]
    return pd.DataFrame(rows, columns=[*cells.columns, "metric", "scorer", "value"]) if rows else pd.DataFrame()


TASK_RUN = ["task", "concept", "model"]  # what `pack --merge` replaces whole: every seed of a task on a model


def pack(results: Path, out: Path, merge: bool = False) -> Path:
    """A board's records in one compact Parquet file (`table`: records, with the agreement rows computed from
    the rankings, or costs), so a board can be rebuilt or re-aggregated without the rankings or a rerun.

    `merge` grows an existing `out` instead: its rows of the (task, concept, model) runs that `results` has none
    of are kept, the others replaced by `results`' rows. A board run over several sessions (whose results folders
    do not outlive them) is packed after each, the remaining tasks run in the next. A run is replaced whole,
    because `stab_seed` compares the rankings of all its seeds: a task stopped between seeds is rerun in full.
    """
    merged, costs = board_records(results)
    tables = [merged.assign(table="records")] + ([costs.assign(table="costs")] if costs is not None else [])
    frame = pd.concat(tables, ignore_index=True)
    if merge and Path(out).exists():
        earlier = pd.read_parquet(out)
        fresh = pd.MultiIndex.from_frame(frame[TASK_RUN].astype(str))
        kept = earlier[~pd.MultiIndex.from_frame(earlier[TASK_RUN].astype(str)).isin(fresh)]
        log.info("pack --merge: kept %d of %d earlier rows (%d task runs), %d rows from %s", len(kept), len(earlier),
                 len(kept[TASK_RUN].astype(str).drop_duplicates()), len(frame), results)
        frame = pd.concat([kept, frame], ignore_index=True)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, compression="zstd")
    atomic_write_bytes(Path(out), buffer.getvalue())
    return Path(out)


def unpack(path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The (records, costs) of a file written by `pack`."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise NeuronbenchError(f"{path}: not a packed records file ({err})") from err
    parts = {name: part.drop(columns="table").reset_index(drop=True)
             for name, part in frame.groupby("table")}
    if "records" not in parts:
        raise NeuronbenchError(f"{path}: no records (its `table` column has {sorted(parts)})")
    return parts["records"], parts.get("costs")


def records_dataset(path: Path) -> datasets.Dataset:
    """A records.parquet written by `pack` as a `datasets.Dataset` (the rows and columns pandas reads, `table`
    telling records from costs), for users who filter, map or push boards with `datasets`; held in memory, so
    nothing is written to the `datasets` cache. Imported here, not above, so boards never need `datasets`."""
    import datasets
    import pyarrow.parquet as pq
    from datasets.table import InMemoryTable

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:
        raise NeuronbenchError(f"{path}: not a packed records file ({err})") from err
    return datasets.Dataset(InMemoryTable(table))


def ranking_path(results: Path, job) -> Path:
    """The saved ranking of one record row's cell (task, concept, model, method, seed, site, layer)."""
    concept = job.concept if isinstance(job.concept, str) else None
    folder = job_folder(results, job.task, concept, job.model, job.method, job.seed)
    return ranking_file(folder, job.site, job.layer)


def jobs(records: pd.DataFrame) -> pd.DataFrame:
    """One row per ranking: the records of each method's cell and seed, deduplicated."""
    return (records.drop_duplicates(["task", "concept", "model", "method", "seed", "site", "layer"])
            .reset_index(drop=True))


def agreement_records(records: pd.DataFrame, results: Path) -> pd.DataFrame:
    """Records computed from the rankings each job saved beside its records (bench.agreement).

    Per cell and seed, the methods' agreement (jaccard, avg_overlap, rank_corr, avg_rank_corr, neuron_vote); then
    `stab_seed` per method over the seeds of a cell (`seed_stability_records`).
    """
    rows = []
    for _, cell in jobs(records).groupby(CELL[1:], dropna=False, sort=True):
        rankings = {}
        for job in cell.itertuples():
            path = ranking_path(results, job)
            if path.exists():
                rankings[job.method] = np.load(path, allow_pickle=False)
        if len(rankings) < 2:
            continue
        first = cell.iloc[0]
        base = {c: first[c] for c in CELL}
        sources = dict(zip(cell["method"], cell["source"]))  # builtin or submission:<name>, per method
        for method, other, score in agreement(rankings):
            rows.append({**base, "source": sources[method], "method": method, "other": other,
                         "metric": score.metric, "k": score.k, "value": score.value, "chance": score.chance})
    stability = seed_stability_records(records, results)
    frames = [frame for frame in (pd.DataFrame(rows), stability) if len(frame)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def seed_stability_records(records: pd.DataFrame, results: Path) -> pd.DataFrame:
    """`stab_seed@k` per method and seedless cell with rankings saved for >= 2 seeds (reference.md#metric-stability).

    The rows summarize several seeds, so their `seed` is null; deterministic methods must give 1 at every k.
    """
    rows = []
    unseeded = [column for column in CELL[1:] if column != "seed"]
    for _, runs in jobs(records).groupby([*unseeded, "method"], dropna=False, sort=True):
        rankings = []
        for job in runs.sort_values("seed").itertuples():
            path = ranking_path(results, job)
            if path.exists():
                rankings.append(np.load(path, allow_pickle=False))
        if len(rankings) < 2:
            continue
        first = runs.iloc[0]
        base = {**{c: first[c] for c in CELL}, "seed": None, "method": first["method"], "other": None}
        for score in seed_stability(rankings):
            rows.append({**base, "metric": score.metric, "k": score.k, "value": score.value, "chance": score.chance})
    return pd.DataFrame(rows)
