"""keyparity.formats.jsonfile: the bundle's JSON layout, written piece by piece."""
from __future__ import annotations

import json

from keyparity.formats import jsonfile
from keyparity.attest.digest import sha256_file

DOC = {"run": {"run_id": "r", "nested": {"deep": {"deeper": [1, 2]}}},
       "keys": {f"k{i}": {"label": f"k{i}", "vectors": [{"ok": True}]} for i in range(10)},
       "tests": [{"nodeid": f"t{i}", "outcome": "passed"} for i in range(12)],
       "few": [{"a": 1}, {"b": [1, {"c": None}]}], "empty": {}, "none": [], "s": "é\n"}


def test_written_piece_by_piece_as_laid_out_one_record_per_line(tmp_path):
    path = jsonfile.write(tmp_path / "doc.json", DOC)
    text = path.read_text(encoding="utf-8")
    assert text == "".join(jsonfile.chunks(DOC)) + "\n"
    assert json.loads(text) == DOC
    lines = text.splitlines()
    assert '  "k3":{"label":"k3","vectors":[{"ok":true}]},' in lines  # a key: one line
    assert '  {"nodeid":"t0","outcome":"passed"},' in lines  # a test: one line
    assert not (tmp_path / "doc.json.tmp").exists()


def test_digest_is_the_written_file_s_without_holding_it(tmp_path):
    path = jsonfile.write(tmp_path / "doc.json", DOC)
    assert jsonfile.digest(DOC) == sha256_file(path)
    assert jsonfile.digest({**DOC, "s": "other"}) != sha256_file(path)
