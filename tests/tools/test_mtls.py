"""keyparity.cloudhsm.mtls against tests/helpers/fake_cloudhsm_cli answering the documented JSON of
`cluster mtls get-enforcement` and `cluster mtls list-trust-anchors` (case files
tests/data/cloudhsm_cli/mtls_*.json, whose globs include each cluster's --cluster-id): the target
at least as strict as the source, trust anchors recorded by the SHA-256 of their DER, CLI errors
failing the check with the cluster and command named."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import HELPERS, TESTDATA
from keyparity.cloudhsm import kms_stores, mtls
from keyparity.cloudhsm.cli_runner import CloudHsmCli
from keyparity.cloudhsm.mtls import MtlsState
from keyparity.hsm.login import LoginGate
from keyparity.profile import CloudHsmCliSpec
from keyparity.secrets import SecretRef

FAKE = HELPERS / "fake_cloudhsm_cli"
DATA = TESTDATA / "cloudhsm_cli"
PASSWORD = "s3cret-Pa55"  # noqa: S105 - a test password
SRC, TGT = "cluster-src1", "cluster-tgt2"
# SHA-256 of the DER of the fixtures' certificates, computed with `openssl x509 -outform DER |
# sha256sum` when they were made: root A, root B, intermediate C (issued by A)
SHA_A = "c6b79af4125c5b40a8e6a830d54279416bb7397ea0975631ce8097efebfb712c"
SHA_B = "3ef3db2ea323b97dcd976057d3aacf1842f5e33e307e8ffabbea17bcd48aedc3"
SHA_C = "be0d92c3a565ad42a4baf1cb137092b3094b05cfbc61a74abdde95a64c2dbab9"


class Fake:
    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self.mp, self.log = tmp, monkeypatch, tmp / "cli.log"
        monkeypatch.setenv("KP_TEST_CU_PASSWORD", PASSWORD)
        monkeypatch.setenv("FAKE_CLOUDHSM_EXPECT_PIN", f"cu1:{PASSWORD}")
        monkeypatch.setenv("FAKE_CLOUDHSM_EXPECT_CLUSTER", f"{SRC},{TGT}")
        monkeypatch.setenv("FAKE_CLOUDHSM_LOG", str(self.log))

    def case(self, name: str) -> None:
        shutil.copy(DATA / name, self.tmp / name)
        self.mp.setenv("FAKE_CLOUDHSM_CASE", str(self.tmp / name))

    def cli(self, cluster_id: str, where: str) -> CloudHsmCli:
        spec = CloudHsmCliSpec(user="cu1", path=FAKE, password=SecretRef(
            "env", "KP_TEST_CU_PASSWORD", "clusters.x.cloudhsm_cli.password"))
        return CloudHsmCli(spec, cluster_id, where, 10.0, gate=LoginGate(None))

    def both(self, case: str) -> tuple[MtlsState, MtlsState]:
        self.case(case)
        return (mtls.read(self.cli(SRC, "source (hsm2m-a)")),
                mtls.read(self.cli(TGT, "target (hsm2m-b)")))

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.log.read_text().splitlines()] if self.log.exists() \
            else []


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    return Fake(tmp_path, monkeypatch)


def test_both_enforced_passes_and_records_each_anchor_by_the_sha256_of_its_der(fake):
    source, target = fake.both("mtls_both_enforced.json")
    assert [c["argv"] for c in fake.calls()] == [
        ["cluster", "mtls", "get-enforcement", "--cluster-id", SRC],
        ["cluster", "mtls", "list-trust-anchors", "--cluster-id", SRC],
        ["cluster", "mtls", "get-enforcement", "--cluster-id", TGT],
        ["cluster", "mtls", "list-trust-anchors", "--cluster-id", TGT]]
    assert source.level == target.level == "cluster" and source.enforced
    check = mtls.check_mtls(source, target)
    assert check.ok and check.warnings == () and check.name == "mtls"
    assert check.message == ("mTLS enforcement: source (hsm2m-a) (cluster-src1) cluster, target "
                             "(hsm2m-b) (cluster-tgt2) cluster (at least as strict); trust "
                             "anchors: 1 on the source, 2 on the target (SHA-256 in the facts)")
    assert check.facts["trust_anchor_sha256"] == {"source": [SHA_A],
                                                  "target": [SHA_A, SHA_C, SHA_A]}
    chain = check.facts["target"]["trust_anchors"][1]
    assert chain["certificate_reference"] == "0x02" and chain["sha256"] == [SHA_C, SHA_A]
    assert chain["subject"] == "CN=mtls intermediate c,O=Example Payments"
    assert chain["cluster_coverage"] == "full" and chain["not_after"].startswith("20")
    assert "BEGIN CERTIFICATE" not in json.dumps(check.record())  # hashes, not certificates


def test_target_not_enforcing_while_the_source_does_fails_with_what_to_do(fake):
    check = mtls.check_mtls(*fake.both("mtls_target_off.json"))
    assert not check.ok
    assert check.message.startswith(
        "target (hsm2m-b) (cluster-tgt2) does not enforce mTLS (mtls-enforcement-level none) "
        "while source (hsm2m-a) (cluster-src1) does (cluster): clients without a client "
        "certificate would reach the migrated keys; ")
    assert check.message.endswith("`cluster mtls set-enforcement --level cluster` logged in as "
                                  "the admin named admin, over an mTLS connection")
    assert check.facts["target"]["enforcement_level"] == "none"


def test_stricter_target_passes():
    source = MtlsState("source", SRC, "none")
    assert mtls.check_mtls(source, MtlsState("target", TGT, "cluster")).ok
    assert mtls.check_mtls(source, MtlsState("target", TGT, "none")).ok


def test_a_cli_error_fails_naming_the_cluster_and_the_command(fake):
    source, target = fake.both("mtls_target_error.json")
    assert target.failed_command == "cluster mtls get-enforcement" and target.level is None
    assert len(fake.calls()) == 3  # the target's list-trust-anchors is not run after the error
    check = mtls.check_mtls(source, target)
    assert not check.ok
    assert check.message.startswith("`cluster mtls get-enforcement` on target (hsm2m-b) "
                                    "(cluster-tgt2) failed: CloudHSM CLI `cluster mtls "
                                    "get-enforcement` on target (hsm2m-b): error_code 1: "
                                    "Unsupported operation: mtls is not available on this "
                                    "cluster")
    assert check.facts["target"]["failed_command"] == "cluster mtls get-enforcement"


def test_a_trust_anchor_that_is_not_a_certificate_fails_naming_list_trust_anchors(fake):
    source, target = fake.both("mtls_doc_placeholder.json")  # the guide's "<PEM Encoded ...>"
    check = mtls.check_mtls(source, target)
    assert not check.ok and target.error is None
    assert check.message.startswith("`cluster mtls list-trust-anchors` on source (hsm2m-a) "
                                    "(cluster-src1) failed: ")
    assert "trust anchor 0x01 is not a PEM certificate" in check.message


def test_a_refused_login_fails_the_check_and_is_not_retried(fake, monkeypatch):
    monkeypatch.setenv("KP_TEST_CU_PASSWORD", "wrong")
    source, target = fake.both("mtls_both_enforced.json")
    check = mtls.check_mtls(source, target)
    assert not check.ok and "Login failed" in check.message
    assert "wrong" not in check.message
    assert len(fake.calls()) == 2  # one refused attempt per cluster, nothing after it


def test_no_shared_anchor_and_partial_coverage_warn(fake):
    check = mtls.check_mtls(*fake.both("mtls_other_anchor.json"))
    assert check.ok
    assert check.facts["trust_anchor_sha256"] == {"source": [SHA_A], "target": [SHA_B]}
    assert check.warnings == (
        "trust anchor 0x01 of target (hsm2m-b) (cluster-tgt2) has cluster-coverage partial, "
        "not full: not every HSM has it yet",
        "no trust anchor of source (hsm2m-a) (cluster-src1) is registered on target (hsm2m-b) "
        "(cluster-tgt2): client certificates issued for the source are refused by the target "
        "unless another registered anchor issued them")


def test_hsm1_runs_nothing_and_counts_as_not_enforcing(fake):
    fake.case("mtls_target_off.json")
    source = mtls.read(fake.cli(SRC, "source (hsm1)"), hsm_type="hsm1.medium")
    assert fake.calls() == [] and source.unsupported and not source.enforced
    target = mtls.read(fake.cli(TGT, "target (hsm2m)"), hsm_type="hsm2m.medium")
    check = mtls.check_mtls(source, target)
    assert check.ok and "source (hsm1) (cluster-src1) n/a (hsm1.medium)" in check.message
    on = MtlsState("source", SRC, "cluster")
    hsm1_target = MtlsState("target", TGT, unsupported=mtls.UNSUPPORTED)
    failed = mtls.check_mtls(on, hsm1_target)
    assert not failed.ok and "(mtls-enforcement-level n/a (hsm1.medium))" in failed.message


def test_a_target_enforcing_mtls_cannot_back_a_kms_key_store():
    check = mtls.check_mtls(MtlsState("source", SRC, "cluster"),
                            MtlsState("target", TGT, "cluster"), target_key_stores=["cks-1"])
    assert not check.ok
    assert check.message.startswith("target (cluster-tgt2) enforces mTLS but backs the KMS key "
                                    "store(s) cks-1: mTLS is not supported for CloudHSM key "
                                    "stores of AWS KMS")
    assert mtls.check_mtls(MtlsState("source", SRC, "none"), MtlsState("target", TGT, "none"),
                           target_key_stores=["cks-1"]).ok


def test_an_unknown_level_fails():
    check = mtls.check_mtls(MtlsState("source", SRC, "strict"), MtlsState("target", TGT, "none"))
    assert not check.ok
    assert check.message == ("source (cluster-src1) reports mtls-enforcement-level 'strict', "
                             "which keyparity does not know (none or cluster): check the CLI "
                             "version")


def test_pem_sha256_hashes_the_der_of_every_certificate():
    doc = json.loads((DATA / "mtls_both_enforced.json").read_text())
    pem = doc[f"cluster mtls list-trust-anchors --cluster-id {TGT}"]["data"]["trust_anchors"][1][
        "certificate"]
    assert kms_stores.pem_sha256(pem) == (SHA_C, SHA_A)
    assert hashlib.sha256(pem.encode()).hexdigest() not in (SHA_C, SHA_A)
    with pytest.raises(ValueError, match="no PEM certificate"):
        kms_stores.pem_sha256("<PEM Encoded Certificate 1>")
