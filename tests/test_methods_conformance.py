"""The Method contract, checked for every file in conf/method/ (a new method is tested on arrival).

Methods that need other models' activations (reference.md#method-crossmodel) get synthetic ones; methods
that need the model itself are tested with a model in test_intervene.py.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bench.core.method import order_by_scores
from bench.errors import NeuronbenchError
from conftest import CONF

METHOD_FILES = sorted((CONF / "method").glob("*.yaml"))
D = 30


def make_method(path):
    return instantiate(OmegaConf.load(path))


def planted(n=600, n_classes=3, seed=0, dtype=np.float32):
    """Neuron 2c+1 is shifted by +3 on class c; neurons 0 and D-1 are constant (dead)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    X = rng.normal(size=(n, D))
    X[np.arange(n), 2 * y + 1] += 3.0
    X[:, 0] = 5.0
    X[:, D - 1] = 0.0
    return X.astype(dtype), y


def other_models(X):
    """Two other models' activations on the same words: noisy mixes of X's neurons, 20 and 40 wide."""
    rng = np.random.default_rng(1)
    X = np.asarray(X, dtype=np.float32)
    return [X @ rng.normal(size=(D, width)) + rng.normal(size=(len(X), width)) for width in (20, 40)]


def inputs_for(method, X) -> dict:
    """What `rank` needs besides X and y, made up for a test."""
    return {"other_activations": other_models(X)} if "other_activations" in method.needs else {}


def checksum(*arrays):
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()


@pytest.fixture(params=METHOD_FILES, ids=[p.stem for p in METHOD_FILES])
def method(request):
    method = make_method(request.param)
    if method.needs - {"other_activations"}:
        pytest.skip(f"needs {sorted(method.needs)}: its contract is tested with a model in test_intervene.py")
    return method


def test_every_group_has_methods():
    assert {p.stem for p in METHOD_FILES} >= {"random", "probeless", "lca"}


@pytest.mark.parametrize("path", METHOD_FILES, ids=[p.stem for p in METHOD_FILES])
def test_params_stored_unchanged(path):
    """scikit-learn rule: every YAML key is stored unchanged as an attribute of the same name."""
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    method = make_method(path)
    for key, value in cfg.items():
        if key != "_target_":
            assert getattr(method, key) == value


@pytest.mark.parametrize("n_classes", [2, 3])
def test_permutation_dead_last_deterministic_no_mutation(method, n_classes):
    X, y = planted(n_classes=n_classes)
    inputs = inputs_for(method, X)
    before = checksum(X, y, *inputs.get("other_activations", []))
    first = method.rank(X, y, rng=np.random.default_rng(7), **inputs)
    assert checksum(X, y, *inputs.get("other_activations", [])) == before
    assert first.dtype == np.int64 and np.array_equal(np.sort(first), np.arange(D))
    assert first[-2:].tolist() == [0, D - 1]  # dead neurons last, in index order
    again = method.rank(X, y, rng=np.random.default_rng(7), **inputs)
    assert np.array_equal(first, again)


def test_scores_are_kept_in_ranking_order(method):
    """reference.md#ranking-contract item 5: a method that ranks by scores leaves them in scores_ (NaN for the
    dead neurons), and the ranking is their stable descending order."""
    X, y = planted()
    ranking = method.rank(X, y, rng=np.random.default_rng(0), **inputs_for(method, X))
    if method.scores_ is None:
        pytest.skip("ranks by its own order(), with no per-neuron score")
    assert method.scores_.shape == (D,) and np.isnan(method.scores_[[0, D - 1]]).all()
    np.testing.assert_array_equal(order_by_scores(method.scores_), ranking)


def test_float16_and_tiny_classes(method):
    X, y = planted(dtype=np.float16)
    y = y.copy()
    y[:3] = 3  # a class with three examples
    ranking = method.rank(X, y, rng=np.random.default_rng(0), **inputs_for(method, X))
    assert np.array_equal(np.sort(ranking), np.arange(D))


def test_nan_and_bad_shapes_rejected(method):
    X, y = planted()
    inputs = inputs_for(method, X)
    X[5, 4] = np.nan
    with pytest.raises(NeuronbenchError, match="NaN/inf values \\(first at word 5, neuron 4\\)"):
        method.rank(X, y, **inputs)
    with pytest.raises(NeuronbenchError, match="2-D"):
        method.rank(X[0], y, **inputs)
    if method.uses_labels:
        with pytest.raises(NeuronbenchError, match="labels"):
            method.rank(planted()[0], y[:-1], **inputs)


def test_labelled_methods_recover_planted_neurons(method):
    if not method.uses_labels:
        pytest.skip("label-free baseline")
    X, y = planted()
    top = method.rank(X, y, rng=np.random.default_rng(0))[:3]
    assert set(top.tolist()) == {1, 3, 5}


NEW_METHOD = '''"""The largest one-vs-rest class-mean gap of each neuron: a method added the way leaderboard/README.md says."""

import numpy as np

from bench.core.method import Method
from methods.probeless import class_means


class MaxClassGap(Method):
    def __init__(self, normalize: str = "zscore"):
        self.normalize = normalize

    def scores(self, Z, y, rng, **inputs) -> np.ndarray:
        n_classes = int(y.max()) + 1
        counts = np.bincount(y, minlength=n_classes)[:, None]
        means = class_means(Z, y, n_classes)
        rest = (Z.sum(axis=0) - counts * means) / np.maximum(len(y) - counts, 1)
        return np.abs(means - rest).max(axis=0)
'''


def test_adding_a_method_needs_no_test_edit(tmp_path):
    """A class and a YAML, nothing else: in a copy of the project with one more method, every test that
    enumerates the methods (the contract, the bad-input matrix, planted recovery, the suites' job counts) passes."""
    repo = CONF.parent
    copy = tmp_path / "neuronbench"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git", ".venv", ".cache", "results", "published",
                                                              "__pycache__", "*.egg-info"))
    (copy / "methods" / "max_class_gap.py").write_text(NEW_METHOD)
    (copy / "conf" / "method" / "max_class_gap.yaml").write_text(
        "# The largest one-vs-rest class-mean gap (a test's new method).\n"
        "_target_: methods.max_class_gap.MaxClassGap\nnormalize: zscore\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_methods_conformance.py", "tests/test_bad_input.py",
                           "tests/test_planted_recovery.py", "tests/test_ud_tasks.py",
                           "-k", "max_class_gap or suite_size or expectation_rows"],
                          cwd=copy, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert "failed" not in summary and int(summary.split(" passed")[0].split()[-1]) >= 15, summary
