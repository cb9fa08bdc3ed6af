"""The cell engine: one job ranks a list of methods in one pass per cell, as their one-method jobs would."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from bench.errors import NeuronbenchError
from bench.run import method_configs, run_job, run_methods, selected_layers
from conftest import CONF

# probeless and anova_f rank a two-class task the same way: the second is scored through the first's rows.
METHODS = ("random", "probeless", "anova_f", "lca")
OVERRIDES = ["model=tiny_random", "task=templated_number", "task.loader.n_sentences=400", "task.n_min=20",
             "ks=[1,2,5,10]", "sites=[hidden,mlp]", "layers=[1,2]"]


def config(tmp_path, *extra):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[*OVERRIDES, f"cache_dir={tmp_path / 'cache'}", *extra])


def outputs(folder):
    """A job folder's records and rankings, the parts a one-method job and the cell job must share."""
    rankings = {path.name: np.load(path).tolist() for path in sorted((folder / "rankings").iterdir())}
    return (folder / "records.jsonl").read_text(), rankings


def test_cell_job_writes_what_one_method_jobs_write(tmp_path):
    cell = run_methods(config(tmp_path, f"results_dir={tmp_path / 'cell'}"), method_configs(METHODS, CONF))
    for name in METHODS:
        alone = run_job(config(tmp_path, f"results_dir={tmp_path / 'alone'}", f"method={name}"), name)
        assert outputs(cell[name]) == outputs(alone), name
        assert json.loads((cell[name] / "job.json").read_text())["config"]["method"] == json.loads(
            (alone / "job.json").read_text())["config"]["method"]
    layers = json.loads((cell["anova_f"] / "job.json").read_text())["layers"]
    assert {entry.get("same_ranking_as") for entry in layers} == {"probeless"}  # scored once, said so


def test_cell_job_resumes_only_the_unfinished_methods(tmp_path):
    cfg = config(tmp_path, f"results_dir={tmp_path / 'r'}")
    first = run_methods(cfg, method_configs(["random"], CONF))
    stamp = (first["random"] / "records.jsonl").stat().st_mtime_ns
    both = run_methods(cfg, method_configs(["random", "probeless"], CONF))
    assert (both["random"] / "records.jsonl").stat().st_mtime_ns == stamp
    assert (both["probeless"] / "records.jsonl").is_file()


def test_methods_all_leaves_out_the_model_based_ones():
    names = set(method_configs("all", CONF))
    assert {"probeless", "gaussian", "maxcorr"} <= names and not names & {"ablate_single", "ig_head"}


def test_unknown_method_fails_before_any_work_naming_the_valid_ones(tmp_path):
    with pytest.raises(NeuronbenchError, match=r"methods: unknown 'probles'; valid: ablate_single, anova_f"):
        method_configs(["probeless", "probles"], CONF)


@pytest.mark.parametrize("n_layers, mlp, hidden", [(3, [1, 2, 3], [0, 1, 2, 3]), (6, [2, 4, 6], [0, 2, 4, 6]),
                                                   (12, [4, 8, 12], [0, 4, 8, 12]),
                                                   (30, [10, 20, 30], [0, 10, 20, 30])])
def test_depths_pick_the_same_relative_layers_in_every_model(n_layers, mlp, hidden):
    cells = selected_layers("m", n_layers, ["hidden", "mlp"], None, [0, 0.3333, 0.6667, 1])
    assert cells == [("hidden", layer) for layer in hidden] + [("mlp", layer) for layer in mlp]
