"""SIGINT and SIGTERM in the controller process: each becomes a KeyboardInterrupt, so that
pytest ends the session the way it ends one on Ctrl-C and keyparity still writes and signs the
bundle, and each is remembered, so that the verdict's headline says which signal interrupted
the run. pytest handles SIGINT (Python raises KeyboardInterrupt) but not SIGTERM, whose default
action ends the process at once: no evidence, no bundle. While the bundle is written a further
signal is remembered and does not stop the writing (an orchestrator sends SIGTERM, then SIGKILL
after its grace period). A signal the process was started to ignore (SIG_IGN: a background job
of a non-interactive shell ignores SIGINT) stays ignored.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """The controller's handlers for SIGINT and SIGTERM, installed for one run."""

    def __init__(self) -> None:
        self.received: str | None = None  # the first signal's name (SIGINT, SIGTERM)
        self._previous: dict[int, Any] = {}
        self._deferred = False

    def install(self) -> None:
        """Handle both signals (only the main thread may: elsewhere, do nothing)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received = self.received or name
        if not self._deferred:
            raise KeyboardInterrupt(f"{name} received")

    def defer(self) -> None:
        """From now on a signal is remembered only: the bundle is being written."""
        self._deferred = True

    def restore(self) -> None:
        """The handlers as they were before ``install``."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
