"""Key quorum values and trusted wrapping (keyparity.cloudhsm.key_policy), read from the source
key's ``key list --verbose`` entry as tests/helpers/fake_cloudhsm_cli answers it (the documented entry,
tests/data/cloudhsm_cli/key_template.json, and key_policy_source.json)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import HELPERS, TESTDATA
from keyparity.backends import BACKENDS
from keyparity.cloudhsm import cli_runner as chc
from keyparity.cloudhsm.key_policy import (check_quorum_after, check_quorum_preflight,
                                           check_trusted_preflight, quorum_values,
                                           refuse_trusted_in_inventory)
from keyparity.profile import CloudHsmCliSpec, KeySpec
from keyparity.secrets import SecretRef

FAKE = HELPERS / "fake_cloudhsm_cli"
DATA = TESTDATA / "cloudhsm_cli"
TEMPLATE = json.loads((DATA / "key_template.json").read_text())
PASSWORD = "cu1-Pa55word"  # noqa: S105 - a test password
PKCS11_REFUSAL = ("'k1' has key quorum values (manage 2, use 1) on the source: the PKCS #11 "
                  "backend cannot set key quorum values at unwrap; use migration.backend: "
                  "cloudhsm-cli, which can")


def spec(label: str = "k1", share_with: tuple[str, ...] = (), owner: str | None = None,
         **attributes: Any) -> KeySpec:
    return KeySpec(index=3, label=label, target_label=label, type="aes", size=None, curve=None,
                   attributes=attributes, vectors=(), disposition="migrate",
                   expected_differences={}, owner=owner, share_with=share_with)


def entry(label: str = "k1", quorum: Any = (0, 0), **attributes: Any) -> dict[str, Any]:
    """The documented ``key list --verbose`` entry with these quorum values (a pair, or the
    raw JSON value; None: no key-quorum-values) and attributes."""
    out = json.loads(json.dumps(TEMPLATE))
    if quorum is None:
        del out["key-info"]["key-quorum-values"]
    elif isinstance(quorum, tuple):
        out["key-info"]["key-quorum-values"] = {"manage-key-quorum-value": quorum[0],
                                                "use-key-quorum-value": quorum[1]}
    else:
        out["key-info"]["key-quorum-values"] = quorum
    out["attributes"].update(label=label, **attributes)
    return out


@pytest.fixture
def listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``listed(entry)`` -> the CliKey the adapter makes of the fake's answer."""
    for name, value in {"KP_TEST_CU_PASSWORD": PASSWORD, "FAKE_CLOUDHSM_LOG": tmp_path / "log",
                        "FAKE_CLOUDHSM_EXPECT_PIN": f"cu1:{PASSWORD}",
                        "FAKE_CLOUDHSM_EXPECT_CLUSTER": "cluster-src"}.items():
        monkeypatch.setenv(name, str(value))
    ref = SecretRef("env", "KP_TEST_CU_PASSWORD", "clusters.source.cloudhsm_cli.password")
    cli = chc.CloudHsmCli(CloudHsmCliSpec(user="cu1", password=ref, path=FAKE), "cluster-src",
                          "source (hsm1)", 10.0)

    def run(raw: dict[str, Any]) -> chc.CliKey:
        case = tmp_path / "case.json"
        case.write_text(json.dumps({"key list *": {"error_code": 0, "data": {
            "matched_keys": [raw], "total_key_count": 1, "returned_key_count": 1}}}))
        monkeypatch.setenv("FAKE_CLOUDHSM_CASE", str(case))
        [key] = cli.list_keys({"label": raw["attributes"]["label"], "class": "secret-key"})
        return key
    return run


def test_the_documented_case_file_reads_as_a_key_with_quorum_and_wrap_with_trusted(listed):
    raw = json.loads((DATA / "key_policy_source.json").read_text())["key list *"]
    key = listed(raw["data"]["matched_keys"][0])
    assert quorum_values(key) == {"manage-key-quorum-value": 2, "use-key-quorum-value": 1}
    assert key.attributes["wrap-with-trusted"] is True and key.attributes["trusted"] is False


# ---- quorum ----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["pkcs11", "cloudhsm-cli"])
def test_a_key_without_quorum_passes_with_either_backend(listed, backend):
    check = check_quorum_preflight(spec(), listed(entry()), BACKENDS[backend])
    assert check.ok and check.facts["needs_quorum"] is False
    assert check.facts["quorum"] == {"manage-key-quorum-value": 0, "use-key-quorum-value": 0}


@pytest.mark.parametrize("quorum", [(2, 1), (0, 1), (1, 0)])
def test_a_key_with_quorum_is_refused_with_the_pkcs11_backend(listed, quorum):
    check = check_quorum_preflight(spec(share_with=("cu2",)), listed(entry(quorum=quorum)),
                                   BACKENDS["pkcs11"])
    assert not check.ok and check.facts["needs_quorum"] is True
    assert "the PKCS #11 backend cannot set key quorum values at unwrap; use " \
           "migration.backend: cloudhsm-cli, which can" in check.message
    if quorum == (2, 1):
        assert check.message == PKCS11_REFUSAL


def test_a_key_needing_approval_tokens_to_wrap_fails_with_the_cli_backend(listed):
    """A key management quorum above 1 needs approval tokens for `key wrap` and `key unwrap`
    (cloudhsm_cli-key-wrap-rsa-aes, <PAYLOAD_APPROVALR>); keyparity passes none, so the wrap
    would be refused: the preflight says so rather than warn."""
    check = check_quorum_preflight(spec(share_with=("cu2",)), listed(entry(quorum=(2, 1))),
                                   BACKENDS["cloudhsm-cli"])
    assert not check.ok
    assert "need quorum approval tokens (`--approval`)" in check.message
    assert "keyparity does not collect approvals" in check.facts["approval"]
    assert "--payload-approval" in check.message and "exclude it" in check.message
    assert check.facts["associated_users"] == 2


@pytest.mark.parametrize("quorum", [(1, 2), (0, 1), (1, 0)])
def test_no_approval_warning_when_key_management_needs_no_approval(listed, quorum):
    """Approval tokens are needed for key management only when the manage quorum is above 1
    (cloudhsm_cli-key-wrap-rsa-aes, <PAYLOAD_APPROVALR>): a use quorum alone needs none to
    move the key."""
    check = check_quorum_preflight(spec(share_with=("cu2",)), listed(entry(quorum=quorum)),
                                   BACKENDS["cloudhsm-cli"])
    assert check.ok and check.warnings == (), check.warnings
    assert "approval" not in check.facts


def test_a_quorum_above_the_users_the_key_will_have_fails(listed):
    check = check_quorum_preflight(spec(share_with=("cu2",)), listed(entry(quorum=(3, 0))),
                                   BACKENDS["cloudhsm-cli"])
    assert not check.ok
    assert "at most the number of users it is associated with" in check.message
    assert "the inventory gives 'k1' 2; add at least 1 crypto user(s) to its share_with" \
        in check.message


@pytest.mark.parametrize("quorum", [None, "inconsistent", {"manage-key-quorum-value": 1},
                                    {"manage-key-quorum-value": "2",
                                     "use-key-quorum-value": 0}])
def test_quorum_values_the_cli_did_not_report_fail(listed, quorum):
    check = check_quorum_preflight(spec(), listed(entry(quorum=quorum)), BACKENDS["cloudhsm-cli"])
    assert not check.ok
    assert check.message.startswith("the CLI reported no usable key-quorum-values for 'k1' on "
                                    "the source")


def test_quorum_after_migration_must_equal_the_source(listed):
    source = listed(entry(quorum=(2, 1)))
    same = check_quorum_after(spec(), source, listed(entry(quorum=(2, 1))))
    assert same.ok and same.facts["target"] == same.facts["source"]
    lost = check_quorum_after(spec(), source, listed(entry(quorum=(0, 0))))
    assert not lost.ok
    assert lost.message.startswith("'k1' on the target has key quorum values manage 0, use 0, "
                                   "the source key manage 2, use 1: quorum values are set only "
                                   "when a key is generated, imported or unwrapped")
    unknown = check_quorum_after(spec(), source, listed(entry(quorum=None)))
    assert not unknown.ok and "on the target" in unknown.message


# ---- trusted ---------------------------------------------------------------------------------

def test_a_key_not_wrap_with_trusted_needs_nothing(listed):
    check = check_trusted_preflight(spec(), listed(entry()), wrapping_trusted=False)
    assert check.ok and check.facts["wrap_with_trusted"] is False


def test_wrap_with_trusted_fails_with_the_admin_step_unless_the_wrapping_key_will_be_trusted(
        listed):
    key = listed(entry(**{"wrap-with-trusted": True}))
    check = check_trusted_preflight(spec(), key, False, wrapping_label="kp-wrap-imported",
                                    cluster="hsm1")
    assert not check.ok
    assert "'k1' on hsm1 has wrap-with-trusted: true: it can only be wrapped by a key marked " \
           "trusted, and only an admin can set trusted" in check.message
    assert "`key list --filter attr.label=kp-wrap-imported attr.class=public-key`" \
        in check.message
    assert "`login --username <admin> --role admin`" in check.message
    assert "`key set-attribute --filter key-reference=<key-reference> --name trusted --value " \
           "true`" in check.message
    assert check.message.endswith("(wrapping.trusted: true)")
    promised = check_trusted_preflight(spec(), key, True, wrapping_label="kp-wrap-imported",
                                       cluster="hsm1")
    assert promised.ok and promised.facts["admin_step"] == check.facts["admin_step"]
    assert "keyparity does not set trusted" in promised.warnings[0]


@pytest.mark.parametrize("value", ["inconsistent", None])
def test_wrap_with_trusted_the_cli_did_not_report_fails(listed, value):
    raw = entry(**({"wrap-with-trusted": value} if value else {}))
    if value is None:
        del raw["attributes"]["wrap-with-trusted"]
    check = check_trusted_preflight(spec(), listed(raw), True)
    assert not check.ok and "no usable wrap-with-trusted for 'k1'" in check.message


def test_the_inventory_may_not_ask_for_trusted_at_unwrap():
    reason = refuse_trusted_in_inventory(spec(trusted=True))
    assert reason is not None and reason.startswith(
        "'k1': trusted: true cannot be set at unwrap: the crypto user who unwraps cannot set "
        "trusted, only an admin can")
    assert refuse_trusted_in_inventory(spec(trusted=False)) is None
    assert refuse_trusted_in_inventory(spec(wrap_with_trusted=True)) is None
    assert refuse_trusted_in_inventory(spec()) is None
