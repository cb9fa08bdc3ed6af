"""On-disk activation cache: one float16 .npy per (model, corpus, pooling, split, site, layer).

Every file is written to a temporary name and moved into place with `os.replace`, and the entry's
`<site>.json` marker is written last, so a killed job never leaves an entry that looks complete and two jobs
racing for one entry are harmless. Filling an entry holds its lock file, so parallel jobs (a joblib or
cluster launcher) that need the same entry wait for the first one and reuse its files.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import tempfile
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np


log = logging.getLogger(__name__)

DEFAULT_CACHE = ".cache/neuronbench"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The project cache (activations, converted models, downloaded data): `cache_dir`, else
    $NEURONBENCH_CACHE, else .cache/neuronbench."""
    return Path(cache_dir or os.environ.get("NEURONBENCH_CACHE") or DEFAULT_CACHE).expanduser().resolve()


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", part)


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()  # what open() would give: mkstemp's 0600 would hide results from other users


@contextmanager
def _replacing(path: Path, suffix: str = ""):
    """A temporary file beside `path` that replaces it only if the block completes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with _replacing(path) as tmp:
        Path(tmp).write_bytes(data)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with _replacing(path, suffix=".npy") as tmp:
        np.save(tmp, array, allow_pickle=False)


class ActivationCache:
    """Locates cache entries; `bench.extract` fills them, everything else reads them."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def entry(self, model: str, revision: str, corpus_id: str, pooling: str) -> Path:
        return self.root / _safe(f"{model}@{revision}") / corpus_id / pooling

    def is_complete(self, entry: Path, site: str) -> bool:
        return (entry / f"{site}.json").exists()

    @contextmanager
    def filling(self, entry: Path):
        """Hold `entry`'s lock (flock, released when its file closes, also if the process dies)."""
        lock = entry.parent / f".{entry.name}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another job filling %s", entry)
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def mark_complete(self, entry: Path, site: str, meta: dict) -> None:
        """Written after every layer file of the site, so its presence means the site is whole."""
        atomic_write_bytes(entry / f"{site}.json", json.dumps(meta, indent=1, sort_keys=True).encode())

    @staticmethod
    def layer_path(entry: Path, split: str, site: str, layer: int) -> Path:
        return entry / split / f"{site}_L{layer:02d}.npy"

    def load_layer(self, entry: Path, split: str, site: str, layer: int) -> np.ndarray:
        """Memory-mapped float16 activations, one row per word of the split."""
        return np.load(self.layer_path(entry, split, site, layer), mmap_mode="r", allow_pickle=False)

    def load_valid(self, entry: Path, split: str) -> np.ndarray:
        """Mask of words that got activations (False: no subword pieces, or sentence too long)."""
        return np.load(entry / split / "valid.npy", allow_pickle=False)


class BoundedMemo:
    """In-process least-recently-used memo for fits keyed by content (probes, heads): the jobs of one
    sweep share a process, and e.g. the all-neuron probe of a cell is the same for every method."""

    def __init__(self, limit: int):
        self.limit, self.items = limit, OrderedDict()

    def get(self, key, compute):
        if key in self.items:
            self.items.move_to_end(key)
        else:
            self.items[key] = compute()
            if len(self.items) > self.limit:
                self.items.popitem(last=False)
        return self.items[key]
