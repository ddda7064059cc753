"""keyparity's CloudHSM CLI side against the stand-in (tests/helpers/cloudhsm_twin) instead of
tests/helpers/fake_cloudhsm_cli: the expectations of test_cloudhsm_cli.py, test_cloudhsm_users.py,
test_mtls.py, test_key_policy.py, test_ownership.py and test_cli_backend.py that map onto a
cluster with real keys, checked on real keys: the adapter reads ``key list --verbose`` (paging
included) and ``user list``, a refused login is typed and never retried, the mTLS reads, the
key-quorum preflight agrees with what the stand-in's unwrap accepts, the CLI migration channel
moves a key for real (its check value arrives, its wrapping objects are gone), and CloudHSM's
view of a key agrees with PKCS #11's."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from cloudhsm_twin.client import Twin
from cloudhsm_twin.provision import Seed, TwinCluster, demo, seed
from conftest import TMPFS
from keyparity.backends import BACKENDS
from keyparity.cloudhsm import backend as cli_backend
from keyparity.cloudhsm import cli_runner as chc
from keyparity.cloudhsm import key_policy, mtls, ownership, users
from keyparity.errors import KeyparityError
from keyparity.journal.recorder import NullJournal
from keyparity.profile import AwsSpec, Cluster, CloudHsmCliSpec, KeySpec, Wrapping
from keyparity.secrets import SecretRef

WRAPPING = Wrapping("rsa-aes", 2048, "sha256", "mgf1-sha256", 256)


@pytest.fixture(scope="module")
def twin() -> Twin:
    base = Path(tempfile.mkdtemp(prefix="keyparity-twin-kp-", dir=TMPFS))
    try:
        yield Twin(demo(base / "twin"))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def cli(t: Twin, cluster: str, user: str = "cu1", password: Path | None = None,
        role: str = "crypto-user") -> chc.CloudHsmCli:
    """The CLI of the cluster's own client, made as keyparity makes it (``for_cluster``): the
    client holds that one cluster, so no ``--cluster-id`` is passed."""
    entry = t.cluster(cluster)
    secret = password or Path(entry["users"][user]["password_file"])
    spec = CloudHsmCliSpec(user=user, role=role,
                           path=Path(t.manifest["clients"][cluster]["cloudhsm_cli"]),
                           password=SecretRef("file", str(secret),
                                              f"clusters.{cluster}.cloudhsm_cli.password"))
    where = Cluster(role=cluster, name=cluster, module=Path(t.manifest["module"]),
                    token_label=cluster, slot=None, pin=SecretRef("env", "X", "f"),
                    mode="FIPS", cloudhsm_cli=spec)
    made = chc.CloudHsmCli.for_cluster(where, 60)
    assert made.cluster_id == entry["cluster_id"] and not made.pass_cluster_id
    return made


def spec(label: str, **kw: Any) -> KeySpec:
    base = dict(index=0, label=label, target_label=label, type="des3", size=None, curve=None,
                attributes={}, vectors=(), disposition="migrate", expected_differences={})
    return KeySpec(**{**base, **kw})


def test_the_adapter_reads_real_keys_in_the_documented_shape(twin):
    source = cli(twin, "hsm1")
    key = source.one_key({"label": "k-des3-quorum", "class": "secret-key"}, "k-des3-quorum")
    assert key.owners == ("cu1",) and key.shared_users == ("cu2",)
    assert key.cluster_coverage == "full" and key.coverage == {"cu1": "full", "cu2": "full"}
    assert key.missing == () and key.inconsistent == ()
    assert key_policy.quorum_values(key) == {"manage-key-quorum-value": 1,
                                             "use-key-quorum-value": 2}
    assert key_policy.wrap_with_trusted(key) is False
    assert key.check_value is not None and len(key.check_value) == 6
    assert key.label == "k-des3-quorum" and key.attributes["key-type"] == "3des"
    with pytest.raises(chc.CliKeyNotFound, match="not visible to crypto user 'cu1'"):
        source.one_key({"label": "k-des3-cu2", "class": "secret-key"}, "k-des3-cu2")
    assert cli(twin, "hsm1", "cu2").one_key({"label": "k-des3-cu2"}, "k-des3-cu2").owners == (
        "cu2",)


def _cluster(t: Twin, client: str, cluster: str, cluster_id: str | None) -> Cluster:
    entry = t.cluster(cluster)
    spec = CloudHsmCliSpec(user="cu1", path=Path(t.manifest["clients"][client]["cloudhsm_cli"]),
                           password=SecretRef("file", entry["users"]["cu1"]["password_file"],
                                              "clusters.source.cloudhsm_cli.password"))
    return Cluster(role="source", name=cluster, module=Path(t.manifest["module"]),
                   token_label=cluster, slot=None, pin=SecretRef("env", "X", "f"), mode="FIPS",
                   cloudhsm_cli=spec,
                   aws=AwsSpec(cluster_id, "us-east-1") if cluster_id else None)


def test_cluster_id_is_passed_only_when_the_cli_configuration_holds_several(twin):
    """The guide's layout, a client per cluster: no aws.cluster_id needed, no --cluster-id
    passed (the stand-in, like the CLI, refuses a missing id only with several clusters
    configured); a client configured for both clusters needs it, and refuses before running."""
    hsm1_id = twin.cluster("hsm1")["cluster_id"]
    alone = chc.CloudHsmCli.for_cluster(_cluster(twin, "hsm1", "hsm1", None))
    assert "--cluster-id" not in alone.argv(["key", "list"]) and alone.cluster_id == hsm1_id
    assert alone.one_key({"label": "k-des3-cu1"}, "k-des3-cu1").owners == ("cu1",)
    named = chc.CloudHsmCli.for_cluster(_cluster(twin, "hsm1", "hsm1", hsm1_id))
    assert "--cluster-id" not in named.argv(["key", "list"])
    with pytest.raises(chc.CliConfigError,
                       match="holds 2 clusters.*clusters.source.aws.cluster_id"):
        chc.CloudHsmCli.for_cluster(_cluster(twin, "both", "hsm1", None))
    both = chc.CloudHsmCli.for_cluster(_cluster(twin, "both", "hsm1", hsm1_id))
    assert both.argv(["key", "list"])[-2:] == ["--cluster-id", hsm1_id]
    assert both.one_key({"label": "k-des3-cu1"}, "k-des3-cu1").owners == ("cu1",)
    with pytest.raises(chc.CliConfigError, match="cluster-other.*not one of"):
        chc.CloudHsmCli.for_cluster(_cluster(twin, "both", "hsm1", "cluster-other"))
    with pytest.raises(chc.CliConfigError, match="configured for .*not cluster-other"):
        chc.CloudHsmCli.for_cluster(_cluster(twin, "hsm1", "hsm1", "cluster-other"))


def test_the_adapter_follows_next_token_over_pages_of_ten(twin):
    hsm2m = TwinCluster("hsm2m", twin.cluster("hsm2m")["cluster_id"], "NON_FIPS",
                        "hsm2m.medium", twin.root / "hsm2m",
                        Path(twin.cluster("hsm2m")["pin_file"]), "cu1",
                        roles={"admin": "admin", "cu1": "crypto-user", "cu2": "crypto-user"})
    seed(hsm2m, [Seed(f"paged-{i:02}", "cu2", key_type="aes") for i in range(23)])
    keys = cli(twin, "hsm2m", "cu2").list_keys({"key-type": "aes"})
    assert sorted(k.label for k in keys) == [f"paged-{i:02}" for i in range(23)]


def test_a_refused_login_is_typed_and_never_tried_again(twin, tmp_path):
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    bad = cli(twin, "hsm1", "cu2", password=wrong)
    with pytest.raises(chc.CliLoginError) as first:
        bad.list_keys({"label": "k-des3-cu2"})
    assert first.value.kind == "login" and "not-the-password" not in str(first.value)
    with pytest.raises(chc.CliLoginError) as second:
        bad.list_keys({"label": "k-des3-cu2"})
    assert second.value.kind == "login-earlier"
    listed = {u.username: u for u in users.user_list(cli(twin, "hsm1", "admin", role="admin"))}
    assert listed["cu2"].locked is False  # one refusal counted, far from five


def test_user_list_as_keyparity_reads_it(twin):
    listed = {u.username: u for u in users.user_list(cli(twin, "hsm2m"))}
    assert set(listed) == {"admin", "cu1", "cu2"}
    assert listed["cu1"].role == "crypto-user" and listed["admin"].role == "admin"
    assert all(u.locked is False and u.cluster_coverage == "full" for u in listed.values())


def test_mtls_is_read_on_hsm2m_and_not_asked_of_hsm1(twin):
    state = mtls.read(cli(twin, "hsm2m"), "hsm2m.medium")
    assert (state.level, state.anchors, state.error) == ("none", (), None)
    assert mtls.read(cli(twin, "hsm1"), "hsm1.medium").unsupported == mtls.UNSUPPORTED
    blind = cli(twin, "hsm1")
    blind.hsm_type = None  # neither the profile nor the configuration says: asked anyway,
    failed = mtls.read(blind, None)  # hsm1 answers that it has none
    assert failed.error and "not supported on hsm1.medium" in failed.error
    # the profile does not say the HSM type: the CLI's configuration does ("type": "hsm1")
    unknown = chc.CloudHsmCli.for_cluster(_cluster(twin, "hsm1", "hsm1", None))
    assert unknown.hsm_type == "hsm1"
    assert mtls.read(unknown, None).unsupported == mtls.UNSUPPORTED
    hsm2m = chc.CloudHsmCli.for_cluster(_cluster(twin, "hsm2m", "hsm2m", None))
    assert hsm2m.hsm_type == "hsm2m" and mtls.read(hsm2m, None).level == "none"


@pytest.mark.parametrize("share_with", [(), ("cu2",)], ids=["alone", "shared"])
def test_the_quorum_preflight_agrees_with_what_the_stand_in_unwraps(twin, share_with):
    """keyparity's preflight (key_policy) and the stand-in's unwrap say the same of a key whose
    use quorum value is 2: refused with its owner alone, accepted shared with one more user."""
    source = cli(twin, "hsm1").one_key({"label": "k-des3-quorum"}, "k-des3-quorum")
    check = key_policy.check_quorum_preflight(spec("k-des3-quorum", share_with=share_with),
                                              source, BACKENDS["cloudhsm-cli"])
    blob = twin.root / f"quorum-{len(share_with)}.bin"
    twin.run("hsm2m", "cu1", "key", "generate-asymmetric-pair", "rsa", "--public-label",
             f"qp{len(share_with)}-public", "--private-label", f"qp{len(share_with)}-private",
             "--modulus-size-bits", "2048", "--public-exponent", "65537",
             "--public-attributes", "wrap=true", "--private-attributes", "unwrap=true")
    pem = twin.root / f"qp{len(share_with)}.pem"
    twin.run("hsm2m", "cu1", "key", "generate-file", "--encoding", "pem", "--path", str(pem),
             "--filter", f"attr.label=qp{len(share_with)}-public")
    twin.run("hsm1", "cu1", "key", "import", "pem", "--path", str(pem), "--label",
             f"qp{len(share_with)}", "--key-type-class", "rsa-public", "--attributes",
             "wrap=true")
    assert twin.run("hsm1", "cu1", "key", "wrap", "rsa-aes", "--payload-filter",
                    "attr.label=k-des3-quorum", "--wrapping-filter",
                    f"attr.label=qp{len(share_with)}", "--hash-function", "sha256", "--mgf",
                    "mgf1-sha256", "--path", str(blob)).ok
    unwrapped = twin.run("hsm2m", "cu1", "key", "unwrap", "rsa-aes", "--filter",
                         f"attr.label=qp{len(share_with)}-private", "--key-type-class", "des3",
                         "--label", f"quorum-{len(share_with)}", "--hash-function", "sha256",
                         "--mgf", "mgf1-sha256", "--data-path", str(blob),
                         "--manage-key-quorum-value", "1", "--use-key-quorum-value", "2",
                         *(["--share-crypto-users", *share_with] if share_with else []))
    assert check.ok == unwrapped.ok == bool(share_with), (check.message, unwrapped)


def test_the_cli_channel_moves_a_key_for_real_and_leaves_no_wrapping_object(twin, monkeypatch):
    """keyparity's CLI migration channel (generate pair, generate-file, import pem, wrap,
    unwrap, delete) against the stand-in: the key arrives (same check value, same material:
    CloudHSM's view agrees with PKCS #11's), owned by the migrating user, and the three
    wrapping objects are deleted on both clusters."""
    monkeypatch.setattr(cli_backend, "find_unwrapped", lambda cluster, s: "side")
    [attrs] = twin.tokens({"op": "read", "token": "hsm1", "label": "k-des3-cu1",
                           "class": "secret"})
    channel = cli_backend.CliChannel(cli(twin, "hsm1"), cli(twin, "hsm2m"), WRAPPING,
                                     "keyparity-wrap-RUN", NullJournal().bind("RUN"))
    assert channel.move(spec("k-des3-cu1", target_label="k-des3-cu1-moved"), attrs,
                        None) == "side"
    assert channel.close() == []
    source = cli(twin, "hsm1").one_key({"label": "k-des3-cu1"}, "k-des3-cu1")
    moved = cli(twin, "hsm2m").one_key({"label": "k-des3-cu1-moved"}, "k-des3-cu1-moved")
    assert moved.check_value == source.check_value and moved.owners == ("cu1",)
    [target] = twin.tokens({"op": "read", "token": "hsm2m", "label": "k-des3-cu1-moved",
                            "class": "secret"})
    assert ownership.compare_cli_with_pkcs11(moved, target, spec("k-des3-cu1")) == []
    for name in ("hsm1", "hsm2m"):
        left = [k.label for k in cli(twin, name).list_keys({})]
        assert not [label for label in left if label and label.startswith("keyparity-wrap-")]


def twin_profile(twin: Twin, path: Path, keys: list[dict[str, Any]], exclude: list[str],
                 owners: tuple[str, ...] = (), user: str = "cu1", oaep: str = "sha1") -> Path:
    """A profile moving ``keys`` from the stand-in's hsm1 to hsm2m with the CLI backend as
    ``user`` (and as each of ``owners`` with the per-owner strategy), OAEP with ``oaep``;
    ``exclude``: the other seeds. A client per cluster, as the guide lays them out: no
    aws.cluster_id needed (and no AWS account here)."""
    import yaml

    def cluster(name: str, mode: str) -> dict[str, Any]:
        c = twin.cluster(name)
        return {"name": name, "module": twin.manifest["module"], "token_label": name,
                "pin": f"file:{c['pin_file']}", "mode": mode,
                "cloudhsm_cli": {"path": twin.manifest["clients"][name]["cloudhsm_cli"],
                                 "user": user,
                                 "password": f"file:{c['users'][user]['password_file']}"}}

    def login(name: str, user: str) -> dict[str, str]:
        return {"user": user,
                "password": f"file:{twin.cluster(name)['users'][user]['password_file']}"}

    doc: dict[str, Any] = {
        "name": "twin", "description": "the CloudHSM stand-in", "environment": "test",
        "module_env": {"SOFTHSM2_CONF": twin.manifest["softhsm2_conf"]},
        "clusters": {"source": cluster("hsm1", "FIPS"), "target": cluster("hsm2m", "NON_FIPS")},
        # sha1: the preflight also tries the profile's OAEP hash through PKCS #11, on SoftHSM
        # RSA-2048 as the demo's cloudhsm.yaml (a CloudHSM target's default is 4096)
        "wrapping": {"rsa_bits": 2048, "oaep_hash": oaep, "mgf": f"mgf1-{oaep}"},
        "migration": {"backend": "cloudhsm-cli", "apply_sharing": True},
        "keys": keys,
        "exclude": [{"label": label, "reason": "another owner's, or not extractable"}
                    for label in exclude],
        "compliance": {"acknowledge_non_fips": {"reason": "3DES to a NON_FIPS cluster",
                                                "approver": "lab"}}}
    if owners:
        doc["owners"] = [{"name": u, "source": login("hsm1", u), "target": login("hsm2m", u)}
                         for u in owners]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_keyparitys_cli_backend_migrates_through_the_stand_in(suites, tmp_path):
    """The suites (migration, attributes, ownership...) with ``migration.backend: cloudhsm-cli``
    against the stand-in's hsm1 and hsm2m: the guide's commands move two keys for real, PKCS #11
    then finds them on the target with the source's key material, CloudHSM's view of each
    agrees with PKCS #11's, the owner is the migrating user, and ``apply_sharing`` shares one
    as the inventory asks (keyparity's side of issue 23 aside: quorum, per-owner migration)."""
    import json as _json

    from conftest import REPO, evidence, run_suites

    twin = Twin(demo(tmp_path / "twin"))
    shutil.copy(REPO / "suites" / "test_ownership.py", suites.path / "suites")
    keys = [{"label": "k-des3-cu1", "type": "des3", "owner": "cu1"},
            {"label": "k-des3-shared", "type": "des3", "owner": "cu1", "share_with": ["cu2"]}]
    profile = twin_profile(twin, tmp_path / "twin.yaml", keys,
                           ["k-des3-cu2", "k-des3-quorum", "k-des3-nonextractable"])
    result = run_suites(suites, profile)
    assert result.ret == 0, result.stdout.str()
    doc = evidence(suites)
    outcomes = {t["nodeid"]: t["outcome"] for t in doc["tests"]}
    for label in ("k-des3-cu1", "k-des3-shared"):
        for test in ("test_target_key_is_owned_by_the_expected_user",
                     "test_target_key_is_shared_with_the_expected_users",
                     "test_cli_attributes_and_check_value_match_pkcs11"):
            assert outcomes[f"suites/test_ownership.py::{test}[{label}]"] == "passed"
    [moved] = twin.run("hsm2m", "cu1", "key", "list", "--filter", "attr.label=k-des3-shared",
                       "--verbose").data["matched_keys"]
    assert [u["username"] for u in moved["key-info"]["shared-users"]] == ["cu2"]
    assert "keyparity-wrap-" not in _json.dumps(twin.run("hsm2m", "cu1", "key", "list").data)


def test_preflight_names_the_owner_of_a_key_the_source_user_cannot_wrap(suites, tmp_path):
    """The CLI runs as cu2, who sees k-des3-shared (cu1's, shared with cu2) but may not wrap
    it: the preflight's per-key CloudHSM test fails naming the owner, read with `key list
    --verbose`, while cu2's own key passes."""
    from conftest import REPO

    twin = Twin(demo(tmp_path / "twin"))
    shutil.copy(REPO / "suites" / "test_cloudhsm.py", suites.path / "suites")
    keys = [{"label": "k-des3-cu2", "type": "des3"},
            {"label": "k-des3-shared", "type": "des3"}]
    profile = twin_profile(twin, tmp_path / "twin.yaml", keys,
                           ["k-des3-cu1", "k-des3-quorum", "k-des3-nonextractable"], user="cu2")
    said = _preflight_split(suites, profile, "test_key_owner_quorum_and_trust_allow_the_move",
                            "k-des3-cu2", "k-des3-shared")
    assert "owned by cu1, not by 'cu2'" in said


def _preflight_split(suites: Any, profile: Path, name: str, good: str, bad: str) -> str:
    """Run the preflight: ``name``'s test of ``good`` passes, of ``bad`` fails; its message."""
    from conftest import evidence, run_suites

    run_suites(suites, profile, "-m", "preflight")
    tests = {t["nodeid"].rsplit("::", 1)[-1]: t for t in evidence(suites)["tests"]}
    assert tests[f"{name}[{good}]"]["outcome"] == "passed"
    failed = tests[f"{name}[{bad}]"]
    assert failed["outcome"] == "failed", failed
    return str(failed["message"])


def test_the_pkcs11_trial_wrap_names_the_owner_the_cli_lists(suites, tmp_path):
    """PKCS #11 backend on the stand-in, with a CloudHSM CLI block on the source: a key the
    token refuses to wrap fails its trial-wrap preflight naming its owner as `key list
    --verbose` gives it; the other key's trial passes."""
    import yaml

    twin = Twin(demo(tmp_path / "twin"))
    keys = [{"label": "k-des3-cu1", "type": "des3"},
            {"label": "k-des3-nonextractable", "type": "des3"}]
    profile = twin_profile(twin, tmp_path / "twin.yaml", keys,
                           ["k-des3-cu2", "k-des3-shared", "k-des3-quorum"])
    doc = yaml.safe_load(profile.read_text())
    doc["migration"] = {"backend": "pkcs11"}
    profile.write_text(yaml.safe_dump(doc, sort_keys=False))
    said = _preflight_split(suites, profile, "test_the_migrating_user_can_wrap_the_key",
                            "k-des3-cu1", "k-des3-nonextractable")
    assert "it is owned by cu1 (CloudHSM CLI `key list --verbose`)" in said
    assert "'k-des3-nonextractable' on hsm1" in said


def _per_owner_profile(tmp_path: Path, edit: Any) -> tuple[Twin, Path]:
    """A fresh stand-in and a per-owner profile moving cu1's and cu2's own keys, changed by
    ``edit(doc)``."""
    import yaml

    twin = Twin(demo(tmp_path / "twin"))
    keys = [{"label": "k-des3-cu1", "type": "des3", "owner": "cu1"},
            {"label": "k-des3-cu2", "type": "des3", "owner": "cu2"}]
    profile = twin_profile(twin, tmp_path / "twin.yaml", keys,
                           ["k-des3-shared", "k-des3-quorum", "k-des3-nonextractable"],
                           ("cu1", "cu2"))
    doc = yaml.safe_load(profile.read_text())
    edit(doc)
    profile.write_text(yaml.safe_dump(doc, sort_keys=False))
    return twin, profile


@pytest.mark.parametrize("user,why", [("cu9", "does not exist on hsm2m"),
                                      ("admin", "has the role admin on hsm2m, not crypto-user")],
                         ids=["missing", "admin"])
def test_preflight_fails_when_an_owners_target_user_is_not_a_crypto_user_there(
        suites, tmp_path, user, why):
    """Per-owner migration: cu2's keys are unwrapped on hsm2m by cu2's target user. The
    preflight reads hsm2m's `user list` and fails, naming that user and its owner, when it is
    missing or not a crypto user - before the migration tests, which write."""
    from conftest import REPO, evidence, run_suites

    shutil.copy(REPO / "suites" / "test_cloudhsm.py", suites.path / "suites")
    _, profile = _per_owner_profile(tmp_path, lambda doc: doc["owners"][1]["target"].update(
        user=user))
    run_suites(suites, profile, "-m", "preflight")
    tests = {t["nodeid"].rsplit("::", 1)[-1]: t for t in evidence(suites)["tests"]}
    failed = tests["test_target_users_can_own_and_share_the_keys"]
    assert failed["outcome"] == "failed", failed
    assert f"{user} (target user of owner cu2; owner of 'k-des3-cu2') {why}" in failed["message"]
    assert "cu1" not in failed["message"].split(user, 1)[0]


def test_owners_with_the_pkcs11_backend_are_refused_before_any_session(suites, tmp_path):
    """The per-owner strategy logs in as each owner with the CloudHSM CLI; the PKCS #11 backend
    moves every key as the one user of the cluster's PIN. Asked for both, the run stops at
    its start with a usage error naming the profile and the fix, and hsm2m gains nothing."""
    from conftest import run_suites

    twin, profile = _per_owner_profile(tmp_path, lambda doc: doc["migration"].update(
        backend="pkcs11"))
    before = twin.tokens({"op": "count", "token": "hsm2m"})
    result = run_suites(suites, profile)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert (f"{profile}: owners: migration.backend pkcs11 moves every key as one user"
            in result.stderr.str())
    assert "set migration.backend: cloudhsm-cli" in result.stderr.str()
    assert not (suites.path / "reports" / "latest").exists()
    assert twin.tokens({"op": "count", "token": "hsm2m"}) == before


@pytest.mark.parametrize("owners", [("cu1", "cu2"), ()], ids=["per-owner", "one-user"])
def test_each_owners_keys_move_as_that_owner(suites, tmp_path, owners):
    """The guide's per-owner strategy: with ``owners``, cu2's key is wrapped on hsm1 and
    unwrapped on hsm2m as cu2 (with the one wrapping pair's private half shared with cu2), so
    it arrives owned by cu2 and every ownership test of it passes. Without ``owners`` the run
    logs in as cu1 alone, and cu2's key fails (only its owner may wrap it) while cu1's goes on."""
    import json

    import jsonschema

    from conftest import REPO, evidence, run_suites

    twin = Twin(demo(tmp_path / "twin"))
    for suite in ("test_ownership.py", "test_cloudhsm.py"):  # owners' keys; the owner check
        shutil.copy(REPO / "suites" / suite, suites.path / "suites")
    keys = [{"label": "k-des3-cu1", "type": "des3", "owner": "cu1"},
            {"label": "k-des3-cu2", "type": "des3", "owner": "cu2"},
            {"label": "k-des3-quorum", "type": "des3", "owner": "cu1", "share_with": ["cu2"]}]
    profile = twin_profile(twin, tmp_path / "twin.yaml", keys,
                           ["k-des3-shared", "k-des3-nonextractable"], owners)
    result = run_suites(suites, profile, "-p", "no:randomly")
    outcomes = {t["nodeid"]: t["outcome"] for t in evidence(suites)["tests"]}
    owned = "suites/test_ownership.py::test_target_key_is_owned_by_the_expected_user[{}]"
    assert outcomes[owned.format("k-des3-cu1")] == "passed"
    # the quorum key (manage 1, use 2 on hsm1) is cu1's: it moves either way, its quorum
    # values and its sharing with cu2 arriving in the one `key unwrap`
    for test in ("test_ownership.py::test_target_key_is_owned_by_the_expected_user",
                 "test_ownership.py::test_target_key_is_shared_with_the_expected_users",
                 "test_ownership.py::test_target_key_has_the_source_quorum_values",
                 "test_cloudhsm.py::test_key_owner_quorum_and_trust_allow_the_move"):
        assert outcomes[f"suites/{test}[k-des3-quorum]"] == "passed", test
    after = evidence(suites)["keys"]["k-des3-quorum"]["quorum_after"]
    assert after["target"] == {"manage-key-quorum-value": 1, "use-key-quorum-value": 2}
    assert evidence(suites)["keys"]["k-des3-quorum"]["sharing"]["shared_now"] == []
    if owners:
        assert result.ret == 0, result.stdout.str()
        assert outcomes[owned.format("k-des3-cu2")] == "passed"
        doc = evidence(suites)
        jsonschema.validate(doc, json.loads((REPO / "keyparity" / "schemas" /
                                             "evidence.schema.json").read_text()))
        seen = {r["label"]: r["seen_by"] for r in doc["census"]["source"]["owners"]["keys"]}
        assert seen["k-des3-cu2"] == ["cu2"] and seen["k-des3-quorum"] == ["cu1", "cu2"]
        assert doc["owners"]["cu2"] == {"source_user": "cu2", "target_user": "cu2",
                                        "keys": ["k-des3-cu2"]}
        assert doc["keys"]["k-des3-cu2"]["owner"] == "cu2"
        report = (suites.path / "reports" / "latest" / "report.html").read_text()
        row = report[report.index('<section id="owners">'):].split("</tr>")[2]
        assert "<b>cu2</b>" in row and "<code>k-des3-cu2</code></a> (passed)" in row
        [moved] = twin.run("hsm2m", "cu2", "key", "list", "--filter", "attr.label=k-des3-cu2",
                           "--verbose").data["matched_keys"]
        assert moved["key-info"]["key-owners"][0]["username"] == "cu2"
        left = twin.run("hsm2m", "cu1", "key", "list").data["matched_keys"]
        assert not [k for k in left if "keyparity-wrap-" in str(k)]
    else:
        assert result.ret != 0
        out = result.stdout.str()
        # refused before the wrap: keyparity reads the key as the migrating user first
        assert "'k-des3-cu2' is not visible to crypto user 'cu1' on source (hsm1)" in out
        assert "neither owned by nor shared with this crypto user" in out
        assert "nothing labelled 'k-des3-cu2' was written to hsm2m" in out
        assert "owners" not in evidence(suites)
        moved = "suites/test_migration.py::test_key_is_on_the_target[k-des3-cu2]"
        assert outcomes[moved] != "passed"


def test_registered_trust_anchors_and_enforcement_are_read_back(twin):
    """A cluster provisioned with mTLS enforced and a trust anchor: keyparity's mTLS read gets
    the level and the anchor (by the SHA-256 of its DER)."""
    import datetime
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from cloudhsm_twin.provision import client_entry, cluster_entry, make_client, make_cluster

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    made = make_cluster(twin.root, "mtls", "NON_FIPS", "hsm2m.medium",
                        {"cu1": "crypto-user"}, anchors=[pem], mtls_enforcement="cluster")
    twin.manifest["clusters"]["mtls"] = cluster_entry(made)
    twin.manifest["clients"]["mtls"] = client_entry(make_client(twin.root, "mtls", [made]))
    state = mtls.read(cli(twin, "mtls"), "hsm2m.medium")
    assert state.level == "cluster" and state.enforced
    [anchor] = state.anchors
    der = cert.public_bytes(serialization.Encoding.DER)
    assert anchor.sha256 == (hashlib.sha256(der).hexdigest(),) and anchor.coverage == "full"


def _channel(t: Twin, source_user: str = "cu1") -> cli_backend.CliChannel:
    return cli_backend.CliChannel(cli(t, "hsm1", source_user), cli(t, "hsm2m"), WRAPPING,
                                  "keyparity-wrap-RUN", NullJournal().bind("RUN"))


def test_the_cli_unwrap_carries_quorum_values_and_shared_users(twin, monkeypatch):
    """The quorum key (manage 1, use 2) arrives with its quorum values and shared with cu2 by
    the one `key unwrap` (quorum values are set only when a key is made: a later `key share`
    comes too late), and no `key share` is issued."""
    monkeypatch.setattr(cli_backend, "find_unwrapped", lambda cluster, s: "side")
    [attrs] = twin.tokens({"op": "read", "token": "hsm1", "label": "k-des3-quorum",
                           "class": "secret"})
    issued: list[tuple[str, ...]] = []
    real = chc.CloudHsmCli.run
    monkeypatch.setattr(chc.CloudHsmCli, "run",
                        lambda self, *c: issued.append(c) or real(self, *c))
    channel = _channel(twin)
    try:
        channel.move(spec("k-des3-quorum", target_label="k-des3-quorum-moved",
                          share_with=("cu2",)), attrs, None)
    finally:
        assert channel.close() == []
    moved = cli(twin, "hsm2m").one_key({"label": "k-des3-quorum-moved"}, "k-des3-quorum-moved")
    assert key_policy.quorum_values(moved) == {"manage-key-quorum-value": 1,
                                               "use-key-quorum-value": 2}
    assert moved.shared_users == ("cu2",) and moved.owners == ("cu1",)
    [unwrap] = [c for c in issued if c[:2] == ("key", "unwrap")]
    assert unwrap[unwrap.index("--share-crypto-users") + 1] == "cu2"
    assert not [c for c in issued if c[:2] == ("key", "share")]
    # the CLI has no `key generate-symmetric 3des`: keyparity never makes a key that way
    assert not [c for c in issued if c[:2] == ("key", "generate-symmetric")]


def test_a_non_modifiable_source_key_is_unwrapped_modifiable_then_set_false_as_its_owner(
        twin, monkeypatch):
    """CloudHSM takes `modifiable` only at its default when a key is made (the stand-in
    refuses `modifiable=false` at `key unwrap`); a source key that is not modifiable arrives
    through `key unwrap` without it and `key set-attribute --name modifiable --value false`
    right after, as its owner, journaled: the target key ends up as the source."""
    monkeypatch.setattr(cli_backend, "find_unwrapped", lambda cluster, s: "side")
    [attrs] = twin.tokens({"op": "read", "token": "hsm1", "label": "k-des3-cu1",
                           "class": "secret"})
    attrs = {**attrs, "modifiable": False}  # as keyparity reads a non-modifiable source key
    issued: list[tuple[str, ...]] = []
    real = chc.CloudHsmCli.run
    monkeypatch.setattr(chc.CloudHsmCli, "run",
                        lambda self, *c: issued.append(c) or real(self, *c))
    journal = NullJournal().bind("RUN")
    steps: list[tuple[str, dict[str, Any]]] = []
    real_step = journal.step
    monkeypatch.setattr(journal, "step", lambda action, **kw: steps.append((action, kw))
                        or real_step(action, **kw), raising=False)
    channel = cli_backend.CliChannel(cli(twin, "hsm1"), cli(twin, "hsm2m"), WRAPPING,
                                     "keyparity-wrap-RUN", journal)
    try:
        channel.move(spec("k-des3-cu1", target_label="k-des3-fixed"), attrs, None)
    finally:
        assert channel.close() == []
    [unwrap] = [c for c in issued if c[:2] == ("key", "unwrap")]
    assert not [a for a in unwrap if a.startswith("modifiable=")]
    [setting] = [c for c in issued if c[:2] == ("key", "set-attribute")]
    assert setting[-4:] == ("--name", "modifiable", "--value", "false")
    assert [a for a, _ in steps].index("cli-set-attribute") > [a for a, _ in steps].index(
        "cli-unwrap")
    moved = cli(twin, "hsm2m").one_key({"label": "k-des3-fixed"}, "k-des3-fixed")
    assert moved.attributes["modifiable"] is False and moved.owners == ("cu1",)


def _planned_keys(profile: Path) -> dict[str, Any]:
    """label -> the key as `keyparity plan` drafts it (in a child: SoftHSM reads the stand-in's
    configuration once per process)."""
    import json
    import subprocess
    import sys

    from conftest import REPO

    code = ("import json, sys; from pathlib import Path; from keyparity.attest.plan import draft;"
            " from keyparity.hsm.login import LoginGate; from keyparity.profile import "
            "load_profile; print(json.dumps(draft(load_profile(Path(sys.argv[1])), "
            "LoginGate(None))['keys']))")
    done = subprocess.run([sys.executable, "-c", code, str(profile)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return {k["label"]: k for k in json.loads(done.stdout)}


@pytest.mark.parametrize("backend", ["cloudhsm-cli", "pkcs11"])
def test_the_signed_plan_shows_what_the_move_will_do_on_cloudhsm(tmp_path, backend):
    """The plan the custodians sign says, per key, what happens on the CloudHSM target: with
    the CLI, the user who unwraps (and owns) it, the `--attributes`, `--share-crypto-users`
    and key quorum values (read from the source through the CLI) of its `key unwrap`, and the
    `key set-attribute` after it; with PKCS #11, the C_UnwrapKey template and what
    C_SetAttributeValue sets after it (modifiable=false: CloudHSM takes it only at its
    default when a key is made)."""
    import yaml

    twin = Twin(demo(tmp_path / "twin"))
    keys = [{"label": "k-des3-cu1", "type": "des3", "owner": "cu1",
             "attributes": {"modifiable": False}},
            {"label": "k-des3-quorum", "type": "des3", "owner": "cu1", "share_with": ["cu2"]}]
    profile = twin_profile(twin, tmp_path / "twin.yaml", keys,
                           ["k-des3-cu2", "k-des3-shared", "k-des3-nonextractable"])
    doc = yaml.safe_load(profile.read_text())
    doc["migration"]["backend"] = backend
    profile.write_text(yaml.safe_dump(doc, sort_keys=False))
    planned = _planned_keys(profile)
    fixed, quorum = planned["k-des3-cu1"], planned["k-des3-quorum"]
    if backend == "pkcs11":
        assert fixed["set_after"] == {"modifiable": False}
        assert fixed["not_set"] == {"copyable": True}  # CloudHSM has no CKA_COPYABLE
        assert "modifiable" not in fixed["template"] and fixed["template"]["private"] is True
        assert "cloudhsm_cli_quorum" not in quorum
        return
    assert fixed["cloudhsm_cli_set_after"] == {"modifiable": False}
    assert not [a for a in fixed["cloudhsm_cli_attributes"] if a.startswith("modifiable")]
    assert fixed["cloudhsm_cli_unwrap_as"] == quorum["cloudhsm_cli_unwrap_as"] == "cu1"
    assert quorum["cloudhsm_cli_share_crypto_users"] == ["cu2"]
    assert quorum["cloudhsm_cli_quorum"] == {
        "values": {"manage-key-quorum-value": 1, "use-key-quorum-value": 2},
        "unwrap_arguments": ["--manage-key-quorum-value", "1", "--use-key-quorum-value", "2"]}
    assert fixed["cloudhsm_cli_quorum"]["unwrap_arguments"] == []


def test_keyparity_never_issues_key_generate_symmetric():
    """The CloudHSM CLI has `key generate-symmetric aes | generic-secret` and no 3des
    (cloudhsm_cli-key-generate-symmetric): nothing in keyparity issues the command at all."""
    from conftest import REPO

    found = [str(p) for p in (REPO / "keyparity").rglob("*.py")
             if "generate-symmetric" in p.read_text()]
    assert found == []


def test_a_quorum_above_the_associated_users_is_refused_before_the_unwrap(twin, monkeypatch):
    monkeypatch.setattr(cli_backend, "find_unwrapped", lambda cluster, s: "side")
    [attrs] = twin.tokens({"op": "read", "token": "hsm1", "label": "k-des3-quorum",
                           "class": "secret"})
    journal = NullJournal().bind("RUN")
    steps: list[str] = []
    real = journal.step
    monkeypatch.setattr(journal, "step", lambda action, **kw: steps.append(action) or real(
        action, **kw), raising=False)
    channel = cli_backend.CliChannel(cli(twin, "hsm1"), cli(twin, "hsm2m"), WRAPPING,
                                     "keyparity-wrap-RUN", journal)
    try:
        with pytest.raises(KeyparityError, match="use 2.*associated with.*1.*share_with"):
            channel.move(spec("k-des3-quorum", target_label="k-des3-quorum-alone"), attrs, None)
    finally:
        assert channel.close() == []
    assert "cli-unwrap" not in steps
    assert cli(twin, "hsm2m").list_keys({"label": "k-des3-quorum-alone"}) == []


def test_a_key_needing_quorum_approval_to_wrap_is_refused_before_any_write(twin, monkeypatch):
    """A key whose key management quorum value is 2 can be wrapped only with a signed quorum
    token (cloudhsm_cli-key-wrap-rsa-aes, --payload-approval): the stand-in refuses the
    guide's `key wrap` without one, and keyparity, which collects no approvals, refuses the
    key before its wrap, naming what to do, and writes nothing on the target."""
    hsm1 = TwinCluster("hsm1", twin.cluster("hsm1")["cluster_id"], "FIPS", "hsm1.medium",
                       twin.root / "hsm1", Path(twin.cluster("hsm1")["pin_file"]), "cu1",
                       roles={"admin": "admin", "cu1": "crypto-user", "cu2": "crypto-user"})
    seed(hsm1, [Seed("k-des3-mq2", "cu1", share_with=("cu2",), quorum=(2, 2))])
    monkeypatch.setattr(cli_backend, "find_unwrapped", lambda cluster, s: "side")
    channel = _channel(twin, "cu1")
    try:
        refused = twin.run("hsm1", "cu1", "key", "wrap", "rsa-aes", "--payload-filter",
                           "attr.label=k-des3-mq2", "--wrapping-filter",
                           f"attr.label={channel.imported_label}", "--hash-function", "sha256",
                           "--mgf", "mgf1-sha256", "--path", str(twin.root / "mq2.bin"))
        assert not refused.ok and "quorum approval is required" in str(refused)
        with pytest.raises(KeyparityError, match="manage 2.*keyparity does not collect "
                                                 "approvals.*--payload-approval"):
            channel.move(spec("k-des3-mq2", share_with=("cu2",)), {}, None)
    finally:
        assert channel.close() == []
    assert cli(twin, "hsm2m").list_keys({"label": "k-des3-mq2"}) == []


def test_a_key_the_migrating_user_does_not_own_fails_naming_its_owner_before_any_write(
        twin, monkeypatch):
    """cu2 sees k-des3-shared (shared with it) but only its owner cu1 may wrap it."""
    monkeypatch.setattr(cli_backend, "find_unwrapped", lambda cluster, s: "side")
    channel = _channel(twin, "cu2")
    try:
        with pytest.raises(KeyparityError, match="owned by cu1.*not by 'cu2'"):
            channel.move(spec("k-des3-shared", target_label="k-des3-shared-cu2"), {}, None)
    finally:
        assert channel.close() == []
    assert cli(twin, "hsm2m").list_keys({"label": "k-des3-shared-cu2"}) == []


def test_the_key_availability_check_reads_the_cli_configuration_with_the_cli_backend(
        suites, tmp_path):
    """With migration.backend: cloudhsm-cli the CLI's own cloudhsm-cli.cfg is the client
    configuration that matters: the target's disabling the key availability check fails the
    target's test naming that file; the source's, untouched, passes."""
    import json as _json

    from conftest import REPO, evidence, run_suites

    twin = Twin(demo(tmp_path / "twin"))
    shutil.copy(REPO / "suites" / "test_cloudhsm.py", suites.path / "suites")
    cfg = Path(twin.manifest["clients"]["hsm2m"]["config"])
    doc = _json.loads(cfg.read_text())
    doc["clusters"][0]["cluster"]["options"]["disable_key_availability_check"] = True
    cfg.write_text(_json.dumps(doc))
    profile = twin_profile(twin, tmp_path / "twin.yaml", [{"label": "k-des3-cu1", "type": "des3"}],
                           ["k-des3-cu2", "k-des3-shared", "k-des3-quorum",
                            "k-des3-nonextractable"])
    run_suites(suites, profile, "-m", "preflight")
    tests = {t["nodeid"].rsplit("::", 1)[-1]: t for t in evidence(suites)["tests"]}
    assert tests["test_the_key_availability_check_is_on[source]"]["outcome"] == "passed"
    failed = tests["test_the_key_availability_check_is_on[target]"]
    assert failed["outcome"] == "failed", failed
    assert f"{cfg} disables the CloudHSM key availability check" in failed["message"]


def test_the_preflight_does_not_probe_oaep_through_pkcs11_when_the_cli_wraps(suites, tmp_path):
    """sha256, the guide's OAEP hash: the CLI wraps with it (the stand-in checks it as CloudHSM
    does); the PKCS #11 wrapping probe, a path the CLI backend never takes (and which SoftHSM
    refuses for sha256), is skipped with its reason instead of failing the run."""
    from conftest import evidence, run_suites

    twin = Twin(demo(tmp_path / "twin"))
    profile = twin_profile(twin, tmp_path / "twin.yaml", [{"label": "k-des3-cu1", "type": "des3"}],
                           ["k-des3-cu2", "k-des3-shared", "k-des3-quorum",
                            "k-des3-nonextractable"], oaep="sha256")
    run_suites(suites, profile, "-m", "preflight")
    [probe] = [t for t in evidence(suites)["tests"]
               if t["nodeid"].endswith("test_tokens_accept_the_wrapping_parameters")]
    assert probe["outcome"] == "skipped", probe
    assert "cloudhsm-cli" in probe["message"]


@pytest.mark.parametrize("client,ok", [("hsm1", True), ("both", False)],
                         ids=["one-cluster-config", "two-cluster-config"])
def test_without_aws_cluster_id_the_cli_runs_on_its_one_configured_cluster(twin, client, ok):
    """No aws block: no ``--cluster-id``. A client configured for one cluster (the guide's
    layout) runs; one configured for two refuses, and keyparity says which field to add."""
    from keyparity.profile import Cluster

    entry = twin.cluster("hsm1")
    password = SecretRef("file", entry["users"]["cu1"]["password_file"], "f")
    spec_ = CloudHsmCliSpec(user="cu1", password=password,
                            path=Path(twin.manifest["clients"][client]["cloudhsm_cli"]))
    cluster = Cluster(role="source", name="hsm1", module=Path(twin.manifest["module"]),
                      token_label="hsm1", slot=None, pin=password, mode="FIPS",
                      cloudhsm_cli=spec_)
    if ok:
        runner = chc.CloudHsmCli.for_cluster(cluster)
        assert runner.one_key({"label": "k-des3-cu1"}, "k-des3-cu1").owners == ("cu1",)
    else:
        with pytest.raises(chc.CliConfigError,
                           match=r"holds 2 clusters .* add clusters\.source\.aws\.cluster_id"):
            chc.CloudHsmCli.for_cluster(cluster)


def test_the_cloudhsm_demo_profile_accounts_for_every_key_the_stand_in_seeds(tmp_path):
    """hsm_profiles/cloudhsm.yaml (./run demo cloudhsm) names each key provision-demo seeds on
    hsm1, to migrate or excluded with a reason (the quorum key migrated, by its owner, shared
    as its quorum needs), and migrates with the CloudHSM CLI. The
    profile is copied with stand-ins for the files ``./run demo cloudhsm`` makes (loading
    checks only that they are there): no demo state needed."""
    from cloudhsm_twin.provision import DEMO_SEEDS
    from conftest import demo_profile_copy
    from keyparity.profile import load_profile

    profile = load_profile(demo_profile_copy("cloudhsm", tmp_path))
    named = [k.label for k in profile.keys] + [e.label for e in profile.exclude]
    assert sorted(named) == sorted(s.label for s in DEMO_SEEDS)
    # every seeded key with a quorum is migrated (not excluded), with enough users associated
    # with it on the target for its values (its owner and share_with)
    quorum = {s.label: s for s in DEMO_SEEDS if any(s.quorum)}
    assert quorum and not {e.label for e in profile.exclude} & set(quorum)
    for spec in (k for k in profile.keys if k.label in quorum):
        assert spec.owner == quorum[spec.label].owner
        assert max(quorum[spec.label].quorum) <= 1 + len(spec.share_with)
    assert profile.migration_backend == "cloudhsm-cli"
    assert profile.source.cloudhsm_cli and profile.target.cloudhsm_cli


@pytest.mark.parametrize("owners", [(), ("cu1", "cu2")], ids=["as-cu1", "as-each-owner"])
def test_keyparity_inventory_drafts_the_owners_their_views_see(twin, tmp_path, owners):
    """``keyparity inventory`` on the stand-in's hsm1: each key with its owner from ``key list
    --verbose``, and the owners drafted. As cu1 alone, cu2's own key is invisible to the CLI
    (a crypto user sees its own and shared keys): only cu1 is drafted; listed as each owner,
    both are, and the draft loads as a profile."""
    import subprocess
    import sys

    import yaml

    from conftest import REPO

    profile = twin_profile(twin, tmp_path / "twin.yaml",
                           [{"label": "k-des3-cu1", "type": "des3", "owner": "cu1"}],
                           ["k-des3-cu2", "k-des3-shared", "k-des3-quorum",
                            "k-des3-nonextractable"], owners)
    done = subprocess.run([sys.executable, "-m", "keyparity.cli", "inventory", str(profile)],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    draft = yaml.safe_load(done.stdout)
    owner = {k["label"]: k.get("owner") for k in draft["keys"]}
    assert owner["k-des3-cu1"] == owner["k-des3-shared"] == owner["k-des3-quorum"] == "cu1"
    assert owner["k-des3-cu2"] == ("cu2" if owners else None)
    assert [o["name"] for o in draft["owners"]] == (["cu1", "cu2"] if owners else ["cu1"])
    assert draft["owners"][0]["source"] == {"user": "cu1",
                                            "password": "env:KP_CU1_SOURCE_PASSWORD"}
    if owners:  # the draft, pasted into the profile, loads
        from keyparity.profile import load_profile

        doc = yaml.safe_load(profile.read_text())
        doc.update(owners=draft["owners"], keys=draft["keys"], exclude=draft["exclude"])
        profile.write_text(yaml.safe_dump(doc, sort_keys=False))
        assert [o.name for o in load_profile(profile).owners] == ["cu1", "cu2"]
