"""No command destroys the last copy of key material (keyparity.hsm.destruction), tried with
every destroying command on real SoftHSM tokens, the real suites and the real commands:

* ``retire --destroy`` after the target copy was swapped for another key with the SAME 3-byte
  KCV (a pair found by brute force, tests/helpers/kcv_collision.py), and after the target copy was
  deleted: the source key stays, one line says why, the other keys are destroyed;
* ``cleanup --run`` after ``retire --destroy``: the target copies are now the only ones and
  stay; ``keyparity copies`` shows every key present once;
* ``cleanup --run`` after the source key was swapped for one with the same KCV, or deleted
  without a retirement: the target copy stays;
* ``cleanup --run`` when another run's copy of the same key is under the label: which object
  is the run's own cannot be told without CKA_UNIQUE_ID (SoftHSM 2.6.1 has none), so neither
  is removed.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conftest import evidence, run_suites
from kcv_collision import colliding_pair, kcv
from test_plan import custodians, keyparity, signed_plan
from test_retire import pass_run, record, retire

AES = {"label": "k-aes", "type": "aes", "size": 256}
HMAC = {"label": "k-hmac", "type": "generic-secret", "size": 256}
EC = {"label": "k-ec", "type": "ec", "curve": "P-256"}
KEYS = [AES, HMAC, EC]


def colliding_profile(lab: Any) -> tuple[Path, bytes, bytes]:
    """k-aes on the source with a known value that has a KCV twin; k-hmac and k-ec seeded;
    two custodians sign (threshold 2)."""
    planned, twin = colliding_pair()
    assert planned != twin and kcv(planned) == kcv(twin)  # what a 3-byte check cannot tell
    lab.tokens({"op": "import-aes", "token": "hsm1", "label": "k-aes",
                "value_hex": planned.hex()})
    lab.seed([HMAC, EC])
    custodians(lab)
    signers = [{"name": n, "type": "file", "path": str(lab.root / "custodians" / f"{n}.key.pem")}
               for n in ("c1", "c2")]
    return lab.profile(KEYS, evidence={"signers": signers, "threshold": 2}), planned, twin


def put(lab: Any, token: str, label: str, value: bytes, *, replace: bool = True) -> None:
    """An AES key of ``value`` under ``label`` on ``token`` (replacing what is there)."""
    ops = [{"op": "destroy", "token": token, "label": label, "classes": ["secret"]}] \
        if replace else []
    lab.tokens(*ops, {"op": "import-aes", "token": token, "label": label,
                      "value_hex": value.hex()})


def count(lab: Any, token: str, *labels: str) -> list[int]:
    return lab.tokens(*({"op": "count", "token": token, "label": label} for label in labels))


def cleanup(lab: Any, suites: pytest.Pytester, profile: Path, run_id: str) -> Any:
    return keyparity(lab, "cleanup", str(profile), "--run", run_id, "--journal",
                     str(suites.path / ".keyparity" / "journal.sqlite"), "--reports-dir",
                     str(suites.path / "reports"))  # the run's signed head is in its bundle


def destroys(suites: pytest.Pytester, cluster: str) -> list[str]:
    """The inventory keys the journal records destroyed on ``cluster`` (any run; the wrapping
    objects a run destroys have no key label)."""
    db = sqlite3.connect(suites.path / ".keyparity" / "journal.sqlite")
    return [r[0] for r in db.execute(
        "SELECT key_label FROM entries WHERE action = 'destroy' AND phase = 'after' AND "
        "cluster = ? AND key_label IS NOT NULL ORDER BY seq", (cluster,))]


def test_retire_destroy_refuses_a_target_copy_swapped_for_a_key_with_the_same_kcv(lab, all_suites):
    suites = all_suites  # retire and cleanup act on a PASS run: every suite keyparity ships
    profile, planned, twin = colliding_profile(lab)
    plan_dir = signed_plan(lab, profile)
    run_id = pass_run(lab, suites, profile, plan_dir)
    put(lab, "hsm2", "k-aes", twin)  # same label, same 3-byte KCV, other key material
    assert lab.tokens({"op": "kcv", "token": "hsm1", "label": "k-aes"},
                      {"op": "kcv", "token": "hsm2", "label": "k-aes"}) == [kcv(planned).hex()] * 2

    done = retire(lab, suites, profile, run_id, "--destroy", f"--plan={plan_dir}")

    assert done.returncode == 1, done.stdout + done.stderr
    assert count(lab, "hsm1", "k-aes", "k-hmac", "k-ec") == [1, 0, 0]  # the real key stays
    _, doc = record(suites)
    states = {k["label"]: k for k in doc["keys"]}
    assert states["k-hmac"]["state"] == states["k-ec"]["state"] == "destroyed"
    aes = states["k-aes"]
    assert aes["state"] == "deactivated" and "destroyed" not in aes
    assert aes["detail"].startswith("the target copy is not proven now: no second copy of its key "
                                    "material is proven on hsm2 now ("), aes["detail"]
    assert "it may be the last copy; nothing destroyed" in aes["detail"]
    said = [ln for ln in done.stdout.splitlines() if ln.startswith("  k-aes:")]
    assert len(said) == 1 and "nothing destroyed" in said[0]
    assert "k-aes" not in destroys(suites, "hsm1")
    assert doc["counts"] == {"destroyed": 2, "deactivated": 1}


def test_retire_destroy_refuses_when_the_target_copy_was_deleted(lab, all_suites):
    suites = all_suites  # retire and cleanup act on a PASS run: every suite keyparity ships
    profile, _, _ = colliding_profile(lab)
    plan_dir = signed_plan(lab, profile)
    run_id = pass_run(lab, suites, profile, plan_dir)
    lab.tokens({"op": "destroy", "token": "hsm2", "label": "k-ec", "classes": ["private"]})

    done = retire(lab, suites, profile, run_id, "--destroy", f"--plan={plan_dir}")

    assert done.returncode == 1, done.stdout + done.stderr
    assert count(lab, "hsm1", "k-aes", "k-hmac", "k-ec") == [0, 0, 2]  # the pair stays whole
    _, doc = record(suites)
    ec = next(k for k in doc["keys"] if k["label"] == "k-ec")
    assert ec["detail"] == "'k-ec' is not on hsm2: the source key is the only copy; not destroyed"
    assert sorted(destroys(suites, "hsm1")) == ["k-aes", "k-hmac"]  # k-ec: neither half


def test_cleanup_after_retire_destroy_leaves_the_only_copies(lab, all_suites):
    suites = all_suites  # retire and cleanup act on a PASS run: every suite keyparity ships
    profile, _, _ = colliding_profile(lab)
    plan_dir = signed_plan(lab, profile)
    run_id = pass_run(lab, suites, profile, plan_dir)
    done = retire(lab, suites, profile, run_id, "--destroy", f"--plan={plan_dir}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert count(lab, "hsm1", "k-aes", "k-hmac", "k-ec") == [0, 0, 0]

    cleaned = cleanup(lab, suites, profile, run_id)

    # nothing went wrong: it leaves the keys, and says why, key by key
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert count(lab, "hsm2", "k-aes", "k-hmac", "k-ec") == [1, 1, 1]
    for key in KEYS:
        assert (f"left alone: {key['label']!r} on hsm2 (journal seq" in cleaned.stdout
                and f"its source key {key['label']!r} was destroyed by retire-"
                in cleaned.stdout), cleaned.stdout
    assert "this is its only copy, never removed" in cleaned.stdout
    assert destroys(suites, "hsm2") == []  # the wrapping pair: session objects, gone already
    listed = keyparity(lab, "copies", str(profile))
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for key in KEYS:
        assert f"  {key['label']}: hsm1 0, hsm2 1" in listed.stdout, listed.stdout


def test_cleanup_refuses_a_target_copy_whose_source_key_was_swapped(lab, all_suites):
    suites = all_suites  # retire and cleanup act on a PASS run: every suite keyparity ships
    profile, planned, twin = colliding_profile(lab)
    run_suites(suites, profile)
    run_id = evidence(suites)["run"]["run_id"]
    assert evidence(suites)["summary"]["verdict"] == "PASS"
    put(lab, "hsm1", "k-aes", twin)  # the source: other material, the same 3-byte KCV

    cleaned = cleanup(lab, suites, profile, run_id)

    assert cleaned.returncode == 1, cleaned.stdout + cleaned.stderr
    assert count(lab, "hsm2", "k-aes", "k-hmac", "k-ec") == [1, 0, 0]  # k-aes: the only copy
    line = next(ln for ln in cleaned.stdout.splitlines() if ln.startswith("left: 'k-aes'"))
    assert "no second copy of its key material is proven on hsm1 now" in line, line
    assert "it may be the last copy; nothing destroyed" in line
    assert "removed: 'k-hmac' (secret_key) on hsm2" in cleaned.stdout
    assert sorted(destroys(suites, "hsm2")) == ["k-ec", "k-hmac"]


def test_cleanup_refuses_a_target_copy_whose_source_key_is_gone(lab, all_suites):
    suites = all_suites  # retire and cleanup act on a PASS run: every suite keyparity ships
    profile, _, _ = colliding_profile(lab)
    run_suites(suites, profile)
    run_id = evidence(suites)["run"]["run_id"]
    lab.tokens({"op": "destroy", "token": "hsm1", "label": "k-hmac", "classes": ["secret"]})

    cleaned = cleanup(lab, suites, profile, run_id)

    assert cleaned.returncode == 1, cleaned.stdout + cleaned.stderr
    assert count(lab, "hsm2", "k-aes", "k-hmac", "k-ec") == [0, 1, 0]
    assert ("'k-hmac' is not on hsm1 and no retirement of it is journaled: this may be the "
            "last copy of the key; nothing removed") in cleaned.stdout, cleaned.stdout


def test_cleanup_refuses_when_another_runs_copy_has_the_same_material(lab, all_suites):
    suites = all_suites  # retire and cleanup act on a PASS run: every suite keyparity ships
    profile, planned, _ = colliding_profile(lab)
    run_suites(suites, profile)
    run_id = evidence(suites)["run"]["run_id"]
    put(lab, "hsm2", "k-aes", planned, replace=False)  # another run's copy: the same material
    assert count(lab, "hsm2", "k-aes") == [2]

    cleaned = cleanup(lab, suites, profile, run_id)

    assert cleaned.returncode == 1, cleaned.stdout + cleaned.stderr
    assert count(lab, "hsm2", "k-aes") == [2]  # neither copy removed
    assert (f"2 objects under the label hold the key material run {run_id} unwrapped (another "
            "run's copy of the same key, or more): which one is its own cannot be told, nothing "
            "removed") in cleaned.stdout, cleaned.stdout
    assert "k-aes" not in destroys(suites, "hsm2")
    # and the next run says so too: two objects under one label fail that key
    run_suites(suites, profile)
    doc = evidence(suites)
    assert doc["summary"]["verdict"] == "FAIL"
    assert doc["keys"]["k-aes"]["verdict"] == "failed"


def test_a_retirement_of_an_earlier_key_of_the_label_does_not_hold_back_a_later_run(lab, all_suites):
    """cleanup reads the retirements after the unwrap it would undo: a key of the same label
    retired before (an earlier wave, or the demo run twice) is another key."""
    suites = all_suites  # retire and cleanup act on a PASS run: every suite keyparity ships
    profile, planned, _ = colliding_profile(lab)
    plan_dir = signed_plan(lab, profile)
    first = pass_run(lab, suites, profile, plan_dir)
    assert retire(lab, suites, profile, first, "--destroy",
                  f"--plan={plan_dir}").returncode == 0
    lab.tokens({"op": "destroy", "token": "hsm2", "label": "k-aes", "classes": ["secret"]})
    put(lab, "hsm1", "k-aes", planned, replace=False)  # k-aes on the source again
    signers = [{"name": n, "type": "file", "path": str(lab.root / "custodians" / f"{n}.key.pem")}
               for n in ("c1", "c2")]  # cleanup acts only on entries a signed head covers
    again = lab.profile([AES], name="again", evidence={"signers": signers, "threshold": 2})
    run_suites(suites, again)
    later = evidence(suites)["run"]["run_id"]
    assert evidence(suites)["keys"]["k-aes"]["migration"]["status"] == "migrated"

    cleaned = cleanup(lab, suites, again, later)

    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert "removed: 'k-aes' (secret_key) on hsm2" in cleaned.stdout, cleaned.stdout
    assert count(lab, "hsm1", "k-aes") == [1] and count(lab, "hsm2", "k-aes") == [0]
