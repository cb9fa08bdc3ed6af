"""device=auto|cpu|cuda: which torch device a job's models run on, and what a GPU run changes.

No GPU is lent to CI, so the CUDA branches are tested through torch's own availability answers
(monkeypatched); the CPU path is the one every golden record and test already pins bit for bit.
"""

from __future__ import annotations

import pytest
import torch

from bench.cache import ActivationCache
from bench.errors import NeuronbenchError
from bench.models import LoadedModel, resolve_device


def _gpus(monkeypatch, n: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


@pytest.mark.parametrize("gpus, wanted, device", [(0, "auto", "cpu"), (1, "auto", "cuda"), (0, "cpu", "cpu"),
                                                  (2, "cpu", "cpu"), (1, "cuda", "cuda"), (2, "CUDA:1", "cuda:1")])
def test_resolve_device(monkeypatch, gpus, wanted, device):
    _gpus(monkeypatch, gpus)
    assert resolve_device(wanted) == device


@pytest.mark.parametrize("gpus, wanted, message", [
    (0, "cuda", r"device=cuda: torch sees 0 CUDA GPU\(s\)"),
    (1, "cuda:1", r"device=cuda:1: torch sees 1 CUDA GPU\(s\)"),
    (1, "cuda:x", r"device='cuda:x' is not a device; valid: auto, cpu, cuda, cuda:<index>"),
    (1, "mps", r"device='mps' is not a device"),
])
def test_an_absent_or_unknown_device_is_an_error(monkeypatch, gpus, wanted, message):
    _gpus(monkeypatch, gpus)
    with pytest.raises(NeuronbenchError, match=message):
        resolve_device(wanted)


def test_gpu_activations_are_cached_and_recorded_apart(tmp_path):
    """Activations a GPU computes round differently: they get their own cache entry and their records' model_revision
    says "+cuda", so a CPU run never reads them and a board can tell them apart; the CPU keeps the plain revision."""
    model = torch.nn.Linear(1, 1)
    on = {device: LoadedModel("m", "pypi:m==1", model, None, False, device=device) for device in ("cpu", "cuda:1")}
    assert on["cpu"].extraction_id == "pypi:m==1"
    assert on["cuda:1"].extraction_id == "pypi:m==1+cuda"
    cache = ActivationCache(tmp_path)
    entries = {device: cache.entry("m", loaded.extraction_id, "corpus", "mean") for device, loaded in on.items()}
    assert entries["cpu"] != entries["cuda:1"]
    assert LoadedModel("m", "pypi:m==1", model, None, False).device == "cpu"  # tests and callers that predate it
