"""The scorers' cost per layer (leaderboard.records.scorer_cost_rows, leaderboard.board.scorer_cost_markdown): read
from job.json's `scorers_s`, kept by `pack` as costs rows, shown beside rank()'s cost."""

from __future__ import annotations

import json

import pandas as pd

from bench.run import job_folder
from leaderboard.board import cost_markdown, cost_summary, scorer_cost_summary
from leaderboard.records import SCORER_COST, scorer_cost_rows
from test_board import make_records


def test_scorer_seconds_per_layer_come_from_job_json_and_leave_rank_costs_alone(tmp_path):
    records = make_records(*[{"method": m, "metric": "probe_acc", "k": 1, "value": 0.5, "seed": s}
                             for m in ("a", "b") for s in (0, 1)])
    row = records.iloc[0]
    for method, seed, causal in (("a", 0, 30.0), ("a", 1, 20.0), ("b", 0, 10.0), ("b", 1, None)):
        out = job_folder(tmp_path, row["task"], None, row["model"], method, seed)
        out.mkdir(parents=True)
        scorers = {"probe_acc": 1.5} | ({"causal": causal} if causal is not None else {})  # b seed 1: an alias
        (out / "job.json").write_text(json.dumps({
            "config": {"task": {"name": row["task"]}, "model": {"name": row["model"]}, "seed": seed},
            "method": method, "layers": [{"site": "hidden", "layer": 0, "seconds": 40.0, "scorers_s": scorers}]}))
    rows = scorer_cost_rows(tmp_path, records)
    assert set(rows["metric"]) == {SCORER_COST} and len(rows) == 7
    summary = scorer_cost_summary(rows).set_index("scorer")
    assert summary.loc["causal", ["median_s", "min_s", "max_s", "n"]].tolist() == [20.0, 10.0, 30.0, 3]
    rank = pd.DataFrame([{**row.to_dict(), "method": "a", "metric": "cost_time_s", "value": 2.0},
                         {**row.to_dict(), "method": "a", "metric": "cost_peak_mem_b", "value": 2.0**20}])
    costs = pd.concat([rank, rows], ignore_index=True)
    assert cost_summary(costs)["time_s"].tolist() == [2.0]  # scorer rows do not enter rank()'s cost
    text = cost_markdown(costs)
    assert "## Cost of the scorers per layer" in text and "| tiny | hidden | causal | 20.0 | 10.0-30.0 | 3 |" in text
