"""`neuronbench-board check`: the current code reproduces the committed goldens, and a method whose ranking changes
(patched in-process) fails the check with a line that names it, the cell and how far it moved; a method author's
repository, built in tmp_path, pins its own method with its own goldens and its CI fails when its code changes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.errors import NeuronbenchError
from leaderboard.check import GOLDEN_DIR, GOLDEN_FILE, SPEC_FILE, check, compare, load_spec, method_configs, report
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
           f"--golden {golden} --update` and commit golden.json" in capsys.readouterr().out
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


# --- a method author's own repository ----------------------------------------------------------------------------

AUTHOR_METHOD = '''"""The author's method: probeless's class-mean distances, squared."""

from methods.probeless import Probeless


class SquaredProbeless(Probeless):
    def scores(self, Z, y, rng, **inputs):
        return super().scores(Z, y, rng) ** 2
'''
AUTHOR_CONFIG = "_target_: author_methods.squared.SquaredProbeless\nnormalize: zscore\n"
AUTHOR_SPEC = """# The author's golden check: their methods on the planted cell (no model, seconds).
seed: 0
top: 50
method_dir: ../../conf/method   # relative to this folder: the author's conf/method-style configs
methods: all
cells:
  - {task: planted_single, model: planted, scorers: [planted, probe_acc], ks: [3, 10, 30]}
tolerance:
  jaccard_k: 20
  default: {min_jaccard: 0.9, value_atol: 0.01}
"""
AUTHOR_TEST = '''from leaderboard.check import assert_matches_golden


def test_rankings_match_the_goldens():
    assert_matches_golden("ci/golden")
'''


def author_repo(root: Path) -> Path:
    """A throwaway repository of a method author: a package with one method class, its config, a golden folder and
    a test that runs the check, laid out as leaderboard/README.md's recipe says."""
    files = {"author_methods/__init__.py": "", "author_methods/squared.py": AUTHOR_METHOD,
             "conf/method/squared_probeless.yaml": AUTHOR_CONFIG, "ci/golden/check.yaml": AUTHOR_SPEC,
             "tests/test_rankings.py": AUTHOR_TEST}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def in_author_repo(tmp_path, monkeypatch):
    """The author's repository as the working directory with its package importable, as in their CI; the package's
    modules are dropped afterwards, so no other test imports them."""
    repo = author_repo(tmp_path / "author")
    monkeypatch.chdir(repo)
    monkeypatch.syspath_prepend(str(repo))
    yield repo
    for name in [name for name in sys.modules if name.split(".")[0] == "author_methods"]:
        del sys.modules[name]


def run_pytest(repo: Path) -> subprocess.CompletedProcess:
    """The author's test suite in a fresh interpreter, their package on PYTHONPATH."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=repo,
                          env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True, timeout=300)


def test_an_authors_repository_pins_its_method_with_its_own_goldens(in_author_repo, capsys):
    repo = in_author_repo
    assert main(["check", "--golden", "ci/golden", "--update"]) == 0
    assert "1 method x cell goldens updated" in capsys.readouterr().out
    golden = json.loads((repo / "ci/golden" / GOLDEN_FILE).read_text())
    assert list(golden) == [PLANTED] and list(golden[PLANTED]) == ["squared_probeless"]
    passed = run_pytest(repo)
    assert passed.returncode == 0, passed.stdout + passed.stderr

    method = repo / "author_methods/squared.py"  # an unintended sign flip in the ranking code
    method.write_text(method.read_text().replace("return super().scores(Z, y, rng) ** 2",
                                                 "return -super().scores(Z, y, rng) ** 2"))
    failed = run_pytest(repo)
    assert failed.returncode == 1
    assert f"FAIL squared_probeless on {PLANTED}: J@20 0.00 | " in failed.stdout
    assert "1 method x cell comparisons, 1 failed" in failed.stdout
    del sys.modules["author_methods.squared"]  # the command, too, now runs the changed code
    assert main(["check", "--golden", "ci/golden"]) == 1
    assert capsys.readouterr().out.startswith(f"FAIL squared_probeless on {PLANTED}: J@20 0.00 | ")


def test_an_authors_config_whose_class_does_not_import_is_one_clear_error(tmp_path):
    repo = author_repo(tmp_path / "author")
    spec = load_spec(repo / "ci/golden")
    assert spec["method_dir"] == str(repo / "conf/method")
    with pytest.raises(NeuronbenchError, match=r"squared_probeless\.yaml: _target_ author_methods\.squared\."
                                               r"SquaredProbeless does not import .*PYTHONPATH"):
        method_configs(spec)
    (repo / "ci/golden" / SPEC_FILE).write_text("seed: 0\ntop: 50\n")
    with pytest.raises(NeuronbenchError, match=r"check\.yaml: missing keys \['cells', 'tolerance'\]"):
        load_spec(repo / "ci/golden")
