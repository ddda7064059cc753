"""Progress of a command's reads, on standard error: each read of a key is a network round trip
on CloudHSM, so a command that reads thousands says how far it is. A bar redrawn in place
where standard error is a terminal; otherwise one line every ``EVERY`` keys (a CI log, a
pipe). Nothing for ``FEW`` keys or fewer: those end before anyone waits."""
from __future__ import annotations

import sys
import time
from typing import TextIO

FEW = 20  # reads of this many keys or fewer say nothing
EVERY = 100  # without a terminal, one line per this many keys
WIDTH = 30  # the bar's width in characters


class Progress:
    """``tick()`` once per key read; ``done()`` at the end. ``total``: the keys to read, or
    None when the count is known only at the end (a token's objects, enumerated lazily)."""

    def __init__(self, what: str, total: int | None = None, stream: TextIO | None = None,
                 tty: bool | None = None) -> None:
        self.what = what
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.count = 0
        self.started = time.monotonic()
        self._drawn = False

    def _shown(self) -> bool:
        return self.count > FEW or (self.total is not None and self.total > FEW)

    def tick(self) -> None:
        self.count += 1
        if not self._shown():
            return
        if self.tty:
            self._draw()
        elif self.count % EVERY == 0:
            self.stream.write(f"{self._text()}\n")
            self.stream.flush()

    def _text(self) -> str:
        seconds = time.monotonic() - self.started
        of = f" of {self.total}" if self.total is not None else ""
        return f"keyparity: {self.what}: {self.count}{of} ({seconds:.0f} s)"

    def _draw(self) -> None:
        if self.total:
            filled = WIDTH * min(self.count, self.total) // self.total
            bar = "[" + "#" * filled + "." * (WIDTH - filled) + "] "
        else:
            bar = ""
        self.stream.write(f"\r{bar}{self._text()}")
        self.stream.flush()
        self._drawn = True

    def done(self) -> None:
        """The last word: the count read (a terminal's bar ends its line)."""
        if not self._shown():
            return
        if self.tty and self._drawn:
            self._draw()
            self.stream.write("\n")
        elif not self.tty and self.count % EVERY:
            self.stream.write(f"{self._text()}\n")
        self.stream.flush()
