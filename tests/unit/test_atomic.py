"""keyparity.atomic: the one write every file of a bundle, a plan or a retirement goes through."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO
from keyparity import atomic


def test_a_file_is_written_whole_and_nothing_else_is_left(tmp_path: Path) -> None:
    path = tmp_path / "evidence.json"
    assert atomic.write(path, (piece for piece in ("{", '"a": 1', "}\n"))) == path
    assert path.read_text() == '{"a": 1}\n'
    atomic.write(path, b"bytes")
    assert path.read_bytes() == b"bytes"
    atomic.write(path, "text é")
    assert path.read_text(encoding="utf-8") == "text é"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evidence.json"]


def test_a_write_that_fails_half_way_leaves_the_old_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text("the old report\n")

    def pieces():
        yield "the first half of a new report"
        raise RuntimeError("rendering failed")

    with pytest.raises(RuntimeError, match="rendering failed"):
        atomic.write(path, pieces())
    assert path.read_text() == "the old report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_the_file_is_fsynced_before_it_is_renamed(tmp_path: Path, monkeypatch) -> None:
    synced: list[str] = []
    real = atomic.os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (synced.append(
        Path(f"/proc/self/fd/{fd}").resolve().name), real(fd))[1])
    atomic.write(tmp_path / "cbom.json", "{}")
    assert synced == [".cbom.json.tmp", tmp_path.name]  # the file, then its directory


def test_no_other_module_renames_a_file_into_place() -> None:
    """One atomic write: ``os.replace``/``os.rename`` appear in keyparity.atomic only, but
    where the reports/latest link is moved (keyparity.evidence.bundle)."""
    allowed = {"keyparity/atomic.py", "keyparity/evidence/bundle.py"}
    found = []
    for path in (REPO / "keyparity").rglob("*.py"):
        name = str(path.relative_to(REPO))
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in ("replace", "rename")
                    and isinstance(node.value, ast.Name) and node.value.id == "os"
                    and name not in allowed):
                found.append(f"{name}:{node.lineno}")
    assert found == []
