"""The SHA-256 of a bundle file, read a megabyte at a time (a 10,000-key evidence.json is
tens of megabytes: never held whole to be hashed). Light to import: the run's own writers use
it before the signing code (securesystemslib) is loaded."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """SHA-256 of a regular file, hex; refuses to follow a symlink."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
