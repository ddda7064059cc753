"""keyparity's CloudHSM CLI side against the stand-in (tests/cloudhsm_twin) instead of
tests/fake_cloudhsm_cli: the expectations of test_cloudhsm_cli.py, test_cloudhsm_users.py,
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
from keyparity.cloudhsm import backend as cli_backend
from keyparity.cloudhsm import cli as chc
from keyparity.cloudhsm import key_policy, mtls, ownership, users
from keyparity.journal.store import NullJournal
from keyparity.profile import CloudHsmCliSpec, KeySpec, Wrapping
from keyparity.secrets import SecretRef

WRAPPING = Wrapping("rsa-aes", 2048, "sha256", "mgf1-sha256", 256)


@pytest.fixture(scope="module")
def twin() -> Twin:
    base = Path(tempfile.mkdtemp(prefix="keyparity-twin-kp-", dir=TMPFS))
    yield Twin(demo(base / "twin"))
    shutil.rmtree(base, ignore_errors=True)


def cli(t: Twin, cluster: str, user: str = "cu1", password: Path | None = None,
        role: str = "crypto-user") -> chc.CloudHsmCli:
    entry = t.cluster(cluster)
    secret = password or Path(entry["users"][user]["password_file"])
    spec = CloudHsmCliSpec(user=user, role=role,
                           path=Path(t.manifest["clients"][cluster]["cloudhsm_cli"]),
                           password=SecretRef("file", str(secret),
                                              f"clusters.{cluster}.cloudhsm_cli.password"))
    return chc.CloudHsmCli(spec, entry["cluster_id"], f"{cluster} ({cluster})", 60)


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
    failed = mtls.read(cli(twin, "hsm1"), None)  # asked anyway: hsm1 answers that it has none
    assert failed.error and "not supported on hsm1.medium" in failed.error


@pytest.mark.parametrize("share_with", [(), ("cu2",)], ids=["alone", "shared"])
def test_the_quorum_preflight_agrees_with_what_the_stand_in_unwraps(twin, share_with):
    """keyparity's preflight (key_policy) and the stand-in's unwrap say the same of a key whose
    use quorum value is 2: refused with its owner alone, accepted shared with one more user."""
    source = cli(twin, "hsm1").one_key({"label": "k-des3-quorum"}, "k-des3-quorum")
    check = key_policy.check_quorum_preflight(spec("k-des3-quorum", share_with=share_with),
                                              source, key_policy.CLI_BACKEND)
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
                                     "keyparity-wrap-RUN", journal=NullJournal().bind("RUN"))
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
