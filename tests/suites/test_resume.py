"""Resume after SIGKILL, cleanup by journal, and concurrent runs - on real SoftHSM tokens.

Each migration runs in a child process (tests/helpers/journal_child.py) that kills itself with SIGKILL
at a journal entry the test chooses; a second run then reconciles from the journal and the
tokens. Also: `keyparity cleanup --run` removes only what a run provably created, and two
concurrent runs on one target migrate each key exactly once.
"""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import HELPERS, REPO, as_production, evidence, run_suites
from test_bad_input import edit_profile
from keyparity.journal.chain import verify
from keyparity.journal.store import Journal

CHILD = HELPERS / "journal_child.py"
AES = {"label": "k-aes128", "type": "aes", "size": 128}
RSA = {"label": "k-rsa", "type": "rsa", "size": 2048}
DES3 = {"label": "k-des3", "type": "des3"}
KEYS = [AES, RSA]
OK = ("migrated", "already-present")


def start(lab: Any, profile: Path, journal: Path, run_id: str, kill: str = "",
          chunk: int = 0, barrier: str = "") -> subprocess.Popen:
    env = {**lab.env, "JOURNAL_CHILD_CHUNK": str(chunk or ""), "JOURNAL_CHILD_BARRIER": barrier}
    return subprocess.Popen([sys.executable, str(CHILD), str(profile), str(journal), run_id,
                             str(lab.root), kill], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def child(lab: Any, profile: Path, journal: Path, run_id: str, kill: str = "",
          chunk: int = 0) -> Any:
    p = start(lab, profile, journal, run_id, kill, chunk)
    out, err = p.communicate(timeout=120)
    return p.returncode, (json.loads(out) if p.returncode == 0 else None), err


def outputs(procs: list[subprocess.Popen]) -> list[Any]:
    """What each child printed, once all have ended (each must end well)."""
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out))
    return outs


def unwraps(journal: Path) -> dict[str, int]:
    """Completed unwraps per target label, over every run."""
    db = sqlite3.connect(journal)
    rows = db.execute("SELECT label, COUNT(*) FROM entries WHERE action = 'unwrap' AND "
                      "phase = 'after' GROUP BY label").fetchall()
    db.close()
    return dict(rows)


def token_state(lab: Any, labels: list[str]) -> dict[str, Any]:
    ops = [{"op": "count-prefix", "token": t, "prefix": "keyparity-"} for t in ("hsm1", "hsm2")]
    ops += [{"op": "count", "token": "hsm2", "label": label} for label in labels]
    got = lab.tokens(*ops)
    return {"wrapping-objects": got[0] + got[1], **dict(zip(labels, got[2:]))}


KILL_POINTS = [
    "generate-wrapping-pair:before", "generate-wrapping-pair:after",
    "import-public:before", "import-public:after",
    "unwrap:before:k-aes128", "unwrap:after:k-aes128",
    "verified:note:k-aes128",
    "unwrap:before:k-rsa", "unwrap:after:k-rsa",
    "destroy:before", "destroy:after",
]


@pytest.mark.parametrize("chunk", [0, 2], ids=["one-by-one", "batched"])
@pytest.mark.parametrize("kill", KILL_POINTS)
def test_rerun_after_sigkill_reconciles_every_key_exactly_once(lab, kill, chunk):
    """chunk 2: both keys' unwraps are one batch (one durable commit of both ``before``
    entries), the way the plugin plans a run; the rerun plans them the same way."""
    lab.seed(KEYS)
    profile = lab.profile(KEYS)
    journal = lab.root / "journal.sqlite"
    rc, _, err = child(lab, profile, journal, "run-killed", kill, chunk)
    assert rc == -signal.SIGKILL, err
    before = unwraps(journal)

    rc, out, err = child(lab, profile, journal, "run-resumed", chunk=chunk)
    assert rc == 0, err
    assert {k["label"]: out[k["label"]][0] in OK for k in KEYS} == {k["label"]: True
                                                                  for k in KEYS}, out
    assert out["_left"] == []
    # one target key per label, no wrapping object left on either token
    labels = [k["label"] for k in KEYS]
    state = token_state(lab, labels)
    assert state == {"wrapping-objects": 0, "k-aes128": 1, "k-rsa": 1}, state
    # no key unwrapped twice, over both runs
    assert unwraps(journal) == {"k-aes128": 1, "k-rsa": 1}
    for label in before:  # what the killed run unwrapped, the rerun only verified
        assert out[label][0] == "already-present", out[label]
    if kill.startswith("unwrap:after:"):  # unwrapped, killed before it was verified
        label = kill.split(":")[2]
        assert ("resumed: run run-killed unwrapped it, journal seq" in out[label][1]
                and "verified now, not unwrapped twice" in out[label][1]), out[label]
    assert verify(journal) == []
    # a lock the killed run held was taken over, with an entry saying so; none is held now
    assert [r for r in lab.lock_records() if r["held"] or r["record"]["state"] != "released"
            ] == []
    j = Journal(journal)
    if kill.startswith("unwrap"):  # the killed run held one lock, or a batch's two
        assert [e["run_id"] for e in j.entries() if e["action"] == "lock-takeover"] == \
            ["run-resumed"] * (2 if chunk else 1)
    j.close()


def cleanup(lab: Any, profile: Path, journal: Path, run_id: str, *extra: str,
            anchor: bool = True) -> Any:
    """``keyparity cleanup``; ``anchor``: the journal's head signed first (journal_child's runs
    have no bundle: keyparity.evidence.anchor)."""
    reports = lab.root / "reports"
    if anchor:
        profile = lab.anchor(profile, journal, reports)
    return subprocess.run([sys.executable, "-m", "keyparity.cli", "cleanup", str(profile),
                           "--run", run_id, "--journal", str(journal), "--reports-dir",
                           str(reports), *extra],
                          env=lab.env, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_cleanup_removes_only_what_the_run_provably_created(lab):
    keys = [AES, RSA, DES3]
    lab.seed(keys)
    journal = lab.root / "journal.sqlite"
    lab.tokens({"op": "create", "token": "hsm2", "key": DES3})  # already there, not migrated
    rc, out, err = child(lab, lab.profile(keys), journal, "run-1")
    assert rc == 0, err
    assert [out[k["label"]][0] for k in keys] == ["migrated", "migrated", "failed"]  # other DES3
    # k-rsa replaced on the target by other key material under the same label
    lab.tokens({"op": "destroy", "token": "hsm2", "label": "k-rsa"},
               {"op": "create", "token": "hsm2", "key": RSA})
    src_before = lab.tokens({"op": "count", "token": "hsm1"})[0]

    result = cleanup(lab, lab.profile(keys), journal, "run-1")
    assert result.returncode == 1, result.stderr  # something was left that it cannot prove
    assert "removed: 'k-aes128' (secret_key) on hsm2 (created by run run-1" in result.stdout
    assert ("not removed: 'k-rsa' on hsm2 (journal seq" in result.stdout and "no object under "
            "the label is proven to be the one run run-1 created" in result.stdout), result.stdout
    assert "cleanup never touches the source" in result.stdout
    assert "k-des3" not in result.stdout  # run-1 never created it
    assert lab.tokens({"op": "count", "token": "hsm2", "label": "k-aes128"},
                      {"op": "count", "token": "hsm2", "label": "k-rsa"},
                      {"op": "count", "token": "hsm2", "label": "k-des3"},
                      {"op": "count", "token": "hsm1"}) == [0, 2, 1, src_before]
    assert verify(journal) == []
    j = Journal(journal)
    destroyed = [e for e in j.entries("run-1") if e["action"] == "destroy" and
                 e["phase"] == "after" and e["label"] == "k-aes128"]
    assert len(destroyed) == 1 and "keyparity cleanup" in destroyed[0]["detail"]
    j.close()
    # a second cleanup finds nothing more of the run to remove
    again = cleanup(lab, lab.profile(keys), journal, "run-1")
    assert "removed: " not in again.stdout.replace("not removed: ", "")


def test_cleanup_refuses_a_production_profile_without_confirm(lab):
    lab.seed([AES])
    journal = lab.root / "journal.sqlite"
    rc, out, err = child(lab, lab.profile([AES]), journal, "run-1")
    assert rc == 0 and out["k-aes128"][0] == "migrated", err
    prod = edit_profile(lab.profile([AES], name="prod"), as_production)
    result = cleanup(lab, prod, journal, "run-1")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "keyparity cleanup: error: prod is a production profile: add --hsm-confirm=hsm2 "
        "(clusters.target.name) to remove objects from hsm2; nothing was removed")
    assert lab.tokens({"op": "count", "token": "hsm2", "label": "k-aes128"}) == [1]
    wrong = cleanup(lab, prod, journal, "run-1", "--hsm-confirm=hsm9")
    assert "does not match the target cluster hsm2" in wrong.stderr
    assert wrong.returncode == 2 and lab.tokens(
        {"op": "count", "token": "hsm2", "label": "k-aes128"}) == [1]
    result = cleanup(lab, prod, journal, "run-1", "--hsm-confirm=hsm2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lab.tokens({"op": "count", "token": "hsm2", "label": "k-aes128"}) == [0]


@pytest.mark.parametrize("chunk", [0, 4], ids=["one-by-one", "batched"])
def test_two_concurrent_runs_migrate_each_key_exactly_once(lab, chunk):
    keys = [AES, RSA, DES3, {"label": "k-aes256", "type": "aes", "size": 256}]
    lab.seed(keys)
    profile = lab.profile(keys)
    journal = lab.root / "journal.sqlite"
    outs = outputs([start(lab, profile, journal, f"run-{i}", chunk=chunk) for i in (1, 2)])
    labels = [k["label"] for k in keys]
    for label in labels:
        statuses = sorted(o[label][0] for o in outs)
        assert statuses == ["already-present", "migrated"], (label, outs)
    assert unwraps(journal) == {label: 1 for label in labels}
    assert token_state(lab, labels) == {"wrapping-objects": 0, **{label: 1 for label in labels}}
    assert verify(journal) == []


@pytest.mark.parametrize("order", ["same", "reversed"])
@pytest.mark.parametrize("chunk", [0, 4], ids=["one-by-one", "batched"])
def test_two_runs_with_two_journals_move_each_key_once(lab, chunk, order):
    """Two runs at once, each with a journal of its own (two checkouts), both having read the
    target before either writes: the key locks beside the token directory are the same for
    both, so each key is unwrapped by one of them and proven by the other, and the target
    holds one object per label. (With the locks in the journal, both unwrapped every key.)
    ``reversed``: the second run lists the keys the other way round, so that both write at
    once, and each must see the other's new objects (SoftHSM: keyparity.hsm.lockdir)."""
    keys = [AES, RSA, DES3, {"label": "k-aes256", "type": "aes", "size": 256},
            {"label": "k-ec", "type": "ec", "curve": "P-256"}]
    lab.seed(keys)
    profiles = [lab.profile(keys, name="one"),
                lab.profile(keys[::-1] if order == "reversed" else keys, name="two")]
    gate = lab.root / "barrier"
    gate.mkdir()
    journals = [lab.root / f"journal-{i}.sqlite" for i in (1, 2)]
    outs = outputs([start(lab, profile, journal, f"run-{i}", chunk=chunk, barrier=f"{gate}:2")
                    for i, (profile, journal) in enumerate(zip(profiles, journals), 1)])
    labels = [k["label"] for k in keys]
    both = [unwraps(journal) for journal in journals]
    assert {label: sum(u.get(label, 0) for u in both) for label in labels} == \
        {label: 1 for label in labels}, both
    for label in labels:
        assert sorted(o[label][0] for o in outs) == ["already-present", "migrated"], outs
    assert token_state(lab, labels) == {"wrapping-objects": 0, **{label: 1 for label in labels}}
    assert all(verify(journal) == [] for journal in journals)


def test_a_chunk_whose_first_key_is_held_elsewhere_gives_its_other_keys_back(lab):
    """Another process holds the first key's lock, not the second's: the first key waits (a
    short wait here) and fails naming the holder; the second, locked with it for a moment, is
    given back and migrated on its own turn (it stayed 'pending' and its tests failed with an
    empty reason)."""
    from lockholder import holder, lock_folder
    keys = [AES, RSA]
    lab.seed(keys)
    profile = lab.profile(keys)
    first = lab.root / "journal.sqlite"
    other = holder(lock_folder(lab, profile), "run-elsewhere", "k-aes128")
    try:
        env = {**lab.env, "JOURNAL_CHILD_CHUNK": "2", "JOURNAL_CHILD_LOCK_WAIT": "0.2"}
        p = subprocess.Popen([sys.executable, str(CHILD), str(profile), str(first), "run-1",
                              str(lab.root)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=120)
    finally:
        other.communicate("")
    assert p.returncode == 0, err
    got = json.loads(out)
    assert got["k-aes128"][0] == "failed" and "locked by run run-elsewhere" in got["k-aes128"][1]
    assert got["k-rsa"][0] == "migrated", got
    assert unwraps(first).get("k-rsa") == 1 and "k-aes128" not in unwraps(first)


def test_suite_run_puts_the_journal_head_into_the_signed_statement(lab, suites):
    lab.seed([AES])
    profile = lab.profile([AES])
    result = run_suites(suites, profile, "-k", "migration")
    assert result.ret == 0, result.stdout.str()
    run_dir = suites.path / "reports" / "latest"
    statement = json.loads((run_dir / "statement.json").read_text())
    journal = suites.path / ".keyparity" / "journal.sqlite"
    head = Journal(journal).head()
    # nothing signed holds a host path: the journal (in the pytester directory, outside the
    # lab's profile's project) is named
    assert not journal.is_relative_to(Path(profile).parent.parent)
    assert statement["predicate"]["journal"] == {"path": "journal.sqlite", **head}
    assert head["entries"] > 0 and verify(journal) == []
    assert evidence(suites)["keys"]["k-aes128"]["migration"]["status"] == "migrated"


def test_a_batch_commits_every_before_first_then_each_after(lab):
    """Group commit: the ``before`` entries of a chunk's unwraps are one transaction (one
    fsync), written before the first unwrap is attempted; each ``after`` is its own."""
    keys = [AES, RSA, DES3]
    lab.seed(keys)
    journal = lab.root / "journal.sqlite"
    rc, out, err = child(lab, lab.profile(keys), journal, "run-1", chunk=3)
    assert rc == 0, err
    assert [out[k["label"]][0] for k in keys] == ["migrated"] * 3, out
    j = Journal(journal)
    unwrap = [(e["phase"], e["label"], e["ts"]) for e in j.entries("run-1")
              if e["action"] == "unwrap"]
    j.close()
    assert [p for p, _, _ in unwrap] == ["before"] * 3 + ["after"] * 3
    assert [label for _, label, _ in unwrap] == ["k-aes128", "k-rsa", "k-des3"] * 2
    assert len({ts for p, _, ts in unwrap if p == "before"}) == 1  # one transaction
    assert len({ts for p, _, ts in unwrap if p == "after"}) == 3
    assert unwraps(journal) == {"k-aes128": 1, "k-rsa": 1, "k-des3": 1}


def test_cleanup_proves_an_ec_private_key_by_a_signature_the_source_public_key_verifies(lab):
    """An EC private key object exposes no public point and SoftHSM has no CKA_UNIQUE_ID: the
    clean-up has the object sign a fresh challenge and verifies it with the source's public
    key, whose SHA-256 the journal's commitment holds; another EC key under the label is
    left."""
    ec_key = {"label": "k-ec", "type": "ec", "curve": "P-256"}
    other = {"label": "k-ec2", "type": "ec", "curve": "P-256"}
    keys = [ec_key, other]
    lab.seed(keys)
    journal = lab.root / "journal.sqlite"
    rc, out, err = child(lab, lab.profile(keys), journal, "run-1")
    assert rc == 0 and [out[k["label"]][0] for k in keys] == ["migrated"] * 2, (out, err)
    # k-ec2 replaced on the target by another EC key under the same label
    lab.tokens({"op": "destroy", "token": "hsm2", "label": "k-ec2"},
               {"op": "create", "token": "hsm2", "key": other})

    result = cleanup(lab, lab.profile(keys), journal, "run-1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("removed: 'k-ec' (private_key) on hsm2 (created by run run-1, journal seq"
            in result.stdout), result.stdout
    assert "proven by its commitment and a fresh proof of the source copy" in result.stdout
    assert "not removed: 'k-ec2' on hsm2 (journal seq" in result.stdout, result.stdout
    assert lab.tokens({"op": "count", "token": "hsm2", "label": "k-ec"},
                      {"op": "count", "token": "hsm2", "label": "k-ec2"}) == [0, 2]


def test_cleanup_after_a_killed_chunk_tells_nothing_written_from_another_runs_key(lab):
    """A chunk killed after its 'before' commit: the keys not yet unwrapped have nothing on the
    target (said, not an error); after a resume, their keys are the resumed run's and are left
    alone; what the killed run did create and record is removed."""
    lab.seed(KEYS)
    profile = lab.profile(KEYS)
    journal = lab.root / "journal.sqlite"
    rc, _, err = child(lab, profile, journal, "run-killed", "unwrap:after:k-aes128", chunk=2)
    assert rc == -signal.SIGKILL, err

    result = cleanup(lab, profile, journal, "run-killed")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "removed: 'k-aes128' (secret_key) on hsm2 (created by run run-killed" in result.stdout
    assert ("nothing to remove: 'k-rsa' on hsm2: the unwrap of run run-killed was interrupted "
            "(no 'after' entry) (journal seq") in result.stdout, result.stdout
    assert token_state(lab, ["k-aes128", "k-rsa"]) == {"wrapping-objects": 0, "k-aes128": 0,
                                                       "k-rsa": 0}

    rc, out, err = child(lab, profile, journal, "run-resumed", chunk=2)
    assert rc == 0 and out["k-rsa"][0] == "migrated" and out["k-aes128"][0] == "migrated", out
    again = cleanup(lab, profile, journal, "run-killed")
    assert again.returncode == 0, again.stdout + again.stderr
    assert ("left alone: 'k-rsa' on hsm2: the unwrap of run run-killed was interrupted (no "
            "'after' entry)") in again.stdout and "is run run-resumed's" in again.stdout
    # k-aes128 was removed by the first clean-up and unwrapped again by the resumed run: the
    # same key material, but not run-killed's object, so the second clean-up leaves it
    assert "already destroyed: 'k-aes128' on hsm2 (journal seq" in again.stdout, again.stdout
    assert token_state(lab, ["k-aes128", "k-rsa"]) == {"wrapping-objects": 0, "k-aes128": 1,
                                                       "k-rsa": 1}
    assert verify(journal) == []
