"""Test setup: never reach a model hub; locate the shared EWT copy if present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from german_treebank import write_german

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_var] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench.cli: no spinning OpenMP threads

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

from bench.run import single_threaded_blas  # noqa: E402  (after the offline variables)

single_threaded_blas()


@pytest.fixture(scope="session")
def german(tmp_path_factory) -> dict[str, str]:
    """Paths of the hand-written German treebank (tests/german_treebank.py) by split."""
    return write_german(tmp_path_factory.mktemp("german"))
