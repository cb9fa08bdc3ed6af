"""Sweeps beyond one machine, run for real: a Ray cluster started here and joined by address
(hydra/launcher=ray_cluster), and a Slurm cluster (hydra/launcher=submitit_slurm; `.ci/slurm up` starts a
one-node one). Each sends the same two planted jobs and must write the basic launcher's records."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from bench.run import run_job
from conftest import CONF, REPO

COMMON = ["task=planted_single", "model=planted", "task.loader.n_neurons=64", "scorers=[probe_acc]", "quiet=true"]
METHODS = ("probeless", "random")


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()


def sweep(tmp_path: Path, launcher: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """The two-job sweep through `launcher`, into tmp_path/sweep (its own results folder and cache)."""
    out = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "-m", *COMMON, f"method={','.join(METHODS)}",
                           *launcher, f"results_dir={out}", f"cache_dir={out / 'cache'}"],
                          capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def assert_basic_records(tmp_path: Path, commit: str) -> None:
    """Each method's records from the sweep equal those of run_job (the basic launcher's path), record for
    record. Records carry git_commit, so it is compared too unless a commit landed during the test."""
    same_commit = head() == commit
    for method in METHODS:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=[*COMMON, f"method={method}", f"results_dir={tmp_path / 'basic'}",
                                               f"cache_dir={tmp_path / 'basic' / 'cache'}"])
        basic = read(run_job(cfg, method) / "records.jsonl")
        swept = read(tmp_path / "sweep" / "runs" / "planted_single" / "planted" / method / "seed0" / "records.jsonl")
        assert basic and len(swept) == len(basic)
        if not same_commit:
            basic, swept = ([{**r, "git_commit": None} for r in rs] for rs in (basic, swept))
        assert swept == basic, method


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head():
    """A one-node Ray cluster (`ray start --head --block`) for the test, stopped afterwards whatever happens.

    Ray announces the node's own IP even when asked for 127.0.0.1 and listens on every interface, so the
    cluster takes a fresh token (RAY_AUTH_MODE=token): nobody else can submit work to it. Its ports are
    free ones and its session folder is its own (short: Ray's socket paths must stay under 108 bytes).
    """
    ray = Path(sys.executable).with_name("ray")
    if not ray.exists():
        pytest.skip(f"no {ray}: the `launchers` extra (make install) installs ray")
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="nbray"))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    log = temp / "head.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [str(ray), "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
             "--disable-usage-stats", "--object-store-memory=100000000", f"--temp-dir={temp}",
             f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}"],
            stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", env
    finally:
        proc.terminate()  # `ray start --block` stops the processes it started on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of its process group is left
        except ProcessLookupError:
            pass
        proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_cluster_runs_the_jobs_in_parallel_with_the_basic_launchers_records(tmp_path, ray_head):
    address, env = ray_head
    commit = head()
    proc = sweep(tmp_path, ["hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={address}"], env)
    log = proc.stdout + proc.stderr
    assert "Connected to Ray cluster" in log
    workers = {line.split("pid=", 1)[1].split(")", 1)[0] for line in log.splitlines() if "(_run_job pid=" in line}
    assert len(workers) == 2, log[-3000:]  # each job ran as a Ray task, the two at once in two workers
    assert_basic_records(tmp_path, commit)


def slurm_partition() -> str:
    """The default partition of a Slurm cluster that answers and has a node taking jobs, else a skip saying why."""
    if shutil.which("sinfo") is None:
        pytest.skip("no Slurm here (no sinfo): `.ci/slurm up` installs and starts a one-node cluster (root, Debian)")
    proc = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True, timeout=30)
    if proc.returncode:
        pytest.skip(f"Slurm is not up (sinfo: {proc.stderr.strip()}): `.ci/slurm up` starts it")
    rows = [line.split() for line in proc.stdout.splitlines()]
    ready = [name for name, state in rows if state in {"idle", "mixed", "allocated"}]  # "idle*": not responding
    if not ready:
        pytest.skip(f"no Slurm node takes jobs (sinfo: {proc.stdout.strip() or 'no nodes'})")
    default = [name for name in ready if name.endswith("*")]
    return (default or ready)[0].rstrip("*")


def test_slurm_runs_the_jobs_with_the_basic_launchers_records(tmp_path):
    partition = slurm_partition()
    commit = head()
    sweep(tmp_path, ["hydra/launcher=submitit_slurm", f"hydra.launcher.partition={partition}",
                     "hydra.launcher.timeout_min=5", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"])
    logs = sorted((tmp_path / "sweep" / "hydra").glob("*/.submitit/*/*_log.out"))
    assert len(logs) == 2 and all("Starting with JobEnvironment(job_id=" in p.read_text() for p in logs)
    assert_basic_records(tmp_path, commit)
