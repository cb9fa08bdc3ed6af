"""Speed of the default scorers on one cell of `suite=standard`: what each method's job pays per layer.

2,000 / 1,000 / 2,000 words (the suite's caps), D = 1,536 (an mlp layer of minilm), 17 classes, the
suite's k grid, a random ranking. As in a sweep, the all-neuron probes are fitted beforehand: they are
memoized per cell and shared by every method. Measured 2026-11-21 on 2 cores busy with two sweeps:
probe_acc 1.8 s, selectivity 2.3 s (control probes only: the task curve is probe_acc's), ablation 0.55 s;
on the real minilm_l3 upos mlp layer 2, ablation took 5.5 s before it masked the probe's weights instead
of copying the test matrix for each set, 0.44 s after. Excluded from the default run:
`pytest tests/benchmarks/test_bench_scorers.py`.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.core.types import SPLITS
from bench.examples import Examples
from bench.layer import LayerData
from bench.scorers import SCORERS, k_grid
from test_bench_gaussian import planted_layer

SIZES = {"train": 2000, "dev": 1000, "test": 2000}
STANDARD_KS = (1, 3, 10, 30, 100, 300)


@pytest.fixture(scope="module")
def cell():
    X, y, _ = planted_layer(n=sum(SIZES.values()), d=1536)
    control = np.random.default_rng(1).permutation(y)  # a label-free control task of the same sizes
    bounds = np.cumsum([0, *SIZES.values()])
    rows = {split: np.arange(bounds[i], bounds[i + 1]) for i, split in enumerate(SPLITS)}
    examples = Examples(label_names=tuple(f"c{c}" for c in range(17)),
                        index={s: np.arange(SIZES[s]) for s in SPLITS},
                        y={s: y[rows[s]] for s in SPLITS}, control={s: control[rows[s]] for s in SPLITS})
    data = LayerData({s: X[rows[s]] for s in SPLITS}, examples)
    everything = np.arange(data.n_neurons)
    for target in ("task", "control"):
        data.probe(everything, target)
    return data


@pytest.mark.parametrize("name", ["probe_acc", "selectivity", "ablation"])
def test_bench_scorer_on_a_standard_cell(benchmark, cell, name):
    ranking = np.random.default_rng(0).permutation(cell.n_neurons)
    ks = k_grid(cell.n_neurons, STANDARD_KS)
    scores = benchmark.pedantic(SCORERS[name], args=(ranking, cell, ks, np.random.default_rng(2)), rounds=1)
    assert all(np.isfinite(score.value) for score in scores)
