"""Planted-neuron activations with a known answer: which neurons carry which class (reference.md#metric-planted).

No model is involved: word types carry a label and a random type vector (so a control task is
learnable, as lexical identity is in real models), and chosen neurons are shifted on their class.
"""

from __future__ import annotations

import numpy as np

from bench.core.types import SPLITS, PlantedData
from bench.errors import NeuronbenchError

CASES = ("single", "redundant", "distributed", "polysemantic", "variance_confounded")
DEFAULT_SIZES = {"train": 2000, "dev": 500, "test": 500}


def _plant(case: str, n_classes: int, n_neurons: int, delta: float, rng: np.random.Generator):
    """(shift matrix C x D, per-neuron scale, ground truth per class) for one case."""
    shift = np.zeros((n_classes, n_neurons))
    scale = np.ones(n_neurons)
    per_class = {"single": 1, "redundant": 3, "distributed": 16, "polysemantic": 1,
                 "variance_confounded": 1}[case]
    n_decoys = 20 if case == "variance_confounded" else 0
    extra = 1 if case == "polysemantic" else 0
    picked = rng.choice(n_neurons, size=n_classes * per_class + extra + n_decoys, replace=False)
    planted = picked[:n_classes * per_class].reshape(n_classes, per_class)
    truth = [set(row.tolist()) for row in planted]
    if case == "distributed":
        shift[np.arange(n_classes)[:, None], planted] = delta / np.sqrt(per_class)
    elif case == "polysemantic":
        shift[np.arange(n_classes)[:, None], planted] = delta / 2
        shared = int(picked[n_classes * per_class])
        shift[:2, shared] = delta
        truth[0].add(shared)
        truth[1].add(shared)
    elif case == "variance_confounded":
        shift[np.arange(n_classes)[:, None], planted] = delta * 0.1
        scale[planted.ravel()] = 0.1
        scale[picked[n_classes * per_class:]] = 10.0
    else:
        shift[np.arange(n_classes)[:, None], planted] = delta
    return shift, scale, tuple(frozenset(t) for t in truth)


def planted_data(case: str, name: str = "planted", version: str = "1", *, n_neurons: int = 768, n_classes: int = 5, n_types: int = 300,
                 ambiguity: float = 0.1, delta: float = 3.0, sizes: dict[str, int] | None = None,
                 seed: int = 0) -> PlantedData:
    """x_i = u_type(i) + shift[y_i] + noise, scaled per neuron; see reference.md#metric-planted."""
    if case not in CASES:
        raise NeuronbenchError(f"unknown planted case {case!r}; valid: {', '.join(CASES)}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, CASES.index(case)]))
    shift, scale, truth = _plant(case, n_classes, n_neurons, delta, rng)
    type_label = rng.integers(0, n_classes, size=n_types)
    type_vectors = rng.normal(0.0, 0.5, size=(n_types, n_neurons))
    X, y, types = {}, {}, {}
    for split in SPLITS:
        n = (sizes or DEFAULT_SIZES)[split]
        word_type = rng.integers(0, n_types, size=n)
        label = type_label[word_type].copy()
        flip = rng.random(n) < ambiguity
        label[flip] = rng.integers(0, n_classes, size=int(flip.sum()))
        noise = rng.normal(size=(n, n_neurons))
        X[split] = ((type_vectors[word_type] + noise) * scale + shift[label]).astype(np.float32)
        y[split], types[split] = label, np.char.add("type", word_type.astype(str))
    return PlantedData(name=name, version=version, case=case, X=X, y=y, types=types, truth=truth)
