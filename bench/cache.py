"""On-disk activation cache: per (model, corpus, pooling) entry, one file per (split, site, layer) cell
holding only the words extraction stored, each row tagged with its word's index in the split.

A cell file is a 1-D structured .npy of rows (`word` int64, `x` float16[width]) sorted by word: the
words of every sentence some job selected an example in, nothing else, so a job that reads 5,000 words of
EWT at one layer stores those sentences at that layer only. Growing a cell (more sentences, another seed's
selection) writes a new file with the old rows and the new ones and moves it over the old with
`os.replace`, never writing in place, so a reader sees the old file or the new one, whole, and the word
index travels in the same file as the rows it indexes. `<split>/valid.npy` (which words can have
activations) follows from tokenization alone, so examples are selected before any forward pass.
Growing an entry holds its lock file (bench.lock: created exclusively and kept alive by a heartbeat, so it
holds on a network filesystem without flock), so parallel jobs (a joblib or cluster launcher, on one machine
or many) that need the same entry wait for one another and each extracts only what the previous ones left
missing; a cell's next version is moved in only while its writer still holds that lock. Cell files get their
disk blocks before they are memory-mapped, and every cell is checked (header, size, sorted word index)
before it is trusted, so neither a full disk nor a damaged file passes quietly. Entries live under
`activations-v2/`: the earlier layout (every word of the corpus at every layer) is never read.
"""

from __future__ import annotations

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
from bench.lock import HeartbeatLock, lock_expiry


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


def reserved_memmap(path: Path, shape: tuple[int, ...], dtype=np.float16) -> np.memmap:
    """A new .npy at `path`, mapped for writing once its blocks are allocated: the pages of a sparse file
    die of SIGBUS when the disk has no room left, a reservation fails with ENOSPC instead."""
    dtype = np.dtype(dtype)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                      "fortran_order": False, "shape": shape})
        os.posix_fallocate(handle.fileno(), 0, handle.tell() + math.prod(shape) * dtype.itemsize)
    return np.lib.format.open_memmap(path, mode="r+")


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def npy_fault(path: Path, dtype, shape: tuple[int, ...] | None = None) -> str | None:
    """What is wrong with the .npy at `path` (None if nothing), from its header and size alone: cheap
    enough to check every file of an entry, and a truncated, empty or lying file (200 bytes declaring a
    TiB) is caught before numpy maps or allocates it. `dtype` may be a function of the file's dtype that
    says what is wrong with it (None: nothing), for files whose dtype depends on a width."""
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
    if callable(dtype) and not isinstance(dtype, type):  # a checker, not a scalar type such as np.bool_
        if (wrong := dtype(found)) is not None:
            return wrong
    elif found != np.dtype(dtype):
        return f"dtype {_shown_dtype(found)}, expected {np.dtype(dtype)}"
    if size != needed:
        return (f"{'truncated' if size < needed else 'too long'}: {size:,} bytes, its header declares "
                f"shape {declared} {_shown_dtype(found)} in {needed:,}")
    if shape is not None and declared != tuple(shape):
        return f"shape {declared}, expected {tuple(shape)}"
    return None


def cell_dtype(width: int) -> np.dtype:
    """A cell file's row: the word's index in its split, then its activations."""
    return np.dtype([("word", "<i8"), ("x", "<f2", (int(width),))])


def _shown_dtype(dtype: np.dtype) -> str:
    """float16, bool, or a cell row as `cell rows of float16 x 32`."""
    if dtype.names == ("word", "x"):
        return f"cell rows of {dtype['x'].base} x {dtype['x'].shape[0]}"
    return str(dtype)


def _cell_dtype_fault(width: int | None):
    """What npy_fault checks of a cell file's dtype: cell rows, of `width` where given."""
    def fault(found: np.dtype) -> str | None:
        fields = found.fields or {}
        ok = (found.names == ("word", "x") and fields["word"][0] == np.dtype("<i8")
              and fields["x"][0].base == np.dtype("<f2") and len(fields["x"][0].shape) == 1)
        if ok and (width is None or fields["x"][0].shape[0] == width):
            return None
        expected = f"cell rows of float16 x {width}" if width is not None else "cell rows (word int64, x float16)"
        return f"dtype {_shown_dtype(found)}, expected {expected}"
    return fault


def _checked(path: Path, dtype) -> Path:
    """`path`, or a NeuronbenchError naming it where numpy would fail obscurely (or allocate a TiB)."""
    fault = npy_fault(path, dtype)
    if fault:
        raise NeuronbenchError(f"bad activation cache file {path}: {fault}; delete it and rerun to extract "
                               "it again")
    return path


LAYOUT = "activations-v2"  # cells of selected words; the earlier whole-corpus layout lived in the root
COPY_ROWS = 1 << 16  # rows copied at a time when a grown cell takes over its old rows


def _cell_fault(path: Path, width: int | None = None,
                n_words: int | None = None) -> tuple[str | None, np.ndarray | None]:
    """(what is wrong with the cell file at `path` or None, its memory-mapped rows when nothing is): its
    header and size, then its word column: strictly increasing and inside the split."""
    fault = npy_fault(path, _cell_dtype_fault(width))
    if fault is None:
        try:
            rows = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:  # e.g. no rows: nothing to map
            return f"unreadable ({error})", None
        if rows.ndim != 1 or not len(rows):
            return f"shape {rows.shape}, expected one or more rows of words", None
        words = np.asarray(rows["word"])
        if not (np.diff(words) > 0).all():
            return "its word index is not strictly increasing (rows out of order or repeated)", None
        if words[0] < 0 or (n_words is not None and words[-1] >= n_words):
            return (f"its word index runs from {words[0]} to {words[-1]}, outside the split's "
                    f"{n_words if n_words is not None else 'non-negative'} words"), None
        return None, rows
    return fault, None


def _checked_cell(path: Path) -> np.ndarray:
    fault, rows = _cell_fault(path)
    if fault:
        raise NeuronbenchError(f"bad activation cache file {path}: {fault}; delete it and rerun to extract "
                               "it again")
    return rows


class ActivationCache:
    """Locates cache entries and reads their cells; `bench.extract` fills and grows them."""

    def __init__(self, root: str | Path, lock_expiry_s: float | None = None):
        """`lock_expiry_s`: seconds an entry's lock may go without a heartbeat before a waiting job breaks it
        (default $NEURONBENCH_LOCK_EXPIRY, else 120)."""
        self.root, self.lock_expiry_s = Path(root), lock_expiry(lock_expiry_s)
        self.locks: dict[Path, HeartbeatLock] = {}  # the entries this process fills now, and their locks

    def entry(self, model: str, revision: str, corpus_id: str, pooling: str) -> Path:
        return self.root / LAYOUT / _safe(f"{model}@{revision}") / corpus_id / pooling

    @contextmanager
    def filling(self, entry: Path):
        """Hold `entry`'s lock, the file `.<entry>.lock` beside it: a job that dies holding it is waited for
        until its heartbeat is lock_expiry_s old (on this host, not at all once its process is gone)."""
        with HeartbeatLock(entry.parent / f".{entry.name}.lock", f"another job filling {entry}",
                           self.lock_expiry_s) as lock:
            self.locks[entry] = lock
            try:
                yield
            finally:
                self.locks.pop(entry, None)

    @staticmethod
    def layer_path(entry: Path, split: str, site: str, layer: int) -> Path:
        return entry / split / f"{site}_L{layer:02d}.npy"

    @staticmethod
    def valid_path(entry: Path, split: str) -> Path:
        return entry / split / "valid.npy"

    def stored_words(self, entry: Path, split: str, site: str, layer: int, width: int,
                     n_words: int) -> tuple[np.ndarray, str | None]:
        """(the words the cell holds, sorted; what is wrong with its file or None). A missing file holds
        nothing and is no fault; a damaged one holds nothing either, and says why."""
        path = self.layer_path(entry, split, site, layer)
        if not path.exists():
            return np.zeros(0, dtype=np.int64), None
        fault, rows = _cell_fault(path, width, n_words)
        return (np.zeros(0, dtype=np.int64), fault) if fault else (np.asarray(rows["word"]), None)

    def clean_partials(self, entry: Path) -> None:
        """Remove every .partial file a killed or failed fill left; call it holding the entry's lock."""
        for path in entry.glob("*/.*.partial"):
            path.unlink(missing_ok=True)

    def grow(self, entry: Path, split: str, site: str, layer: int, width: int,
             new_words: np.ndarray) -> CellWriter:
        """The next version of a cell: its stored rows (a healthy file's; call stored_words first, which
        names a damaged one) and rows for `new_words`, filled by CellWriter.put; call it holding the lock."""
        path = self.layer_path(entry, split, site, layer)
        old = None
        if path.exists():
            fault, old = _cell_fault(path, width)
            if fault:
                old = None
        return CellWriter(path, width, old, np.asarray(new_words, dtype=np.int64), self.locks.get(entry))

    def read_words(self, entry: Path, split: str, site: str, layer: int, word_ids) -> np.ndarray:
        """float32 activations (len(word_ids), width) of those words of the split, in that order. A word
        the cell does not hold is an error naming the file: the job's extraction should have stored it."""
        path = self.layer_path(entry, split, site, layer)
        rows = _checked_cell(path)
        word_ids = np.asarray(word_ids, dtype=np.int64)
        stored = np.asarray(rows["word"])
        at = np.minimum(np.searchsorted(stored, word_ids), len(stored) - 1)
        absent = stored[at] != word_ids
        if absent.any():
            raise NeuronbenchError(
                f"activation cache file {path} holds no row for {int(absent.sum())} of the {len(word_ids)} "
                f"words read (words {word_ids[absent][:5].tolist()} of {split}): the extraction before this "
                "read should have stored them, so this is a bug; deleting the file makes the next job extract "
                "it again")
        return np.asarray(rows["x"][at], dtype=np.float32)

    def load_layer(self, entry: Path, split: str, site: str, layer: int) -> np.ndarray:
        """Every word of the split, (n_words, width) float16, zeros for words without activations: for
        an entry extracted whole (`extract` without `words`). A valid word the cell does not hold is an
        error; a job reads its own words with read_words."""
        path = self.layer_path(entry, split, site, layer)
        valid = self.load_valid(entry, split)
        fault, rows = _cell_fault(path, n_words=len(valid))
        if fault:
            raise NeuronbenchError(f"bad activation cache file {path}: {fault}; delete it and rerun to "
                                   "extract it again")
        words = np.asarray(rows["word"])
        missing = np.setdiff1d(np.flatnonzero(valid), words)
        if len(missing):
            raise NeuronbenchError(f"activation cache file {path} holds {len(words)} of the split's "
                                   f"{int(valid.sum())} words with activations (not word {missing[0]}): "
                                   "read a selection with read_words, or extract the split whole")
        dense = np.zeros((len(valid), rows.dtype["x"].shape[0]), dtype=np.float16)
        dense[words] = rows["x"]
        return dense

    def load_valid(self, entry: Path, split: str) -> np.ndarray:
        """Mask of words that can have activations (False: no subword pieces, or sentence too long)."""
        return np.load(_checked(self.valid_path(entry, split), np.bool_), allow_pickle=False)


class CellWriter:
    """A cell file's next version, written beside it: the old rows copied, each new word's row put as
    extraction yields it, then `commit` moves it over the old file whole (or `abort` removes it); with the
    entry's `lock`, only while that lock is still held."""

    def __init__(self, path: Path, width: int, old: np.ndarray | None, new_words: np.ndarray,
                 lock: HeartbeatLock | None = None):
        self.path, self.tmp, self.lock = path, path.with_name(f".{path.name}.partial"), lock
        self.new_words = np.unique(new_words)
        old_words = np.zeros(0, dtype=np.int64) if old is None else np.asarray(old["word"])
        if np.isin(self.new_words, old_words).any():
            raise NeuronbenchError(f"activation cache file {path}: asked to add words it holds (a bug)")
        words = np.union1d(old_words, self.new_words)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.rows = reserved_memmap(self.tmp, (len(words),), cell_dtype(width))
            self.rows["word"] = words
            at = np.searchsorted(words, old_words)
            for start in range(0, len(old_words), COPY_ROWS):
                self.rows["x"][at[start:start + COPY_ROWS]] = old["x"][start:start + COPY_ROWS]
        except BaseException:
            self.abort()
            raise
        self.at = np.searchsorted(words, self.new_words)
        self.filled = np.zeros(len(self.new_words), dtype=bool)
        self.bytes = len(words) * cell_dtype(width).itemsize

    def put(self, words: np.ndarray, x: np.ndarray) -> None:
        """Rows of (some of) the new words, in any order; words the cell does not add are skipped."""
        if not len(self.new_words):
            return
        idx = np.minimum(np.searchsorted(self.new_words, words), len(self.new_words) - 1)
        mine = self.new_words[idx] == words
        self.rows["x"][self.at[idx[mine]]] = x[mine]
        self.filled[idx[mine]] = True

    def commit(self) -> None:
        if not self.filled.all():
            self.abort()
            raise NeuronbenchError(f"activation cache file {self.path}: the extraction yielded no activations "
                                   f"for {int((~self.filled).sum())} of the {len(self.filled)} words it was to add "
                                   f"(words {self.new_words[~self.filled][:5].tolist()}): a bug, nothing was written")
        if self.lock is not None and not self.lock.held():
            self.abort()
            raise NeuronbenchError(f"activation cache file {self.path}: this job lost its entry's lock "
                                   f"{self.lock.path} while filling it (another job found no heartbeat for "
                                   f"{self.lock.expiry:g} s: was this process stopped?); nothing was written, "
                                   "rerun the job")
        self.rows.flush()
        del self.rows
        os.chmod(self.tmp, FILE_MODE)
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.__dict__.pop("rows", None)
        self.tmp.unlink(missing_ok=True)


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
