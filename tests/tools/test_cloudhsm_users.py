"""Users on the target (keyparity.cloudhsm.users) against tests/helpers/fake_cloudhsm_cli: ``user list``
in its documented shape (tests/data/cloudhsm_cli/user_list.json), the source owners from one
filtered ``key list --verbose`` per inventory key, and the check, red and green."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import HELPERS, TESTDATA
from keyparity.cloudhsm import cli_runner as chc
from keyparity.cloudhsm.users import (User, check_target_users, owners_of, source_keys,
                                      user_list)
from keyparity.errors import LabelConflict
from keyparity.profile import AwsSpec, CloudHsmCliSpec, Cluster, KeySpec, Profile, Wrapping
from keyparity.secrets import SecretRef

FAKE = HELPERS / "fake_cloudhsm_cli"
DATA = TESTDATA / "cloudhsm_cli"
TEMPLATE = json.loads((DATA / "key_template.json").read_text())
USERS = json.loads((DATA / "user_list.json").read_text())["user list *"]
PASSWORD = "cu1-Pa55word"  # noqa: S105 - a test password
SRC, TGT = "cluster-src", "cluster-abc"


def spec(label: str, type_: str = "aes", owner: str | None = None,
         share_with: tuple[str, ...] = (), index: int = 0) -> KeySpec:
    return KeySpec(index=index, label=label, target_label=label, type=type_, size=None,
                   curve=None, attributes={}, vectors=(), disposition="migrate",
                   expected_differences={}, owner=owner, share_with=share_with)


def cluster(role: str, name: str, cluster_id: str, cli: bool = True) -> Cluster:
    ref = SecretRef("env", "KP_TEST_CU_PASSWORD", f"clusters.{role}.cloudhsm_cli.password")
    return Cluster(role=role, name=name, module=FAKE, token_label=name, slot=None, pin=ref,
                   mode="NON_FIPS", aws=AwsSpec(cluster_id, "us-east-1"),
                   cloudhsm_cli=CloudHsmCliSpec(user="cu1", password=ref, path=FAKE)
                   if cli else None)


def profile(*keys: KeySpec) -> Profile:
    return Profile(path=Path("p.yaml"), sha256="0" * 64, name="p", description="",
                   environment="test", module_env={}, source=cluster("source", "hsm1", SRC),
                   target=cluster("target", "hsm2", TGT),
                   wrapping=Wrapping("rsa-aes", 2048, "sha256", "mgf1-sha256", 256),
                   migration_mode="migrate", keys=keys)


def users(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"error_code": 0, "data": {"users": list(rows)}}


def row(name: str, role: str = "crypto-user", locked: str = "false", mfa: bool = False,
        coverage: str = "full") -> dict[str, Any]:
    return {"username": name, "role": role, "locked": locked,
            "mfa": [{"strategy": "token-sign", "status": "enabled"}] if mfa else [],
            "cluster-coverage": coverage}


def key(label: str, owner: str, cls: str = "secret-key") -> dict[str, Any]:
    out = json.loads(json.dumps(TEMPLATE))
    out["key-info"]["key-owners"] = [{"username": owner, "key-coverage": "full"}]
    out["attributes"].update(label=label, **{"class": cls})
    return out


def listing(*keys: dict[str, Any]) -> dict[str, Any]:
    return {"error_code": 0, "data": {"matched_keys": list(keys), "total_key_count": len(keys),
                                      "returned_key_count": len(keys), "next_token": None}}


def list_cmd(label: str, cls: str = "secret-key", cluster_id: str = SRC) -> str:
    return (f"key list --filter attr.label={label} attr.class={cls} --verbose "
            f"--cluster-id {cluster_id}")


class Fake:
    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self.mp, self.log = tmp, monkeypatch, tmp / "cli.log"
        for name, value in {"KP_TEST_CU_PASSWORD": PASSWORD, "FAKE_CLOUDHSM_LOG": self.log,
                            "FAKE_CLOUDHSM_EXPECT_PIN": f"cu1:{PASSWORD}",
                            "FAKE_CLOUDHSM_EXPECT_CLUSTER": f"{SRC},{TGT}"}.items():
            monkeypatch.setenv(name, str(value))

    def case(self, table: dict[str, Any] | str) -> None:
        path = self.tmp / "case.json"
        if isinstance(table, str):
            shutil.copy(DATA / table, path)
        else:
            path.write_text(json.dumps(table))
        self.mp.setenv("FAKE_CLOUDHSM_CASE", str(path))

    def calls(self) -> list[list[str]]:
        return [json.loads(line)["argv"] for line in self.log.read_text().splitlines()]

    def cli(self, p: Profile, role: str) -> chc.CloudHsmCli:
        return chc.CloudHsmCli.for_cluster(p.source if role == "source" else p.target,
                                           timeout_s=10)

    def run(self, p: Profile, source: dict[str, Any], target: dict[str, Any],
            listings: dict[str, Any]) -> Any:
        """user list on both clusters, the source owners, then the check."""
        self.case({f"user list --cluster-id {SRC}": source,
                   f"user list --cluster-id {TGT}": target, **listings})
        src_cli, tgt_cli = self.cli(p, "source"), self.cli(p, "target")
        owners = owners_of(source_keys(src_cli, p.keys))
        return check_target_users(p, user_list(src_cli), user_list(tgt_cli), owners)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    return Fake(tmp_path, monkeypatch)


# ---- user list -------------------------------------------------------------------------------

def test_user_list_reads_the_documented_output(fake):
    fake.case("user_list.json")
    p = profile()
    listed = {u.username: u for u in user_list(fake.cli(p, "target"))}
    assert fake.calls() == [["user", "list", "--cluster-id", TGT]]
    assert listed["admin"] == User("admin", "admin", False, False, False, "full")
    assert listed["app_user"].role == "internal(APPLIANCE_USER)"
    assert listed["cu2"].mfa is True and listed["cu2"].quorum is True
    assert listed["cu1"].mfa is False and listed["cu1"].locked is False
    assert listed["cu3"].locked is True  # the CLI prints "true" as a string
    assert listed["cu4"].cluster_coverage == "partial"
    assert listed["cu2"].facts() == {"role": "crypto-user", "locked": False, "mfa": True,
                                     "quorum": True, "cluster_coverage": "full"}


@pytest.mark.parametrize("data", [{"user": []}, {"users": [{"role": "admin"}]}, ["cu1"]])
def test_user_list_in_another_shape_is_refused(fake, data):
    fake.case({"user list *": {"error_code": 0, "data": data}})
    with pytest.raises(chc.CliOutputInvalid) as err:
        user_list(fake.cli(profile(), "target"))
    assert err.value.kind == "bad-shape" and "user list" in str(err.value)


# ---- source owners ---------------------------------------------------------------------------

def test_source_owners_one_filtered_key_list_per_inventory_key(fake):
    p = profile(spec("k1"), spec("k-rsa", "rsa"), spec("k-gone"), spec("k-twice"))
    fake.case({list_cmd("k1"): listing(key("k1", "cu5")),
               list_cmd("k-rsa", "private-key"): listing(key("k-rsa", "cu6", "private-key")),
               list_cmd("k-gone"): listing(),
               list_cmd("k-twice"): listing(key("k-twice", "cu1"), key("k-twice", "cu2"))})
    found = source_keys(fake.cli(p, "source"), p.keys)
    assert owners_of(found) == {"k1": ("cu5",), "k-rsa": ("cu6",)}
    assert isinstance(found["k-gone"], chc.CliKeyNotFound)
    assert "'k-gone' is not visible to crypto user 'cu1'" in str(found["k-gone"])
    assert isinstance(found["k-twice"], LabelConflict)
    assert [c[3:5] for c in fake.calls()] == [
        ["attr.label=k1", "attr.class=secret-key"], ["attr.label=k-rsa", "attr.class=private-key"],
        ["attr.label=k-gone", "attr.class=secret-key"],
        ["attr.label=k-twice", "attr.class=secret-key"]]


# ---- the check -------------------------------------------------------------------------------

def test_green_owner_shared_users_and_source_owners_exist_on_the_target(fake):
    p = profile(spec("k1", owner="cu1", share_with=("cu2",)), spec("k2"))
    src = users(row("cu1"), row("cu2", mfa=True))
    tgt = users(row("admin", "admin"), row("cu1"), row("cu2", mfa=True))
    check = fake.run(p, src, tgt, {list_cmd("k1"): listing(key("k1", "cu1")),
                                   list_cmd("k2"): listing(key("k2", "cu1"))})
    assert check.ok and check.skip is None and check.warnings == (), check.message
    facts = check.facts
    assert facts["users"]["cu1"]["needed_for"] == ["owner of 'k1'", "owns 'k2' on hsm1"]
    assert facts["users"]["cu2"]["target"]["mfa"] is True
    assert facts["users"]["cu2"]["source"]["mfa"] is True
    assert facts["source_owners"] == {"k1": ["cu1"], "k2": ["cu1"]}
    json.dumps(check.record())  # JSON-able


def test_an_inventory_user_missing_on_the_target_fails_with_the_admin_step(fake):
    p = profile(spec("k1", owner="cu1", share_with=("cu9",)))
    check = fake.run(p, users(row("cu1")), users(row("cu1")),
                     {list_cmd("k1"): listing(key("k1", "cu1"))})
    assert not check.ok
    assert check.message == (
        "crypto user cu9 (share_with of 'k1') does not exist on hsm2: create it with `user "
        "create --username cu9 --role crypto-user` (CloudHSM CLI, logged in as an admin)")
    assert check.facts["users"]["cu9"]["target"] is None


@pytest.mark.parametrize("bad, expected", [
    (row("cu2", locked="true"), "cu2 (share_with of 'k1') is locked on hsm2: an admin unlocks "
                                "it by setting a new password (`user change-password "
                                "--username cu2 --role crypto-user`"),
    (row("cu2", coverage="partial"), "cu2 (share_with of 'k1') is not on every HSM of hsm2 "
                                     "(cluster-coverage: partial)"),
    (row("cu2", role="admin"), "cu2 (share_with of 'k1') has the role admin on hsm2, not "
                               "crypto-user"),
    (row("cu2", locked="maybe"), "is not reported as unlocked (locked: not true/false) on hsm2"),
])
def test_a_locked_partial_or_non_crypto_user_fails(fake, bad, expected):
    p = profile(spec("k1", owner="cu1", share_with=("cu2",)))
    check = fake.run(p, users(row("cu1"), row("cu2")), users(row("cu1"), bad),
                     {list_cmd("k1"): listing(key("k1", "cu1"))})
    assert not check.ok and expected in check.message
    assert check.message.count("\n") == 0  # only that user, only that problem


def test_a_source_owner_without_counterpart_fails_unless_the_inventory_names_a_new_owner(fake):
    listings = {list_cmd("k2"): listing(key("k2", "cu5"))}
    check = fake.run(profile(spec("k2")), users(row("cu5")), users(row("cu1")), listings)
    assert not check.ok
    assert "crypto user cu5 (owns 'k2' on hsm1) does not exist on hsm2" in check.message
    assert "or name the key's new owner in the inventory (owner:)" in check.message
    assert check.facts["users"]["cu5"]["source"]["role"] == "crypto-user"
    renamed = fake.run(profile(spec("k2", owner="cu1")), users(row("cu5")), users(row("cu1")),
                       listings)
    assert renamed.ok and "cu5" not in renamed.facts["users"], renamed.message


def test_a_source_owner_who_is_not_the_migrating_user_is_warned_about(fake):
    check = fake.run(profile(spec("k2")), users(row("cu5")), users(row("cu1"), row("cu5")),
                     {list_cmd("k2"): listing(key("k2", "cu5"))})
    assert check.ok, check.message
    [warning] = check.warnings
    assert warning.startswith("'k2' is owned by cu5 on hsm1; the inventory names no owner, so "
                              "on hsm2 it will be owned by the crypto user who unwraps it (cu1)")
    shared = fake.run(profile(spec("k2", share_with=("cu5",))), users(row("cu5")),
                      users(row("cu1"), row("cu5")), {list_cmd("k2"): listing(key("k2", "cu5"))})
    assert shared.ok and shared.warnings == ()


def test_an_mfa_difference_between_the_clusters_is_a_warning(fake):
    check = fake.run(profile(spec("k1", owner="cu1")), users(row("cu1", mfa=True)),
                     users(row("cu1")), {list_cmd("k1"): listing(key("k1", "cu1"))})
    assert check.ok and check.warnings == ("cu1 has MFA on hsm1 but no MFA on hsm2",)


def test_unlisted_source_owners_are_a_warning_and_nothing_to_check_is_a_skip():
    p = profile(spec("k1"))
    check = check_target_users(p, None, [User("cu1", "crypto-user", False, False, False, "full")],
                               None)
    assert check.ok and check.skip and "nothing to check" in check.skip
    assert "the key owners on hsm1 were not listed" in check.warnings[0]
    partial = check_target_users(p, None, [], {})
    assert partial.warnings[0].startswith("the owner of 'k1' on hsm1 is not known")
