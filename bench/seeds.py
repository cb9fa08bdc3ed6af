"""Seeded generators per cell and stream, never Python's salted hash() or a global RNG, and the seeded row
samples that the model-based methods and scorers draw from them."""

from __future__ import annotations

import hashlib

import numpy as np


def cell_rng(seed: int, *parts: object) -> np.random.Generator:
    """Generator for (seed, parts...), e.g. cell_rng(0, "upos", "minilm_l6", 3, "hidden", "method")."""
    key = "|".join(str(p) for p in parts)
    digest = int(hashlib.sha256(key.encode()).hexdigest(), 16) % 2**63
    return np.random.default_rng(np.random.SeedSequence([int(seed), digest]))


def sample_rows(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted seeded sample of `size` of n rows without replacement (all rows if n <= size)."""
    if n <= size:
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))
