"""Any token-classification dataset of Hugging Face `datasets` as a task: each row is a sentence,
its tokens column the words and its tags column their labels.

A folder written by `DatasetDict.save_to_disk` is read with `load_from_disk`; anything else (a hub
dataset name, a folder of data files) goes to `load_dataset`. `datasets` is imported inside the
loader, so importing neuronbench never pulls it in. The task's corpus_id hashes the
words themselves, so edited data gets its own activation cache, while a new tags column on the same
words shares it; the splits' fingerprints are kept in job.json's task_meta to say which data it was.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

from bench.core.types import SPLITS, Task
from bench.errors import NeuronbenchError

log = logging.getLogger(__name__)

SPLIT_NAMES = {"train": ("train",), "dev": ("validation", "dev"), "test": ("test",)}
SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what save_to_disk writes for a DatasetDict, a Dataset
STRING_DTYPES = ("string", "large_string")


def hf_tokens_task(name: str, version: str, path: str, tokens: str = "tokens", tags: str = "ner_tags",
                   subset: str | None = None, revision: str | None = None,
                   splits: dict[str, str | None] | None = None, context: Sequence[str] = ()) -> Task:
    """A word-labelling task from the `tokens` and `tags` columns of a dataset with train, dev and test.

    `splits` names the dataset's split for any of ours (None: train; validation or dev; test).
    A ClassLabel tag is labelled by its name, another int by its digits, a string as it is; a negative
    int (ClassLabel's -1 "no label", the -100 ignore index), a null or a tag in `context` (e.g. NER's
    O) is context, never an example. Rows without tokens are skipped: they have no word to read.
    """
    where, loaded = _load(path, subset, revision)
    chosen = _choose_splits(where, loaded, splits or {})
    sentences, labels, skipped = {}, {}, {}
    for split, split_name in chosen.items():
        sentences[split], labels[split], skipped[split] = _read_split(
            where, split_name, loaded[split_name], tokens, tags)
    _mark_context(where, labels, context)
    if any(skipped.values()):
        log.info("%s: skipped rows without tokens: %s", where, skipped)
    return Task(name=name, version=version, sentences=sentences, labels=labels,
                meta={"source": "datasets", "path": path, "subset": subset, "revision": revision,
                      "splits": chosen, "tokens": tokens, "tags": tags, "context": list(context),
                      "fingerprints": {split: loaded[chosen[split]]._fingerprint for split in SPLITS},
                      "skipped_empty_rows": skipped})


def _load(path: str, subset: str | None, revision: str | None):
    """(where, DatasetDict): a save_to_disk folder, else whatever `load_dataset` makes of `path`."""
    import datasets

    folder = Path(path).expanduser()
    if any((folder / marker).is_file() for marker in SAVED_MARKERS):
        where = str(folder.resolve())
        if subset is not None or revision is not None:
            raise NeuronbenchError(f"{where}: a folder written by save_to_disk has no subset or revision; "
                                   "task.subset and task.revision are for hub datasets")
        loaded = datasets.load_from_disk(where)
    elif folder.exists() or not (folder.is_absolute() or path.startswith((".", "~"))):
        where = path if subset is None else f"{path} (subset {subset})"
        try:
            loaded = datasets.load_dataset(path, name=subset, revision=revision)
        except (OSError, ValueError) as err:  # offline, unknown name or subset, unreadable files
            raise NeuronbenchError(f"task.path={path!r}: neither a folder written by save_to_disk nor a "
                                   f"dataset load_dataset can load ({type(err).__name__}: {err})") from None
    else:
        raise NeuronbenchError(f"task.path={path!r}: no such folder ({folder.resolve()}); give a folder "
                               "written by save_to_disk or a hub dataset name")
    if not isinstance(loaded, datasets.DatasetDict):
        raise NeuronbenchError(f"{where}: one Dataset without splits; save a DatasetDict with train, "
                               "validation and test splits instead")
    return where, loaded


def _choose_splits(where: str, loaded, splits: dict[str, str | None]) -> dict[str, str]:
    """The dataset's split for each of ours; one split serving two would leak test words into train or dev."""
    chosen: dict[str, str] = {}
    for split in SPLITS:
        candidates = (splits[split],) if splits.get(split) is not None else SPLIT_NAMES[split]
        found = next((name for name in candidates if name in loaded), None)
        if found is None:
            raise NeuronbenchError(f"{where}: no {split} split (looked for {' or '.join(map(repr, candidates))}); "
                                   f"its splits: {', '.join(loaded)}; name one with task.splits.{split}=NAME")
        twice = [ours for ours, name in chosen.items() if name == found]
        if twice:
            raise NeuronbenchError(f"{where}: split {found!r} would be both {twice[0]} and {split}; each of "
                                   f"{', '.join(SPLITS)} needs its own (task.splits)")
        chosen[split] = found
    return chosen


def _read_split(where: str, split_name: str, dataset, tokens: str, tags: str
                ) -> tuple[list[list[str]], list[list[str | None]], int]:
    """(words, labels, rows skipped) of one split; any row that cannot become a sentence is an error."""
    import datasets

    for column in (tokens, tags):
        if column not in dataset.column_names:
            raise NeuronbenchError(f"{where}: split {split_name!r} has no column {column!r}; its columns: "
                                   f"{', '.join(dataset.column_names)}")
    token_feature = getattr(dataset.features[tokens], "feature", None)
    if not (isinstance(token_feature, datasets.Value) and token_feature.dtype in STRING_DTYPES):
        raise NeuronbenchError(f"{where}: column {tokens!r} of split {split_name!r} is "
                               f"{dataset.features[tokens]}, not a list of strings")
    label_of = _tag_decoder(where, split_name, dataset.features[tags], tags)
    plain = dataset.with_format(None)  # python lists whatever format the user saved
    words, labels, skipped = [], [], 0
    for row, (row_tokens, row_tags) in enumerate(zip(plain[tokens], plain[tags])):
        row_tokens, row_tags = row_tokens or [], row_tags or []  # a null list is an empty one
        if len(row_tokens) != len(row_tags):
            raise NeuronbenchError(f"{where}: row {row} of split {split_name!r} has {len(row_tokens)} tokens "
                                   f"({tokens!r}) but {len(row_tags)} tags ({tags!r})")
        for position, token in enumerate(row_tokens):
            if not (token and token.strip()):
                raise NeuronbenchError(f"{where}: row {row} of split {split_name!r}: token {position} of "
                                       f"{tokens!r} is empty ({token!r})")
        if not row_tokens:
            skipped += 1
            continue
        words.append(row_tokens)
        labels.append([label_of(tag) for tag in row_tags])
    return words, labels, skipped


def _tag_decoder(where: str, split_name: str, feature, column: str) -> Callable[[object], str | None]:
    """The label of one tag value, from the column's feature type (see hf_tokens_task)."""
    import datasets

    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        names = inner.names
        return lambda tag: None if tag is None or tag < 0 else names[tag]
    if isinstance(inner, datasets.Value) and inner.dtype.startswith(("int", "uint")):
        return lambda tag: None if tag is None or tag < 0 else str(tag)
    if isinstance(inner, datasets.Value) and inner.dtype in STRING_DTYPES:
        return lambda tag: tag
    raise NeuronbenchError(f"{where}: column {column!r} of split {split_name!r} is {feature}, not a list of ints "
                           "(ClassLabel names become the classes) or of strings")


def _mark_context(where: str, labels: dict[str, list[list[str | None]]], context: Sequence[str]) -> None:
    """Relabel the `context` tags None in place; a tag the data never uses is a typo, not a no-op."""
    if not context:
        return
    seen = {label for sents in labels.values() for sent in sents for label in sent} - {None}
    unknown = [tag for tag in context if tag not in seen]
    if unknown:
        raise NeuronbenchError(f"{where}: task.context names tags the data does not have: {unknown}; "
                               f"its tags: {', '.join(sorted(seen))}")
    drop = set(context)
    for sents in labels.values():
        for sent in sents:
            sent[:] = [None if label in drop else label for label in sent]
