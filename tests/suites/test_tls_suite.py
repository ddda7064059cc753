"""The TLS suite (suites/test_tls.py) is green on a good CloudHSM-like PKI and goes RED on each
broken case, for the broken cluster only.

Each test builds a test PKI per cluster in the lab directory (keyparity.trust.pki), writes ``tls``
blocks into the lab profile, breaks the target's in one precise way and runs the real suite in
a child pytest. It asserts the outcome of every TLS node id, that the message says what is
wrong, and what the evidence's ``tls`` section records. The demo profile, after
``keyparity demo pki``, passes.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, TMPFS, evidence, run_suites
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from jsonschema import Draft202012Validator

from keyparity.trust import pki
from keyparity.profile import ProfileError, load_profile
from keyparity.formats.report import render_report

AES = {"label": "k-aes128", "type": "aes", "size": 128}
ROLES = ("source", "target")
TESTS = {
    "cluster": "test_cluster_certificate_chains_to_customer_ca",
    "hsm": "test_hsm_certificate_chains_to_the_aws_and_manufacturer_roots",
    "csr": "test_cluster_csr_key_matches_the_hsm_certificate",
    "client": "test_client_certificate_is_issued_by_the_customer_ca_and_matches_its_key",
    "handshake": "test_mutual_tls_handshake",
}
FIELDS = ("customer_ca", "cluster_certificate", "cluster_csr", "hsm_certificate",
          "aws_hardware_certificate", "aws_root", "manufacturer_hardware_certificate",
          "manufacturer_root", "client_certificate", "client_key", "default_client_certificate",
          "trust_dir", "server_certificate", "server_key")
SCHEMA = json.loads(resources.files("keyparity.schemas").joinpath("evidence.schema.json")
                    .read_text("utf-8"))
NOW = dt.datetime.now(dt.timezone.utc)
TODAY = NOW.date()


# ---- helpers -------------------------------------------------------------------------------

@pytest.fixture
def tls_suites(suites: pytest.Pytester) -> pytest.Pytester:
    """The real suites, the TLS suite included."""
    shutil.copy(REPO / "suites" / "test_tls.py", suites.path / "suites" / "test_tls.py")
    return suites


def build_pki(lab: Any, cluster: str) -> dict[str, Path]:
    return pki.build_test_pki(lab.root / "pki" / cluster)


def tls_block(paths: dict[str, Path], **changes: Any) -> dict[str, Any]:
    """A complete ``tls`` block for a built PKI (simulated server); a change to None drops the
    field."""
    block: dict[str, Any] = {name: str(paths[name]) for name in FIELDS}
    block.update(pki.root_pins(paths), simulated_server=True)
    for name, value in changes.items():
        if value is None:
            block.pop(name, None)
        else:
            block[name] = str(value) if isinstance(value, Path) else value
    return block


def tls_profile(lab: Any, source: dict[str, Any] | None, target: dict[str, Any] | None,
                keys: list[dict[str, Any]] | None = None, **top: Any) -> Path:
    """The lab profile with these ``tls`` blocks (None: none) and top-level fields."""
    path = lab.profile(keys or [AES], **top)
    doc = yaml.safe_load(path.read_text())
    for role, block in zip(ROLES, (source, target)):
        if block is not None:
            doc["clusters"][role]["tls"] = block
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_tls(pytester: pytest.Pytester, profile: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "suites/test_tls.py", f"--hsm-profile={profile}",
        f"--hsm-reports-dir={pytester.path / 'reports'}", "-rA", *args)


def node(check: str, role: str, endpoint: str = "simulated") -> str:
    param = f"{role}-{endpoint}" if check == "handshake" else role
    return f"suites/test_tls.py::{TESTS[check]}[{param}]"


def green(endpoint: dict[str, str] | None = None) -> dict[str, str]:
    """Every TLS node of a two-cluster run, passed."""
    endpoint = endpoint or {}
    return {node(check, role, endpoint.get(role, "simulated")): "passed"
            for role in ROLES for check in TESTS}


def outcomes(result: pytest.RunResult, doc: dict[str, Any]) -> dict[str, str]:
    """Node id -> outcome from the evidence, which must agree with pytest's own summary."""
    got: dict[str, str] = {}
    for t in doc["tests"]:  # a teardown error after a passed call counts
        got[t["nodeid"]] = t["outcome"] if got.get(t["nodeid"], "passed") == "passed" \
            else got[t["nodeid"]]
    failed = {line.split()[1] for line in result.stdout.lines
              if line.startswith(("FAILED ", "ERROR "))}
    assert failed == {n for n, o in got.items() if o in ("failed", "error")}, \
        "the evidence disagrees with pytest's own report"
    return got


def message(doc: dict[str, Any], nodeid: str) -> str:
    return "\n".join(t.get("message", "") for t in doc["tests"] if t["nodeid"] == nodeid)


def check_key(check: str, endpoint: str = "simulated") -> str:
    """The name of a TLS test's entry in the evidence's ``tls.<role>.checks``."""
    name = TESTS[check].removeprefix("test_")
    return f"{name}[{endpoint}]" if check == "handshake" else name


def check(doc: dict[str, Any], role: str, name: str) -> dict[str, Any]:
    """One TLS check of the evidence, by the start of its name."""
    checks = doc["tls"][role]["checks"]
    return next(v for k, v in checks.items() if k.startswith(name))


def schema_errors(doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in Draft202012Validator(SCHEMA).iter_errors(doc)]


def customer_ca(paths: dict[str, Path]) -> tuple[Any, Any]:
    cert = x509.load_pem_x509_certificate(paths["customer_ca"].read_bytes())
    key = serialization.load_pem_private_key(paths["customer_ca_key"].read_bytes(), None)
    return cert, key


def cluster_cert(lab: Any, paths: dict[str, Path], days: int, name: str,
                 issuer: tuple[Any, Any] | None = None, start_days: int = -1) -> Path:
    """A cluster certificate for the CSR's key valid from NOW+start_days to NOW+days, issued by
    the PKI's customer CA (or ``issuer``)."""
    csr = x509.load_pem_x509_csr(paths["cluster_csr"].read_bytes())
    ca_cert, ca_key = issuer or customer_ca(paths)
    cert = pki.issue_certificate(csr.public_key(), csr.subject, ca_cert, ca_key,
                                 NOW + dt.timedelta(days=start_days), NOW + dt.timedelta(days=days),
                                 eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    return pki.write_pem(lab.root / "broken" / name, cert)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- broken cases: one change to the target's tls block -> the nodes that fail -------------

def other_ca_cluster_certificate(lab: Any, paths: dict[str, Path]) -> dict[str, Any]:
    other = pki.make_ca("another CA")
    return {"cluster_certificate": cluster_cert(lab, paths, 3650, "other-ca.crt", other)}


def expired_cluster_certificate(lab: Any, paths: dict[str, Path]) -> dict[str, Any]:
    return {"cluster_certificate": cluster_cert(lab, paths, -1, "expired.crt", start_days=-400)}


def cluster_certificate_expiring_near_cutover(lab: Any, paths: dict[str, Path]) -> dict[str, Any]:
    # cutover in 60 days (the profile's); the certificate ends 10 days after it (< 30)
    return {"cluster_certificate": cluster_cert(lab, paths, 70, "short.crt")}


def csr_of_another_key(lab: Any, paths: dict[str, Path]) -> dict[str, Any]:
    csr = pki.make_csr(pki.make_key(), "cluster-test0001")
    return {"cluster_csr": pki.write_pem(lab.root / "broken" / "other.csr", csr)}


def aws_root_not_as_pinned(lab: Any, paths: dict[str, Path]) -> dict[str, Any]:
    return {"aws_root_sha256": "ab" * 32}


def client_certificate_from_another_ca(lab: Any, paths: dict[str, Path]) -> dict[str, Any]:
    ca_cert, ca_key = pki.make_ca("another CA")
    key = pki.make_key()
    cert = pki.issue_certificate(key, "keyparity client", ca_cert, ca_key, NOW - dt.timedelta(1),
                                 NOW + dt.timedelta(3650), eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return {"client_certificate": pki.write_pem(lab.root / "broken" / "client.crt", cert),
            "client_key": pki.write_key(lab.root / "broken" / "client.key", key)}


def client_key_of_another_certificate(lab: Any, paths: dict[str, Path]) -> dict[str, Any]:
    return {"client_key": pki.write_key(lab.root / "broken" / "other.key", pki.make_key())}


def server_certificate_not_in_the_trust_directory(lab: Any,
                                                  paths: dict[str, Path]) -> dict[str, Any]:
    cert, key = pki.self_signed_server()
    return {"server_certificate": pki.write_pem(lab.root / "broken" / "server.crt", cert),
            "server_key": pki.write_key(lab.root / "broken" / "server.key", key)}


def no_client_certificate(lab: Any, paths: dict[str, Path]) -> dict[str, Any]:
    return {"client_certificate": None, "client_key": None}


BROKEN = {
    # case: (change, {failing check: words of its message}, {skipped check: words})
    "cluster certificate from another CA": (
        other_ca_cluster_certificate,
        {"cluster": "is not issued by customerCA.crt (CN=customerCA"}, {}),
    "expired cluster certificate": (
        expired_cluster_certificate, {"cluster": "the cluster certificate expired on"}, {}),
    "cluster certificate expiring 10 days after the cutover": (
        cluster_certificate_expiring_near_cutover,
        {"cluster": "it must stay valid at least 30 days after it"}, {}),
    "cluster CSR of another key": (
        csr_of_another_key, {"csr": "differs from the HSM certificate's"}, {}),
    "AWS root not as pinned": (
        aws_root_not_as_pinned, {"hsm": "not the pinned " + "ab" * 32}, {}),
    "client certificate from another CA": (
        client_certificate_from_another_ca,
        {"client": "is not issued by customerCA.crt",
         "handshake": "refused the client certificate"}, {}),
    "client key of another certificate": (
        client_key_of_another_certificate,
        {"client": "does not match the client certificate",
         "handshake": "cannot load the client certificate"}, {}),
    "server certificate not in the trust directory": (
        server_certificate_not_in_the_trust_directory,
        {"handshake": "is not in the trust directory"}, {}),
    "server demands a client certificate and gets none": (
        no_client_certificate,
        {"handshake": "requires a client certificate and none was presented"},
        {"client": "clusters.target.tls.client_certificate is not set"}),
}


# ---- green ---------------------------------------------------------------------------------

def test_tls_suite_is_green_on_a_good_pki_and_records_every_certificate(lab, tls_suites):
    profile = tls_profile(lab, tls_block(build_pki(lab, "hsm1")), tls_block(build_pki(lab, "hsm2")),
                          cutover=(TODAY + dt.timedelta(days=60)).isoformat())
    result = run_suites(tls_suites, profile, "-m", "tls")  # every suite; -m tls selects these
    doc = evidence(tls_suites)
    assert result.ret == 0, result.stdout.str()
    counts = result.parseoutcomes()
    assert counts["passed"] == 10 and counts["deselected"] > 0 and set(counts) == {
        "passed", "deselected"}
    assert outcomes(result, doc) == green()
    # -m tls proves the TLS suite only: the run is partial, the TLS suite passed
    assert doc["summary"]["verdict"] == "PARTIAL" and schema_errors(doc) == []
    assert doc["summary"]["scope"]["suites"]["tls"] == "passed"
    assert "run_facts" not in doc  # TLS facts go to "tls", not to the preflight's run facts
    assert list(doc["tls"]) == ["source", "target"]
    for role, name in zip(ROLES, ("hsm1", "hsm2")):
        section = doc["tls"][role]
        assert (section["cluster"], section["configured"]) == (name, True)
        assert len(section["checks"]) == 5
        for entry in section["checks"].values():
            assert entry["outcome"] == "passed" and entry["ok"] is True
            assert entry["test"].startswith("suites/test_tls.py::") and f"[{role}" in entry["test"]
            assert entry["certificates"] and entry["chain"]
            for cert in entry["certificates"]:
                assert set(cert) == {"subject", "issuer", "serial", "sha256", "not_before",
                                     "not_after"}
        cluster = check(doc, role, "cluster_certificate")
        assert cluster["chain"] == ["CN=cluster-test0001,OU=CloudHSM,O=keyparity test PKI",
                                    "CN=customerCA,OU=customer,O=keyparity test PKI"]
        hsm = check(doc, role, "hsm_certificate")
        assert set(hsm["details"]["chains"]) == {"AWS", "manufacturer"}
        shake = check(doc, role, "mutual_tls_handshake[simulated]")
        assert shake["endpoint"]["simulated"] is True and shake["endpoint"]["host"] == "127.0.0.1"
        assert "SoftHSM has no TLS front end" in shake["endpoint"]["note"]
        assert shake["details"]["protocol"].startswith("TLSv1.")
        assert shake["details"]["cipher"]
    html = render_report(doc)
    tls_html = html[html.index("<h3>Certificates (TLS)</h3>"):html.index("<h3>Cluster mode")]
    assert tls_html.count(">simulated</span>") == 2 and "source: hsm1" in tls_html
    assert "AWS chain:" in tls_html and "manufacturer chain:" in tls_html


def test_tls_tests_are_part_of_preflight_and_name_cluster_and_endpoint(lab, tls_suites):
    """-m preflight selects them (they write nothing); a handshake per endpoint (the profile's
    port, or the endpoint's own) beside the simulated server."""
    profile = tls_profile(lab, tls_block(build_pki(lab, "hsm1")),
                          tls_block(build_pki(lab, "hsm2"), endpoints=["10.0.0.5", "h:2224"]))
    result = tls_suites.runpytest_subprocess(
        "suites", f"--hsm-profile={profile}", f"--hsm-reports-dir={tls_suites.path / 'r'}",
        "--collect-only", "-q", "-m", "preflight")
    collected = {line for line in result.stdout.lines if line.startswith("suites/")}
    assert {n for n in collected if "test_tls.py" in n} == (
        set(green()) | {node("handshake", "target", e) for e in ("10.0.0.5:2223", "h:2224")})
    assert any("test_preflight.py" in n for n in collected)


# ---- skipped, never silently ---------------------------------------------------------------

def test_a_cluster_without_tls_and_unset_fields_are_skipped_with_the_reason(lab, tls_suites):
    paths = build_pki(lab, "hsm1")
    minimal = tls_block(paths, **dict.fromkeys(
        ("cluster_csr", "hsm_certificate", "aws_hardware_certificate", "aws_root",
         "aws_root_sha256", "manufacturer_hardware_certificate", "manufacturer_root",
         "manufacturer_root_sha256")))
    result = run_tls(tls_suites, tls_profile(lab, minimal, None))
    doc = evidence(tls_suites)
    assert result.ret == 0, result.stdout.str()
    expected = {node(c, "source"): "passed" for c in ("cluster", "client", "handshake")}
    expected |= {node("hsm", "source"): "skipped", node("csr", "source"): "skipped"}
    expected |= {node(c, "target", "no-tls"): "skipped" for c in TESTS}
    assert outcomes(result, doc) == expected
    assert "clusters.source.tls.hsm_certificate is not set" in message(doc, node("hsm", "source"))
    assert "clusters.source.tls.cluster_csr is not set" in message(doc, node("csr", "source"))
    no_tls = "clusters.target (hsm2) has no `tls` block: its TLS trust is not checked"
    for c in TESTS:
        assert no_tls in message(doc, node(c, "target", "no-tls"))
    target = doc["tls"]["target"]
    assert (target["cluster"], target["configured"], target["reason"]) == ("hsm2", False, no_tls)
    assert {v["outcome"] for v in target["checks"].values()} == {"skipped"}
    assert len(target["checks"]) == 5 and schema_errors(doc) == []
    assert "SKIPPED" in result.stdout.str() and no_tls in result.stdout.str()


# ---- red -----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(BROKEN))
def test_each_check_goes_red_on_its_broken_case_for_that_cluster_only(lab, tls_suites, case):
    change, failing, skipped = BROKEN[case]
    good = tls_block(build_pki(lab, "hsm1"))
    paths = build_pki(lab, "hsm2")
    profile = tls_profile(lab, good, tls_block(paths, **change(lab, paths)),
                          cutover=(TODAY + dt.timedelta(days=60)).isoformat())
    result = run_tls(tls_suites, profile)
    doc = evidence(tls_suites)
    assert result.ret == 1, result.stdout.str()
    expected = green() | {node(c, "target"): "failed" for c in failing}
    expected |= {node(c, "target"): "skipped" for c in skipped}
    assert outcomes(result, doc) == expected
    assert doc["summary"]["verdict"] == "FAIL" and schema_errors(doc) == []
    for c, words in (failing | skipped).items():
        assert words in message(doc, node(c, "target")), (c, message(doc, node(c, "target")))
        entry = doc["tls"]["target"]["checks"][check_key(c)]
        assert words in entry["message"]
        assert entry["outcome"] == ("failed" if c in failing else "skipped")
    assert {v["outcome"] for v in doc["tls"]["source"]["checks"].values()} == {"passed"}
    assert "hsm2 (target): " in result.stdout.str()  # failures name the cluster


def test_a_certificate_near_its_end_warns_in_pytest_and_in_the_evidence(lab, tls_suites):
    paths = build_pki(lab, "hsm2")
    # cutover in 60 days; ends 60 days after it: above min_days_valid 30, below warn 90
    late = {"cluster_certificate": cluster_cert(lab, paths, 120, "late.crt")}
    profile = tls_profile(lab, tls_block(build_pki(lab, "hsm1")), tls_block(paths, **late),
                          cutover=(TODAY + dt.timedelta(days=60)).isoformat())
    result = run_tls(tls_suites, profile)
    doc = evidence(tls_suites)
    assert result.ret == 0, result.stdout.str()
    assert outcomes(result, doc) == green()
    out = result.stdout.str()
    assert "CertificateWarning: hsm2 (target): the cluster certificate expires on" in out
    assert "(warning below 90 days); plan its renewal" in out
    entry = check(doc, "target", "cluster_certificate")
    assert entry["outcome"] == "passed" and len(entry["warnings"]) == 1
    assert check(doc, "source", "cluster_certificate")["warnings"] == []


def test_an_unreachable_endpoint_fails_clearly_within_its_timeout(lab, tls_suites):
    closed = free_port()
    with socket.socket() as silent:  # accepts TCP (backlog) but never speaks TLS
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        quiet = silent.getsockname()[1]
        target = tls_block(build_pki(lab, "hsm2"), simulated_server=False, timeout_s=1,
                           endpoints=[f"127.0.0.1:{closed}", f"127.0.0.1:{quiet}"])
        profile = tls_profile(lab, tls_block(build_pki(lab, "hsm1")), target)
        start = time.monotonic()
        result = run_tls(tls_suites, profile)
        elapsed = time.monotonic() - start
    doc = evidence(tls_suites)
    assert result.ret == 1, result.stdout.str()
    refused, hangs = (node("handshake", "target", f"127.0.0.1:{p}") for p in (closed, quiet))
    expected = {n: o for n, o in green().items() if "[target-simulated]" not in n}
    assert outcomes(result, doc) == expected | {refused: "failed", hangs: "failed"}
    assert (f"endpoint 127.0.0.1:{closed} unreachable within 1.0 s: TCP connect failed"
            in message(doc, refused))
    assert (f"endpoint 127.0.0.1:{quiet} unreachable within 1.0 s: the TCP connection was "
            "accepted but the TLS handshake got no answer") in message(doc, hangs)
    entry = check(doc, "target", f"mutual_tls_handshake[127.0.0.1:{quiet}]")
    assert entry["endpoint"] == {"host": "127.0.0.1", "port": quiet, "simulated": False}
    assert 0.9 <= entry["details"]["elapsed_s"] < 2.5
    assert elapsed < 30, "the run is bounded by the endpoint timeouts"


def test_one_broken_cluster_fails_only_its_own_tests_beside_the_key_suites(lab, tls_suites):
    lab.seed([AES])
    paths = build_pki(lab, "hsm2")
    broken = tls_block(paths, **other_ca_cluster_certificate(lab, paths))
    result = run_suites(tls_suites, tls_profile(lab, tls_block(build_pki(lab, "hsm1")), broken))
    doc = evidence(tls_suites)
    assert result.ret == 1, result.stdout.str()
    got = outcomes(result, doc)
    assert {n for n, o in got.items() if o != "passed"} == {node("cluster", "target")}
    assert doc["keys"]["k-aes128"]["verdict"] == "passed"
    assert {n: o for n, o in got.items() if "test_tls.py" in n} == (
        green() | {node("cluster", "target"): "failed"})
    assert doc["summary"]["verdict"] == "FAIL" and schema_errors(doc) == []
    html = render_report(doc)
    failures = html[html.index('<section id="failures">'):html.index('<section id="keys">')]
    assert "test_cluster_certificate_chains_to_customer_ca[target]" in failures


# ---- the demo ------------------------------------------------------------------------------

def keyparity(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "keyparity.cli", *args], capture_output=True,
                         text=True, check=False, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def demo() -> Any:
    """The demo's layout in a directory of its own (on tmpfs): hsm_profiles/softhsm.yaml and
    the state ``.keyparity/`` that ./run demo makes: tokens and custodians (the PKI is up to
    the test)."""
    root = Path(tempfile.mkdtemp(prefix="keyparity-demo-", dir=TMPFS))
    try:
        (root / "hsm_profiles").mkdir()
        shutil.copy(REPO / "hsm_profiles" / "softhsm.yaml", root / "hsm_profiles")
        state = root / ".keyparity"
        keyparity("demo", "softhsm-init", "--state", str(state / "softhsm"), "--token", "hsm1",
                  "--token", "hsm2")
        keyparity("demo", "custodians", "--state", str(state))
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_demo_profile_passes_the_tls_suite_after_demo_pki(demo, tls_suites):
    state = demo / ".keyparity"
    printed = keyparity("demo", "pki", "--state", str(state))
    assert printed.splitlines() == [f"keyparity: demo PKI for {c} in {state / 'pki' / c}"
                                    for c in ("hsm1", "hsm2")]
    pins = {c: pki.root_pins({"pins": state / "pki" / c / "pins.json"}) for c in ("hsm1", "hsm2")}
    for c in ("hsm1", "hsm2"):
        for name in ("aws_root", "manufacturer_root"):
            written = (state / "pki" / c / f"{name}.sha256").read_text()
            assert written == pins[c][f"{name}_sha256"] + "\n"
    keyparity("demo", "pki", "--state", str(state))  # kept: the pins do not change
    assert pins["hsm1"] == pki.root_pins({"pins": state / "pki" / "hsm1" / "pins.json"})
    # the demo's signed approvals, as ./run demo signs them (the profile loads once the PKI is)
    keyparity("demo", "approvals", str(demo / "hsm_profiles" / "softhsm.yaml"), "--state",
              str(state))
    profile = load_profile(demo / "hsm_profiles" / "softhsm.yaml")
    assert profile.source.tls.aws_root_sha256 == pins["hsm1"]["aws_root_sha256"]
    assert profile.target.tls.manufacturer_root_sha256 == pins["hsm2"]["manufacturer_root_sha256"]
    assert profile.cutover is not None and profile.source.tls.simulated_server

    result = run_tls(tls_suites, demo / "hsm_profiles" / "softhsm.yaml")
    doc = evidence(tls_suites)
    assert result.ret == 0, result.stdout.str()
    assert outcomes(result, doc) == green()
    assert "bundle signed by custodian-1, custodian-2" in result.stdout.str()
    assert [doc["tls"][r]["cluster"] for r in ROLES] == ["hsm1", "hsm2"]
    assert schema_errors(doc) == []


# ---- the profile's pin files -----------------------------------------------------------------

def test_a_root_pin_can_be_a_file_and_is_checked_like_a_literal(lab):
    paths = build_pki(lab, "hsm1")
    pin = lab.root / "aws.sha256"
    pin.write_text("SHA256:" + ":".join(pki.root_pins(paths)["aws_root_sha256"][i:i + 2].upper()
                                        for i in range(0, 64, 2)) + "\n")
    spec = load_profile(tls_profile(lab, tls_block(paths, aws_root_sha256=f"file:{pin}"),
                                    None)).source.tls
    assert spec.aws_root_sha256 == pki.root_pins(paths)["aws_root_sha256"]
    for content, error in ((None, f"file not found: {lab.root / 'missing.sha256'}"),
                           ("not a fingerprint", "a SHA-256 fingerprint has 64 hex digits")):
        target = lab.root / "missing.sha256" if content is None else pin
        if content is not None:
            pin.write_text(content)
        with pytest.raises(ProfileError) as err:
            load_profile(tls_profile(lab, tls_block(paths, aws_root_sha256=f"file:{target}"),
                                     None))
        assert (err.value.field, err.value.message) == (
            "clusters.source.tls.aws_root_sha256", error)
