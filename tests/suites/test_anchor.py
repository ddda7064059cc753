"""The journal anchored by signed heads (keyparity.evidence.anchor): a destroying command acts
only on journal entries a verified signed head covers, checks the chain first, and finds the
journal where the suites' run put it (the rootdir). Real SoftHSM tokens, the real suites."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import evidence, run_suites
from keyparity.journal.chain import FIELDS, entry_hash, verify
from keyparity.journal.store import Journal
from test_plan import seeded_profile, signed_plan
from test_retire import labels_on, pass_run, retire

AES = {"label": "k-aes128", "type": "aes", "size": 128}
DES3 = {"label": "k-des3", "type": "des3"}


def keyparity(lab: Any, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyparity.cli", *args], env=lab.env,
                          capture_output=True, text=True, check=False, cwd=cwd, timeout=300)


def append_forged(journal: Path, **fields: Any) -> int:
    """Append an entry with its hash and the chain's link recomputed, as a forger who can
    write the file would: ``journal verify`` cannot tell it from a real one."""
    db = sqlite3.connect(journal)
    db.row_factory = sqlite3.Row
    last = dict(db.execute("SELECT * FROM entries ORDER BY seq DESC LIMIT 1").fetchone())
    entry = {**dict.fromkeys(FIELDS), **fields, "seq": last["seq"] + 1, "ts": last["ts"],
             "prev_hash": last["hash"]}
    entry["hash"] = entry_hash(entry)
    cols = [*FIELDS, "hash"]
    db.execute(f"INSERT INTO entries ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
               [entry[c] for c in cols])
    db.commit()
    db.close()
    return entry["seq"]


def test_cleanup_refuses_a_forged_appended_entry(lab, suites):
    """Run A proves k-aes128, run B k-des3, both signed, one journal. A forger appends an
    'unwrap after' of k-aes128 under run B's id with k-aes128's KCV and recomputes the hashes:
    the chain verifies, but no signed head covers the entry, so ``cleanup --run B`` refuses
    and removes nothing (it removed run A's proven key before)."""
    lab.seed([AES, DES3])
    custodian = lab.custodian()
    run_a = run_suites(suites, lab.profile([AES], name="a", evidence=custodian))
    assert run_a.ret == 0, run_a.stdout.str()
    a_id = evidence(suites)["run"]["run_id"]
    run_b = run_suites(suites, lab.profile([DES3], name="b", evidence=custodian))
    assert run_b.ret == 0, run_b.stdout.str()
    b_id = evidence(suites)["run"]["run_id"]
    journal = suites.path / ".keyparity" / "journal.sqlite"
    db = sqlite3.connect(journal)
    kcv = db.execute("SELECT check_value FROM entries WHERE run_id = ? AND action = 'unwrap' "
                     "AND phase = 'after' AND label = 'k-aes128'", (a_id,)).fetchone()[0]
    db.close()
    seq = append_forged(journal, run_id=b_id, phase="after", action="unwrap",
                        key_label="k-aes128", cluster="hsm2", label="k-aes128", check_value=kcv)
    assert verify(journal) == []  # the chain alone cannot see it

    out = keyparity(lab, suites.path, "cleanup", str(lab.profile([AES, DES3], name="both",
                                                                 evidence=custodian)),
                    "--run", b_id, "--journal", str(journal))

    assert out.returncode == 1, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"(up to seq {seq}) are covered by no signed head" in lines[0], \
        out.stderr
    assert lab.tokens({"op": "count", "token": "hsm2", "label": "k-aes128"},
                      {"op": "count", "token": "hsm2", "label": "k-des3"}) == [1, 1]


def test_cleanup_of_a_signed_run_removes_its_keys_with_the_runs_own_head(lab, suites):
    """The run's own bundle anchors its entries: no operator step is needed for a run that
    ended, and the journal and the run directories are found from a subdirectory of the
    rootdir, as pytest finds them."""
    lab.seed([AES])
    custodian = lab.custodian()
    profile = lab.profile([AES], name="a", evidence=custodian)
    assert run_suites(suites, profile).ret == 0
    run_id = evidence(suites)["run"]["run_id"]
    below = suites.path / "suites"

    out = keyparity(lab, below, "cleanup", str(profile), "--run", run_id)

    assert out.returncode == 0, out.stdout + out.stderr
    assert f"removed: 'k-aes128' (secret_key) on hsm2 (created by run {run_id}" in out.stdout
    assert lab.tokens({"op": "count", "token": "hsm2", "label": "k-aes128"}) == [0]


def test_cleanup_without_any_signed_head_refuses_and_says_how_to_anchor(lab, suites):
    """A run whose profile had no signers has no signed head: nothing is removed, and the
    message names the operator's step."""
    lab.seed([AES])
    unsigned = lab.profile([AES], name="a")
    assert run_suites(suites, unsigned).ret in (0, 1)
    run_id = evidence(suites)["run"]["run_id"]
    signed = lab.profile([AES], name="b", evidence=lab.custodian())
    out = keyparity(lab, suites.path, "cleanup", str(signed), "--run", run_id)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "keyparity journal sign-head" in out.stderr
    assert lab.tokens({"op": "count", "token": "hsm2", "label": "k-aes128"}) == [1]
    none = keyparity(lab, suites.path, "cleanup", str(unsigned), "--run", run_id)
    assert none.returncode == 1 and "evidence.signers: none" in none.stderr, none.stderr

    head = keyparity(lab, suites.path, "journal", "sign-head", str(signed))
    assert head.returncode == 0, head.stderr
    signed_dir = Path(head.stdout.split(": ", 1)[1].split(" (")[0])
    assert signed_dir.parent == suites.path / "reports"
    verified = keyparity(lab, suites.path, "verify", str(signed_dir), "--key",
                         str(lab.root / "evidence" / "lab-custodian.pub.pem"))
    assert verified.returncode == 0 and "SIGNED-HEAD" in verified.stdout, verified.stdout
    done = keyparity(lab, suites.path, "cleanup", str(signed), "--run", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert lab.tokens({"op": "count", "token": "hsm2", "label": "k-aes128"}) == [0]


def test_retire_destroy_refuses_a_broken_journal_chain(lab, all_suites):
    """An edited row breaks the chain: retire --destroy refuses before it logs in, destroys
    nothing, writes no record; the journal is the rootdir's, found from a subdirectory."""
    suites = all_suites  # retire needs a PASS, which needs every suite keyparity ships
    profile = seeded_profile(lab)
    plan_dir = signed_plan(lab, profile)
    run_id = pass_run(lab, suites, profile, plan_dir)
    journal = suites.path / ".keyparity" / "journal.sqlite"
    db = sqlite3.connect(journal)
    db.execute("UPDATE entries SET detail = 'edited' WHERE seq = 2")
    db.commit()
    db.close()
    before = labels_on(lab, "hsm1")

    done = keyparity(lab, suites.path / "suites", "retire", str(profile), "--run", run_id,
                     "--reports-dir", str(suites.path / "reports"), "--destroy",
                     f"--plan={plan_dir}", "--operator", "op", "--witness", "wit")

    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stdout + done.stderr
    assert f"the write journal {journal} is broken (seq 2: hash does not match" in lines[0]
    assert labels_on(lab, "hsm1") == before
    assert not list((suites.path / "reports").glob("retire-*"))


def test_retire_destroy_refuses_a_journal_that_is_not_the_runs(lab, all_suites):
    """Another journal (a fresh one, or a copy rewritten from the start) does not hold the
    run's signed head at its seq: refused, nothing destroyed."""
    suites = all_suites  # retire needs a PASS, which needs every suite keyparity ships
    profile = seeded_profile(lab)
    plan_dir = signed_plan(lab, profile)
    run_id = pass_run(lab, suites, profile, plan_dir)
    other = lab.root / "other.sqlite"
    before = labels_on(lab, "hsm1")
    done = retire(lab, suites, profile, run_id, "--destroy", f"--plan={plan_dir}",
                  "--journal", str(other))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{other} does not exist; the bundle" in done.stderr, done.stderr
    assert "give --journal the run's journal): nothing is destroyed" in done.stderr
    Journal(other).bind("elsewhere").record("note", "x")
    again = retire(lab, suites, profile, run_id, "--destroy", f"--plan={plan_dir}",
                   "--journal", str(other))
    assert again.returncode == 1 and "is not in" in again.stderr, again.stderr
    assert labels_on(lab, "hsm1") == before
