"""``keyparity retire`` (issue 16): after a PASS run that followed a signed plan, the signed
retirement record of the source keys, and with ``--destroy`` exactly the planned source keys
removed, each destroy journaled and proven; refused after a FAIL or PARTIAL run, or in
production without ``--hsm-confirm``. Real SoftHSM tokens, the real suites."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conftest import as_production, evidence, run_suites
from test_bad_input import counts, edit_profile, spy_logins
from test_plan import KEYS, keyparity, seeded_profile, signed_plan, spied

CUSTODIAN_KEYS = ("c1", "c2")


@pytest.fixture
def suites(all_suites: pytest.Pytester) -> pytest.Pytester:
    """Every suite keyparity ships: these tests need a PASS (keyparity.evidence.verdict)."""
    return all_suites


def pass_run(lab: Any, suites: pytest.Pytester, profile: Path, plan_dir: Path,
             *args: str) -> str:
    result = run_suites(suites, profile, f"--hsm-plan={plan_dir}", *args)
    doc = evidence(suites)
    assert doc["summary"]["verdict"] == "PASS", result.stdout.str()
    return doc["run"]["run_id"]


PEOPLE = ("--operator", "Olga Operator", "--witness", "Wim Witness", "--witness", "Wu Witness")


def retire(lab: Any, suites: pytest.Pytester, profile: Path, run_id: str, *args: str,
           people: tuple[str, ...] = PEOPLE) -> Any:
    return keyparity(lab, "retire", str(profile), "--run", run_id,
                     "--reports-dir", str(suites.path / "reports"),
                     "--journal", str(suites.path / ".keyparity" / "journal.sqlite"), *args,
                     *people)


def record(suites: pytest.Pytester) -> tuple[Path, dict[str, Any]]:
    [out] = sorted((suites.path / "reports").glob("retire-*"))
    return out, json.loads((out / "retirement.json").read_text())


def verify(lab: Any, directory: Path) -> Any:
    keys = [a for n in CUSTODIAN_KEYS
            for a in ("--key", str(lab.root / "custodians" / f"{n}.pub.pem"))]
    return keyparity(lab, "verify", str(directory), *keys)


def labels_on(lab: Any, token: str) -> dict[str, int]:
    return dict(zip([k["label"] for k in KEYS] + ["k-other"], lab.tokens(
        *({"op": "count", "token": token, "label": k["label"]} for k in [*KEYS, {"label": "k-other"}]))))


def test_retire_destroy_removes_exactly_the_planned_source_keys(lab, suites):
    lab.seed([{"label": "k-other", "type": "aes", "size": 256}])  # excluded: not the plan's
    profile = seeded_profile(lab)
    plan_dir = signed_plan(lab, profile)
    run_id = pass_run(lab, suites, profile, plan_dir)
    target_before = labels_on(lab, "hsm2")

    done = retire(lab, suites, profile, run_id, "--destroy", f"--plan={plan_dir}")

    assert done.returncode == 0, done.stdout + done.stderr
    assert labels_on(lab, "hsm1") == {"k-aes-known": 0, "k-hmac": 0, "k-rsa": 0, "k-ec": 0,
                                      "k-other": 1}
    assert labels_on(lab, "hsm2") == target_before  # the target is never touched
    out, doc = record(suites)
    assert doc["retires_run"] == run_id and doc["destroy"] is True
    assert doc["plan"]["sha256"] == evidence(suites)["plan"]["sha256"]
    assert {k["label"]: k["state"] for k in doc["keys"]} == {k["label"]: "destroyed" for k in KEYS}
    for key in doc["keys"]:
        assert key["destroyed"]["by_label"] == 0 and key["destroyed"]["by_id"] in (
            0, "no CKA_ID: proven by label only")
        # SP 800-57 Part 1 5.3: active -> deactivated -> destroyed, each at its own time
        assert [(c["from"], c["to"]) for c in key["states"]] == [
            ("active", "deactivated"), ("deactivated", "destroyed")]
        assert key["states"][0]["at"] == key["deactivated_at"] <= key["states"][1]["at"]
    assert doc["people"] == {"operator": "Olga Operator",
                             "witnesses": ["Wim Witness", "Wu Witness"]}
    assert doc["verdict"] == "RETIRED" and doc["held_by_backups"] is None
    assert doc["backups"]["read"] is False  # the lab's source has no aws block: said
    checked = verify(lab, out)
    assert checked.returncode == 0, checked.stdout
    assert "signed verdict: RETIRED" in checked.stdout
    journal = sqlite3.connect(suites.path / ".keyparity" / "journal.sqlite")
    destroys = journal.execute("SELECT phase, key_label, cluster FROM entries WHERE action = "
                               "'destroy' AND run_id = ? ORDER BY seq", (out.name,)).fetchall()
    assert {(p, c) for p, _, c in destroys} == {("before", "hsm1"), ("after", "hsm1")}
    assert sorted({k for _, k, _ in destroys}) == sorted(k["label"] for k in KEYS)
    assert len(destroys) == 2 * (len(KEYS) + 2)  # a pair's private and public objects each
    # each deactivation journaled: a write where usages were cleared, a note of its time where
    # nothing was left to clear (an EC or HMAC key keeps only sign, for its proof)
    deactivations = dict(journal.execute(
        "SELECT key_label, phase FROM entries WHERE action = 'deactivate' AND phase IN "
        "('after', 'note') AND run_id = ?", (out.name,)).fetchall())
    assert deactivations == {k["label"]: "after" if k["deactivation"]["cleared"] else "note"
                             for k in doc["keys"]}
    assert deactivations["k-hmac"] == "note" and deactivations["k-aes-known"] == "after"


def test_retire_without_destroy_writes_only_the_signed_record(lab, suites):
    profile = seeded_profile(lab)
    run_id = pass_run(lab, suites, profile, signed_plan(lab, profile))
    before = counts(lab)
    done = retire(lab, suites, profile, run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert counts(lab) == before
    out, doc = record(suites)
    # deactivated on the token (SP 800-57 Part 1 5.3.4): the usages that apply protection are
    # cleared and read back, but the one the strong proof before destruction needs (an EC or
    # HMAC key proves its material only by signing), which the record names as kept
    assert {k["state"] for k in doc["keys"]} == {"deactivated"}
    assert {k["state_change"]["to"] for k in doc["keys"]} == {"deactivated"}
    by = {k["label"]: k for k in doc["keys"]}
    assert "encrypt" not in by["k-aes-known"]["permits"]   # it no longer encrypts on hsm1
    assert "encrypt" in by["k-aes-known"]["deactivation"]["cleared"]
    assert by["k-ec"]["permits"] == ["sign"] and by["k-hmac"]["permits"] == ["sign"]
    assert set(by["k-hmac"]["deactivation"]["kept"]) == {"sign"}
    assert doc["verdict"] == "DEACTIVATED"
    # each key proven now against the run's commitment (>= 128 bits over its challenge)
    assert all(k["identity"]["sha256"] and k["identity"]["bits"] >= 128 for k in doc["keys"])
    assert verify(lab, out).returncode == 0


def _refused(done: Any, suites: pytest.Pytester, lab: Any, before: Any) -> str:
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stdout + done.stderr
    assert counts(lab) == before
    assert not list((suites.path / "reports").glob("retire-*"))
    return lines[0]


def test_retire_refuses_after_a_failed_run(lab, suites):
    profile = seeded_profile(lab)
    plan_dir = signed_plan(lab, profile)
    lab.tokens({"op": "create", "token": "hsm2", "label": "k-hmac",  # other material there
                "key": {"label": "k-hmac", "type": "generic-secret", "size": 256}})
    run_suites(suites, profile, f"--hsm-plan={plan_dir}")
    doc = evidence(suites)
    assert doc["summary"]["verdict"] == "FAIL"
    before = counts(lab)
    line = _refused(retire(lab, suites, profile, doc["run"]["run_id"], "--destroy",
                           f"--plan={plan_dir}"), suites, lab, before)
    assert line.startswith(f"keyparity retire: error: run {doc['run']['run_id']} ended FAIL, "
                           "not PASS"), line


def test_retire_refuses_after_a_partial_run(lab, suites):
    profile = seeded_profile(lab)
    plan_dir = signed_plan(lab, profile)
    run_suites(suites, profile, f"--hsm-plan={plan_dir}", "-k", "k-rsa")
    doc = evidence(suites)
    assert doc["summary"]["verdict"] == "PARTIAL"
    before = counts(lab)
    line = _refused(retire(lab, suites, profile, doc["run"]["run_id"], "--destroy",
                           f"--plan={plan_dir}"), suites, lab, before)
    assert "ended PARTIAL, not PASS" in line


def test_destroy_needs_the_plan_the_run_followed_and_production_needs_confirm(lab, suites):
    profile = seeded_profile(lab)
    plan_dir = signed_plan(lab, profile)
    run_id = pass_run(lab, suites, profile, plan_dir)
    before = counts(lab)
    no_plan = retire(lab, suites, profile, run_id, "--destroy")
    assert no_plan.returncode == 2 and "--destroy needs --plan DIR" in no_plan.stderr
    edit_profile(profile, as_production)
    prod = retire(lab, suites, profile, run_id, "--destroy", f"--plan={plan_dir}")
    assert prod.returncode == 2, prod.stderr
    assert prod.stderr.strip() == (
        "keyparity retire: error: lab is a production profile: add --hsm-confirm=hsm1 "
        "(clusters.source.name) to destroy source keys; nothing was destroyed")
    assert counts(lab) == before
    # confirmed, a production profile still needs a deactivation period before --destroy
    period = retire(lab, suites, profile, run_id, "--destroy", f"--plan={plan_dir}",
                    "--hsm-confirm=hsm1")
    assert period.returncode == 2, period.stderr
    assert ("retirement.deactivation_days: a production profile gives the days a key stays "
            "deactivated before it may be destroyed") in period.stderr
    assert counts(lab) == before


def test_destroy_before_the_deactivation_period_ends_is_refused_with_the_date(lab, suites):
    profile = seeded_profile(lab, retirement={"deactivation_days": 3})
    plan_dir = signed_plan(lab, profile)
    run_id = pass_run(lab, suites, profile, plan_dir)
    first = retire(lab, suites, profile, run_id)  # deactivates; the period starts now
    assert first.returncode == 0, first.stdout + first.stderr
    _, deactivated = record(suites)
    at = {k["label"]: k["deactivated_at"] for k in deactivated["keys"]}

    source_before = labels_on(lab, "hsm1")

    early = retire(lab, suites, profile, run_id, "--destroy", f"--plan={plan_dir}")

    assert early.returncode == 1, early.stdout + early.stderr
    assert labels_on(lab, "hsm1") == source_before  # nothing destroyed
    assert all(source_before[k["label"]] for k in KEYS)
    out = sorted((suites.path / "reports").glob("retire-*"))[-1]
    doc = json.loads((out / "retirement.json").read_text())
    assert doc["verdict"] == "INCOMPLETE"
    for key in doc["keys"]:
        assert key["state"] == "deactivated"
        # the deactivation keeps its own time (the first retire's), and the refusal names the
        # day the period ends
        assert key["deactivated_at"] == at[key["label"]]
        ends = (dt.datetime.fromisoformat(at[key["label"]]) + dt.timedelta(days=3)).isoformat()
        assert key["detail"].startswith(f"not destroyed: deactivated {at[key['label']]}, its "
                                        "deactivation period (3 days, "
                                        "retirement.deactivation_days) ends " + ends), key


@pytest.mark.parametrize("people, said", [
    ((), "retire needs --operator NAME"),
    (("--operator", "Olga Operator"), "retire needs --witness NAME"),
    (("--operator", "Olga Operator", "--witness", "Olga Operator"),
     "Olga Operator is named both operator and witness"),
])
def test_retire_needs_an_operator_and_a_witness(lab, suites, people, said):
    profile = seeded_profile(lab)
    plan_dir = signed_plan(lab, profile)
    run_id = pass_run(lab, suites, profile, plan_dir)
    before = counts(lab)
    for extra in ((), ("--destroy", f"--plan={plan_dir}")):
        done = retire(lab, suites, profile, run_id, *extra, people=people)
        assert done.returncode == 2 and said in done.stderr, done.stdout + done.stderr
        assert "nothing was changed" in done.stderr
        assert counts(lab) == before
        assert not list((suites.path / "reports").glob("retire-*"))


def test_retire_destroy_logs_in_once_per_cluster(lab, suites):
    profile, log = spied(lab)
    plan_dir = signed_plan(lab, profile)
    run_id = pass_run(lab, suites, profile, plan_dir)
    log.unlink()
    done = retire(lab, suites, profile, run_id, "--destroy", f"--plan={plan_dir}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(spy_logins(log)) == sorted([(lab.pins["hsm1"].encode(), "CKR_OK"),
                                              (lab.pins["hsm2"].encode(), "CKR_OK")])
