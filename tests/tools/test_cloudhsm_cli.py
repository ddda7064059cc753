"""The CloudHSM CLI adapter (keyparity.cloudhsm.cli_runner) against
tests/helpers/fake_cloudhsm_cli: how it is called (credentials in the environment only, --cluster-id, no shell, no stdin) and how every
quirk of the CLI's JSON is read, each failure typed, with what to do."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import HELPERS, TESTDATA
from keyparity.cloudhsm import cli_runner as chc
from keyparity.errors import KeyNotFound, LoginError, TokenError
from keyparity.profile import AwsSpec, CloudHsmCliSpec, Cluster
from keyparity.secrets import SecretRef

FAKE = HELPERS / "fake_cloudhsm_cli"
DATA = TESTDATA / "cloudhsm_cli"
PASSWORD = "s3cret-Pa55"  # noqa: S105 - a test password
PIN = f"cu1:{PASSWORD}"


class Fake:
    """The fake CLI's environment for one test, and what it logged."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self.mp = tmp, monkeypatch
        self.log = tmp / "cli.log"
        monkeypatch.setenv("KP_TEST_CU_PASSWORD", PASSWORD)
        monkeypatch.setenv("FAKE_CLOUDHSM_EXPECT_PIN", PIN)
        monkeypatch.setenv("FAKE_CLOUDHSM_EXPECT_CLUSTER", "cluster-abc")
        monkeypatch.setenv("FAKE_CLOUDHSM_LOG", str(self.log))
        monkeypatch.setenv("CLOUDHSM_PIN", "leftover:from-the-shell")  # must be replaced

    def case(self, name_or_table: str | dict[str, Any]) -> Path:
        if isinstance(name_or_table, str):
            path = self.tmp / name_or_table
            shutil.copy(DATA / name_or_table, path)
        else:
            path = self.tmp / "case.json"
            path.write_text(json.dumps(name_or_table))
        self.mp.setenv("FAKE_CLOUDHSM_CASE", str(path))
        return path

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def cli(self, path: Path = FAKE, timeout_s: float = 10.0, **spec: Any) -> chc.CloudHsmCli:
        cli_spec = CloudHsmCliSpec(user=spec.pop("user", "cu1"), path=path,
                                   password=SecretRef("env", "KP_TEST_CU_PASSWORD",
                                                      "clusters.target.cloudhsm_cli.password"),
                                   **spec)
        return chc.CloudHsmCli(cli_spec, "cluster-abc", "target (hsm2m)", timeout_s)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    return Fake(tmp_path, monkeypatch)


def aes(cli: chc.CloudHsmCli) -> list[chc.CliKey]:
    return cli.list_keys({"label": "k1", "class": "secret-key"})


# ---- how the CLI is run -----------------------------------------------------------------------

def test_single_command_mode_credentials_in_the_environment_only_and_cluster_id(fake):
    fake.case("list_one.json")
    [key] = aes(fake.cli())
    [call] = fake.calls()
    assert call["argv"] == ["key", "list", "--filter", "attr.label=k1", "attr.class=secret-key",
                            "--verbose", "--cluster-id", "cluster-abc"]
    assert call["role"] == "crypto-user" and call["cluster_id"] == "cluster-abc"
    assert PASSWORD not in fake.log.read_text()
    assert key.owners == ("cu1",) and key.shared_users == ("cu2",)
    assert key.cluster_coverage == "full" and key.key_reference == "0x00000000001c0686"
    assert key.check_value == "3a9b1c" and key.id == "" and key.attributes["encrypt"] is True
    assert key.inconsistent == () and key.missing == ()


def test_the_fake_refuses_a_wrong_pin_and_the_adapter_reports_a_login_error_once(fake):
    fake.case("list_one.json")
    fake.mp.setenv("KP_TEST_CU_PASSWORD", "wrong-password")
    cli = fake.cli()
    with pytest.raises(chc.CliLoginError) as first:
        aes(cli)
    assert isinstance(first.value, LoginError) and first.value.kind == "login"
    assert "not retried" in str(first.value)
    assert "wrong-password" not in str(first.value)
    with pytest.raises(chc.CliLoginError, match="failed earlier in this run") as second:
        aes(cli)
    assert second.value.kind == "login-earlier"
    assert len(fake.calls()) == 1  # the second command was not run: no lock-out


def test_the_cluster_id_is_passed_only_when_the_profile_names_one(tmp_path):
    spec = CloudHsmCliSpec(user="cu1", password=SecretRef("env", "X", "f"), path=FAKE)
    cluster = Cluster(role="target", name="hsm2m", module=tmp_path, token_label="t", slot=None,
                      pin=SecretRef("env", "X", "f"), mode="NON_FIPS", cloudhsm_cli=spec)
    assert "--cluster-id" not in chc.CloudHsmCli.for_cluster(cluster).argv(["key", "list"])
    with_aws = Cluster(**{**cluster.__dict__, "aws": AwsSpec("cluster-abc", "us-east-1")})
    assert chc.CloudHsmCli.for_cluster(with_aws).argv(["key", "list"])[-2:] == [
        "--cluster-id", "cluster-abc"]


def test_an_unset_password_reference_is_reported_without_running_the_cli(fake):
    fake.case("list_one.json")
    fake.mp.delenv("KP_TEST_CU_PASSWORD")
    with pytest.raises(chc.CliLoginError, match="KP_TEST_CU_PASSWORD is not set"):
        aes(fake.cli())
    assert fake.calls() == []


# ---- the JSON, page by page, quirk by quirk ---------------------------------------------------

def test_pagination_follows_next_token_over_three_pages(fake):
    fake.case("list_paged.json")
    keys = aes(fake.cli())
    assert [k.key_reference for k in keys] == ["0x0000000000000001", "0x0000000000000002",
                                               "0x0000000000000003"]
    argvs = [c["argv"] for c in fake.calls()]
    assert "--starting-token" not in argvs[0]
    assert argvs[1][argvs[1].index("--starting-token") + 1] == "t1"
    assert argvs[2][argvs[2].index("--starting-token") + 1] == "t2"


def test_a_next_token_that_repeats_is_a_shape_error_not_an_endless_loop(fake):
    fake.case("list_paged_loop.json")
    with pytest.raises(chc.CliOutputInvalid, match="next_token 't1' repeats"):
        aes(fake.cli())
    assert len(fake.calls()) == 2


def test_total_key_count_must_match_the_keys_of_all_pages(fake):
    fake.case("list_total_mismatch.json")
    with pytest.raises(chc.CliOutputInvalid, match="total_key_count 3 but 1 keys"):
        aes(fake.cli())


def test_error_code_non_zero_is_a_typed_error_carrying_the_clis_message(fake):
    fake.case("error_code.json")
    with pytest.raises(chc.CliCommandFailed) as err:
        aes(fake.cli())
    assert isinstance(err.value, TokenError) and err.value.kind == "error-code"
    assert "error_code 1: Invalid key attribute: colour" in str(err.value)
    fake.case("error_not_found.json")
    with pytest.raises(chc.CliKeyNotFound) as err:
        fake.cli().share({"label": "k1"}, "cu2")
    assert isinstance(err.value, KeyNotFound)
    assert "neither owned by nor shared with this crypto user" in str(err.value)


def test_inconsistent_attributes_are_reported_by_name(fake):
    fake.case("inconsistent.json")
    [key] = aes(fake.cli())
    assert key.inconsistent == ("attributes.check-value", "attributes.encrypt")
    assert key.check_value is None  # "inconsistent" is not a check value


def test_id_empty_string_and_0x_both_mean_empty_and_hex_is_normalised(fake):
    fake.case("ids.json")
    a, b, c = aes(fake.cli())
    assert (a.id, b.id, c.id) == ("", "", "0a0b")
    assert c.check_value == "3a9b1c"


def test_missing_fields_are_named_not_guessed(fake):
    fake.case("missing_fields.json")
    no_info, no_attrs, no_shared = aes(fake.cli())
    assert no_info.missing == ("key-info", "key-owners", "shared-users")
    assert no_info.owners == () and no_info.cluster_coverage is None
    assert no_attrs.missing == ("attributes",) and no_attrs.label is None
    assert no_shared.missing == ("shared-users",) and no_shared.check_value is None
    fake.case("no_matched_keys.json")
    with pytest.raises(chc.CliOutputInvalid, match="no data.matched_keys list"):
        aes(fake.cli())


@pytest.mark.parametrize(("case", "kind", "text"), [
    ("not_json.json", "bad-json", "output is not JSON: Error: could not connect to any HSM"),
    ("exit_nonzero.json", "exit", "exit status 2: error: unexpected argument '--verbos'"),
    ("exit_login.json", "login", "exit status 1: Login failed: user is locked"),
])
def test_output_that_is_not_the_documented_json(fake, case, kind, text):
    fake.case(case)
    with pytest.raises(chc.CliError) as err:
        aes(fake.cli())
    assert err.value.kind == kind
    assert text in str(err.value)
    assert type(err.value) is chc._TABLE[kind][0]
    assert str(err.value).endswith(chc._TABLE[kind][1])


def test_timeout_is_a_typed_error_that_says_the_command_may_have_run(fake):
    fake.case("timeout.json")
    with pytest.raises(chc.CliUnavailable) as err:
        aes(fake.cli(timeout_s=0.5))
    assert err.value.kind == "timeout"
    assert "no answer within 0.5 s" in str(err.value) and "check with `key list`" in str(err.value)


def test_missing_and_non_executable_binary(fake, tmp_path):
    fake.case("list_one.json")
    with pytest.raises(chc.CliUnavailable, match="not found; install the CloudHSM CLI") as err:
        aes(fake.cli(path=tmp_path / "nowhere" / "cloudhsm-cli"))
    assert err.value.kind == "missing-binary"
    plain = tmp_path / "cloudhsm-cli"
    plain.write_text("#!/bin/sh\n")
    plain.chmod(0o644)
    with pytest.raises(chc.CliUnavailable, match="cannot be executed") as err:
        aes(fake.cli(path=plain))
    assert err.value.kind == "not-executable"


def test_a_secret_the_cli_echoes_is_redacted_from_the_error(fake, tmp_path):
    fake.case({"key list *": {"error_code": 7, "data": f"bad pin for {PIN} (was {PASSWORD})"}})
    with pytest.raises(chc.CliError) as err:
        aes(fake.cli())
    assert PASSWORD not in str(err.value) and "<redacted>" in str(err.value)


def test_share_command_line(fake):
    fake.case({"key share *": {"error_code": 0, "data": {"message": "Key shared successfully"}}})
    fake.cli().share({"label": "k1", "class": "secret-key"}, "cu2")
    assert fake.calls()[0]["argv"] == [
        "key", "share", "--filter", "attr.label=k1", "attr.class=secret-key", "--username",
        "cu2", "--role", "crypto-user", "--cluster-id", "cluster-abc"]


def test_every_table_row_names_a_keyparity_error_and_what_to_do():
    for kind, (cls, advice) in chc._TABLE.items():
        assert issubclass(cls, chc.CliError), kind
        assert len(advice) > 20, kind
