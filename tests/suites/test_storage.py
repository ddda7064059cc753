"""Where the run writes, and where an auditor reads: a full file system at the start is one
line before anything runs (it was an error per test), and a journal on read-only media is
verified (it was called "not a keyparity journal", with advice to start a new chain)."""
from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_suites
from keyparity.cli import main as cli_main
from keyparity.journal.store import Journal

AES = {"label": "k-aes128", "type": "aes", "size": 128}


@contextlib.contextmanager
def mounted(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``where`` (root only: the test is skipped, with that reason,
    where a file system cannot be mounted)."""
    where.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"a small file system is a tmpfs mount here, and mount failed: "
                    f"{made.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize("what", ["journal", "reports"])
def test_a_full_file_system_at_the_start_is_one_line(lab, suites, tmp_path, what):
    lab.seed([AES])
    with mounted(tmp_path / "full", "1m") as full:
        (full / "filler").write_bytes(b"\0" * (1024 * 1024 - 64 * 1024))  # 64 KiB left
        option = ("--hsm-journal=" + str(full / "journal.sqlite") if what == "journal"
                  else "--hsm-reports-dir=" + str(full / "reports"))
        result = run_suites(suites, lab.profile([AES]), option)
        errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
        assert result.ret == 4 and len(errors) == 1, result.stdout.str() + result.stderr.str()
        assert f"ERROR: no room to write the run's {what} in {full}" in errors[0], errors
        assert "free some space, or give --hsm-" in errors[0]
        assert sorted(p.name for p in full.iterdir()) == ["filler"]
    assert lab.tokens({"op": "count", "token": "hsm2"}) == [0]


def test_a_journal_on_read_only_media_is_verified(tmp_path, capsys):
    """A handed-over journal (WAL mode, no -shm beside it) on a read-only file system: SQLite
    cannot open it read-only the usual way, so it is opened as immutable, and verified."""
    original = tmp_path / "journal.sqlite"
    j = Journal(original)
    j.bind("run-1").record("note", "verified", label="k")
    head = j.head()["head"]
    j.close()
    with mounted(tmp_path / "ro", "1m") as media:
        shutil.copy(original, media / "journal.sqlite")
        subprocess.run(["mount", "-o", "remount,ro", str(media)], check=True)
        path = str(media / "journal.sqlite")
        assert cli_main(["journal", "verify", "--journal", path, "--expect-head", head]) == 0
        out = capsys.readouterr()
        assert f"{path}: chain intact" in out.out and "not a keyparity journal" not in out.err
