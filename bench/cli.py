"""`neuronbench`: the Hydra app. Each Hydra job runs one task x model x seed for the `method` group's method,
or for every method of `methods: [...]` in one pass per cell."""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from pathlib import Path

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On 2 shared cores,
# spinning threads made a forward pass up to 4x slower than one thread.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from bench.errors import NeuronbenchError


SCORER_MODULES = ("bench.scorers", "bench.causal_scores")  # each holds a SCORERS table: config name -> scorer


def scorer_catalog() -> str:
    """One line per scorer for `neuronbench --help`: its config name and its docstring's first paragraph.

    Read from the scorer modules' source (their SCORERS tables and docstrings), not by importing them: the
    model scorers import torch and transformers, which would make --help take seconds.
    """
    lines = []
    for module in SCORER_MODULES:
        tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
        docs = {node.name: ast.get_docstring(node) or "" for node in tree.body if isinstance(node, ast.FunctionDef)}
        table = next(node.value for node in tree.body if _assigns(node, "SCORERS"))
        for key, value in zip(table.keys, table.values):
            call = value if isinstance(value, ast.Call) else None  # partial(probe_acc, family="gaussian")
            function = (call.args[0] if call else value).id
            family = [word.value.value for word in call.keywords if word.arg == "family"] if call else []
            summary = " ".join(docs[function].split("\n\n")[0].split())
            lines.append(f"{key.value}: {summary}" + (f" With the {family[0]} evaluation probe." if family else ""))
    return "\n".join(lines)


def _assigns(node: ast.stmt, name: str) -> bool:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return any(getattr(target, "id", None) == name for target in targets)


# `neuronbench --help` lists the scorers through this resolver (conf/config.yaml, hydra.help); the runner
# (torch, transformers) is imported by a job, not by the CLI, so help takes a fraction of a second.
OmegaConf.register_new_resolver("neuronbench_scorers", scorer_catalog, replace=True)


# The project is used from a clone: conf/ sits next to the packages.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> None:
    from bench.run import method_configs, run_job, run_methods

    try:
        if cfg.get("methods") is not None:
            run_methods(cfg, method_configs(cfg.methods, CONF_DIR))
        else:
            run_job(cfg, HydraConfig.get().runtime.choices["method"])
    except NeuronbenchError as err:
        raise SystemExit(f"neuronbench: error: {err}") from None


def main() -> None:
    if sys.argv[1:2] == ["plan"]:  # `neuronbench plan <overrides>`: the sweep's jobs and cost; nothing runs
        from bench.plan import main as plan

        raise SystemExit(plan(sys.argv[2:]))
    if sys.argv[1:2] == ["neurons"]:  # `neuronbench neurons <overrides> --layer L ...`: a cell's neuron view pages
        from neuronbench.cli import main as neurons

        raise SystemExit(neurons(sys.argv[2:]))
    if sys.argv[1:2] == ["manipulate"]:  # `neuronbench manipulate <overrides> --layer L ...`: output before/after
        from neuronbench.cli import manipulate_main

        raise SystemExit(manipulate_main(sys.argv[2:]))
    app()  # run_methods pins BLAS to one thread, here and in launcher workers


if __name__ == "__main__":
    main()
