"""Production safety: a profile with ``environment: production`` writes nothing unless
``--hsm-confirm=<target cluster id>`` names the target and ``--hsm-plan`` gives a plan signed to
the threshold; without either the run is preflight and verification only and says so in the
first header line. The lab's target carries an ``aws``
block (its id is what must be confirmed); the cluster suite's AWS tests are deselected with
``-m "not aws"``: the guard itself needs no AWS access."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO, evidence, run_suites
from keyparity import policy
from keyparity.profile import load_profile
from test_aws import validate_evidence
from test_plan import custodians, signed_plan
from test_policy import header

AES = {"label": "k-aes128", "type": "aes", "size": 128, "role": "data-encryption"}
DES3 = {"label": "k-des3", "type": "des3", "role": "pin"}
KEYS = [AES, DES3]
TARGET_ID = "cluster-lab2target"
NOT_CONFIRMED = ("keyparity: PRODUCTION, NOT CONFIRMED: preflight and verification only, nothing "
                 f"will be written (add --hsm-confirm={TARGET_ID} to migrate)")


def production(lab: Any) -> Path:
    custodians(lab)
    signers = [{"name": n, "type": "file", "path": str(lab.root / "custodians" / f"{n}.key.pem")}
               for n in ("c1", "c2")]
    path = lab.profile(KEYS, environment="production", classification="confidential",
                       evidence={"signers": signers, "threshold": 2})
    doc = yaml.safe_load(path.read_text())
    doc["clusters"]["target"]["aws"] = {"cluster_id": TARGET_ID, "region": "eu-central-1"}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def counts(lab: Any) -> dict[str, Any]:
    got = lab.tokens({"op": "count", "token": "hsm1"}, {"op": "count", "token": "hsm2"},
                     *({"op": "count", "token": "hsm2", "label": k["label"]} for k in KEYS))
    return {"hsm1": got[0], "hsm2": got[1], "on hsm2": dict(zip([k["label"] for k in KEYS],
                                                                got[2:]))}


@pytest.fixture
def with_cluster_suite(suites: pytest.Pytester) -> pytest.Pytester:
    shutil.copy(REPO / "suites" / "test_cluster.py", suites.path / "suites")
    return suites


def test_without_confirm_nothing_is_written_and_the_first_line_says_so(lab, with_cluster_suite):
    suites = with_cluster_suite
    lab.seed(KEYS)
    before = counts(lab)
    assert before["on hsm2"] == {"k-aes128": 0, "k-des3": 0}
    result = run_suites(suites, production(lab), "-m", "not aws", "-n", "2")
    assert header(result)[0] == NOT_CONFIRMED
    assert counts(lab) == before  # no key created, no wrapping object left, nothing at all
    doc = evidence(suites)
    assert doc["run"]["migration_mode"] == "verify-only"
    validate_evidence(doc)
    assert doc["run"]["write_mode"] == {
        "environment": "production", "declared": "migrate", "effective": "verify-only",
        "confirmed": False, "confirm_id": TARGET_ID,
        "note": NOT_CONFIRMED.removeprefix("keyparity: ")}
    out = result.stdout.str()
    ran = {t["nodeid"].partition("@")[0] for t in doc["tests"]}
    cluster_tests = {n for n in ran if n.startswith("suites/test_cluster.py")}
    assert cluster_tests and all(n.endswith("[source-hsm1]") for n in cluster_tests), \
        "-m 'not aws' deselects the target's AWS tests (the source has no aws block)"
    for key in KEYS:  # verification only: the keys are not on the target, and it says why
        assert (f"FAILED suites/test_migration.py::test_key_is_on_the_target[{key['label']}]"
                in out)
    assert "verify-only: nothing was written" in out
    assert "PASSED suites/test_preflight.py::test_key_is_on_the_source_and_extractable[k-aes128]" \
        in out
    skipped = {t["nodeid"]: t["message"] for t in doc["tests"] if t["outcome"] == "skipped"}
    assert skipped["suites/test_preflight.py::test_tokens_accept_the_wrapping_parameters"] == \
        "Skipped: verify-only: nothing is wrapped"
    html = (suites.path / "reports" / "latest" / "report.html").read_text()
    banner = html[html.index('<header id="verdict"'):html.index("</header>")]
    assert NOT_CONFIRMED.removeprefix("keyparity: ").replace(
        "--hsm-confirm=", "--hsm-confirm=") in banner


def test_confirmed_without_a_signed_plan_nothing_is_written(lab, suites):
    lab.seed(KEYS)
    before = counts(lab)
    result = run_suites(suites, production(lab), f"--hsm-confirm={TARGET_ID}")
    assert header(result)[0] == (
        "keyparity: PRODUCTION, CONFIRMED, NO SIGNED PLAN: preflight and verification only, "
        "nothing will be written (a production migration follows a plan signed to the "
        "threshold: keyparity plan, then add --hsm-plan=DIR)")
    assert counts(lab) == before
    assert evidence(suites)["run"]["write_mode"]["effective"] == "verify-only"


def test_with_the_right_confirm_and_a_signed_plan_the_keys_migrate(lab, with_cluster_suite):
    suites = with_cluster_suite
    lab.seed(KEYS)
    profile = production(lab)
    plan_dir = signed_plan(lab, profile)
    result = run_suites(suites, profile, "-m", "not aws", "-n", "2",
                        f"--hsm-confirm={TARGET_ID}", f"--hsm-plan={plan_dir}")
    assert header(result)[0] == f"keyparity: PRODUCTION, CONFIRMED: migrating to {TARGET_ID}"
    assert counts(lab)["on hsm2"] == {"k-aes128": 1, "k-des3": 1}
    doc = evidence(suites)
    # every key is proven, but the source has no aws block: in production its mode, only
    # declared, fails the cluster suite's mode test (keyparity.policy.declared_only), and -m
    # "not aws" left the target's cluster tests out: no PASS
    assert doc["summary"]["verdict"] == "FAIL", result.stdout.str()
    assert {k: v["verdict"] for k, v in doc["keys"].items()} == {"k-aes128": "passed",
                                                                  "k-des3": "passed"}
    assert doc["summary"]["scope"]["suites"]["cluster"] == "failed"
    assert ("FAILED suites/test_cluster.py::test_cluster_mode_and_hsm_type_are_as_declared"
            "[source-hsm1]") in result.stdout.str()
    assert doc["run"]["migration_mode"] == "migrate"
    validate_evidence(doc)
    assert doc["run"]["write_mode"]["effective"] == "migrate"
    assert doc["run"]["write_mode"]["confirmed"] is True
    assert {k: v["migration"]["status"] for k, v in doc["keys"].items()} == {
        "k-aes128": "migrated", "k-des3": "migrated"}


def test_a_wrong_confirm_is_a_usage_error_naming_both_ids(lab, suites):
    lab.seed(KEYS)
    before = counts(lab)
    result = run_suites(suites, production(lab), "--hsm-confirm=cluster-someother")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [ln for ln in result.outlines + result.errlines if ln.strip()]
    assert lines == [f"ERROR: --hsm-confirm=cluster-someother does not match the target cluster "
                     f"{TARGET_ID} (clusters.target.aws.cluster_id, hsm2): nothing was written"]
    assert not (suites.path / "reports").exists()
    assert counts(lab) == before


# ---- the guard's rules, without tokens ------------------------------------------------------

def _profile(tmp_path: Path, environment: str, aws: bool = True, mode: str = "migrate"):
    module = tmp_path / "libmodule.so"
    module.write_bytes(b"")
    (tmp_path / "pin").write_text("1234\n")
    (tmp_path / "pin").chmod(0o600)  # a production profile refuses a PIN file others may read
    cluster = {"module": str(module), "token_label": "t", "pin": "file:pin"}
    target = {**cluster, "name": "hsm2m", "mode": "FIPS"}
    if aws:
        target["aws"] = {"cluster_id": TARGET_ID, "region": "eu-central-1"}
    doc = {"name": "p", "description": "d", "environment": environment,
           "classification": "confidential", "clusters": {"source": {**cluster, "name": "hsm1", "mode": "FIPS"}, "target": target},
           "migration": {"mode": mode, "apply_sharing": True}, "keys": [AES]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    return load_profile(tmp_path / "p.yaml")


def test_unconfirmed_production_turns_every_write_off(tmp_path):
    p = _profile(tmp_path, "production")
    safe, mode = policy.write_guard(p, None)
    assert (safe.migration_mode, safe.apply_sharing) == ("verify-only", False)
    assert safe == dataclasses.replace(p, migration_mode="verify-only", apply_sharing=False)
    assert (mode.effective, mode.confirmed, mode.header) == ("verify-only", False, NOT_CONFIRMED)
    safe, mode = policy.write_guard(p, TARGET_ID)  # confirmed, but no signed plan
    assert safe.migration_mode == "verify-only" and mode.confirmed
    assert "NO SIGNED PLAN" in mode.header
    safe, mode = policy.write_guard(p, None, planned=True)  # a plan, not confirmed
    assert safe.migration_mode == "verify-only" and mode.header == NOT_CONFIRMED
    safe, mode = policy.write_guard(p, TARGET_ID, planned=True)
    assert safe is p and mode.effective == "migrate" and mode.confirmed


def test_test_environment_needs_no_confirm_but_checks_one_given(tmp_path):
    p = _profile(tmp_path, "test")
    safe, mode = policy.write_guard(p, None)
    assert safe is p and mode.header is None and mode.effective == "migrate"
    with pytest.raises(policy.PolicyError, match=f"does not match the target cluster {TARGET_ID}"):
        policy.write_guard(p, "cluster-x")


def test_without_an_aws_block_the_target_name_is_confirmed(tmp_path):
    p = _profile(tmp_path, "production", aws=False)
    assert policy.write_guard(p, None)[1].header.endswith("(add --hsm-confirm=hsm2m to migrate)")
    with pytest.raises(policy.PolicyError, match=r"\(clusters.target.name, hsm2m\)"):
        policy.write_guard(p, TARGET_ID)
    assert policy.write_guard(p, "hsm2m", planned=True)[1].effective == "migrate"


def test_a_verify_only_production_profile_says_so_too(tmp_path):
    p = _profile(tmp_path, "production", mode="verify-only")
    safe, mode = policy.write_guard(p, None)
    assert mode.effective == "verify-only" and mode.header.startswith(
        "keyparity: PRODUCTION, NOT CONFIRMED: verify-only profile")


# ---- hsm_profiles/prod.example.yaml ---------------------------------------------------------

EXAMPLE = REPO / "hsm_profiles" / "prod.example.yaml"


def test_prod_example_passes_the_schema_as_shipped():
    from keyparity.profile import _parse_yaml, _validate_schema
    data = _parse_yaml(EXAMPLE, EXAMPLE.read_bytes())
    _validate_schema(EXAMPLE, data)  # raises ProfileError on any schema error


def test_prod_example_loads_when_its_files_exist(tmp_path):
    """load_profile also checks that the files it names exist: redirect /opt/cloudhsm/ into
    tmp_path, create every file named there (pins: 64 hex digits), and load it for real."""
    import re
    text = EXAMPLE.read_text().replace("/opt/cloudhsm/", f"{tmp_path}/opt/cloudhsm/")
    for found in set(re.findall(rf"{re.escape(str(tmp_path))}/opt/cloudhsm/[^\s#\]]+", text)):
        path = Path(found)
        path.parent.mkdir(parents=True, exist_ok=True)
        if found.endswith("/certs"):
            path.mkdir(exist_ok=True)
        else:
            path.write_text("ab" * 32 + "\n" if found.endswith(".sha256") else "")
    copy = tmp_path / "prod.yaml"
    copy.write_text(text)
    p = load_profile(copy)
    assert (p.environment, p.source.mode, p.target.mode) == ("production", "FIPS", "NON_FIPS")
    assert (p.source.hsm_type, p.target.hsm_type) == ("hsm1.medium", "hsm2m.medium")
    assert p.target.aws.cluster_id == "cluster-2m7nonfips0b" and p.target.aws.min_active_hsms == 2
    assert p.source.user == "migration_cu1" and str(p.source.pin) == "env:HSM1_CU_PASSWORD"
    assert p.source.cloudhsm_cli.role == "crypto-user"
    assert p.target.tls.trust_dir == tmp_path / "opt/cloudhsm/etc/certs"
    assert (p.wrapping.oaep_hash, p.wrapping.mgf) == ("sha256", "mgf1-sha256")
    assert (p.migration_mode, p.migration_backend, p.apply_sharing) == ("migrate", "pkcs11", True)
    assert [s.type for s in p.evidence.signers] == ["pkcs11", "kms"] and p.evidence.threshold == 2
    assert p.key("tokenization-aes256").share_with == ("tokenization_app_cu", "payments_app_cu")
    assert p.wrapping.rsa_bits == 4096 and list(p.approvers) == ["jane.doe"]
    assert [a.name for a in p.approvals] == ["prod-non-fips.dsse.json",
                                             "prod-wrap-exception.dsse.json"]
    assert policy.fips_errors(p) == []  # 3DES to NON_FIPS; the signed approval is its own check
    safe, mode = policy.write_guard(p, None)  # production: verification only until confirmed
    assert safe.migration_mode == "verify-only" and mode.header.endswith(
        "(add --hsm-confirm=cluster-2m7nonfips0b to migrate)")
