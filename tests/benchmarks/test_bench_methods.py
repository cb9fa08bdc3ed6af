"""Speed of `rank()` for every activation-only method config in conf/method at the issue's scale.

N = 20,000 words, D = 768 neurons, C = 17 classes (seeded, generated once per session); one round each.
Methods whose class `needs` more than activations (a model, other models) are skipped. Excluded from the
default run: `pytest tests/benchmarks --benchmark-only`.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from conftest import CONF
from test_bench_gaussian import planted_layer

CONFIGS = sorted(path.stem for path in (CONF / "method").glob("*.yaml"))


@pytest.fixture(scope="session")
def layer():
    return planted_layer()


@pytest.mark.parametrize("name", CONFIGS)
def test_bench_rank(benchmark, layer, name):
    config = OmegaConf.load(CONF / "method" / f"{name}.yaml")
    if get_class(config._target_).needs:
        pytest.skip(f"{name} needs {sorted(get_class(config._target_).needs)}, not only activations")
    method = instantiate(config)
    X, y, _ = layer
    cpu = time.process_time()
    ranking = benchmark.pedantic(method.rank, args=(X, y), kwargs={"rng": np.random.default_rng(0)},
                                 rounds=1, iterations=1)
    benchmark.extra_info["cpu_s"] = time.process_time() - cpu
    assert np.array_equal(np.sort(ranking), np.arange(X.shape[1]))
