"""A run ends as a complete evidence bundle in reports/<run-id>/: evidence.json (valid against
its schema), report.html, junit.xml, allure-results.tar.gz, assessment-results.json, and a statement
over every file signed by the profile's evidence signers, which `keyparity verify` accepts.
The bundle is written on red runs too, never holds a PIN, and an unsigned or badly signed
bundle is said so loudly and rejected by verify."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from conftest import DEMO_KEYS, NOTHING_TO_CHECK_HERE, evidence, run_suites
from jsonschema import Draft202012Validator
from junit_rules import problems

from keyparity.attest.custodians import file_custodian
from keyparity.evidence.facts import SCHEMA_VERSION

SCHEMA = json.loads(resources.files("keyparity.schemas").joinpath("evidence.schema.json")
                    .read_text("utf-8"))
ARCHIVE = "allure-results.tar.gz"
BUNDLE = ("evidence.json", "report.html", "junit.xml", "assessment-results.json", "cbom.json",
          "statement.json", "evidence.dsse.json")
EPIC = "hsm1 -> hsm2"
SUITES = {"test_migration": ("migration", "critical"), "test_equivalence": ("equivalence", "critical"),
          "test_attributes": ("attributes", "normal"), "test_preflight": ("preflight", "blocker"),
          "test_census": ("census", "blocker"), "test_tls": ("tls", "critical"),
          "test_cluster": ("cluster", "blocker"), "test_cloudhsm": ("cloudhsm", "blocker"),
          "test_ownership": ("ownership", "normal")}
UNSIGNED = "keyparity: UNSIGNED: no evidence.signers in the profile"


# ---- helpers -------------------------------------------------------------------------------

def auditor(lab: Any, name: str = "auditor") -> tuple[Path, Path]:
    """An ECDSA P-384 signing key in the lab directory: (private PEM, public PEM)."""
    public = file_custodian(lab.root, name)
    return lab.root / f"{name}.key.pem", public


def signed_profile(lab: Any, keys: list[dict[str, Any]], private: Path, **top: Any) -> Path:
    return lab.profile(keys, evidence={"signers": [{"name": "auditor", "type": "file",
                                                    "path": str(private)}]}, **top)


def latest(suites: pytest.Pytester) -> Path:
    link = suites.path / "reports" / "latest"
    assert link.is_symlink(), "reports/latest is not a symlink"
    return link.resolve()


def verify(run_dir: Path, *keys: Path) -> subprocess.CompletedProcess[str]:
    args = [a for k in keys for a in ("--key", str(k))]
    return subprocess.run([sys.executable, "-m", "keyparity.cli", "verify", str(run_dir), *args],
                          capture_output=True, text=True, check=False, timeout=120)


def allure_files(where: Path) -> dict[str, bytes]:
    """The Allure files of a run (name -> bytes): the members of its archive, read with
    Python's tarfile, or the files of an --alluredir directory."""
    if where.is_dir():
        return {p.name: p.read_bytes() for p in where.iterdir() if p.is_file()}
    with tarfile.open(where) as archive:
        members = archive.getmembers()
        assert all(m.isfile() and m.name.startswith("allure-results/") for m in members)
        return {m.name.split("/", 1)[1]: archive.extractfile(m).read() for m in members}


def allure_results(where: Path) -> list[dict[str, Any]]:
    files = allure_files(where)
    return [json.loads(files[n]) for n in sorted(files) if n.endswith("-result.json")]


def labels(result: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for label in result["labels"]:
        out.setdefault(label["name"], []).append(label["value"])
    return out


def junit_testcases(path: Path) -> int:
    return len(ET.parse(path).getroot().findall(".//testcase"))


def envelope(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "evidence.dsse.json").read_text())


def statement(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "statement.json").read_bytes())


def assert_no_pins(lab: Any, run_dir: Path) -> int:
    """No file of the run (dotfiles, and every member of the Allure archive, uncompressed)
    holds either lab PIN."""
    files = {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*")
             if p.is_file()}
    if ARCHIVE in files:
        files.update({f"{ARCHIVE}:{name}": data
                      for name, data in allure_files(run_dir / ARCHIVE).items()})
    for name, data in files.items():
        for token, pin in lab.pins.items():
            for form in {pin, pin.upper(), base64.b64encode(pin.encode()).decode()}:
                assert form.encode() not in data, f"{token}'s PIN in {name}"
    return len(files)


def assert_bundle(suites: pytest.Pytester, result: pytest.RunResult, lab: Any,
                  allure: bool = True) -> tuple[Path, dict[str, Any]]:
    """Every file of the bundle is there and consistent; returns (run dir, evidence)."""
    run_dir = latest(suites)
    for name in BUNDLE + ((ARCHIVE,) if allure else ()):
        assert (run_dir / name).is_file(), f"{name} missing from {run_dir}"
    doc = evidence(suites)
    Draft202012Validator(SCHEMA).validate(doc)
    assert doc["run"]["run_id"] == run_dir.name
    ran = len({t["nodeid"] for t in doc["tests"]})
    outcomes = result.parseoutcomes()
    assert ran == sum(outcomes.get(k, 0) for k in ("passed", "failed", "skipped", "errors"))
    assert junit_testcases(run_dir / "junit.xml") == ran
    if allure:
        files = allure_files(run_dir / ARCHIVE)
        assert len(allure_results(run_dir / ARCHIVE)) == ran
        env = files["environment.properties"].decode("ascii")
        for line in (f"run.id={doc['run']['run_id']}", f"seed={doc['run']['seed']}",
                     f"profile={doc['run']['profile']}", "source.mode=FIPS (declared)",
                     f"source.token.serial={doc['clusters']['source']['token']['serial']}",
                     f"target.token.serial={doc['clusters']['target']['token']['serial']}",
                     "clusters=hsm1 -> hsm2", "keyparity.version=",
                     "python-pkcs11.version="):
            assert line in env, (line, env)
        categories = json.loads(files["categories.json"])
        assert {c["name"] for c in categories} >= {
            "Key material differs", "Attribute differs", "Login / token access",
            "Not extractable — rotate", "Wrapping parameters refused",
            "Token refused an operation", "Cluster posture", "keyparity's own error"}
        executor = json.loads(files["executor.json"])
        assert (executor["buildName"], executor["reportUrl"]) == (doc["run"]["run_id"],
                                                                  "report.html")
        assert executor["reportName"].endswith(": " + doc["summary"]["verdict"])
    # the statement covers every file, junit.xml and Allure's last files included: they were
    # all written before signing
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement(run_dir)["subject"]}
    on_disk = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    acks = {p for p in on_disk if p.startswith("acknowledgements/")}  # beside the statement
    assert set(subjects) == on_disk - {"statement.json", "evidence.dsse.json"} - acks
    predicate = statement(run_dir)["predicate"]
    assert_self_contained(run_dir, predicate, doc, subjects)
    assert predicate["run_id"] == doc["run"]["run_id"]
    assert predicate["verdict"] == doc["summary"]["verdict"]
    assert predicate["summary"] == {"tests": doc["summary"]["tests"],
                                    "keys": doc["summary"]["keys"]}
    assert predicate["profile"] == doc["run"]["profile"]
    assert predicate["profile_sha256"] == doc["run"]["profile_sha256"]
    assert predicate["evidence_sha256"] == subjects["evidence.json"] == hashlib.sha256(
        (run_dir / "evidence.json").read_bytes()).hexdigest()
    assert (predicate["signers"], predicate["threshold"]) == (
        doc["signing"]["signers"], doc["signing"]["threshold"])
    members = len(allure_files(run_dir / ARCHIVE)) if allure else 0
    assert assert_no_pins(lab, run_dir) == len(on_disk) + members
    return run_dir, doc


def assert_self_contained(run_dir: Path, predicate: dict[str, Any], doc: dict[str, Any],
                          subjects: dict[str, str]) -> None:
    """The profile (byte for byte), the journal's rows of this run and each signer's key are
    inside the bundle, signed subjects, and the signed predicate names them."""
    contents = predicate["contents"]
    profile = contents["profile"]
    assert profile["file"] == f"profile/{Path(doc['run']['profile_path']).name}"
    assert subjects[profile["file"]] == profile["sha256"] == doc["run"]["profile_sha256"]
    assert {s["name"] for s in contents["signers"]} <= set(predicate["signers"])  # read ones
    for signer in contents["signers"]:
        assert signer["file"] in subjects and signer["kind"] == "public key"
    journal = contents["journal"]
    if journal is not None:
        rows = json.loads((run_dir / journal["file"]).read_text())
        assert rows["run_id"] == doc["run"]["run_id"] and len(rows["rows"]) == journal["rows"]
        assert {r["run_id"] for r in rows["rows"]} <= {doc["run"]["run_id"]}
        assert rows["head"]["head"] == journal["head"] == predicate["journal"]["head"]


def category(categories: list[dict[str, Any]], status: str, message: str) -> str | None:
    """The Allure category a result falls in (first match; the regex must match it all)."""
    for c in categories:
        if status in c["matchedStatuses"] and re.fullmatch(c["messageRegex"], message):
            return c["name"]
    return None


# ---- the schema ----------------------------------------------------------------------------

def test_evidence_schema_is_a_2020_12_schema_of_this_schema_version():
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
    assert SCHEMA["additionalProperties"] is False


# ---- green ---------------------------------------------------------------------------------

def test_green_run_writes_a_complete_signed_bundle_that_verify_accepts(lab, all_suites):
    suites = all_suites  # every suite keyparity ships: a PASS needs them all
    private, public = auditor(lab)
    lab.seed(DEMO_KEYS)

    result = run_suites(suites, signed_profile(lab, DEMO_KEYS, private))

    # 3DES: hsm1 (FIPS) does not produce: n/a records; 27 suites' tests: nothing to check here
    result.assert_outcomes(passed=52, skipped=27)
    assert result.ret == 0
    run_dir, doc = assert_bundle(suites, result, lab)
    assert doc["summary"]["verdict"] == "PASS"
    assert doc["signing"] == {"signers": ["auditor"], "threshold": 1}
    for key in DEMO_KEYS:
        entry = doc["keys"][key["label"]]
        assert (entry["type"], entry["target_label"], entry["disposition"]) == (
            key["type"], key["label"], "migrate")
    assert len(envelope(run_dir)["signatures"]) == 1
    out = verify(run_dir, public)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK: 1 of 1 required signatures verified" in out.stdout
    result.stdout.fnmatch_lines([f"keyparity: PASS; evidence written to {run_dir}/evidence.json",
                                 "keyparity: bundle signed by auditor (threshold 1): *"])
    assert "UNSIGNED" not in result.stdout.str() and "ERROR" not in result.stdout.str()

    # Allure: a result per test, labelled; a passing test has no attachment (its facts are
    # in evidence.json), a failing one has its facts attached (test_failing_run_...)
    results = allure_results(run_dir / ARCHIVE)
    for r in results:
        module = r["fullName"].split("#")[0].rsplit(".", 1)[-1]
        got = labels(r)
        assert got["epic"] == [EPIC], r["name"]
        assert (got["feature"], got["severity"]) == ([SUITES[module][0]], [SUITES[module][1]])
        params = {p["name"]: p["value"] for p in r.get("parameters", [])}
        if "inventory_key" in params and params["inventory_key"].strip("'") != "every-key":
            label = params["inventory_key"].strip("'")
            assert label in {k["label"] for k in DEMO_KEYS}, params  # a label, not a repr
            assert got["story"] == [label]
        else:
            assert "story" not in got
    # a FIPS side's 3DES: n/a records; the suites with nothing to check on this lab skip
    assert {r["status"] for r in results} == {"passed", "skipped"}
    assert {r["fullName"].split("#")[0].rsplit(".", 1)[-1] + ".py" for r in results
            if r["status"] == "skipped"} == set(NOTHING_TO_CHECK_HERE)
    assert not any("attachments" in r for r in results if r["status"] == "passed")
    assert {t for r in results for t in labels(r)["thread"]} == {"main"}


def test_bundle_under_xdist_has_every_worker_s_junit_and_allure_results(lab, suites):
    private, public = auditor(lab)
    keys = DEMO_KEYS[:3]
    lab.seed(keys)

    result = run_suites(suites, signed_profile(lab, keys, private), "-n", "2")

    assert result.ret == 0, result.stdout.str()
    run_dir, doc = assert_bundle(suites, result, lab)
    results = allure_results(run_dir / ARCHIVE)
    threads = {t for r in results for t in labels(r)["thread"]}
    # both workers wrote, and the controller wrote the census at the end of the run
    assert threads == {"gw0", "gw1", "controller"}
    for r in results:
        got = labels(r)
        assert got["epic"] == [EPIC] and got["feature"] and got["severity"], r["name"]
    out = verify(run_dir, public)
    assert out.returncode == 0, out.stdout + out.stderr


def test_user_given_junitxml_and_alluredir_are_respected(lab, suites):
    private, public = auditor(lab)
    keys = DEMO_KEYS[2:3]
    lab.seed(keys)
    junit, allure = suites.path / "ci" / "results.xml", suites.path / "ci" / "allure"

    result = run_suites(suites, signed_profile(lab, keys, private),
                        f"--junitxml={junit}", f"--alluredir={allure}")

    assert result.ret == 0, result.stdout.str()
    run_dir = latest(suites)
    # the user's junit file is written, and the bundle keeps its own copy all the same
    assert junit_testcases(junit) == junit_testcases(run_dir / "junit.xml") > 0
    # both keep the rules of junit-10.xsd
    assert problems(junit.read_bytes()) == problems((run_dir / "junit.xml").read_bytes()) == []
    assert not (run_dir / ARCHIVE).exists()
    assert junit_testcases(junit) == len(allure_results(allure)) > 0
    assert (allure / "environment.properties").is_file() and (allure / "categories.json").is_file()
    assert verify(run_dir, public).returncode == 0


# ---- red -----------------------------------------------------------------------------------

def test_failing_run_still_writes_the_full_signed_bundle_with_verdict_fail(lab, suites):
    private, public = auditor(lab)
    keys = DEMO_KEYS[:2] + [{"label": "k-missing", "type": "aes", "size": 128}]
    lab.seed(DEMO_KEYS[:2])

    result = run_suites(suites, signed_profile(lab, keys, private))

    assert result.ret == 1
    run_dir, doc = assert_bundle(suites, result, lab)
    assert doc["summary"]["verdict"] == "FAIL"
    assert doc["keys"]["k-missing"]["verdict"] == "failed"
    assert statement(run_dir)["predicate"]["verdict"] == "FAIL"
    out = verify(run_dir, public)
    assert out.returncode == 0, out.stdout + out.stderr
    # the failures of the missing key fall in Allure's "Key not found"
    files = allure_files(run_dir / ARCHIVE)
    categories = json.loads(files["categories.json"])
    failed = [r for r in allure_results(run_dir / ARCHIVE)
              if r["status"] in ("failed", "broken")]
    assert failed and all("k-missing" in r["name"] for r in failed)
    for r in failed:
        assert category(categories, r["status"], r["statusDetails"]["message"]) == \
            "Key not found", r["statusDetails"]["message"]
    assert all(r["statusDetails"]["trace"] for r in failed)


def test_profile_without_signers_writes_an_unsigned_envelope_that_verify_rejects(lab, suites):
    _, public = auditor(lab)
    keys = DEMO_KEYS[:1]
    lab.seed(keys)

    result = run_suites(suites, lab.profile(keys))

    assert result.ret == 0  # the tests passed; the bundle says it is unsigned
    result.stdout.fnmatch_lines([UNSIGNED])
    run_dir, doc = assert_bundle(suites, result, lab)
    assert doc["signing"] == {"signers": [], "threshold": 0}
    assert envelope(run_dir)["signatures"] == []
    out = verify(run_dir, public)
    assert out.returncode == 1
    assert "has no signatures: the run directory is unsigned" in out.stdout


BREAK_KEY = """
import os


def pytest_sessionfinish(session):
    # before keyparity's own (trylast), which signs the bundle
    with open(os.environ["KEYPARITY_TEST_BREAK_KEY"], "w") as fh:
        fh.write("-----BEGIN PRIVATE KEY-----\\nnot a key\\n-----END PRIVATE KEY-----\\n")
"""


def test_signer_failure_keeps_the_evidence_and_fails_the_run_with_the_reason(lab, all_suites,
                                                                             monkeypatch):
    """A signer that loaded when the run started (a broken one stops it there, one line) but
    fails when the bundle is signed: its key file broken during the run."""
    suites = all_suites  # every suite keyparity ships: a PASS needs them all
    private, public = auditor(lab)
    broken = lab.root / "broken.key.pem"
    broken.write_bytes(private.read_bytes())
    broken.chmod(0o600)
    keys = DEMO_KEYS[:1]
    lab.seed(keys)
    (suites.path / "break_key.py").write_text(BREAK_KEY)
    monkeypatch.setenv("KEYPARITY_TEST_BREAK_KEY", str(broken))

    result = run_suites(suites, signed_profile(lab, keys, broken), "-pbreak_key")

    assert result.ret == 1
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes and "errors" not in outcomes  # the tests themselves passed
    result.stdout.fnmatch_lines([
        "keyparity: ERROR: signing failed: KeyFormatError: evidence signer auditor: "
        f"{broken} is not a PEM private key",
        "keyparity: the evidence bundle is incomplete or unsigned: the run fails"])
    run_dir, doc = assert_bundle(suites, result, lab)  # everything else is there
    assert doc["summary"]["verdict"] == "PASS"
    assert doc["signing"] == {"signers": ["auditor"], "threshold": 1}
    assert envelope(run_dir)["signatures"] == []
    assert verify(run_dir, public).returncode == 1
    again = run_suites(suites, signed_profile(lab, keys, broken))
    assert again.ret == 4 and [line for line in again.stderr.lines if line.startswith("ERROR")] \
        == [f"ERROR: {lab.root / 'lab.yaml'}: evidence.signers: evidence signer auditor: "
            f"{broken} is not a PEM private key"], again.stderr.str()


# ---- Allure parameters ---------------------------------------------------------------------

PROBE = '''
import pytest

@pytest.mark.parametrize(("token_pin", "password", "vector_name"), [
    pytest.param({pin!r}, {pin2!r}, "aes-cbc", id="probe")])
def test_parameters(inventory_key, token_pin, password, vector_name, hsm_evidence):
    hsm_evidence(probe={{"vector": vector_name}})
'''


def test_allure_masks_secret_parameters_and_names_keys_by_label(lab, suites):
    keys = DEMO_KEYS[2:3]
    lab.seed(keys)
    (suites.path / "suites" / "test_probe.py").write_text(
        PROBE.format(pin=lab.pins["hsm1"], pin2=lab.pins["hsm2"]))

    result = run_suites(suites, lab.profile(keys))

    assert result.ret == 0, result.stdout.str()
    run_dir = latest(suites)
    probe = [r for r in allure_results(run_dir / ARCHIVE)
             if r["fullName"].endswith("#test_parameters")]
    assert len(probe) == 1
    params = {p["name"]: p for p in probe[0]["parameters"]}
    for name in ("token_pin", "password"):
        assert params[name]["mode"] == "masked" and params[name]["excluded"] is True
        assert params[name]["value"] == "'******'"  # allure quotes strings
    assert params["inventory_key"]["value"] == "'k-aes128'"
    assert params["vector_name"]["value"] == "'aes-cbc'" and "mode" not in params["vector_name"]
    assert labels(probe[0])["feature"] == ["probe"] and labels(probe[0])["story"] == ["k-aes128"]
    assert assert_no_pins(lab, run_dir) > 0


# ---- Allure categories ---------------------------------------------------------------------

@pytest.mark.parametrize(("status", "message", "expected"), [
    ("failed", "Failed: login to target (hsm2) failed: CKR_PIN_INCORRECT; check "
               "clusters.target.pin (file:/x/wrong.pin); not retried", "Login / token access"),
    ("failed", "Failed: clusters.source.pin: environment variable X is not set",
     "Login / token access"),
    ("failed", "Failed: hsm1: no token labelled 'hsm9' in /usr/lib/softhsm/libsofthsm2.so",
     "Login / token access"),
    ("failed", "Failed: k-des3: not proven, because its migration failed: wrapping with RSA-OAEP sha256/mgf1-sha256 "
               "is not accepted: RSA-OAEP (sha256) on hsm1 failed: CKR_MECHANISM_PARAM_INVALID",
     "Wrapping parameters refused"),
    ("failed", "AssertionError: hsm2 lacks: CKM_AES_KEY_WRAP_PAD", "Wrapping parameters refused"),
    ("failed", "AssertionError: 'k-des3' is not extractable: rotate it (generate on the target, "
               "re-encrypt) or mark it disposition: rotate", "Not extractable — rotate"),
    ("skipped", "Skipped: ROTATE k-des3: marked rotate in the inventory (not extractable on "
                "hsm1): not migrated", "Not extractable — rotate"),
    ("broken", "keyparity.errors.KeyMismatch: 'k-aes128' on hsm2 holds other key material than "
               "'k-aes128' on hsm1 (d219ed != 73a6bf)", "Key material differs"),
    ("failed", "AssertionError: hsm1 -> hsm2: decrypts to something else: different key "
               "material", "Key material differs"),
    ("failed", "AssertionError: hsm1 -> hsm2: MAC does not verify", "Key material differs"),
    ("failed", "AssertionError: hsm2 -> hsm1: software, with hsm1's public key: INVALID; on "
               "hsm1: INVALID", "Key material differs"),
    ("failed", "AssertionError: 4e654c != 5d1a2b (DES3-ECB encryption of an 8-byte zero block)",
     "Key material differs"),
    ("failed", "AssertionError: attributes differ:\n  extractable  True  False  UNEXPECTED",
     "Attribute differs"),
    ("failed", "Failed: k-missing: not proven, because its migration failed: 'k-missing' (aes) not found on hsm1",
     "Key not found"),
    ("passed", "", None),
])
def test_allure_categories_sort_keyparity_failure_messages(status, message, expected):
    from keyparity.formats.allure import CATEGORIES
    assert category(CATEGORIES, status, message) == expected


def test_collect_only_writes_no_bundle(lab, suites):
    """--collect-only runs nothing: no run directory, nothing signed, no runtime file left."""
    lab.seed(DEMO_KEYS[:1])
    profile = lab.profile(DEMO_KEYS[:1], evidence=lab.custodian())
    result = run_suites(suites, profile, "--collect-only", "-q")
    assert result.ret == 0, result.stdout.str()
    reports = suites.path / "reports"
    assert not reports.exists() or sorted(reports.iterdir()) == []
    assert "bundle signed" not in result.stdout.str()
    assert not (suites.path / ".keyparity" / "run").exists() or not any(
        (suites.path / ".keyparity" / "run").iterdir())
