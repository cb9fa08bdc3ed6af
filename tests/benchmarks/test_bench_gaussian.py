"""Speed of the `gaussian` greedy at the issue's scale (reference.md#method-gaussian, "Cost").

N = 20,000 words, D = 768 neurons, C = 17 classes, 100 greedy picks; the target is under 60 s on 2 cores.
Excluded from the default run: `pytest tests/benchmarks/test_bench_gaussian.py`.
"""

from __future__ import annotations

import numpy as np

from methods.gaussian import GaussianProbe


def planted_layer(n=20_000, d=768, n_classes=17, seed=0):
    """Skewed class sizes (as for UPOS) and one neuron per class shifted by +3 on that class."""
    rng = np.random.default_rng(seed)
    frequencies = 1.0 / np.arange(1, n_classes + 1)
    y = rng.choice(n_classes, size=n, p=frequencies / frequencies.sum())
    X = rng.normal(size=(n, d)).astype(np.float32)
    planted = rng.choice(d, size=n_classes, replace=False)
    X[np.arange(n), planted[y]] += 3.0
    return X, y, planted


def test_bench_gaussian_greedy_100_picks(benchmark):
    X, y, planted = planted_layer()
    ranking = benchmark.pedantic(GaussianProbe(k_max=100).rank, args=(X, y), rounds=1)
    assert set(ranking[:17].tolist()) == set(planted.tolist())
