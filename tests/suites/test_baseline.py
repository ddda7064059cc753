"""Baseline and re-verify (issue 14) on real SoftHSM tokens: a signed baseline of hsm1, then a
re-verify of a faithful copy (a restore from backup) passes, while other key material under
the same label, a flipped attribute, a missing key, an extra key, and a tampered or unsigned
baseline each go red naming the key or the file."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import HELPERS, REPO, evidence, run_suites
from jsonschema import Draft202012Validator


from keyparity.evidence import verdict
from keyparity.attest.custodians import file_custodian
from keyparity.hsm.softhsm import restore_copy

SCHEMA = Draft202012Validator(json.loads(
    (REPO / "keyparity" / "schemas" / "evidence.schema.json")
    .read_text()))

KEYS = [
    {"label": "k-aes128", "type": "aes", "size": 128},
    {"label": "k-des3", "type": "des3"},
    {"label": "k-hmac", "type": "generic-secret", "size": 256},
    {"label": "k-rsa", "type": "rsa", "size": 2048},
    {"label": "k-ec", "type": "ec", "curve": "P-256"},
]


@pytest.fixture
def suites(all_suites: pytest.Pytester) -> pytest.Pytester:
    """Every suite keyparity ships: these tests need a PASS (keyparity.evidence.verdict)."""
    return all_suites


def _cluster(lab: Any, name: str) -> dict[str, Any]:
    return {"name": name, "module": lab.module, "token_label": "hsm1",
            "pin": f"file:{lab.root / 'hsm1.pin'}", "mode": "NON_FIPS"}


def _signers(lab: Any) -> dict[str, Any]:
    file_custodian(lab.root, "auditor")
    return {"signers": [{"name": "auditor", "type": "file",
                         "path": str(lab.root / "auditor.key.pem")}]}


def take_baseline(lab: Any, suites: pytest.Pytester, signed: bool = True) -> Path:
    """A baseline run of hsm1; returns its run directory."""
    profile = lab.profile(KEYS, name="base", clusters={"source": _cluster(lab, "hsm1")},
                          migration={"mode": "baseline"}, compliance=None,
                          evidence=_signers(lab) if signed else None)
    result = run_suites(suites, profile)
    assert result.ret == 0, result.stdout.str()
    doc = evidence(suites)
    assert doc["summary"]["verdict"] == "PASS", doc["summary"]
    SCHEMA.validate(doc)
    return suites.path / "reports" / doc["run"]["run_id"]


def reverify(lab: Any, suites: pytest.Pytester, base: Path, conf: Path | None = None
             ) -> pytest.RunResult:
    top: dict[str, Any] = {"clusters": {"target": _cluster(lab, "hsm1-now")},
                           "migration": {"mode": "reverify", "baseline": str(base)},
                           "compliance": None, "evidence": _signers(lab)}
    if conf is not None:
        top["module_env"] = {"SOFTHSM2_CONF": str(conf)}
    return run_suites(suites, lab.profile(KEYS, name="now", **top))


def red(suites: pytest.Pytester) -> dict[str, str]:
    """The failed tests of the newest run, by function[params], with their messages."""
    return {t["nodeid"].rsplit("::", 1)[-1]: t.get("message", "")
            for t in evidence(suites)["tests"] if t["outcome"] in ("failed", "error")}


def test_a_faithful_restored_copy_reverifies_pass(lab, suites):
    lab.seed(KEYS)
    base = take_baseline(lab, suites)
    raw = (base / "baseline.json").read_bytes()
    data = json.loads(raw)
    assert sorted(data["keys"]) == sorted(k["label"] for k in KEYS)
    # the statement covers baseline.json; no PIN and no key material in it
    statement = json.loads((base / "statement.json").read_text())
    assert {s["name"] for s in statement["subject"]} >= {"baseline.json", "evidence.json"}
    assert lab.pins["hsm1"].encode() not in raw
    aes = data["keys"]["k-aes128"]
    assert {r["vector"] for r in aes["known_answers"]} == {"aes-ecb", "aes-cbc", "aes-ctr",
                                                           "aes-gcm"}
    assert all(r["ok"] for r in aes["known_answers"]) and aes["public_key"] is None
    assert data["keys"]["k-rsa"]["public_key"] and len(data["census"]["objects"]) >= len(KEYS)
    # each key's material is committed (>= 128 bits of token output over a challenge kept in
    # the baseline), each census object's over the census's challenge; never a 3-byte KCV
    assert aes["identity"]["method"] == "aes-ecb-decrypt" and aes["identity"]["bits"] == 256
    assert len(bytes.fromhex(aes["identity"]["challenge"])) == 32
    assert data["keys"]["k-rsa"]["identity"]["public_key"] == data["keys"]["k-rsa"]["public_key"]
    assert len(bytes.fromhex(data["census"]["challenge"])) == 32
    assert all("sha256" in o["material"] for o in data["census"]["objects"]
               if o["class"] != "private" or o["key_type"] != "ec")

    conf = restore_copy(lab.root, "hsm1", lab.root / "restored")
    result = reverify(lab, suites, base, conf)

    assert result.ret == 0, result.stdout.str()
    doc = evidence(suites)
    SCHEMA.validate(doc)
    assert doc["summary"]["verdict"] == "PASS"
    assert doc["baseline"]["sha256"] == hashlib.sha256(raw).hexdigest()
    run_dir = suites.path / "reports" / doc["run"]["run_id"]
    html = (run_dir / "report.html").read_text()
    assert f"the baseline of <code>{base.name}</code>" in html and doc["baseline"]["sha256"] in html
    assert doc["baseline"]["run_id"] == base.name
    assert doc["summary"]["headline"].startswith(
        f"All {len(KEYS)} keys on hsm1-now are unchanged since the baseline of {base.name}, ")
    checks = doc["keys"]["k-ec"]["reverify"]["known_answers"]
    assert checks and all(c["ok"] for c in checks)

    # with two workers: the controller verifies the baseline, each worker checks its digest
    result = run_suites(suites, lab.root / "now.yaml", "-n", "2")
    assert result.ret == 0, result.stdout.str()
    assert evidence(suites)["summary"]["verdict"] == "PASS"


def test_a_worker_refuses_a_baseline_changed_after_the_controller_verified_it(tmp_path):
    from types import SimpleNamespace

    from keyparity.evidence.baseline import BaselineError, load_verified

    (tmp_path / "baseline.json").write_text('{"kind": "keyparity-baseline", "version": 2, '
                                            '"verdict": "PASS", "run": {"run_id": "r"}}')
    raw = (tmp_path / "baseline.json").read_bytes()
    profile: Any = SimpleNamespace(baseline=tmp_path)
    assert load_verified(profile, hashlib.sha256(raw).hexdigest()).run_id == "r"
    with pytest.raises(BaselineError, match="changed after the run verified it"):
        load_verified(profile, "0" * 64)


@pytest.mark.parametrize(("change", "expect"), [
    pytest.param([{"op": "destroy", "token": "hsm1", "label": "k-aes128", "classes": ["secret"]},
                  {"op": "create", "token": "hsm1", "label": "k-aes128",
                   "key": {"label": "k-aes128", "type": "aes", "size": 128}}],
                 {"test_key_check_value_is_unchanged[k-aes128]": "holds other key material",
                  # a new object: its CKA_UNIQUE_ID (and the like) differ too
                  "test_attributes_are_identical[k-aes128]": "changed since the baseline",
                  "test_known_answers_still_hold[k-aes128]": "k-aes128",
                  "test_census_matches_the_baseline": "changed: 'k-aes128'"},
                 id="other-material-same-label"),
    pytest.param([{"op": "set", "token": "hsm1", "label": "k-hmac", "class": "secret",
                   "attribute": "derive", "value": True}],
                 {"test_attributes_are_identical[k-hmac]": "derive: was False, is True"},
                 id="flipped-attribute"),
    pytest.param([{"op": "destroy", "token": "hsm1", "label": "k-rsa",
                   "classes": ["private", "public"]}],
                 {**{f"{test}[k-rsa]": "'k-rsa' (rsa) is not on hsm1-now" for test in (
                     "test_key_is_still_there", "test_key_check_value_is_unchanged",
                     "test_attributes_are_identical", "test_known_answers_still_hold",
                     "test_owner_and_sharing_are_unchanged")},
                  "test_census_matches_the_baseline": "lost: 'k-rsa'"},
                 id="missing-key"),
    pytest.param([{"op": "create", "token": "hsm1", "label": "k-extra",
                   "key": {"label": "k-extra", "type": "aes", "size": 256}}],
                 {"test_census_matches_the_baseline": "added: 'k-extra'"},
                 id="extra-key"),
])
def test_a_changed_cluster_goes_red_naming_the_key(lab, suites, change, expect):
    lab.seed(KEYS)
    base = take_baseline(lab, suites)
    lab.tokens(*change)

    result = reverify(lab, suites, base)

    assert result.ret == 1, result.stdout.str()
    doc = evidence(suites)
    SCHEMA.validate(doc)
    assert doc["summary"]["verdict"] == "FAIL"
    got = red(suites)
    for test, words in expect.items():
        assert test in got, (test, sorted(got))
        assert words in got[test], (test, got[test])
    # nothing else failed: every other key is still proven
    assert set(got) == set(expect), sorted(set(got) - set(expect))


def test_a_reverify_profile_that_omits_a_baseline_key_is_refused_naming_it(lab, suites):
    """It said "All 3 keys ... unchanged" against a baseline of 4: a re-verify proves every
    key of its baseline, so one left out of the profile stops the run, named."""
    lab.seed(KEYS)
    base = take_baseline(lab, suites)
    fewer = [k for k in KEYS if k["label"] != "k-rsa"]
    result = run_suites(suites, lab.profile(fewer, name="now", migration={
        "mode": "reverify", "baseline": str(base)}, compliance=None,
        clusters={"target": _cluster(lab, "hsm1-now")}, evidence=_signers(lab),
        exclude=[{"label": "k-rsa", "reason": "left out"}]))
    assert result.ret == 4, result.stdout.str()
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and (f"keys: the baseline of {base.name} recorded {len(KEYS)} keys "
                                 "and the profile does not list 1 of them (k-rsa)") in errors[0]
    assert len(list((suites.path / "reports").glob("2*"))) == 1  # the baseline's only


def test_a_tampered_baseline_is_refused_and_nothing_runs(lab, suites):
    lab.seed(KEYS)
    base = take_baseline(lab, suites)
    data = json.loads((base / "baseline.json").read_text())
    data["keys"]["k-aes128"]["identity"]["sha256"] = "00" * 32
    (base / "baseline.json").write_text(json.dumps(data))
    runs = sorted((suites.path / "reports").iterdir())

    result = reverify(lab, suites, base)

    assert result.ret == 4, result.stdout.str()  # a usage error: nothing ran
    err = result.stderr.str()
    assert "migration.baseline: the baseline" in err and "does not verify" in err
    assert "baseline.json" in err
    assert sorted((suites.path / "reports").iterdir()) == runs  # no run directory written


def test_an_unsigned_baseline_is_refused(lab, suites):
    lab.seed(KEYS)
    base = take_baseline(lab, suites, signed=False)

    result = reverify(lab, suites, base)

    assert result.ret == 4, result.stdout.str()
    assert "does not verify" in result.stderr.str()
    assert "unsigned" in result.stderr.str()


def test_a_profile_names_the_clusters_its_mode_needs(lab):
    from keyparity.errors import KeyparityError
    from keyparity.profile import load_profile

    both = lab.profile(KEYS, name="both", migration={"mode": "baseline"})
    with pytest.raises(KeyparityError, match="clusters.target.*not allowed with "
                                             "migration.mode baseline"):
        load_profile(both)
    none = lab.profile(KEYS, name="none", clusters={"target": _cluster(lab, "x")},
                       migration={"mode": "reverify"}, compliance=None)
    with pytest.raises(KeyparityError, match="migration.baseline.*required with "
                                             "migration.mode reverify"):
        load_profile(none)
    empty = lab.profile(KEYS, name="empty", clusters={"target": _cluster(lab, "x")},
                        migration={"mode": "reverify", "baseline": str(lab.root)},
                        compliance=None)
    with pytest.raises(KeyparityError, match="holds no baseline.json"):
        load_profile(empty)


def test_a_reverify_past_the_rollback_deadline_says_so_first_in_its_headline(tmp_path):
    """The rollback check (keyparity.cloudhsm.lineage.check_rollback, tested with botocore's
    Stubber in test_lineage.py) passes once the deadline is past, but the headline says it."""
    import datetime as dt

    from keyparity.cloudhsm import lineage
    from keyparity.evidence.facts import Evidence
    from keyparity.profile import KeySpec

    state = lineage.ClusterState(
        cluster_id="cluster-abc", region="us-east-1", state="ACTIVE", hsm_type="hsm2m.medium",
        mode="FIPS", rollback_expiration="2026-11-01T00:00:00+00:00", source_backup_id=None,
        hsms=(), backups=())
    check = lineage.check_rollback(state, dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc))
    assert check.ok and check.warnings
    ev = Evidence(tmp_path, {"run_id": "r", "migration_mode": "reverify"})
    ev.doc["clusters"] = {"target": {"name": "hsm-now"}}
    ev.doc["baseline"] = {"run_id": "20261120T000000Z-abcdef", "date": "2026-11-20", "sha256": "0" * 64}
    spec = KeySpec(index=0, label="k", target_label="k", type="aes", size=128, curve=None,
                   attributes={}, vectors=("aes-ecb",), disposition="migrate",
                   expected_differences={})
    ev.add_inventory([spec])
    for fn in ("test_key_is_still_there", "test_key_check_value_is_unchanged",
               "test_attributes_are_identical", "test_known_answers_still_hold"):
        ev.add_report(f"suites/test_reverify.py::{fn}[k]", "k", "passed", "call", 0.0, None, [])
    ev.add_report("suites/test_reverify.py::test_rollback_window", None, "passed", "call", 0.0,
                  None, [{"cluster": {"target": {"lineage_checks": {"rollback": check.record()}}}}])
    ev.finish(0, expect=verdict.expected("reverify", roles=["target"], keys=["k"],
                                          endpoints={}))
    headline = ev.doc["summary"]["headline"]
    assert headline.startswith("The rollback window of cluster-abc closed at "), headline
    assert "the baseline of 20261120T000000Z-abcdef, 2026-11-20" in headline


def _aws_case(path: Path, rollback: str | None) -> None:
    """describe_clusters and describe_backups as the child run's Stubber answers them."""
    cluster = {"ClusterId": "cluster-abc", "State": "ACTIVE", "HsmType": "hsm2m.medium",
               "Mode": "NON_FIPS", "CreateTimestamp": "2026-11-01T09:00:00+00:00",
               "Hsms": [{"HsmId": f"hsm-{n}abcdefghij", "HsmType": "hsm2m.medium",
                         "State": "ACTIVE", "AvailabilityZone": f"us-east-1{z}",
                         "ClusterId": "cluster-abc"} for n, z in ((1, "a"), (2, "b"))]}
    if rollback:
        cluster["HsmTypeRollbackExpiration"] = rollback
    backups = {"Backups": [{"BackupId": "backup-abcdefghijk", "BackupState": "READY",
                            "ClusterId": "cluster-abc", "HsmType": "hsm1.medium",
                            "Mode": "NON_FIPS", "CreateTimestamp": "2026-11-26T02:00:00+00:00"}]}
    path.write_text(json.dumps([
        {"method": "describe_clusters", "response": {"Clusters": [cluster]}},
        {"method": "describe_backups", "response": backups}]))


def test_owner_sharing_and_the_cluster_through_the_cloudhsm_cli_and_aws(lab, suites,
                                                                       monkeypatch):
    """With cloudhsm_cli and aws blocks (the stand-in CLI, its JSON in the documented shape;
    AWS through botocore's Stubber in the child run, tests/helpers/aws_stub.py): the baseline records
    each key's owner and shared users and the cluster as AWS describes it; a re-verify after an
    in-place HSM type change whose rollback window has closed passes and says so first in its
    headline; one where a key's sharing changed fails that key's test."""
    from test_ownership import FAKE, PASSWORD, TEMPLATE, listing

    keys = KEYS[:1]
    lab.seed(keys)
    shutil.copy(HELPERS / "aws_stub.py", suites.path / "aws_stub.py")
    case, aws_case = lab.root / "case.json", lab.root / "aws.json"
    for name, value in {"KP_TEST_CU_PASSWORD": PASSWORD, "FAKE_CLOUDHSM_CASE": case,
                        "FAKE_CLOUDHSM_LOG": lab.root / "cli.log",
                        "FAKE_CLOUDHSM_EXPECT_PIN": f"cu1:{PASSWORD}",
                        "FAKE_CLOUDHSM_EXPECT_CLUSTER": "cluster-abc",
                        "KP_FAKE_AWS": aws_case}.items():
        monkeypatch.setenv(name, str(value))

    def answer(shared: tuple[str, ...]) -> None:
        key = json.loads(json.dumps(TEMPLATE))
        key["key-info"]["key-owners"] = [{"username": "cu1", "key-coverage": "full"}]
        key["key-info"]["shared-users"] = [{"username": u, "key-coverage": "full"}
                                           for u in shared]
        key["attributes"] = {"label": "k-aes128", "class": "secret-key", "key-type": "aes"}
        case.write_text(json.dumps({"key list*": listing(key)}))

    def cluster(name: str) -> dict[str, Any]:
        return {**_cluster(lab, name), "aws": {"cluster_id": "cluster-abc",
                                               "region": "us-east-1"},
                "cloudhsm_cli": {"path": str(FAKE), "user": "cu1",
                                 "password": "env:KP_TEST_CU_PASSWORD"}}

    answer(("cu2",))
    _aws_case(aws_case, None)
    profile = lab.profile(keys, name="base", clusters={"source": cluster("hsm1")},
                          migration={"mode": "baseline"}, compliance=None,
                          evidence=_signers(lab))
    result = run_suites(suites, profile, "-p", "aws_stub")
    assert result.ret == 0, result.stdout.str()
    doc = evidence(suites)
    assert doc["keys"]["k-aes128"]["baseline"]["cli"] == {"owners": ["cu1"],
                                                          "shared_users": ["cu2"]}
    assert doc["clusters"]["source"]["lineage"]["hsm_type"] == "hsm2m.medium"
    base = suites.path / "reports" / doc["run"]["run_id"]
    now = lab.profile(keys, name="now", clusters={"target": cluster("hsm1-now")},
                      migration={"mode": "reverify", "baseline": str(base)}, compliance=None,
                      evidence=_signers(lab))

    _aws_case(aws_case, "2026-11-20T00:00:00+00:00")  # the rollback window has closed
    result = run_suites(suites, now, "-p", "aws_stub")
    assert result.ret == 0, result.stdout.str()
    doc = evidence(suites)
    SCHEMA.validate(doc)
    assert doc["summary"]["headline"].startswith(
        "The rollback window of cluster-abc closed at 2026-11-20"), doc["summary"]["headline"]
    assert doc["summary"]["verdict"] == "PASS"

    answer(())  # no longer shared with cu2
    result = run_suites(suites, now, "-p", "aws_stub")
    assert result.ret == 1
    got = red(suites)
    assert list(got) == ["test_owner_and_sharing_are_unchanged[k-aes128]"], got
    assert "'shared_users': ['cu2']" in got["test_owner_and_sharing_are_unchanged[k-aes128]"]
