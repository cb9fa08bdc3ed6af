"""On-disk activation cache: one float16 .npy per (model, corpus, pooling, split, site, layer).

Every file is written to a temporary name and moved into place with `os.replace`, and the entry's
`<site>.json` marker is written last, so a killed job never leaves an entry that looks complete and two jobs
racing for one entry are harmless. Filling an entry holds its lock file, so parallel jobs (a joblib or
cluster launcher) that need the same entry wait for the first one and reuse its files. Layer files get
their disk blocks before they are memory-mapped, and a marked site is checked (headers and sizes) before
it is trusted, so neither a full disk nor a damaged file passes quietly.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import re
import tempfile
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench.errors import NeuronbenchError


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


def reserved_memmap(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A new float16 .npy at `path`, mapped for writing once its blocks are allocated: the pages of a
    sparse file die of SIGBUS when the disk has no room left, a reservation fails with ENOSPC instead."""
    dtype = np.dtype(np.float16)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                      "fortran_order": False, "shape": shape})
        os.posix_fallocate(handle.fileno(), 0, handle.tell() + math.prod(shape) * dtype.itemsize)
    return np.lib.format.open_memmap(path, mode="r+")


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def npy_fault(path: Path, dtype, shape: tuple[int, ...] | None = None) -> str | None:
    """What is wrong with the .npy at `path` (None if nothing), from its header and size alone: cheap
    enough to check every file of an entry, and a truncated, empty or lying file (200 bytes declaring a
    TiB) is caught before numpy maps or allocates it."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if not size:
                return "empty"
            reader = _HEADER_READERS.get(np.lib.format.read_magic(handle))
            if reader is None:
                return "an unsupported .npy version"
            declared, _, found = reader(handle)
            needed = handle.tell() + math.prod(declared) * found.itemsize
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as error:
        return f"no readable .npy header ({error})"
    if found != np.dtype(dtype):
        return f"dtype {found}, expected {np.dtype(dtype)}"
    if size != needed:
        return (f"{'truncated' if size < needed else 'too long'}: {size:,} bytes, its header declares "
                f"shape {declared} {found} in {needed:,}")
    if shape is not None and declared != tuple(shape):
        return f"shape {declared}, expected {tuple(shape)}"
    return None


def _checked(path: Path, dtype) -> Path:
    """`path`, or a NeuronbenchError naming it where numpy would fail obscurely (or allocate a TiB)."""
    fault = npy_fault(path, dtype)
    if fault:
        raise NeuronbenchError(f"bad activation cache file {path}: {fault}; delete it and rerun to extract "
                               "it again")
    return path


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

    def site_faults(self, entry: Path, site: str, layers: list[int], rows: dict[str, int],
                    width: int) -> list[tuple[Path, str]]:
        """(file, fault) for each file a job on a complete `site` reads that is not what the model and
        corpus give (rows: words per split): a damaged file is named and re-extracted, not trusted."""
        wanted = [(entry / split / "valid.npy", np.bool_, (n,)) for split, n in rows.items()]
        wanted += [(self.layer_path(entry, split, site, layer), np.float16, (n, width))
                   for split, n in rows.items() for layer in layers]
        return [(path, fault) for path, dtype, shape in wanted if (fault := npy_fault(path, dtype, shape))]

    def drop(self, entry: Path, sites: list[str]) -> None:
        """Remove `sites` from `entry` (their markers first, so nothing trusts what follows) and every
        .partial file a killed or failed fill left; call it holding the entry's lock."""
        for site in sites:
            (entry / f"{site}.json").unlink(missing_ok=True)
        for path in [*entry.glob("*/.*.partial"), *(p for s in sites for p in entry.glob(f"*/{s}_L*.npy"))]:
            path.unlink(missing_ok=True)

    def mark_complete(self, entry: Path, site: str, meta: dict) -> None:
        """Written after every layer file of the site, so its presence means the site is whole."""
        atomic_write_bytes(entry / f"{site}.json", json.dumps(meta, indent=1, sort_keys=True).encode())

    @staticmethod
    def layer_path(entry: Path, split: str, site: str, layer: int) -> Path:
        return entry / split / f"{site}_L{layer:02d}.npy"

    def load_layer(self, entry: Path, split: str, site: str, layer: int) -> np.ndarray:
        """Memory-mapped float16 activations, one row per word of the split."""
        path = _checked(self.layer_path(entry, split, site, layer), np.float16)
        return np.load(path, mmap_mode="r", allow_pickle=False)

    def load_valid(self, entry: Path, split: str) -> np.ndarray:
        """Mask of words that got activations (False: no subword pieces, or sentence too long)."""
        return np.load(_checked(entry / split / "valid.npy", np.bool_), allow_pickle=False)


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
