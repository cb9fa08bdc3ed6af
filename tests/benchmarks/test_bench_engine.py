"""The cell engine against one-method jobs on the same real slice: suite=standard's caps, morph_number on
minilm_l3, every activation-only method, seed 0, hidden and mlp layer 2 (needs EWT through NEURONBENCH_DATA;
a cold cache first extracts the sentences the slice reads, which is not timed). `first_upos_result` times a
first job on a cold cache, extraction included.

`per_method` runs one job per method, each with its own cell state, as a sweep over `method=` does;
`cell` runs them as one job (`methods=all`). Both write the same records (checked here). Excluded from
the default run: `pytest tests/benchmarks --benchmark-only`.
"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from bench.run import method_configs, run_job, run_methods
from conftest import CONF
from test_ud_tasks import HAS_EWT

pytestmark = pytest.mark.skipif(not HAS_EWT, reason="needs UD English-EWT (set NEURONBENCH_DATA)")
METHODS = method_configs("all", CONF)


def config(results, *extra):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["suite=standard", "model=minilm_l3", "task=morph_number", "depths=null",
                                            "layers=[2]", "quiet=true", f"results_dir={results}", *extra])


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    run_job(config(tmp_path_factory.mktemp("warm"), "method=random", "scorers=[]"), "random")


def per_method(results):
    return {name: run_job(config(results, f"method={name}"), name) for name in METHODS}


def cell(results):
    return run_methods(config(results), METHODS)


@pytest.mark.parametrize("engine", [per_method, cell], ids=["per_method", "cell"])
def test_bench_engine_on_a_standard_slice(benchmark, warm_cache, tmp_path, engine):
    folders = benchmark.pedantic(engine, args=(tmp_path / "r",), rounds=1)
    reference = per_method(tmp_path / "reference") if engine is cell else folders
    for name, folder in folders.items():
        assert (folder / "records.jsonl").read_text() == (reference[name] / "records.jsonl").read_text(), name


def test_bench_first_upos_result_on_a_cold_cache(benchmark, tmp_path):
    """`neuronbench task=upos model=minilm_l6 method=probeless layers=[3]` with a fresh cache_dir: tokenize EWT,
    select 5,000/2,000/5,000 words, extract their sentences through block 3 only, score the one cell (issue 12
    item 3: at most 2 min on 2 busy cores through the CLI, which adds ~13 s of imports and model loading;
    measured 84-87 s, extraction 40 s, against 175 s, extraction 135 s, when every sentence was extracted at
    every layer)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["task=upos", "model=minilm_l6", "method=probeless", "layers=[3]",
                                           "quiet=true", f"results_dir={tmp_path / 'r'}",
                                           f"cache_dir={tmp_path / 'cache'}"])
    out = benchmark.pedantic(run_job, args=(cfg, "probeless"), rounds=1)
    assert len((out / "records.jsonl").read_text().splitlines()) > 0
