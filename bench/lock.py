"""A lock file for jobs that share a filesystem, flock or not: taken by creating the file with O_CREAT | O_EXCL
(atomic on local disks and on NFS v3 and later), which names its owner and is kept alive by a heartbeat.

The file holds its owner as JSON (host, pid namespace, pid, a random token, its expiry). While the lock is held a
daemon thread touches the file's mtime every expiry / 4 seconds. A job that finds the lock taken waits, and
breaks it when its owner is a process of this host (and pid namespace) that no longer exists, or when its
heartbeat is older than the owner's expiry: by the waiter's clock against the file's mtime (so clocks must
agree to well within the expiry, as NTP keeps them), or for as long as the waiter has watched it unchanged
(which needs no clock at all). Of several jobs breaking one stale lock, the one that creates a marker named
after that version of the lock, exclusively, removes it; removing (breaking or releasing) checks the file,
moves it aside to a unique name and checks again, so a job never removes a lock that no longer holds the token
it expects. flock is not used: on NFS mounted with `nolock` or `local_lock=flock` it locks against
this host only, without an error.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import random
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.errors import NeuronbenchError


log = logging.getLogger(__name__)

EXPIRY_ENV = "NEURONBENCH_LOCK_EXPIRY"
DEFAULT_EXPIRY = 120.0  # seconds without a heartbeat after which a lock is broken
MAX_POLL = 1.0  # seconds between looks at a taken lock, at most


def lock_expiry(expiry: float | str | None = None) -> float:
    """`expiry`, else $NEURONBENCH_LOCK_EXPIRY, else 120: seconds a lock may go without a heartbeat."""
    value = expiry if expiry is not None else os.environ.get(EXPIRY_ENV) or DEFAULT_EXPIRY
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise NeuronbenchError(f"lock expiry {value!r} (${EXPIRY_ENV}): give a positive number of seconds, e.g. "
                               f"{EXPIRY_ENV}={DEFAULT_EXPIRY:g}")
    return seconds


def _pid_namespace() -> str:
    """This process's pid namespace (Linux), so that a container sharing the hostname is not 'this host'."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@dataclass(frozen=True)
class _Seen:
    """A lock file as one look found it: its owner ({} when empty or unreadable), mtime, and what identifies
    this version of it (inode, mtime in ns, token)."""
    owner: dict
    mtime: float
    key: tuple


def _look(path: Path) -> _Seen | None:
    """The lock file at `path`, or None if there is none. Opening it (not stat) makes an NFS client revalidate."""
    try:
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            raw = handle.read(4096)
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ESTALE):
            return None
        raise
    try:
        owner = json.loads(raw)
    except ValueError:
        owner = {}
    owner = owner if isinstance(owner, dict) else {}
    return _Seen(owner, stat.st_mtime, (stat.st_ino, stat.st_mtime_ns, owner.get("token")))


def _describe(owner: dict) -> str:
    if not owner:
        return "an unknown owner (empty lock file: a job killed while taking it, or an older neuronbench's)"
    since = owner.get("since")
    since = time.strftime(" (since %Y-%m-%d %H:%M:%S)", time.localtime(since)) if isinstance(since, (int, float)) \
        else ""
    return f"pid {owner.get('pid')} on {owner.get('host')}{since}"


def _gone_here(owner: dict) -> bool:
    """True if the owner is a process of this host and pid namespace that no longer exists."""
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or owner.get("pidns") != _pid_namespace():
        return False
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists, as another user
        return False
    return False


def _stale(seen: _Seen, watched_s: float, default_expiry: float) -> str | None:
    """Why the lock `seen` (watched unchanged for `watched_s`) is to be broken, or None if it is alive."""
    if _gone_here(seen.owner):
        return f"its process {seen.owner['pid']} no longer exists"
    expiry = seen.owner.get("expiry")
    expiry = expiry if isinstance(expiry, (int, float)) and expiry > 0 else default_expiry
    silent = max(time.time() - seen.mtime, watched_s)
    if silent > expiry:
        return f"no heartbeat for {silent:.1f} s (its expiry is {expiry:g} s)"
    return None


def _remove_if(path: Path, matches) -> bool:
    """Remove the lock file at `path` if `matches(its _Seen)`: checked, renamed aside to a unique name and checked
    again, so of several jobs removing it one does; one replaced meanwhile (by a job that took the lock as its
    owner released it) is put back."""
    seen = _look(path)
    if seen is None or not matches(seen):
        return False
    aside = path.with_name(f"{path.name}.{secrets.token_hex(8)}.removed")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    try:
        seen = _look(aside)
        if seen is None or matches(seen):
            return True
        try:
            os.link(aside, path)  # put back, unless a new lock exists already
        except FileExistsError:
            log.warning("lock %s: a lock of %s was moved aside while another job took the lock; both may hold it",
                        path, _describe(seen.owner))
        except OSError:  # a filesystem without hard links
            if not path.exists():
                os.rename(aside, path)
        return False
    finally:
        aside.unlink(missing_ok=True)


def _break(path: Path, seen: _Seen, reason: str, expiry: float) -> bool:
    """Remove the stale lock `seen` at `path` unless another job is breaking it or it changed: the job that
    creates `<lock>.<ino>-<mtime>.breaking` (a name of that version of the lock) exclusively removes it, so a
    job that judged it stale late finds a new lock in its place, which it leaves."""
    marker = path.with_name(f"{path.name}.{seen.key[0]}-{seen.key[1]}.breaking")
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        other = _look(marker)
        if other is not None and time.time() - other.mtime > expiry:  # a job died breaking it
            marker.unlink(missing_ok=True)
        return False
    try:
        if not _remove_if(path, lambda now: now.key == seen.key):
            return False
    finally:
        marker.unlink(missing_ok=True)
    log.warning("broke the lock %s of %s: %s", path, _describe(seen.owner), reason)
    return True


class HeartbeatLock:
    """Context manager holding the lock file `path`; `what` says what holders do, for the log of a waiter
    ("waiting for another job filling X")."""

    def __init__(self, path: str | Path, what: str, expiry: float | None = None):
        self.path, self.what, self.expiry = Path(path), what, lock_expiry(expiry)
        self.token: str | None = None

    def __enter__(self) -> HeartbeatLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(16)
        owner = {"host": socket.gethostname(), "pidns": _pid_namespace(), "pid": os.getpid(), "token": token,
                 "expiry": self.expiry, "since": time.time()}
        logged, watched, poll = object(), (None, 0.0), 0.02
        while True:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                pass
            seen = _look(self.path)
            if seen is None:
                continue
            if seen.key != watched[0]:
                watched = (seen.key, time.monotonic())
            reason = _stale(seen, time.monotonic() - watched[1], self.expiry)
            if reason is not None and _break(self.path, seen, reason, self.expiry):
                continue
            if seen.key[2] != logged:
                log.info("waiting for %s: lock %s held by %s", self.what, self.path, _describe(seen.owner))
                logged = seen.key[2]
            time.sleep(poll * random.uniform(0.5, 1.0))
            poll = min(poll * 1.5, MAX_POLL, self.expiry / 8)
        try:
            os.write(fd, json.dumps(owner).encode())
            os.fsync(fd)  # an NFS client keeps written data until close: others must read the owner now
            os.utime(fd)
        except BaseException as error:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise NeuronbenchError(f"cannot write the lock file {self.path}: {error.strerror}; free space "
                                       "there or use a folder you can write") from None
            raise
        self.token, self._fd, self._stop = token, fd, threading.Event()
        self._beater = threading.Thread(target=self._beat, name=f"heartbeat {self.path.name}", daemon=True)
        self._beater.start()

    def held(self) -> bool:
        """True if the lock file still holds this lock's token (another job has not broken it as stale)."""
        seen = _look(self.path)
        return self.token is not None and seen is not None and seen.owner.get("token") == self.token

    def _beat(self) -> None:
        warned = False
        while not self._stop.wait(self.expiry / 4):
            try:
                os.utime(self._fd)  # this lock's own file, even if another job moved it aside
            except OSError:  # ESTALE: removed by another host
                pass
            try:
                lost = not self.held()
            except OSError:  # a passing I/O error: look again at the next beat
                lost = False
            if lost and not warned:
                log.warning("lock %s no longer holds this job's token: another job broke it as stale (was this "
                            "process stopped for longer than the %g s expiry?)", self.path, self.expiry)
                warned = True

    def release(self) -> None:
        if self.token is None:
            return
        self._stop.set()
        self._beater.join()
        os.close(self._fd)
        token, self.token = self.token, None
        if not _remove_if(self.path, lambda now: now.owner.get("token") == token):
            log.warning("lock %s: no longer this job's at release (another job broke it as stale); left in place",
                        self.path)
