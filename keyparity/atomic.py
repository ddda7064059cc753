"""The one way keyparity writes a file of the bundle, a plan, a retirement record or a report:
whole or not at all. The new content goes to a temporary file beside the target
(``.NAME.tmp``), is flushed and fsynced, then renamed over the target, and the directory is
fsynced so that the rename is on disk too. A reader sees the old file or the new one, never a
part; a crash leaves at most the temporary file, never a truncated target. Nothing of
keyparity is imported here: every room may use it.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["replacing", "write"]


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content to: renamed over ``path`` (fsynced first)
    when the block ends, removed when it raises."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        _sync_directory(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write(path: Path, data: bytes | str | Iterable[str]) -> Path:
    """Write ``data`` (bytes, text, or text in pieces, each encoded as UTF-8 as it is written:
    a large JSON file is never one string in memory) to ``path``; returns ``path``."""
    with replacing(path) as out:
        if isinstance(data, bytes):
            out.write(data)
        elif isinstance(data, str):
            out.write(data.encode("utf-8"))
        else:
            for piece in data:
                out.write(piece.encode("utf-8"))
    return Path(path)
