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


def cluster_resamples(groups, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(B, n) float32 weight of each of n rows in each of B cluster-bootstrap resamples (reference addendum E.1):
    each resample draws as many groups (sentences) as there are, with replacement, and a row weighs as often as
    its group is drawn, so a mean over rows becomes a ratio of sums over the drawn sentences."""
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(inverse.max()) + 1 if len(inverse) else 0
    drawn = rng.integers(n_groups, size=(n_boot, n_groups)) + n_groups * np.arange(n_boot)[:, None]
    counts = np.bincount(drawn.ravel(), minlength=n_boot * n_groups).reshape(n_boot, n_groups)
    return counts[:, inverse].astype(np.float32)
