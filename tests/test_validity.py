"""The scorer validity report (leaderboard.validity) on hand-built planted records with known answers."""

from __future__ import annotations

import pandas as pd
import pytest

from leaderboard.validity import render_validity, validity
from test_board import make_records

# truth order a > b > c > random; probe_acc follows it, ablate_drop_top reverses it (random stays last)
TRUTH = {"a": 1.0, "b": 0.6, "c": 0.3, "random": 0.0}
PROBE = {"a": 0.9, "b": 0.8, "c": 0.7, "random": 0.5}
DROP = {"a": 0.1, "b": 0.2, "c": 0.3, "random": 0.0}


def planted_records(tasks=("p1", "p2"), seeds=(0, 1, 2)) -> pd.DataFrame:
    rows = []
    for task in tasks:
        for seed in seeds:
            for method in TRUTH:
                jitter = 0.001 * seed
                rows.append({"task": task, "method": method, "seed": seed, "metric": "planted_rprec",
                             "value": TRUTH[method]})
                rows += [{"task": task, "method": method, "seed": seed, "metric": "probe_acc", "k": k,
                          "value": PROBE[method] + jitter} for k in (1, 10)]
                rows += [{"task": task, "method": method, "seed": seed, "metric": "ablate_drop_top", "k": k,
                          "value": DROP[method] + jitter} for k in (1, 10)]
    return make_records(*rows)


def test_a_scorer_that_follows_the_truth_has_tau_one_and_a_reversed_one_is_not_validated():
    table = validity(planted_records()).set_index("scorer")
    assert table.loc["probe", "gt_tau"] == pytest.approx(1.0)
    assert table.loc["probe", ["low", "high"]].tolist() == pytest.approx([1.0, 1.0])
    assert table.loc["probe", "validated"] and table.loc["probe", "random_last"] == 1.0
    assert table.loc["probe", "disc_power"] == 1.0  # every pair differs by more than the (zero) seed noise
    assert table.loc["ablation", "gt_tau"] == pytest.approx(0.0)  # a, b, c reversed, random last: tau = 0
    assert not table.loc["ablation", "validated"]
    assert table.loc["probe_acc@10", "cells"] == 6  # 2 planted cells x 3 seeds
    assert "| synthetic | probe | — | 1.000 | 1.000–1.000 |" in render_validity(validity(planted_records()), 10)


def test_few_cells_give_no_interval_and_no_truth_gives_an_empty_report():
    table = validity(planted_records(tasks=("p1",), seeds=(0, 1))).set_index("scorer")
    assert table["low"].isna().all() and not table["validated"].any()
    no_truth = planted_records()
    assert validity(no_truth[no_truth["metric"] != "planted_rprec"]).empty


def test_random_need_only_beat_nothing_the_truth_puts_below_it():
    """A decoy-picking method that finds less of the planted set than random may score below random; one the truth
    puts above random may not."""
    def scored(decoy_truth: float):
        records = planted_records()
        decoy = records[records["method"] == "c"].assign(method="decoy")
        decoy.loc[decoy["metric"] == "planted_rprec", "value"] = decoy_truth
        decoy.loc[decoy["metric"] == "probe_acc", "value"] = 0.3  # below random's 0.5 in every cell
        return validity(pd.concat([records, decoy], ignore_index=True)).set_index("scorer").loc["probe"]

    assert scored(decoy_truth=0.0)["random_last"] == 1.0  # tied with random by the truth: no violation
    below = scored(decoy_truth=0.5)
    assert below["random_last"] == 0.0 and not below["validated"]


def test_rows_say_whether_their_truth_is_synthetic_or_implanted_and_causal_names_its_readout():
    """Implanted records (an `implant:` revision) with an in-model scorer: their rows are `implanted`, apart from the
    synthetic ones; `causal` follows the truth there and names its readout; cells without a truth are left out."""
    synthetic = planted_records()
    implanted = planted_records(tasks=("templated_number",)).assign(model="tiny_implanted",
                                                                     model_revision="implant:abc+r1")
    causal = implanted[implanted["metric"] == "probe_acc"].assign(metric="causal_drop", readout="frozen_head")
    elsewhere = implanted.assign(layer=1)  # another layer of the implanted model: no truth there
    elsewhere = elsewhere[elsewhere["metric"] != "planted_rprec"].assign(value=lambda f: -f["value"])
    table = validity(pd.concat([synthetic, implanted, causal, elsewhere], ignore_index=True))
    kinds = dict(zip(zip(table["truth"], table["scorer"]), table.itertuples()))
    assert ("synthetic", "causal") not in kinds
    assert kinds[("implanted", "causal")].gt_tau == pytest.approx(1.0)
    assert kinds[("implanted", "causal")].readout == "frozen_head"
    assert kinds[("implanted", "probe")].gt_tau == pytest.approx(1.0)  # layer 1's reversed values are not read
    assert kinds[("implanted", "probe")].cells == 3 and kinds[("synthetic", "probe")].cells == 6
    assert list(table["truth"]).index("implanted") > max(i for i, t in enumerate(table["truth"]) if t == "synthetic")


def test_beh_is_checked_on_implanted_cells_as_its_area_and_per_k():
    """`beh` is shown, not ranked, until validated: the report reads its area (`beh_drop_auc`, a curve-level record)
    and `beh_drop@k`, names their readout, and a reversed beh is not validated."""
    implanted = planted_records(tasks=("templated_number",)).assign(model="tiny_implanted",
                                                                    model_revision="implant:abc+r1")
    probe = implanted[implanted["metric"] == "probe_acc"]
    area = probe[probe["k"] == 10].assign(metric="beh_drop_auc", k=None, readout="lm_logit_diff")
    per_k = probe.assign(metric="beh_drop", value=lambda f: -f["value"], readout="lm_logit_diff")
    rows = validity(pd.concat([implanted, area, per_k], ignore_index=True)).set_index("scorer")
    assert rows.loc["beh_drop_auc", "gt_tau"] == pytest.approx(1.0)
    assert rows.loc["beh_drop_auc", "readout"] == "lm_logit_diff" and rows.loc["beh_drop_auc", "truth"] == "implanted"
    assert rows.loc["beh_drop@10", "gt_tau"] == pytest.approx(-1.0) and not rows.loc["beh_drop@10", "validated"]
