"""Faults in the activation cache are named or repaired, never passed on quietly (issue 16 items 2, 4, 5).

Each case breaks a real cache entry of the tiny random model (cell files: rows of (word, float16 x width),
sorted by word; bench.cache). "healed": rerunning the extraction (of `hidden`, as a job would) warns
(naming the file, where it was damaged rather than absent), re-extracts and returns exactly a clean
extraction's arrays; otherwise loading the broken entry directly, as a caller that skipped the extraction
would, raises a NeuronbenchError matching the regex.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.cache import ActivationCache, cell_dtype
from bench.core.types import SPLITS
from bench.errors import NeuronbenchError
from bench.extract import extract
from bench.models import load_model
from test_extract import TINY, _task

TASK = _task([["The", "cats", "sat", "quietly", "."], ["Dogs", "bark"], ["Unbelievably", "so"]])
ROWS, WIDTH = 9, 32  # words per split, hidden width of TINY
SITES = ["hidden", "mlp"]
LAYERS = {"hidden": [0, 1, 2], "mlp": [1, 2]}  # TINY's: embeddings and 2 blocks


@pytest.fixture(scope="module")
def loaded():
    return load_model("tiny", TINY)


def _read(cache, entry, sites=("hidden",)):
    """Every array a job on `sites` reads, copied out of the cache."""
    arrays = {split: cache.load_valid(entry, split) for split in SPLITS}
    arrays |= {(split, site, layer): np.array(cache.load_layer(entry, split, site, layer))
               for split in SPLITS for site in sites for layer in LAYERS[site]}
    return arrays


def _assert_same(arrays, expected):
    assert arrays.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(arrays[key], expected[key], err_msg=str(key))
        assert arrays[key].dtype == expected[key].dtype


@pytest.fixture(scope="module")
def clean(loaded, tmp_path_factory):
    cache = ActivationCache(tmp_path_factory.mktemp("clean"))
    return _read(cache, extract(loaded, TASK, cache, sites=SITES, quiet=True))


def _layer(entry, split="train", layer=1):
    return ActivationCache.layer_path(entry, split, "hidden", layer)


def truncate(entry):
    path = _layer(entry)
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 100)
    return path


def empty(entry):
    _layer(entry, "dev").write_bytes(b"")
    return _layer(entry, "dev")


def lying_header(entry, path=None):
    """200 bytes whose header declares 2**34 cell rows (over 1 TiB)."""
    path = path or _layer(entry, "test", 2)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(cell_dtype(WIDTH)),
                                                  "fortran_order": False, "shape": (2 ** 34,)})
    path.write_bytes(header.getvalue().ljust(200, b"\0"))
    return path


def wrong_dtype(entry):
    np.save(_layer(entry), np.ones((ROWS, WIDTH), np.float32))
    return _layer(entry)


def wrong_width(entry):
    rows = np.load(_layer(entry, "dev"))
    narrow = np.zeros(len(rows), cell_dtype(WIDTH - 1))
    narrow["word"], narrow["x"] = rows["word"], rows["x"][:, 1:]
    np.save(_layer(entry, "dev"), narrow)
    return _layer(entry, "dev")


def missing_row(entry):
    """A cell without one of its words is no fault, only less stored: the next extraction grows it."""
    rows = np.load(_layer(entry, "dev", 0))
    np.save(_layer(entry, "dev", 0), np.delete(rows, 3))
    return None


def unsorted(entry, path=None):
    path = path or _layer(entry, "test", 1)
    rows = np.load(path)
    np.save(path, rows[::-1])
    return path


def out_of_range(entry):
    rows = np.load(_layer(entry, "train", 2))
    rows["word"][-1] = ROWS  # one past the split's last word
    np.save(_layer(entry, "train", 2), rows)
    return _layer(entry, "train", 2)


def missing(entry):
    """A missing cell holds nothing: extracted again, with nothing to warn about."""
    _layer(entry, "test", 0).unlink()
    return None


def valid_of_ints(entry):
    np.save(entry / "dev" / "valid.npy", np.ones(ROWS, np.int64))
    return entry / "dev" / "valid.npy"


def stale_partials(entry):
    """What a job killed while filling leaves: each cell it was writing as a .partial file beside nothing."""
    for split in SPLITS:
        for path in (entry / split).glob("*_L*.npy"):
            path.rename(path.with_name(f".{path.name}.partial"))


CASES = [
    ("truncated-layer", truncate, "healed"),
    ("empty-layer", empty, "healed"),
    ("lying-header", lying_header, "healed"),
    ("wrong-dtype", wrong_dtype, "healed"),
    ("wrong-width", wrong_width, "healed"),
    ("missing-row", missing_row, "healed"),
    ("unsorted-word-index", unsorted, "healed"),
    ("word-index-out-of-range", out_of_range, "healed"),
    ("missing-layer", missing, "healed"),
    ("valid-not-bool", valid_of_ints, "healed"),
    ("stale-partial-files", stale_partials, "healed"),
    ("load-truncated-layer", truncate,
     r"^bad activation cache file \S+/train/hidden_L01\.npy: truncated: 676 bytes, its header declares "
     r"shape \(9,\) cell rows of float16 x 32 in 776; delete it and rerun to extract it again$"),
    ("load-empty-layer", empty, r"^bad activation cache file \S+/dev/hidden_L01\.npy: empty; delete it"),
    ("load-lying-header", lying_header,
     r"^bad activation cache file \S+/test/hidden_L02\.npy: truncated: 200 bytes, its header declares "
     r"shape \(17179869184,\) cell rows of float16 x 32 in 1,236,950,581,376; delete it"),
    ("load-unsorted", unsorted,
     r"^bad activation cache file \S+/test/hidden_L01\.npy: its word index is not strictly increasing"),
    ("load-lying-valid", lambda entry: lying_header(entry, entry / "train" / "valid.npy"),
     r"^bad activation cache file \S+/train/valid\.npy: dtype cell rows of float16 x 32, expected bool; delete it"),
]


@pytest.mark.parametrize("fault, outcome", [pytest.param(f, o, id=case) for case, f, o in CASES])
def test_cache_fault(fault, outcome, loaded, clean, tmp_path, caplog):
    cache = ActivationCache(tmp_path)
    entry = extract(loaded, TASK, cache, sites=SITES, quiet=True)
    broken = fault(entry)
    if outcome != "healed":
        with pytest.raises(NeuronbenchError, match=outcome):
            _read(cache, entry)
        return
    with caplog.at_level("WARNING", logger="bench"):
        assert extract(loaded, TASK, cache, sites=["hidden"], quiet=True) == entry
    _assert_same(_read(cache, entry), clean)
    assert not list(tmp_path.rglob("*.partial"))
    if broken:
        assert f"activation cache file {broken}: " in caplog.text


CHILD = """
import json, sys
from bench.cache import ActivationCache
from bench.errors import NeuronbenchError
from bench.extract import extract
from bench.models import load_model
from test_extract import _task
spec, sentences, root = json.loads(sys.argv[1])
try:
    extract(load_model("tiny", spec), _task(sentences), ActivationCache(root), sites=["hidden", "mlp"],
            quiet=True)
except NeuronbenchError as error:
    sys.exit(str(error))
"""


def test_full_disk_is_one_clear_error_and_a_rerun_with_room_succeeds(loaded, small_disk, tmp_path):
    """A real 256 KiB tmpfs holds the sparse layer files of a 1000-word split but not their data. The
    extraction runs in a child process, so a SIGBUS (a memmap page of a sparse file finding the disk
    full) fails this test instead of killing pytest."""
    task = _task([["The", "cats", "sat", "quietly", "."], ["Dogs", "bark", "at", "night", "again"]] * 100)
    disk = small_disk

    def child():
        argument = json.dumps([TINY, task.sentences["train"], str(disk)])
        return subprocess.run([sys.executable, "-c", CHILD, argument], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=300)

    full = child()
    assert full.returncode == 1, f"exit {full.returncode}: {full.stderr[-2000:]}"
    assert re.fullmatch(rf"no room for activations in the cache folder {re.escape(str(disk))}: "
                        r"extracting hidden, mlp of tiny \(train\) needs 488,000 bytes, [\d,]+ are free; free "
                        r"space there or point cache_dir= \(or NEURONBENCH_CACHE\) at a disk with room",
                        full.stderr.strip().splitlines()[-1]), full.stderr[-2000:]
    assert not list(disk.rglob("*.partial")) and not list(disk.rglob("*_L*.npy"))  # no cell, whole or half
    subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
    rerun = child()
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    cache, fresh = ActivationCache(disk), ActivationCache(tmp_path / "clean")
    _assert_same(_read(cache, extract(loaded, task, cache, sites=SITES, quiet=True), SITES),
                 _read(fresh, extract(loaded, task, fresh, sites=SITES, quiet=True), SITES))
