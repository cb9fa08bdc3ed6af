"""The activation cache's lock without flock (issue 17 item 3, bench/lock.py): real processes contending for one
entry take turns, a lock whose owner died is broken (at once on this host, after its expiry elsewhere), a live
one is waited for as long as its heartbeat runs, and a job never removes a lock that is no longer its own.
Every wait polls against a deadline far beyond what the step needs, so a loaded machine makes it slower only."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bench.cache import ActivationCache
from bench.errors import NeuronbenchError
from bench.lock import HeartbeatLock, lock_expiry
from conftest import REPO

DEADLINE = 60.0  # seconds any awaited step may take before the test fails

CHILD = r"""
import logging, socket, sys, time
from pathlib import Path
from bench.cache import ActivationCache
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
root, entry, expiry, me, host = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
if host:
    socket.gethostname = lambda: host  # as if this job ran on another node
def wait_for(name):
    deadline = time.monotonic() + 120
    while not (root / name).exists():
        assert time.monotonic() < deadline, name
        time.sleep(0.02)
with ActivationCache(root, lock_expiry_s=expiry).filling(entry):
    with open(root / "turns", "a") as turns:
        turns.write(f"enter {me}\n")
    seen = (root / "work").read_text() if (root / "work").exists() else ""
    (root / f"{me}-saw").write_text(seen)
    (root / f"{me}-holds").touch()
    wait_for(f"release-{me}")
    (root / "work").write_text(seen + me)
    with open(root / "turns", "a") as turns:
        turns.write(f"exit {me}\n")
"""


def wait_until(condition, what: str, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"not within {deadline:g} s: {what}"
        time.sleep(0.02)


def start_holder(root: Path, me: str, expiry: float = 120.0, host: str = "") -> subprocess.Popen:
    """A job (a real process) that takes the entry's lock, records its turn and holds the lock until
    `root/release-<me>` exists; its log goes to root/<me>.log."""
    log = open(root / f"{me}.log", "w")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(entry_of(root)), str(expiry), me, host],
                             cwd=REPO, stdout=log, stderr=log)
    log.close()
    return child


def entry_of(root: Path) -> Path:
    return ActivationCache(root).entry("m", "r", "corpus", "last")


def lock_of(root: Path) -> Path:
    entry = entry_of(root)
    return entry.parent / f".{entry.name}.lock"


def log_of(root: Path, me: str) -> str:
    return (root / f"{me}.log").read_text()


def finish(child: subprocess.Popen, root: Path, me: str) -> None:
    assert child.wait(timeout=DEADLINE) == 0, log_of(root, me)[-3000:]


class Acquiring(threading.Thread):
    """A lock taken in the background, so that a test can watch it wait; `released` lets it go."""

    def __init__(self, lock: HeartbeatLock):
        super().__init__(daemon=True)
        self.lock, self.got, self.released, self.error = lock, threading.Event(), threading.Event(), None
        self.start()

    def run(self):
        try:
            with self.lock:
                self.got.set()
                self.released.wait()
        except BaseException as error:  # shown by the test that waits for it
            self.error = error
            self.got.set()

    def wait_got(self, deadline: float = DEADLINE) -> float:
        started = time.monotonic()
        assert self.got.wait(deadline), f"lock {self.lock.path} not taken within {deadline:g} s"
        assert self.error is None, self.error
        return time.monotonic() - started


def fake_lock(path: Path, host: str, expiry: float, age: float = 0.0, token: str = "theirs") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pidns": "", "pid": 4242, "token": token, "expiry": expiry,
                                "since": time.time() - age}))
    os.utime(path, (time.time() - age, time.time() - age))


def test_two_processes_take_turns_and_the_second_sees_the_firsts_work(tmp_path):
    a = start_holder(tmp_path, "a")
    wait_until(lambda: (tmp_path / "a-holds").exists(), "a holds the lock")
    b = start_holder(tmp_path, "b")
    wait_until(lambda: "waiting for another job filling" in log_of(tmp_path, "b"), "b waits for a")
    assert not (tmp_path / "b-holds").exists()
    assert f"held by pid {a.pid} on {socket.gethostname()}" in log_of(tmp_path, "b")
    (tmp_path / "release-a").touch()
    wait_until(lambda: (tmp_path / "b-holds").exists(), "b holds the lock once a let it go")
    (tmp_path / "release-b").touch()
    finish(a, tmp_path, "a")
    finish(b, tmp_path, "b")
    assert (tmp_path / "turns").read_text().split("\n")[:-1] == ["enter a", "exit a", "enter b", "exit b"]
    assert (tmp_path / "b-saw").read_text() == "a" and (tmp_path / "work").read_text() == "ab"
    assert log_of(tmp_path, "b").count("waiting for") == 1
    assert not lock_of(tmp_path).exists() and not list(tmp_path.rglob("*.removed"))


def test_lock_of_a_killed_process_on_this_host_is_broken_at_once(tmp_path, caplog):
    holder = start_holder(tmp_path, "a", expiry=120.0)
    wait_until(lambda: (tmp_path / "a-holds").exists(), "a holds the lock")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=DEADLINE)  # reaped: a zombie's pid still answers
    cache = ActivationCache(tmp_path, lock_expiry_s=120.0)
    with caplog.at_level("INFO", logger="bench"):
        taking = Acquiring(HeartbeatLock(lock_of(tmp_path), "test", 120.0))
        assert taking.wait_got() < 30.0  # well inside the 120 s expiry: its pid is gone
        taking.released.set()
        taking.join(DEADLINE)
    assert f"of pid {holder.pid} on {socket.gethostname()}" in caplog.text
    assert f"its process {holder.pid} no longer exists" in caplog.text
    with cache.filling(entry_of(tmp_path)):
        assert lock_of(tmp_path).exists()


def test_lock_of_a_killed_process_on_another_host_is_broken_after_its_expiry(tmp_path, caplog):
    holder = start_holder(tmp_path, "a", expiry=3.0, host="node-b.example")
    wait_until(lambda: (tmp_path / "a-holds").exists(), "a holds the lock")
    assert json.loads(lock_of(tmp_path).read_text())["host"] == "node-b.example"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=DEADLINE)
    with caplog.at_level("INFO", logger="bench"):
        taking = Acquiring(HeartbeatLock(lock_of(tmp_path), "another job filling it", 120.0))
        waited = taking.wait_got()
        taking.released.set()
    assert waited > 1.0  # its last heartbeat was at most 3 / 4 s before the kill: not broken at once
    assert f"waiting for another job filling it: lock {lock_of(tmp_path)} held by pid {holder.pid} on " \
           "node-b.example" in caplog.text
    broke = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(broke) == 1 and f"of pid {holder.pid} on node-b.example" in broke[0], broke
    assert "its expiry is 3 s" in broke[0]  # the owner's expiry, not the waiter's 120 s


def test_foreign_lock_is_waited_for_while_its_heartbeat_is_fresh_then_broken(tmp_path, caplog):
    path = lock_of(tmp_path)
    fake_lock(path, "node-c.example", expiry=1.5)
    beating = threading.Event()
    beating.set()

    def heartbeat():  # the other node's job, alive: touched 15 times per expiry
        while beating.is_set():
            os.utime(path)
            time.sleep(0.1)

    beater = threading.Thread(target=heartbeat, daemon=True)
    beater.start()
    with caplog.at_level("INFO", logger="bench"):
        taking = Acquiring(HeartbeatLock(path, "another job filling it", 1.5))
        assert not taking.got.wait(4.0)  # more than twice its expiry, alive all along
        assert json.loads(path.read_text())["token"] == "theirs"
        assert "held by pid 4242 on node-c.example" in caplog.text
        beating.clear()  # the other node is lost
        beater.join(DEADLINE)
        taking.wait_got()
        taking.released.set()
        taking.join(DEADLINE)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "broke the lock" in warnings[0] and "pid 4242 on node-c.example" in warnings[0]
    assert caplog.text.count("waiting for") == 1


@pytest.mark.parametrize("content", ["owner", "empty"])
def test_long_stale_lock_is_broken_without_waiting(tmp_path, caplog, content):
    """A lock an hour past its heartbeat, and the empty lock file the flock code left beside every entry."""
    path = lock_of(tmp_path)
    fake_lock(path, "node-d.example", expiry=120.0, age=3600.0)
    if content == "empty":
        path.write_text("")
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    with caplog.at_level("WARNING", logger="bench"):
        taking = Acquiring(HeartbeatLock(path, "test", 120.0))
        assert taking.wait_got() < 30.0  # not the 120 s a waiter watching it would need
        taking.released.set()
        taking.join(DEADLINE)
    owner = "pid 4242 on node-d.example" if content == "owner" else "an unknown owner (empty lock file"
    assert owner in caplog.text and "no heartbeat for 3600" in caplog.text


def test_stale_lock_broken_by_several_waiters_is_taken_by_one_at_a_time(tmp_path, caplog):
    path = lock_of(tmp_path)
    fake_lock(path, "node-e.example", expiry=120.0, age=3600.0)
    turns, start = [], threading.Barrier(4)

    def job(me):
        start.wait()
        with HeartbeatLock(path, "test", 60.0):
            turns.append(("enter", me))
            time.sleep(0.05)
            turns.append(("exit", me))

    with caplog.at_level("WARNING", logger="bench"):
        threads = [threading.Thread(target=job, args=(me,)) for me in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE)
    assert len(turns) == 8 and all(turns[i][0] == "enter" and turns[i + 1] == ("exit", turns[i][1])
                                   for i in range(0, 8, 2)), turns
    assert caplog.text.count("broke the lock") == 1
    assert not path.exists() and not list(tmp_path.rglob("*.removed"))


def test_heartbeat_keeps_a_long_held_lock_alive_past_its_expiry(tmp_path, caplog):
    holder = start_holder(tmp_path, "a", expiry=1.5)
    wait_until(lambda: (tmp_path / "a-holds").exists(), "a holds the lock")
    token = json.loads(lock_of(tmp_path).read_text())["token"]
    with caplog.at_level("INFO", logger="bench"):
        taking = Acquiring(HeartbeatLock(lock_of(tmp_path), "test", 1.5))
        assert not taking.got.wait(4.5)  # three times the expiry: the holder's heartbeat keeps it
        assert json.loads(lock_of(tmp_path).read_text())["token"] == token
        (tmp_path / "release-a").touch()
        finish(holder, tmp_path, "a")
        taking.wait_got()
        taking.released.set()
        taking.join(DEADLINE)
    assert "broke the lock" not in caplog.text and "broke the lock" not in log_of(tmp_path, "a")
    assert (tmp_path / "work").read_text() == "a"


def test_release_leaves_a_lock_that_is_no_longer_its_own(tmp_path, caplog):
    path = tmp_path / ".entry.lock"
    lock = HeartbeatLock(path, "test", 60.0)
    with lock:
        assert lock.held() and json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()  # its own: removed
    lock.acquire()
    fake_lock(tmp_path / "theirs", "node-f.example", expiry=60.0)
    os.replace(tmp_path / "theirs", path)  # as if another job broke it and took the lock
    assert not lock.held()
    with caplog.at_level("WARNING", logger="bench"):
        lock.release()
    assert json.loads(path.read_text())["token"] == "theirs"
    assert "no longer this job's at release" in caplog.text
    assert not list(tmp_path.glob("*.removed"))


def test_a_cell_is_not_committed_by_a_job_that_lost_the_lock(tmp_path):
    cache = ActivationCache(tmp_path, lock_expiry_s=60.0)
    entry = entry_of(tmp_path)
    with cache.filling(entry):
        writer = cache.grow(entry, "train", "hidden", 1, 4, np.array([0, 1]))
        writer.put(np.array([0, 1]), np.ones((2, 4), dtype=np.float32))
        fake_lock(tmp_path / "theirs", "node-g.example", expiry=60.0)
        os.replace(tmp_path / "theirs", lock_of(tmp_path))
        with pytest.raises(NeuronbenchError, match="lost its entry's lock .* nothing was written"):
            writer.commit()
    assert not cache.layer_path(entry, "train", "hidden", 1).exists() and not list(entry.rglob("*.partial"))
    lock_of(tmp_path).unlink()
    with cache.filling(entry):  # holding it, the same cell commits
        writer = cache.grow(entry, "train", "hidden", 1, 4, np.array([0, 1]))
        writer.put(np.array([0, 1]), np.ones((2, 4), dtype=np.float32))
        writer.commit()
    assert cache.stored_words(entry, "train", "hidden", 1, 4, 10)[0].tolist() == [0, 1]


def test_lock_expiry_from_the_environment(monkeypatch):
    monkeypatch.setenv("NEURONBENCH_LOCK_EXPIRY", "30")
    assert lock_expiry() == 30.0 and lock_expiry(5) == 5.0 and ActivationCache("x").lock_expiry_s == 30.0
    for bad in ("soon", "0", "-1", "nan", "inf"):
        monkeypatch.setenv("NEURONBENCH_LOCK_EXPIRY", bad)
        with pytest.raises(NeuronbenchError, match="NEURONBENCH_LOCK_EXPIRY.*positive number of seconds"):
            ActivationCache("x")
    monkeypatch.delenv("NEURONBENCH_LOCK_EXPIRY")
    assert lock_expiry() == 120.0


def test_a_job_that_died_breaking_a_stale_lock_does_not_block_the_others(tmp_path):
    path = lock_of(tmp_path)
    fake_lock(path, "node-h.example", expiry=120.0, age=3600.0)
    stat = os.stat(path)
    marker = path.with_name(f"{path.name}.{stat.st_ino}-{stat.st_mtime_ns}.breaking")
    marker.touch()
    os.utime(marker, (time.time() - 3600, time.time() - 3600))
    taking = Acquiring(HeartbeatLock(path, "test", 60.0))
    taking.wait_got()
    taking.released.set()
    taking.join(DEADLINE)
    assert not marker.exists() and not path.exists()
