"""Universal Dependencies concept tasks, and finding or downloading the pinned UD English-EWT files.

EWT is CC BY-SA and never ships with the project: it is read from a local copy or downloaded and
cached, and every file is checked against the r2.16 sha256, so every task version means one corpus.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable

from bench.cache import cache_root
from bench.core.types import SPLITS, Task
from bench.errors import NeuronbenchError
from tasks.conllu import Token, read_conllu

logger = logging.getLogger(__name__)

EWT_RELEASE = "r2.16"
EWT_SOURCE = f"UD_English-EWT {EWT_RELEASE}"
EWT_BASE_URL = ("https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/"
                f"{EWT_RELEASE}/")
EWT_SUBDIR = "ud_english_ewt"
EWT_FILENAMES = {split: f"en_ewt-ud-{split}.conllu" for split in SPLITS}
EWT_SHA256 = {
    "train": "3fb78e2b55482c8ee00caa653af436c88c9e5bc9a73ce26e4ae3ddc79d2b7e7b",
    "dev": "531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6",
    "test": "e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd",
}
DOWNLOAD_TIMEOUT_S = 60
COLUMN_FORMS = "upos, xpos, deprel (base relation) or feats:<Name> (e.g. feats:Number)"


def ewt_files(data_dir: str | None = None) -> dict[str, Path]:
    """Paths of the verified EWT r2.16 train/dev/test files.

    Looks in `data_dir`, else $NEURONBENCH_DATA (each either holding the files or an
    `ud_english_ewt/` folder with them), else downloads into $NEURONBENCH_CACHE (default
    .cache/neuronbench) under data/ud_english_ewt/.
    """
    local_root = data_dir or os.environ.get("NEURONBENCH_DATA")
    if local_root:
        folder = _local_ewt_folder(Path(local_root).expanduser().resolve())
        files = {split: folder / EWT_FILENAMES[split] for split in SPLITS}
        for split, path in files.items():
            if _sha256(path) != EWT_SHA256[split]:
                raise NeuronbenchError(
                    f"{path} is not the UD English-EWT {EWT_RELEASE} release (sha256 mismatch); "
                    f"replace it with {_ewt_url(split)}, or leave data_dir and NEURONBENCH_DATA "
                    "unset to download and cache it")
        return files
    cache_dir = cache_root() / "data" / EWT_SUBDIR
    return {split: _cached_download(split, cache_dir) for split in SPLITS}


def ud_task(column: str, name: str, version: str, data_dir: str | None = None,
            files: dict[str, str | Path | None] | None = None) -> Task:
    """A word-labelling task from one CoNLL-U column: the FORMs as words, the column as labels.

    `files` (a CoNLL-U path per split, any treebank) replaces EWT. A word without a value (`_`, or
    a feature it does not carry) gets the label None, so it is context, never an example: a
    feature task's examples are exactly the words that carry the feature.
    """
    label_of = _label_getter(column)
    treebank, meta = read_treebank(data_dir, files)
    labels = {split: [[label_of(token) for token in sent] for sent in sents]
              for split, sents in treebank.items()}
    return Task(name=name, version=version, sentences=forms(treebank), labels=labels,
                meta={**meta, "column": column})


def read_treebank(data_dir: str | None = None, files: dict[str, str | Path | None] | None = None
                  ) -> tuple[dict[str, list[list[Token]]], dict]:
    """The parsed splits of EWT, or of the treebank in `files`, and where they came from.

    `files` with no path set (None, or every split None, as the task configs default to) means
    EWT, so every EWT-based config takes a user's treebank through `task.files.<split>=PATH`.
    """
    given = {split: path for split, path in (files or {}).items() if path is not None}
    if given:
        paths, source = _split_paths(given), "conllu files"
    else:
        paths, source = ewt_files(data_dir), EWT_SOURCE
    treebank = {split: _read_cached(path) for split, path in paths.items()}
    return treebank, {"source": source, "files": {s: str(p) for s, p in paths.items()}}


def forms(treebank: dict[str, list[list[Token]]]) -> dict[str, list[list[str]]]:
    """The words of every sentence per split: what the model reads, and what a Task calls sentences."""
    return {split: [[token.form for token in sent] for sent in sents]
            for split, sents in treebank.items()}


def _label_getter(column: str) -> Callable[[Token], str | None]:
    if column == "upos":
        return lambda token: None if token.upos == "_" else token.upos
    if column == "xpos":
        return lambda token: None if token.xpos == "_" else token.xpos
    if column == "deprel":
        return lambda token: None if token.deprel == "_" else token.deprel.partition(":")[0]
    prefix, _, feature = column.partition(":")
    if prefix == "feats" and feature:
        return lambda token: token.feats.get(feature)
    raise NeuronbenchError(f"unknown UD column {column!r}: use {COLUMN_FORMS}")


def _split_paths(files: dict[str, str | Path]) -> dict[str, Path]:
    if set(files) != set(SPLITS):
        raise NeuronbenchError(f"task files need one CoNLL-U path per split {list(SPLITS)} "
                               f"(task.files.train=... task.files.dev=... task.files.test=...), "
                               f"got {sorted(files)}")
    return {split: Path(files[split]).expanduser().resolve() for split in SPLITS}


def _read_cached(path: Path) -> list[list[Token]]:
    """Parse each file once per process; the stat in the key makes an edited file parse again."""
    path = path.resolve()
    try:
        stat = path.stat()
    except OSError:
        return read_conllu(path)  # let the reader raise its own error for a missing file
    return _read_conllu_memo(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_conllu_memo(path: Path, mtime_ns: int, size: int) -> list[list[Token]]:
    return read_conllu(path)


def _local_ewt_folder(root: Path) -> Path:
    for folder in (root, root / EWT_SUBDIR):
        if all((folder / filename).is_file() for filename in EWT_FILENAMES.values()):
            return folder
    raise NeuronbenchError(
        f"no UD English-EWT files in {root}: expected {', '.join(EWT_FILENAMES.values())} there or "
        f"in {root / EWT_SUBDIR} (check NEURONBENCH_DATA or data_dir)")


def _cached_download(split: str, cache_dir: Path) -> Path:
    target = cache_dir / EWT_FILENAMES[split]
    if target.is_file():
        if _sha256(target) == EWT_SHA256[split]:
            return target
        logger.warning("cached %s does not match the pinned sha256; downloading it again", target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    url = _ewt_url(split)
    logger.info("downloading %s to %s", url, target)
    handle, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            digest = _download(url, out)
        if digest != EWT_SHA256[split]:
            raise NeuronbenchError(
                f"{url} does not match the pinned UD English-EWT {EWT_RELEASE} sha256 "
                f"(got {digest}); the download was discarded. Set NEURONBENCH_DATA to a folder "
                "with a verified copy")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _download(url: str, out: BinaryIO) -> str:
    """Stream `url` into `out`, returning the sha256 of what was written."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise NeuronbenchError(
            f"could not download {url} ({err}); set NEURONBENCH_DATA to a folder holding a local "
            f"copy of UD English-EWT {EWT_RELEASE} ({', '.join(EWT_FILENAMES.values())})") from None
    return digest.hexdigest()


def _ewt_url(split: str) -> str:
    return EWT_BASE_URL.rstrip("/") + "/" + EWT_FILENAMES[split]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
