"""How the bundle's large JSON files are laid out: readable where people read (the run, the
summary, each section on lines of its own) and one line per record where there are thousands
(each key of ``keys``, each test, each object of a census, each entry of a long list), compact
inside the line. A key's whole evidence is then one line to grep or diff, and a 10,000-key
file is a third smaller than indented JSON. Any JSON reader reads it as before.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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


def dumps(value: Any, depth: int = 0) -> str:
    """``value`` as JSON in the layout above (no trailing newline)."""
    pad, inner = " " * depth, " " * (depth + 1)
    if _records(value):
        if isinstance(value, list):
            lines = [f"{inner}{_compact(v)}" for v in value]
            return "[\n" + ",\n".join(lines) + f"\n{pad}]"
        lines = [f"{inner}{json.dumps(k)}:{_compact(v)}" for k, v in value.items()]
        return "{\n" + ",\n".join(lines) + f"\n{pad}}}"
    if isinstance(value, dict) and value and depth < 3:
        lines = [f"{inner}{json.dumps(k)}: {dumps(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(lines) + f"\n{pad}}}"
    if isinstance(value, list) and value and depth < 3 and any(
            isinstance(v, (dict, list)) for v in value):
        lines = [f"{inner}{dumps(v, depth + 1)}" for v in value]
        return "[\n" + ",\n".join(lines) + f"\n{pad}]"
    return _compact(value)


def write(path: Path, value: Any) -> Path:
    """Write ``value`` to ``path`` atomically (a temporary file renamed over it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(value) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
