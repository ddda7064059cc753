"""docs/auditors.md's requirement → evidence table: every row names the file and field of the
bundle that shows the requirement met, and a test that exists and reads that field (the test
itself goes red when the field is missing or wrong; it runs with the rest of the suite).

A row: | Requirement | The assessor asks for | Where (file: field) | Test |
  Where  `FILE`: `FIELD` (one or more, `;`-separated); FIELD a dotted path, `[]` for a list
  Test   `tests/…/test_x.py::test_name` (one or more, `;`-separated)
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import REPO

AUDITORS = REPO / "docs" / "auditors.md"
HEADING = "## Requirements and evidence"
ROW = re.compile(r"^\|(?P<req>[^|]+)\|(?P<asks>[^|]+)\|(?P<where>[^|]+)\|(?P<tests>[^|]+)\|\s*$")
WHERE = re.compile(r"`(?P<file>[^`]+)`:\s*`(?P<field>[^`]+)`")
TEST = re.compile(r"`(?P<path>tests/[^`:]+\.py)::(?P<name>[A-Za-z_][A-Za-z0-9_]*)`")


def table_rows(text: str) -> list[dict[str, str]]:
    """The table's data rows (header and rule excluded), in order."""
    start = text.index(HEADING)
    end = text.find("\n## ", start + len(HEADING))
    section = text[start:end if end >= 0 else len(text)]
    rows = [m.groupdict() for line in section.splitlines() if (m := ROW.match(line))]
    return [r for r in rows if not set(r["where"].strip()) <= set("-: ")
            and r["req"].strip() != "Requirement"]


def _functions(path: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text("utf-8"))
    return {node.name: ast.get_source_segment(path.read_text("utf-8"), node) or ""
            for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


ROWS = table_rows(AUDITORS.read_text("utf-8"))


def test_the_table_has_rows():
    assert ROWS, f"{AUDITORS}: no rows under {HEADING!r}"


@pytest.mark.parametrize("row", ROWS, ids=[r["req"].strip()[:40] for r in ROWS])
def test_each_row_names_a_field_and_a_test_that_reads_it(row):
    where = [m.groupdict() for m in WHERE.finditer(row["where"])]
    tests = [m.groupdict() for m in TEST.finditer(row["tests"])]
    assert where, f"row {row['req'].strip()!r}: no `FILE`: `FIELD` in {row['where'].strip()!r}"
    assert tests, f"row {row['req'].strip()!r}: no `tests/…py::test_name` in {row['tests']!r}"
    sources = []
    for test in tests:
        path = REPO / test["path"]
        assert path.is_file(), f"row {row['req'].strip()!r}: {test['path']} does not exist"
        functions = _functions(path)
        assert test["name"] in functions, f"{test['path']} has no {test['name']}"
        sources.append(functions[test["name"]])
    for item in where:
        leaf = re.split(r"[.\[\]]+", item["field"].strip("[]. "))[-1]
        assert any(leaf in source for source in sources), (
            f"row {row['req'].strip()!r}: none of its tests reads {item['field']!r} "
            f"(no {leaf!r} in their source)")
