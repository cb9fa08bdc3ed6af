"""Test setup: never reach a model hub; locate the shared EWT copy if present."""

from __future__ import annotations

import os
import subprocess
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


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A real 256 KiB tmpfs at tmp_path/disk, to meet a full disk for real (fill it, or remount it larger).
    Mounting needs root, as on this machine and CI; elsewhere the test is skipped with the reason."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)
