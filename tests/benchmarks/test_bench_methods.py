"""Speed of `rank()` for every activation-only method config in conf/method at the issue's scale.

N = 20,000 words, D = 768 neurons, C = 17 classes (seeded, generated once per session); one round each.
Cross-model methods compare with one synthetic 768-wide other model (a noisy mix of the layer); methods
that run the model are skipped. Excluded from the default run: `pytest tests/benchmarks --benchmark-only`.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONF
from test_bench_gaussian import planted_layer

CONFIGS = sorted(path.stem for path in (CONF / "method").glob("*.yaml"))


@pytest.fixture(scope="session")
def layer():
    return planted_layer()


@pytest.fixture(scope="session")
def other_model(layer):
    rng = np.random.default_rng(1)
    X = layer[0]
    return (X @ rng.normal(size=(768, 768)).astype(np.float32) + rng.normal(size=X.shape)).astype(np.float32)


@pytest.mark.parametrize("name", CONFIGS)
def test_bench_rank(benchmark, layer, other_model, name):
    method = instantiate(OmegaConf.load(CONF / "method" / f"{name}.yaml"))
    if method.needs - {"other_activations"}:
        pytest.skip(f"{name} needs {sorted(method.needs)}, not only activations")
    inputs = {"other_activations": [other_model]} if method.needs else {}
    X, y, _ = layer
    cpu = time.process_time()
    ranking = benchmark.pedantic(method.rank, args=(X, y), kwargs={"rng": np.random.default_rng(0), **inputs},
                                 rounds=1, iterations=1)
    benchmark.extra_info["cpu_s"] = time.process_time() - cpu
    assert np.array_equal(np.sort(ranking), np.arange(X.shape[1]))
