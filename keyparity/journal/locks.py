"""One lock per target key, whatever the journal: a file of its own in a lock directory that
every run on that target sees (keyparity.hsm.lockdir says where), held with ``flock(2)``.

Why a file lock and not a row of the journal: two runs with two journals (two checkouts, two
``--hsm-journal`` paths) share no table, and would each unwrap every key. Why not an object on the
token: the census would have to account for it, a crash would leave it on a production HSM,
and PKCS #11 has no atomic create-if-absent.

The kernel releases a ``flock`` when its holder ends, however it ends (``kill -9``, a crash, a
worker xdist replaces; a zombie holds nothing): nobody has to decide whether a holder is dead,
and a lock is never taken from a live holder. A second run waits for a held lock (bounded:
``wait`` seconds), then that key fails naming the run that holds it; the other keys that run
holds fail at once, without waiting again.

Each lock file holds one JSON record of its last holder (run id, pid, host, process start time:
keyparity.process; when it took the lock; ``held`` or ``released``) and of the key's last move
(who, when), which each holder carries on. The next holder reads it: a record left ``held``
means its holder ended without releasing (a takeover, said in the journal), and may have moved
the key; a key another process moved after this one read the token is looked for on the token
again before anything is written (keyparity.hsm.migrate). Lock files are never removed: a removed
lock file lets two processes lock two different files of one name.

``serialize_writes`` (SoftHSM, see keyparity.hsm.lockdir): every write to the token is also made
under one token-wide lock, so that each keyparity process sees every other's objects.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import KeyparityError
from ..process import Proc, me, state

__all__ = ["Claim", "KeyLocks", "LockTimeout", "SKEW"]

SUFFIX = ".lock"
TOKEN_WRITE = "token-write"  # the token-wide write lock (its name has no hex digest form)
SKEW = 300.0  # seconds: a record this much older than an index is already in it (clocks differ)
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW


class LockTimeout(KeyparityError):
    """Another live run held a target key's lock for longer than the wait allowed."""


def _read(fd: int) -> dict[str, Any] | None:
    raw = os.pread(fd, 65536, 0)
    try:
        record = json.loads(raw) if raw.strip() else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _write(fd: int, record: dict[str, Any]) -> None:
    """The record over the old one, padded with blanks to the file's size: never truncated,
    which on ext4 makes each close of the file wait for its blocks to be written out (a
    replace-via-truncate is flushed: 3.5 ms a key, measured, instead of 0.1 ms)."""
    data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    os.pwrite(fd, data.ljust(os.fstat(fd).st_size, b" "), 0)


def holder_text(record: dict[str, Any] | None) -> str:
    """``run R (pid P on H, alive, since T)`` for a lock record; ``another process``."""
    if not record or "pid" not in record:
        return "another process"
    proc = Proc.from_record(record)
    return (f"run {record.get('run_id')} ({proc}, {state(proc)}, since "
            f"{record.get('acquired')})")


def _holder(record: dict[str, Any], at: float) -> dict[str, Any]:
    """Who a record names, as a ``last_move``: the run and its process, and ``at``."""
    return {"run_id": record.get("run_id"), "pid": record.get("pid"),
            "host": record.get("host"), "start": record.get("start"),
            "boot": record.get("boot"), "at": at}


def _carried(prior: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
    """The last move of a key, as the next holder carries it on: the one the previous record
    names; a holder that ended holding the lock may have moved it just before it ended, so it
    counts as a move made now (by it)."""
    if not prior:
        return None
    if prior.get("state") == "held" and "pid" in prior:
        return _holder(prior, now)
    last = prior.get("last_move")
    return last if isinstance(last, dict) and "pid" in last else None


@dataclass
class Claim:
    """A lock held by this process: its file, the record we wrote (with the key's last move,
    carried on), the record the previous holder left (None: the first), whether we had to
    wait for it, and how long."""

    label: str
    fd: int
    record: dict[str, Any]
    prior: dict[str, Any] | None
    contended: bool = False
    waited: float = 0.0

    @property
    def took_over(self) -> str | None:
        """The run whose holder ended while holding this lock (killed, crashed), or None."""
        if self.prior and self.prior.get("state") == "held":
            return str(self.prior.get("run_id"))
        return None

    def moved_since(self, since: float | None) -> bool:
        """Whether another process may have moved the key after ``since`` (when this process
        read the token: its object index), less SKEW (the clocks of two hosts differ)."""
        last = self.record.get("last_move")
        if not last or Proc.from_record(last) == Proc.from_record(self.record):
            return False  # never moved, or by this very process: it knows what it moved
        return since is None or float(last.get("at") or 0) >= since - SKEW


@dataclass
class KeyLocks:
    """The key locks of one target in ``directory``; ``wait``: how long a held lock is waited
    for (seconds), ``poll``: how often it is asked for again."""

    directory: Path
    run_id: str
    wait: float = 600.0
    poll: float = 0.05
    serialize_writes: bool = False
    stuck: dict[str, str] = field(default_factory=dict)  # run -> why its locks are not waited for

    def __post_init__(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KeyparityError(f"cannot create the key lock directory {self.directory}: "
                                 f"{exc.strerror or exc}; set the target's lock_dir in the "
                                 "profile to a directory every run on that target can write"
                                 ) from None
        self.me = me()

    def _path(self, label: str) -> Path:
        return self.directory / (hashlib.sha256(label.encode("utf-8")).hexdigest()[:40] + SUFFIX)

    def _open(self, path: Path) -> int:
        try:
            return os.open(path, _FLAGS, 0o666)
        except OSError as exc:
            raise KeyparityError(f"cannot open the lock file {path}: {exc.strerror or exc}"
                                 ) from None

    def _try(self, label: str) -> Claim | None:
        fd = self._open(self._path(label))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        prior = _read(fd)
        now = time.time()
        record = {"label": label, "run_id": self.run_id, **self.me.record(), "state": "held",
                  "acquired": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(
                      timespec="microseconds"),
                  "acquired_at": now, "last_move": _carried(prior, now)}
        _write(fd, record)
        return Claim(label, fd, record, prior)

    def claim(self, labels: Iterable[str]) -> dict[str, Claim | None]:
        """Take the locks of those keys that are free, without waiting: label -> Claim, or None
        for one another process holds."""
        return {label: self._try(label) for label in labels}

    def wait_for(self, label: str) -> Claim:
        """Hold the key's lock, waiting for it up to ``wait`` seconds; LockTimeout naming the
        holder otherwise (at once when that run's locks timed out before in this process)."""
        start = time.monotonic()
        contended = False
        while True:
            got = self._try(label)
            if got is not None:
                got.contended, got.waited = contended, round(time.monotonic() - start, 3)
                return got
            contended = True
            holder = self._record(label)
            run = str((holder or {}).get("run_id"))
            if run in self.stuck:
                raise LockTimeout(f"{label!r} is locked by {holder_text(holder)}, whose locks "
                                  f"were not released before ({self.stuck[run]}): not waited "
                                  "for again")
            if time.monotonic() - start > self.wait:
                why = f"waited {self.wait:.0f}s for {label!r}"
                self.stuck[run] = why
                raise LockTimeout(f"{label!r} is locked by {holder_text(holder)} for over "
                                  f"{self.wait:.0f}s: that run is moving it (a lock is "
                                  "released when its holder ends, however it ends); run again "
                                  "once it has finished, or stop it")
            time.sleep(self.poll)

    def _record(self, label: str) -> dict[str, Any] | None:
        try:
            fd = os.open(self._path(label), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            return _read(fd)
        finally:
            os.close(fd)

    def release(self, claims: Iterable[Claim | None], moved: Collection[str] = ()) -> None:
        """Release locks; each record keeps the key's last move: this process's when it tried
        to move the key (``moved``), else the one it carried on."""
        for c in claims:
            if c is None:
                continue
            now = time.time()
            last = _holder(c.record, now) if c.label in moved else c.record["last_move"]
            try:
                _write(c.fd, {**c.record, "state": "released", "released_at": now,
                              "last_move": last})
            finally:
                os.close(c.fd)

    @contextlib.contextmanager
    def token_write(self) -> Iterator[None]:
        """With ``serialize_writes``: the token-wide write lock, for one write to the token
        (waited for as long as a key's lock)."""
        if not self.serialize_writes:
            yield
            return
        fd = self._open(self.directory / (TOKEN_WRITE + SUFFIX))
        try:
            deadline = time.monotonic() + self.wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LockTimeout(f"the token-wide write lock in {self.directory} was "
                                          f"held for over {self.wait:.0f}s") from None
                    time.sleep(self.poll / 10)
            yield
        finally:
            os.close(fd)

    # ---- what an operator asks (keyparity journal locks | unlock) -------------------------

    def holders(self) -> list[dict[str, Any]]:
        """Every key lock with its last record: ``held`` (a process holds it now: its record
        names it) or free (``ended holding it``: its holder ended without releasing it)."""
        out = []
        for path in sorted(self.directory.glob("*" + SUFFIX)):
            if path.name == TOKEN_WRITE + SUFFIX:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                record = _read(fd) or {}
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    held = False
                except BlockingIOError:
                    held = True
            finally:
                os.close(fd)
            out.append({"file": str(path), "held": held, "record": record,
                        "holder": holder_text(record)})
        return out

    def clear(self, run_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The locks whose record names ``run_id``: (cleared, held). A free one left ``held``
        by its ended holder is marked released by this process; one a process holds now is
        left alone (a lock is never taken from a live holder: stop the process)."""
        cleared, held = [], []
        for entry in self.holders():
            record = entry["record"]
            if record.get("run_id") != run_id:
                continue
            if entry["held"]:
                held.append(entry)
                continue
            claim = self._try(str(record.get("label")))
            if claim is None:  # taken meanwhile
                held.append(entry)
                continue
            self.release([claim], moved={claim.label})  # moved: the next holder looks again
            if record.get("state") == "held":
                cleared.append(entry)
        return cleared, held
