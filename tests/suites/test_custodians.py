"""Custodians are people: the run signs its bundle with the operator's key only, each custodian
countersigns it apart (``keyparity sign``, with their acknowledgement reference), certificates
from the organisation's CA name who signed, and the bundle carries its profile, plan, journal
rows and signers' certificates. Real SoftHSM tokens, the real suites, the real commands."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from conftest import run_suites
from keyparity.attest.custodians import file_custodian, person_certificate
from keyparity.attest.identities import pem
from keyparity.trust import pki
from test_bundle import assert_no_pins
from test_plan import KEYS, keyparity, make_plan, seeded_profile
from test_retire import pass_run, record, retire

PEOPLE = {"op": ("Olivia Operator", "olivia@bank.example"),
          "c1": ("Carol Custodian", "carol@bank.example"),
          "c2": ("Dan Custodian", "dan@bank.example")}


@pytest.fixture
def suites(all_suites: pytest.Pytester) -> pytest.Pytester:
    """Every suite keyparity ships: a retirement needs a PASS."""
    return all_suites


def organisation(lab: Any, certify: dict[str, str] | None = None) -> Path:
    """The org CA (its certificate's path) and a key and certificate per person in
    lab/custodians; ``certify``: person -> whose key their certificate holds (default: own)."""
    ca, ca_key = pki.make_ca(pki.subject("Bank signing CA", organization="Bank"))
    folder = lab.root / "custodians"
    for name in PEOPLE:
        file_custodian(folder, name)
    for name, (cn, email) in PEOPLE.items():
        holder = (certify or {}).get(name, name)
        public = load_pem_public_key((folder / f"{holder}.pub.pem").read_bytes())
        (folder / f"{name}.crt").write_bytes(pem(person_certificate(
            public, ca, ca_key, cn, email, organization="Bank")))
    (folder / "ca.crt").write_bytes(pem(ca))
    return folder / "ca.crt"


def people_profile(lab: Any, certify: dict[str, str] | None = None) -> tuple[Path, Path]:
    seeded_profile(lab)  # the keys on hsm1
    ca = organisation(lab, certify)
    folder = lab.root / "custodians"
    signers = [{"name": n, "type": "file", "path": str(folder / f"{n}.key.pem"),
                "certificate": str(folder / f"{n}.crt")} for n in PEOPLE]
    return lab.profile(KEYS, evidence={"operator": "op", "threshold": 3,
                                       "signers": signers}), ca


def countersign(lab: Any, directory: Path, profile: Path, name: str, ack: str) -> None:
    done = keyparity(lab, "sign", str(directory), "--profile", str(profile), "--signer", name,
                     "--ack", ack)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"as {name}, acknowledgement {ack}" in done.stdout


def verify(lab: Any, directory: Path, ca: Path) -> Any:
    return keyparity(lab, "verify", str(directory), "--ca", str(ca))


def test_the_operator_signs_and_each_custodian_countersigns_apart(lab, suites):
    profile, ca = people_profile(lab)
    plan_dir = make_plan(lab, profile, "--signer", "op")
    for name in ("c1", "c2"):
        assert keyparity(lab, "plan", "sign", str(plan_dir), "--profile", str(profile),
                         "--signer", name).returncode == 0
    run_id = pass_run(lab, suites, profile, plan_dir)
    run_dir = suites.path / "reports" / run_id
    envelope = json.loads((run_dir / "evidence.dsse.json").read_text())
    predicate = json.loads((run_dir / "statement.json").read_text())["predicate"]
    # the run's process signs with the operator's key alone
    assert len(envelope["signatures"]) == 1
    assert (predicate["operator"], predicate["signed_by"]) == ("op", ["op"])
    before = verify(lab, run_dir, ca)
    assert before.returncode == 1 and "no signature by c1" in before.stdout, before.stdout
    for name in ("c1", "c2"):  # apart: one command, one signer each
        countersign(lab, run_dir, profile, name, f"ACK-{name}")
    after = verify(lab, run_dir, ca)
    assert after.returncode == 0, after.stdout + after.stderr
    out = after.stdout
    for name, (cn, email) in PEOPLE.items():  # who signed, from the certificates
        assert f"    {name}: {cn} <{email}> (certificate by CN=Bank signing CA,O=Bank)" in out
    assert "ack ACK-c1" in out and "ack ACK-c2" in out
    assert "3 in envelope, 3 distinct person(s)" in out
    assert_inside(lab, run_dir, predicate, run_id, plan_dir, ca)
    assert_no_pins(lab, run_dir)

    # the retirement record: signed by the operator, countersigned the same way, and it
    # carries the journal's head
    done = retire(lab, suites, profile, run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    out_dir, doc = record(suites)
    for name in ("c1", "c2"):
        countersign(lab, out_dir, profile, name, f"ACK-{name}")
    assert verify(lab, out_dir, ca).returncode == 0
    retired = json.loads((out_dir / "statement.json").read_text())["predicate"]
    assert doc["journal"]["head"] == retired["journal"]["head"]
    assert doc["journal"]["last_seq"] >= predicate["contents"]["journal"]["last_seq"]


def assert_inside(lab: Any, run_dir: Path, predicate: dict[str, Any], run_id: str,
                  plan_dir: Path, ca: Path) -> None:
    """The profile, the plan, the journal's rows and the signers' certificates are inside,
    signed; each one removed makes the bundle fail verification."""
    contents = predicate["contents"]
    assert (run_dir / contents["plan"]["file"]).read_bytes() == (plan_dir / "plan.json"
                                                                 ).read_bytes()
    rows = json.loads((run_dir / contents["journal"]["file"]).read_text())
    assert rows["rows"] and {r["run_id"] for r in rows["rows"]} == {run_id}
    assert {r["action"] for r in rows["rows"]} >= {"unwrap"}
    assert rows["head"]["head"] == contents["journal"]["head"] == predicate["journal"]["head"]
    assert [s["kind"] for s in contents["signers"]] == ["certificate"] * 3
    for name in (contents["profile"]["file"], contents["plan"]["file"],
                 contents["journal"]["file"], contents["signers"][1]["file"]):
        kept = run_dir.parent / "kept"
        shutil.move(run_dir / name, kept)
        try:
            result = verify(lab, run_dir, ca)
            assert result.returncode == 1 and f"missing: {name}" in result.stdout, name
        finally:
            shutil.move(kept, run_dir / name)


def test_a_certificate_for_another_key_stops_the_run_before_it_starts(lab, suites):
    """The operator's certificate holds c1's key: it names nobody as the operator, and a run
    that would sign with it does not start; c1's holds the operator's key: c1 cannot
    countersign with it."""
    profile, _ = people_profile(lab, certify={"op": "c1", "c1": "op"})
    result = run_suites(suites, profile)
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert result.ret == 4 and len(errors) == 1, result.stdout.str() + result.stderr.str()
    assert "evidence signer op: certificate" in errors[0]
    assert "holds another public key" in errors[0]
    refused = keyparity(lab, "sign", str(lab.root), "--profile", str(profile), "--signer", "c1")
    assert refused.returncode == 1 and "evidence signer c1: certificate" in refused.stderr
    assert "holds another public key" in refused.stderr
    assert lab.tokens({"op": "count", "token": "hsm2"}) == [0]
    assert not (suites.path / "reports").exists()
