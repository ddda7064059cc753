"""A process as a lock or a journal entry records it, and whether it is still that live process.

A pid alone does not say: a killed process stays a zombie until its parent reaps it (``kill(pid,
0)`` still succeeds), and a pid is reused by the next program. So a holder is recorded with its
host, its boot and its start time (field 22 of ``/proc/PID/stat``, in clock ticks since boot),
and it is alive only when a process with that pid, started at that time in this boot, exists
and is not a zombie. A process on another host cannot be asked from here: ``unknown``.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

_PROC = Path("/proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in ticks) of a pid from ``/proc/PID/stat``; None when there is no
    such process. The command name (field 2) may hold spaces and parentheses: the fields
    after it start after its last ``)``."""
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    return fields[0].decode("ascii"), int(fields[19])


@lru_cache(maxsize=1)
def _boot() -> str | None:
    try:
        return (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return None


@dataclass(frozen=True)
class Proc:
    """A process: pid, host, start time (ticks since boot; None where /proc is not there) and
    boot id."""

    pid: int
    host: str
    start: int | None = None
    boot: str | None = None

    def record(self) -> dict[str, Any]:
        return {"pid": self.pid, "host": self.host, "start": self.start, "boot": self.boot}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Proc:
        start = data.get("start")
        return cls(int(data["pid"]), str(data["host"]),
                   int(start) if start is not None else None, data.get("boot"))

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


def me() -> Proc:
    """This process."""
    found = _stat(os.getpid())
    return Proc(os.getpid(), socket.gethostname(), found[1] if found else None, _boot())


def state(proc: Proc) -> str:
    """``alive``: that very process runs now on this host; ``dead``: it ended (gone, a zombie,
    its pid reused by a process started at another time, or the host rebooted since);
    ``unknown``: it ran on another host."""
    if proc.host != socket.gethostname():
        return "unknown"
    if proc.boot is not None and _boot() is not None and proc.boot != _boot():
        return "dead"
    if not _PROC.is_dir():  # no /proc: the pid is all there is to ask
        return "alive" if _kill0(proc.pid) else "dead"
    found = _stat(proc.pid)
    if found is None or found[0] in ("Z", "X"):
        return "dead"
    if proc.start is not None and found[1] != proc.start:
        return "dead"  # the pid now belongs to another program
    return "alive"


def _kill0(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
