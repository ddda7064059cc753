"""A local RFC 3161 time-stamping authority in its own process, for the tests: ``keyparity demo
tsa`` (keyparity.trust.tsa) serving on 127.0.0.1 at a free port, with a test root of its own.

    with local_tsa(tmp_path / "tsa") as tsa:
        tsa.url, tsa.root, tsa.spec()      # the URL, the root's PEM, a TimestampSpec naming it

Two of them have two unrelated roots (a TSA that does not chain to the other's root).
"""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from keyparity.profile import TimestampSpec

__all__ = ["LocalTsa", "closed_port_url", "local_tsa"]


@dataclass
class LocalTsa:
    state: Path
    process: subprocess.Popen[str]

    @property
    def url(self) -> str:
        return (self.state / "tsa" / "url").read_text().strip()

    @property
    def root(self) -> Path:
        return self.state / "tsa" / "root.pem"

    def spec(self, **fields: object) -> TimestampSpec:
        return TimestampSpec(url=self.url, ca=self.root, **fields)  # type: ignore[arg-type]


@contextlib.contextmanager
def local_tsa(state: Path, timeout: float = 30.0) -> Iterator[LocalTsa]:
    """Start the TSA in a child process, wait until it serves, stop it at the end."""
    state.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([sys.executable, "-m", "keyparity.cli", "demo", "tsa",
                                "--state", str(state)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not (state / "tsa" / "url").is_file():
            if process.poll() is not None:
                raise AssertionError(f"the local TSA exited: {process.stdout.read()}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                raise AssertionError("the local TSA did not start")
            time.sleep(0.05)
        yield LocalTsa(state, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 at which nothing listens (a TSA that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
