"""How the bundle's large JSON files are laid out: readable where people read (the run, the
summary, each section on lines of its own) and one line per record where there are thousands
(each key of ``keys``, each test, each object of a census, each entry of a long list), compact
inside the line. A key's whole evidence is then one line to grep or diff, and a 10,000-key
file is a third smaller than indented JSON. Any JSON reader reads it as before.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from .. import atomic

_COMPACT = {"separators": (",", ":")}
RECORDS = 8  # a list of more dicts than this, or a map of more dicts, goes one per line


def _compact(value: Any) -> str:
    return json.dumps(value, **_COMPACT)


def _records(value: Any) -> bool:
    if isinstance(value, list):
        return len(value) > RECORDS and all(isinstance(v, dict) for v in value)
    if isinstance(value, dict):
        return len(value) > RECORDS and all(isinstance(v, dict) for v in value.values())
    return False


def chunks(value: Any, depth: int = 0) -> Iterator[str]:
    """``value`` as JSON in the layout above, piece by piece (a record per piece): ``write``
    streams them to the file, so that a 10,000-key evidence.json is never one string in
    memory, nor its encoded copy, at the end of the run when memory peaks."""
    pad, inner = " " * depth, " " * (depth + 1)
    if _records(value):
        items = ((f"{inner}{_compact(v)}" for v in value) if isinstance(value, list) else
                 (f"{inner}{json.dumps(k)}:{_compact(v)}" for k, v in value.items()))
        yield "[\n" if isinstance(value, list) else "{\n"
        for i, line in enumerate(items):
            yield line if i == 0 else ",\n" + line
        yield f"\n{pad}]" if isinstance(value, list) else f"\n{pad}}}"
    elif isinstance(value, dict) and value and depth < 3:
        yield "{\n"
        for i, (k, v) in enumerate(value.items()):
            yield f"{inner}{json.dumps(k)}: " if i == 0 else f",\n{inner}{json.dumps(k)}: "
            yield from chunks(v, depth + 1)
        yield f"\n{pad}}}"
    elif isinstance(value, list) and value and depth < 3 and any(
            isinstance(v, (dict, list)) for v in value):
        yield "[\n"
        for i, v in enumerate(value):
            yield inner if i == 0 else ",\n" + inner
            yield from chunks(v, depth + 1)
        yield f"\n{pad}]"
    else:
        yield _compact(value)


def digest(value: Any) -> str:
    """The SHA-256 of the file ``write`` makes of ``value``, computed piece by piece."""
    sha = hashlib.sha256()
    for piece in chunks(value):
        sha.update(piece.encode("utf-8"))
    sha.update(b"\n")
    return sha.hexdigest()


def write(path: Path, value: Any) -> Path:
    """Write ``value`` to ``path`` in the layout above, atomically (keyparity.atomic)."""
    return atomic.write(path, itertools.chain(chunks(value), ("\n",)))
