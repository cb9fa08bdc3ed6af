"""`neuronbench-board check`: the current code reproduces the committed goldens, and a method whose ranking changes
(patched in-process) fails the check with a line that names it, the cell and how far it moved."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from leaderboard.check import GOLDEN_DIR, GOLDEN_FILE, SPEC_FILE, check, compare, load_spec, report
from leaderboard.cli import main
from methods.probeless import Probeless

METHODS = ["lca", "probeless", "random"]
PLANTED = "planted_single/planted/hidden/L0/seed0"


@pytest.fixture
def planted_spec():
    """check.yaml with only its planted cell (no model: seconds)."""
    spec = load_spec()
    spec["cells"] = [cell for cell in spec["cells"] if cell["model"] == "planted"]
    assert spec["cells"], "check.yaml lost its planted cell"
    return spec


@pytest.fixture
def reversed_probeless(monkeypatch):
    original = Probeless.scores
    monkeypatch.setattr(Probeless, "scores", lambda self, Z, y, rng, **inputs: -original(self, Z, y, rng))


def test_check_passes_on_the_current_code(planted_spec):
    passed, lines = check(methods=METHODS, spec=planted_spec)
    assert passed, "\n".join(lines)
    assert lines[-1].startswith("check: 3 method x cell comparisons, 0 failed")  # drift on another CPU may pass


def test_a_changed_ranking_fails_with_a_readable_line(planted_spec, reversed_probeless):
    passed, lines = check(methods=METHODS, spec=planted_spec)
    assert not passed
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 1, lines
    assert failed[0].startswith(f"FAIL probeless on {PLANTED}: J@20 0.00 | ")
    assert "planted_group_recall@5 1.0000 -> 0.0000 (-1.0000)" in failed[0] and "(+6 more)" in failed[0]
    assert failed[0].endswith("| J@20 below 0.9; 9 of 9 changed values beyond ±0.01")
    assert lines[-1].startswith("check: 3 method x cell comparisons, 1 failed")


def test_cli_check_with_its_own_golden_folder(tmp_path, planted_spec, monkeypatch, capsys):
    """A user's repository keeps its own check.yaml and golden.json and runs `check --golden` on them."""
    golden = tmp_path / "golden"
    golden.mkdir()
    shutil.copy(GOLDEN_DIR / SPEC_FILE, golden / SPEC_FILE)
    monkeypatch.setattr("leaderboard.check.load_spec", lambda golden_dir: {**planted_spec, "methods": ["probeless"]})
    assert main(["check", "--golden", str(golden)]) == 1
    assert f"FAIL probeless on {PLANTED}: no golden for this method and cell: run `neuronbench-board check " \
           "--update`" in capsys.readouterr().out
    assert main(["check", "--golden", str(golden), "--update"]) == 0
    assert main(["check", "--golden", str(golden)]) == 0
    original = Probeless.scores
    monkeypatch.setattr(Probeless, "scores", lambda self, Z, y, rng, **inputs: -original(self, Z, y, rng))
    assert main(["check", "--golden", str(golden)]) == 1
    monkeypatch.setattr(Probeless, "scores", original)
    text = (golden / GOLDEN_FILE).read_text()
    (golden / GOLDEN_FILE).write_text(text.replace('  "probeless": ', '  "ghost": {"top": [], "scores": {}},\n'
                                                                       '  "probeless": '))
    capsys.readouterr()
    assert main(["check", "--golden", str(golden)]) == 1  # a golden that nothing produces any more is stale
    assert f"FAIL golden has ghost on {PLANTED}, which this run no longer produces" in capsys.readouterr().out


def test_tolerances_separate_drift_from_failure():
    spec = {"tolerance": {"jaccard_k": 3, "default": {"min_jaccard": 0.5, "value_atol": 0.01},
                          "methods": {"loose": {"value_atol": None}}}}
    old = {"top": [0, 1, 2, 3], "scores": {"probe_acc@3": 0.8, "probe_auc": 0.7, "planted_ap": float("nan")}}
    drift = {"top": [0, 1, 3, 2], "scores": {"probe_acc@3": 0.805, "probe_auc": 0.7, "planted_ap": float("nan")}}
    moved = {"top": [0, 5, 6, 7], "scores": {"probe_acc@3": 0.75, "probe_auc": 0.7}}
    golden = {"cell": {"steady": old, "drifting": old, "moved": old, "loose": old}}
    fresh = {"cell": {"steady": old, "drifting": drift, "moved": moved, "loose": moved}}
    results = {c.method: c for c in compare(golden, fresh, spec)}
    assert results["steady"].ok and not results["steady"].deltas and results["steady"].jaccard == 1
    assert results["drifting"].ok and results["drifting"].jaccard == pytest.approx(0.5)
    assert results["drifting"].deltas == (("probe_acc@3", 0.8, 0.805),)
    assert results["moved"].failures == ("J@3 below 0.5", "planted_ap disappeared",
                                         "1 of 1 changed values beyond ±0.01")
    assert results["loose"].failures == ("J@3 below 0.5", "planted_ap disappeared")  # values not compared
    lines = report(list(results.values()), stale=["gone on cell"])
    assert lines[0] == "FAIL loose on cell: J@3 0.20 | probe_acc@3 0.8000 -> 0.7500 (-0.0500) | J@3 below 0.5; " \
                       "planted_ap disappeared"
    assert "drift drifting on cell: J@3 0.50 | probe_acc@3 0.8000 -> 0.8050 (+0.0050)" in lines
    assert "FAIL golden has gone on cell, which this run no longer produces: rerun with --update" in lines
    assert lines[-1] == "check: 4 method x cell comparisons, 3 failed, 1 within tolerance"
    assert not np.isnan(results["drifting"].jaccard)
