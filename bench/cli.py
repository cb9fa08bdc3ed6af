"""`neuronbench`: the Hydra app. Each Hydra job runs one task x model x seed for the `method` group's method,
or for every method of `methods: [...]` in one pass per cell."""

from __future__ import annotations

import os
from pathlib import Path

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On 2 shared cores,
# spinning threads made a forward pass up to 4x slower than one thread.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bench.errors import NeuronbenchError
from bench.run import method_configs, run_job, run_methods, single_threaded_blas


# The project is used from a clone: conf/ sits next to the packages.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> None:
    try:
        if cfg.get("methods") is not None:
            run_methods(cfg, method_configs(cfg.methods, CONF_DIR))
        else:
            run_job(cfg, HydraConfig.get().runtime.choices["method"])
    except NeuronbenchError as err:
        raise SystemExit(f"neuronbench: error: {err}") from None


def main() -> None:
    single_threaded_blas()
    app()


if __name__ == "__main__":
    main()
