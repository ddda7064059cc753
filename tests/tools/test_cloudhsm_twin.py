"""The CloudHSM CLI stand-in (tests/helpers/cloudhsm_twin) enforces CloudHSM's documented rules, with
CloudHSM's error shape, and moves keys with real crypto.

One table row per rule: the command that breaks the rule is refused (exit status 1, the CLI's
JSON ``{"error_code": 1, "data": "<message>"}``) and, where it makes sense, the same command
done right is accepted, so that the refusal is the rule's and not an accident. Then the
migration guide's CLI procedure (seed 002) through the stand-in alone: a wrapping pair on the
target, its public key exported as PEM and imported on the source, each key wrapped with
RSA-AES (sha256) by its owner, unwrapped on the target with attributes, sharing and quorum
values, an attribute set afterwards, and data encrypted on one token decrypted on the other
through PKCS #11 (real crypto, both ways). One provisioning per module, on tmpfs.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from cloudhsm_twin.client import Result, Twin
from cloudhsm_twin.provision import client_entry, cluster_entry, demo, make_client, make_cluster
from conftest import TMPFS

CU, ADMIN = "crypto-user", "admin"
LAB_USERS = {"admin": ADMIN, **{f"cu{i}": CU for i in range(1, 10)}, "lockme": CU}
SHA = ("--hash-function", "sha256", "--mgf", "mgf1-sha256")


@pytest.fixture(scope="module")
def twin() -> Twin:
    """The demo's two clusters (hsm1 FIPS seeded, hsm2m empty) and a ``lab`` cluster with nine
    crypto users, a client per cluster and one for hsm1 and hsm2m together; a wrapping pair on
    hsm2m (private half shared with cu2) whose public half is imported on hsm1, and one on
    lab."""
    base = Path(tempfile.mkdtemp(prefix="keyparity-twin-", dir=TMPFS))
    try:
        yield provisioned(base / "twin")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def provisioned(root: Path) -> Twin:
    manifest = demo(root)
    lab = make_cluster(root, "lab", "NON_FIPS", "hsm2m.medium", LAB_USERS)
    manifest["clusters"]["lab"] = cluster_entry(lab)
    manifest["clients"]["lab"] = client_entry(make_client(root, "lab", [lab]))
    t = Twin(manifest)
    for client in ("hsm2m", "lab"):
        assert pair(t, client, "w").ok
    assert t.run("hsm2m", "cu1", "key", "share", "--filter", "attr.label=w-private",
                 "--username", "cu2", "--role", CU).ok
    pem = str(root / "w.pem")
    assert t.run("hsm2m", "cu1", "key", "generate-file", "--encoding", "pem", "--path", pem,
                 "--filter", "attr.label=w-public").ok
    assert t.run("hsm1", "cu1", "key", "import", "pem", "--path", pem, "--label", "w-imported",
                 "--key-type-class", "rsa-public", "--attributes", "wrap=true").ok
    return t


def pair(t: Twin, client: str, label: str, *extra: str) -> Result:
    return t.run(client, "cu1", "key", "generate-asymmetric-pair", "rsa", "--public-label",
                 f"{label}-public", "--private-label", f"{label}-private", "--modulus-size-bits",
                 "2048", "--public-exponent", "65537", "--public-attributes", "wrap=true",
                 "--private-attributes", "unwrap=true", *extra)


def aes(t: Twin, client: str, user: str, label: str, *extra: str) -> Result:
    return t.run(client, user, "key", "generate-symmetric", "aes", "--label", label,
                 "--key-length-bytes", "16", *extra)


def wrap(t: Twin, client: str, user: str, payload: str, wrapping: str, *extra: str,
         oaep: tuple[str, ...] = SHA) -> Result:
    return t.run(client, user, "key", "wrap", "rsa-aes", "--payload-filter",
                 f"attr.label={payload}", "--wrapping-filter", f"attr.label={wrapping}",
                 *oaep, *extra)


def unwrap(t: Twin, client: str, user: str, blob: Path, label: str, *extra: str,
           kind: str = "des3", oaep: tuple[str, ...] = SHA) -> Result:
    return t.run(client, user, "key", "unwrap", "rsa-aes", "--filter",
                 "attr.label=w-private", "--key-type-class", kind, "--label", label, *oaep,
                 "--data-path", str(blob), *extra)


def blob_of(t: Twin, name: str, payload: str = "k-des3-cu1", user: str = "cu1") -> Path:
    """A blob of a source key wrapped for hsm2m's wrapping pair (w-imported on hsm1)."""
    path = t.root / f"{name}.bin"
    assert wrap(t, "hsm1", user, payload, "w-imported", "--path", str(path)).ok
    return path


def set_attr(t: Twin, client: str, user: str, label: str, name: str, value: str,
             **kw: str) -> Result:
    return t.run(client, user, "key", "set-attribute", "--filter", f"attr.label={label}",
                 "--name", name, "--value", value, **kw)


def cluster_id(t: Twin, name: str) -> str:
    return t.cluster(name)["cluster_id"]


# ---- one row per rule: (page, what the refusal says, the refused command, the same done right)

Case = Callable[[Twin], tuple[Result, Result | None]]


def owner_only_wraps(t: Twin) -> tuple[Result, Result | None]:
    return (wrap(t, "hsm1", "cu2", "k-des3-shared", "w-imported"),
            wrap(t, "hsm1", "cu1", "k-des3-shared", "w-imported"))


def shared_user_cannot_share(t: Twin) -> tuple[Result, Result | None]:
    assert aes(t, "lab", "cu1", "sh-share", "--share-crypto-users", "cu2").ok
    share = ("key", "share", "--filter", "attr.label=sh-share", "--role", CU, "--username")
    return t.run("lab", "cu2", *share, "cu3"), t.run("lab", "cu1", *share, "cu3")


def shared_user_cannot_delete(t: Twin) -> tuple[Result, Result | None]:
    assert aes(t, "lab", "cu1", "sh-delete", "--share-crypto-users", "cu2").ok
    delete = ("key", "delete", "--filter", "attr.label=sh-delete")
    return t.run("lab", "cu2", *delete), t.run("lab", "cu1", *delete)


def shared_user_cannot_set_attributes(t: Twin) -> tuple[Result, Result | None]:
    assert aes(t, "lab", "cu1", "sh-attr", "--share-crypto-users", "cu2").ok
    return (set_attr(t, "lab", "cu2", "sh-attr", "encrypt", "true"),
            set_attr(t, "lab", "cu1", "sh-attr", "encrypt", "true"))


def share_limit(t: Twin) -> tuple[Result, Result | None]:
    seven = [f"cu{i}" for i in range(2, 9)]
    made = aes(t, "lab", "cu1", "seven", "--share-crypto-users", *seven)
    refused = t.run("lab", "cu1", "key", "share", "--filter", "attr.label=seven", "--username",
                    "cu9", "--role", CU)
    return refused, made


def share_limit_at_creation(t: Twin) -> tuple[Result, Result | None]:
    eight = [f"cu{i}" for i in range(2, 10)]
    return (aes(t, "lab", "cu1", "eight", "--share-crypto-users", *eight),
            aes(t, "lab", "cu1", "eight", "--share-crypto-users", *eight[:7]))


def quorum_above_associated_users(t: Twin) -> tuple[Result, Result | None]:
    return (aes(t, "lab", "cu1", "q2", "--manage-key-quorum-value", "2"),
            aes(t, "lab", "cu1", "q2", "--manage-key-quorum-value", "2",
                "--share-crypto-users", "cu2"))


def quorum_above_eight(t: Twin) -> tuple[Result, Result | None]:
    users = ("--share-crypto-users", *[f"cu{i}" for i in range(2, 9)])
    return (aes(t, "lab", "cu1", "q9", "--use-key-quorum-value", "9", *users),
            aes(t, "lab", "cu1", "q9", "--use-key-quorum-value", "8", *users))


def quorum_at_unwrap(t: Twin) -> tuple[Result, Result | None]:
    blob = blob_of(t, "quorum")
    return (unwrap(t, "hsm2m", "cu1", blob, "q-unwrapped", "--use-key-quorum-value", "2"),
            unwrap(t, "hsm2m", "cu1", blob, "q-unwrapped", "--use-key-quorum-value", "2",
                   "--share-crypto-users", "cu2"))


def quorum_approval_needed(t: Twin) -> tuple[Result, Result | None]:
    assert aes(t, "lab", "cu1", "mq2", "--manage-key-quorum-value", "2",
               "--share-crypto-users", "cu2").ok
    assert aes(t, "lab", "cu1", "mq1", "--manage-key-quorum-value", "1").ok
    token = t.root / "approval.token"
    token.write_text("not a signed quorum token")
    with_token = wrap(t, "lab", "cu1", "mq2", "w-public", "--payload-approval", str(token))
    assert with_token.error_code == 1 and "not modelled" in with_token.data  # never let through
    return wrap(t, "lab", "cu1", "mq2", "w-public"), wrap(t, "lab", "cu1", "mq1", "w-public")


def private_only_default(t: Twin) -> tuple[Result, Result | None]:
    blob = blob_of(t, "private")
    return (unwrap(t, "hsm2m", "cu1", blob, "p-unwrapped", "--attributes", "private=false"),
            unwrap(t, "hsm2m", "cu1", blob, "p-unwrapped", "--attributes", "private=true"))


def no_copyable(t: Twin) -> tuple[Result, Result | None]:
    return (aes(t, "lab", "cu1", "copyable", "--attributes", "copyable=true"),
            aes(t, "lab", "cu1", "copyable", "--attributes", "destroyable=true"))


def trusted_only_by_an_admin(t: Twin) -> tuple[Result, Result | None]:
    assert aes(t, "lab", "cu1", "tr").ok
    return (set_attr(t, "lab", "cu1", "tr", "trusted", "true"),
            set_attr(t, "lab", "admin", "tr", "trusted", "true"))


def trusted_not_at_creation(t: Twin) -> tuple[Result, Result | None]:
    return (aes(t, "lab", "cu1", "tr-made", "--attributes", "trusted=true"),
            aes(t, "lab", "cu1", "tr-made", "--attributes", "trusted=false"))


def modifiable_only_default_at_creation(t: Twin) -> tuple[Result, Result | None]:
    blob = blob_of(t, "modifiable")
    return (unwrap(t, "hsm2m", "cu1", blob, "m-unwrapped", "--attributes", "modifiable=false"),
            unwrap(t, "hsm2m", "cu1", blob, "m-unwrapped", "--attributes", "modifiable=true"))


def id_not_settable_on_hsm1(t: Twin) -> tuple[Result, Result | None]:
    # hsm1.medium: id can be given when a key is made, not changed afterwards
    assert aes(t, "hsm1", "cu1", "id-hsm1", "--attributes", "id=0x0102").ok
    assert set_attr(t, "hsm2m", "cu1", "w-public", "id", "0x0a0b").ok  # hsm2m.medium: it can
    return (set_attr(t, "hsm1", "cu1", "id-hsm1", "id", "0x0a0b"),
            set_attr(t, "hsm1", "cu1", "id-hsm1", "label", "id-hsm1"))


def modifiable_only_true_to_false(t: Twin) -> tuple[Result, Result | None]:
    assert aes(t, "lab", "cu1", "mod").ok
    allowed = set_attr(t, "lab", "cu1", "mod", "modifiable", "false")
    assert set_attr(t, "lab", "cu1", "mod", "encrypt", "true").error_code == 1  # now fixed
    return set_attr(t, "lab", "cu1", "mod", "modifiable", "true"), allowed


def cluster_id_unknown(t: Twin) -> tuple[Result, Result | None]:
    args = ("key", "list", "--filter", "attr.label=k-des3-cu1", "--cluster-id")
    return (t.run("hsm1", "cu1", *args, "cluster-nosuchclust"),
            t.run("hsm1", "cu1", *args, cluster_id(t, "hsm1")))


def cluster_id_needed_with_several(t: Twin) -> tuple[Result, Result | None]:
    args = ("key", "list", "--filter", "attr.label=k-des3-cu1")
    return (t.run("both", "cu1", *args, cluster="hsm1"),
            t.run("both", "cu1", *args, "--cluster-id", cluster_id(t, "hsm1"), cluster="hsm1"))


def no_new_3des_on_fips(t: Twin) -> tuple[Result, Result | None]:
    blob = blob_of(t, "fips")
    assert pair(t, "hsm1", "h1").ok
    refused = t.run("hsm1", "cu1", "key", "unwrap", "rsa-aes", "--filter",
                    "attr.label=h1-private", "--key-type-class", "des3", "--label", "f", *SHA,
                    "--data-path", str(blob))
    return refused, unwrap(t, "hsm2m", "cu1", blob, "fips-unwrapped")


def non_extractable_is_not_wrapped(t: Twin) -> tuple[Result, Result | None]:
    return (wrap(t, "hsm1", "cu1", "k-des3-nonextractable", "w-imported"),
            wrap(t, "hsm1", "cu1", "k-des3-cu1", "w-imported"))


def filter_selects_one_key(t: Twin) -> tuple[Result, Result | None]:
    return (t.run("hsm1", "cu1", "key", "generate-file", "--encoding", "pem", "--path",
                  str(t.root / "x.pem"), "--filter", "attr.key-type=3des"),
            t.run("hsm1", "cu1", "key", "generate-file", "--encoding", "pem", "--path",
                  str(t.root / "x.pem"), "--filter", "attr.label=w-imported"))


def mgf_matches_hash(t: Twin) -> tuple[Result, Result | None]:
    return (wrap(t, "hsm1", "cu1", "k-des3-cu1", "w-imported",
                 oaep=("--hash-function", "sha256", "--mgf", "mgf1-sha1")),
            wrap(t, "hsm1", "cu1", "k-des3-cu1", "w-imported",
                 oaep=("--hash-function", "sha1", "--mgf", "mgf1-sha1")))


def unwrap_names_the_wraps_hash(t: Twin) -> tuple[Result, Result | None]:
    blob = blob_of(t, "hash")  # sha256
    sha1 = ("--hash-function", "sha1", "--mgf", "mgf1-sha1")
    return (unwrap(t, "hsm2m", "cu1", blob, "h-unwrapped", oaep=sha1),
            unwrap(t, "hsm2m", "cu1", blob, "h-unwrapped"))


def wrap_with_trusted_needs_a_trusted_key(t: Twin) -> tuple[Result, Result | None]:
    assert aes(t, "lab", "cu1", "wwt", "--attributes", "wrap-with-trusted=true").ok
    assert pair(t, "lab", "wt").ok
    refused = wrap(t, "lab", "cu1", "wwt", "wt-public")
    assert set_attr(t, "lab", "admin", "wt-public", "trusted", "true").ok
    return refused, wrap(t, "lab", "cu1", "wwt", "wt-public")


def key_commands_need_a_crypto_user(t: Twin) -> tuple[Result, Result | None]:
    return aes(t, "lab", "admin", "by-admin"), aes(t, "lab", "cu1", "by-admin")


def rsa_modulus_at_least_2048(t: Twin) -> tuple[Result, Result | None]:
    args = ("key", "generate-asymmetric-pair", "rsa", "--public-label", "small-public",
            "--private-label", "small-private", "--public-exponent", "65537",
            "--modulus-size-bits")
    # 2048 is accepted: the module's fixture makes its pairs with it
    return t.run("lab", "cu1", *args, "1024"), None


def usernames(t: Twin) -> tuple[Result, Result | None]:
    create = ("user", "create", "--role", CU, "--username")
    return (t.run("lab", "admin", *create, "not-valid", stdin="pw-1\npw-1\n"),
            t.run("lab", "admin", *create, "New_User", stdin="pw-1\npw-1\n"))


def mtls_only_on_hsm2m(t: Twin) -> tuple[Result, Result | None]:
    get = ("cluster", "mtls", "get-enforcement")
    return t.run("hsm1", "cu1", *get), t.run("hsm2m", "cu1", *get)


def wrapping_key_needs_wrap(t: Twin) -> tuple[Result, Result | None]:
    assert t.run("hsm1", "cu1", "key", "import", "pem", "--path", str(t.root / "w.pem"),
                 "--label", "no-wrap", "--key-type-class", "rsa-public").ok  # wrap: default
    return (wrap(t, "hsm1", "cu1", "k-des3-cu1", "no-wrap"),
            wrap(t, "hsm1", "cu1", "k-des3-cu1", "w-imported"))


def extractable_never_changes(t: Twin) -> tuple[Result, Result | None]:
    assert aes(t, "lab", "cu1", "ext").ok
    return (set_attr(t, "lab", "cu1", "ext", "extractable", "false"),
            set_attr(t, "lab", "cu1", "ext", "decrypt", "true"))


def wrap_with_trusted_never_back(t: Twin) -> tuple[Result, Result | None]:
    assert aes(t, "lab", "cu1", "wwt-back", "--attributes", "wrap-with-trusted=true").ok
    return (set_attr(t, "lab", "cu1", "wwt-back", "wrap-with-trusted", "false"),
            set_attr(t, "lab", "cu1", "wwt-back", "label", "wwt-back"))


def sensitive_only_to_true(t: Twin) -> tuple[Result, Result | None]:
    assert aes(t, "lab", "cu1", "sens", "--attributes", "sensitive=false").ok
    allowed = set_attr(t, "lab", "cu1", "sens", "sensitive", "true")
    return set_attr(t, "lab", "cu1", "sens", "sensitive", "false"), allowed


def derive_not_on_rsa_keys_of_hsm1(t: Twin) -> tuple[Result, Result | None]:
    assert pair(t, "hsm1", "d1").ok
    assert pair(t, "hsm2m", "d2").ok
    return (set_attr(t, "hsm1", "cu1", "d1-private", "derive", "true"),
            set_attr(t, "hsm2m", "cu1", "d2-private", "derive", "true"))


def rsa_exponent_odd(t: Twin) -> tuple[Result, Result | None]:
    return (t.run("lab", "cu1", "key", "generate-asymmetric-pair", "rsa", "--public-label",
                  "even-public", "--private-label", "even-private", "--modulus-size-bits",
                  "2048", "--public-exponent", "65538"), None)  # 65537: every pair here


RULES: dict[str, tuple[str, str, Case]] = {
    "owner-only-wraps": ("cloudhsm_cli-key-wrap-rsa-aes",
                         r"Only the owner of a key can wrap it: .* owned by cu1; it is shared "
                         r"with cu2", owner_only_wraps),
    "shared-user-cannot-share": ("cloudhsm_cli-key-share", r"Only the owner of a key can share",
                                 shared_user_cannot_share),
    "shared-user-cannot-delete": ("cloudhsm_cli-key-delete",
                                  r"Only the owner of a key can delete", shared_user_cannot_delete),
    "shared-user-cannot-set-attributes": ("cloudhsm_cli-key-set-attribute",
                                          r"Only the owner of a key can set attributes",
                                          shared_user_cannot_set_attributes),
    "share-limit": ("cloudhsm_cli-key-share", r"shared with at most 7 crypto users",
                    share_limit),
    "share-limit-at-creation": ("cloudhsm_cli-key-share", r"shared with at most 7",
                                share_limit_at_creation),
    "quorum-above-associated-users": ("quorum-auth-chsm-cli-service-names",
                                      r"manage-key-quorum-value \(2\) must be less than or equal "
                                      r"to the number of users the key is associated with \(1",
                                      quorum_above_associated_users),
    "quorum-above-eight": ("cloudhsm_cli-key-generate-symmetric-aes",
                           r"use-key-quorum-value 9: from 0 to 8", quorum_above_eight),
    "quorum-at-unwrap": ("cloudhsm_cli-key-unwrap-rsa-aes",
                         r"use-key-quorum-value \(2\) must be less than", quorum_at_unwrap),
    "quorum-approval-needed": ("cloudhsm_cli-key-wrap-rsa-aes",
                               r"key management quorum value of 2: quorum approval is required",
                               quorum_approval_needed),
    "private-default-only": ("pkcs11-attributes-interpreting",
                             r"private can only be set to its default value, true",
                             private_only_default),
    "modifiable-default-only-at-creation": ("pkcs11-attributes-interpreting",
                                            r"modifiable can only be set to its default value, "
                                            r"true", modifiable_only_default_at_creation),
    "no-copyable": ("cloudhsm_cli-key-attributes-table", r"Invalid key attribute: copyable",
                    no_copyable),
    "trusted-only-by-an-admin": ("cloudhsm_cli-key-set-attribute",
                                 r"Only an admin can set the trusted attribute",
                                 trusted_only_by_an_admin),
    "trusted-not-at-creation": ("cloudhsm_cli-key-set-attribute",
                                r"trusted can only be set by an admin", trusted_not_at_creation),
    "id-not-settable-on-hsm1": ("cloudhsm_cli-key-attributes-table",
                                r"id cannot be set on hsm1.medium", id_not_settable_on_hsm1),
    "modifiable-only-true-to-false": ("cloudhsm_cli-key-attributes-table",
                                      r"is not modifiable|can only be changed from true to false",
                                      modifiable_only_true_to_false),
    "cluster-id-unknown": ("cloudhsm_cli-configs-multi-cluster",
                           r"Cluster ID cluster-nosuchclust is not in the configuration",
                           cluster_id_unknown),
    "cluster-id-needed-with-several": ("cloudhsm_cli-configs-multi-cluster",
                                       r"2 clusters are configured: provide --cluster-id",
                                       cluster_id_needed_with_several),
    "no-new-3des-on-fips": ("pkcs11-key-types", r"3DES is disallowed for clusters in FIPS mode",
                            no_new_3des_on_fips),
    "non-extractable-is-not-wrapped": ("cloudhsm_cli-key-wrap-rsa-aes",
                                       r"is not extractable \(extractable=false\)",
                                       non_extractable_is_not_wrapped),
    "filter-selects-one-key": ("manage-keys-cloudhsm-cli-filtering",
                               r"^Key selection criteria matched \d+ keys. Refine selection "
                               r"criteria to select a single key.$", filter_selects_one_key),
    "mgf-matches-hash": ("cloudhsm_cli-key-wrap-rsa-aes",
                         r"mgf1-sha1 does not match the hash function sha256", mgf_matches_hash),
    "unwrap-names-the-wraps-hash": ("the stand-in (wrapping.py)",
                                    r"was wrapped with sha256/mgf1-sha256, not sha1/mgf1-sha1",
                                    unwrap_names_the_wraps_hash),
    "wrap-with-trusted": ("modify-attr", r"wrap-with-trusted=true and can only be wrapped by a "
                                         r"trusted key", wrap_with_trusted_needs_a_trusted_key),
    "key-commands-need-a-crypto-user": ("cloudhsm_cli-key-generate-symmetric-aes",
                                        r"can only be run by a crypto user",
                                        key_commands_need_a_crypto_user),
    "rsa-modulus-at-least-2048": ("cloudhsm_cli-key-generate-asymmetric-pair-rsa",
                                  r"minimum value is 2048", rsa_modulus_at_least_2048),
    "usernames": ("cloudhsm_cli-user-create", r"up to 31 letters, digits or underscores",
                  usernames),
    "wrapping-key-needs-wrap": ("cloudhsm_cli-key-wrap-rsa-aes",
                                r"cannot be used to wrap keys \(wrap=false\)",
                                wrapping_key_needs_wrap),
    "extractable-never-changes": ("cloudhsm_cli-key-attributes-table",
                                  r"Key attribute extractable cannot be modified",
                                  extractable_never_changes),
    "wrap-with-trusted-never-back": ("modify-attr",
                                     r"wrap-with-trusted can only be changed from false to true",
                                     wrap_with_trusted_never_back),
    "sensitive-only-to-true": ("modify-attr", r"sensitive can only be changed from false to "
                                              r"true", sensitive_only_to_true),
    "derive-not-on-rsa-keys-of-hsm1": ("cloudhsm_cli-key-attributes-table",
                                       r"derive cannot be set for RSA keys on hsm1.medium",
                                       derive_not_on_rsa_keys_of_hsm1),
    "rsa-exponent-odd": ("cloudhsm_cli-key-generate-asymmetric-pair-rsa",
                         r"an odd number greater than or equal to 65537", rsa_exponent_odd),
    "mtls-only-on-hsm2m": ("cloudhsm_cli-cluster-mtls-get-enforcement",
                           r"not supported on hsm1.medium", mtls_only_on_hsm2m),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_stand_in_enforces_the_rule_with_the_clis_error_shape(twin, rule):
    page, pattern, case = RULES[rule]
    refused, allowed = case(twin)
    assert (refused.status, refused.error_code) == (1, 1), (page, refused)
    assert isinstance(refused.data, str) and re.search(pattern, refused.data), (page, refused)
    if allowed is not None:
        assert allowed.ok, (page, allowed)


def test_five_refused_logins_lock_the_user_until_an_admin_gives_a_new_password(twin):
    """cloudhsm_cli-login: locked after five incorrect attempts; an admin unlocks it with user
    change-password. The wrong password and the new one are never printed."""
    for n in range(1, 6):
        r = twin.run("lab", "lockme", "key", "list", password=f"wrong-{n}")
        assert r.error_code == 1 and r.data.startswith("Login failed"), r
        assert f"wrong-{n}" not in r.data + r.stderr
        assert r.data.endswith("is now locked") == (n == 5), r.data
    right = twin.run("lab", "lockme", "key", "list")
    assert right.error_code == 1 and right.data == "Login failed: user lockme is locked"
    users = {u["username"]: u for u in twin.run("lab", "admin", "user", "list").data["users"]}
    assert users["lockme"]["locked"] == "true" and users["cu1"]["locked"] == "false"
    reset = twin.run("lab", "admin", "user", "change-password", "--username", "lockme",
                     "--role", CU, stdin="N3w-pass\nN3w-pass\n")
    assert reset.ok and "N3w-pass" not in str(reset.data)
    assert twin.run("lab", "lockme", "key", "list", password="N3w-pass").ok
    users = {u["username"]: u for u in twin.run("lab", "admin", "user", "list").data["users"]}
    assert users["lockme"]["locked"] == "false"


def test_a_secret_in_argv_is_refused_and_not_repeated(twin):
    password = twin.password("lab", "cu1")
    r = twin.run("lab", "cu1", "key", "list", "--filter", f"attr.label={password}")
    assert r.status == 2 and "a secret in argv is refused" in r.stderr
    assert password not in r.stderr and r.error_code is None
    r = twin.run("lab", "admin", "user", "create", "--username", "x", "--role", CU,
                 "--password", "typed-in-argv")
    assert r.status == 2 and "typed-in-argv" not in r.stderr


def test_a_key_made_through_pkcs11_is_owned_by_the_clusters_pkcs11_user(twin):
    """keyparity's PKCS #11 backend makes keys on the token directly: they belong to the crypto
    user the cluster's PKCS #11 login stands for (cu1), and only to that user."""
    twin.tokens({"op": "create", "token": "hsm2m", "key": {"label": "by-pkcs11", "type": "aes",
                                                         "size": 128}})
    mine = twin.run("hsm2m", "cu1", "key", "list", "--filter", "attr.label=by-pkcs11",
                    "--verbose")
    [key] = mine.data["matched_keys"]
    assert key["key-info"]["key-owners"] == [{"username": "cu1", "key-coverage": "full"}]
    assert twin.run("hsm2m", "cu2", "key", "list", "--filter",
                    "attr.label=by-pkcs11").data["total_key_count"] == 0


def test_a_key_keeps_its_reference_and_owner_when_pkcs11_relabels_it(twin):
    made = aes(twin, "lab", "cu2", "relabel-me")
    ref = made.data["key"]["key-reference"]
    twin.tokens({"op": "set", "token": "lab", "label": "relabel-me", "class": "secret",
                 "attribute": "label", "value": "relabelled"})
    [key] = twin.run("lab", "cu2", "key", "list", "--filter", "attr.label=relabelled",
                     "--verbose").data["matched_keys"]
    assert key["key-reference"] == ref
    assert key["key-info"]["key-owners"][0]["username"] == "cu2"


def test_concurrent_calls_on_one_cluster_each_get_their_own_key(twin):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(6) as pool:
        made = list(pool.map(lambda i: aes(twin, "lab", "cu3", f"parallel-{i}"), range(6)))
    assert all(r.ok for r in made), made
    refs = {r.data["key"]["key-reference"] for r in made}
    listed = twin.run("lab", "cu3", "key", "list", "--filter", "attr.key-type=aes",
                      "--max-items", "50").data
    assert len(refs) == 6 and refs <= {k["key-reference"] for k in listed["matched_keys"]}


def test_key_list_pages_with_max_items_and_next_token(twin):
    for i in range(3):
        assert aes(twin, "lab", "cu9", f"page-{i}").ok
    first = twin.run("lab", "cu9", "key", "list", "--filter", "attr.key-type=aes",
                     "--max-items", "2").data
    assert first["returned_key_count"] == 2 and first["total_key_count"] == 3
    rest = twin.run("lab", "cu9", "key", "list", "--filter", "attr.key-type=aes",
                    "--max-items", "2", "--starting-token", first["next_token"]).data
    assert rest["returned_key_count"] == 1 and "next_token" not in rest
    labels = [k["attributes"]["label"] for k in first["matched_keys"] + rest["matched_keys"]]
    assert sorted(labels) == ["page-0", "page-1", "page-2"]
    assert set(first["matched_keys"][0]) == {"key-reference", "attributes"}  # not --verbose


# ---- the migration guide's procedure (seed 002), through the stand-in alone ------------------

OWNERS = {"k-des3-cu1": "cu1", "k-des3-cu2": "cu2", "k-des3-shared": "cu1",
          "k-des3-quorum": "cu1"}


def source_view(t: Twin) -> dict[str, dict]:
    """The guide's prerequisite: each owner lists its 3DES keys with their attributes
    (``key list --filter attr.key-type=3des --verbose``); the union of their views."""
    out: dict[str, dict] = {}
    for user in ("cu1", "cu2"):
        listed = t.run("hsm1", user, "key", "list", "--filter", "attr.key-type=3des",
                       "--verbose")
        assert listed.ok, listed
        out.update({k["attributes"]["label"]: k for k in listed.data["matched_keys"]})
    return out


def unwrap_options(source: dict) -> list[str]:
    """What the unwrap must set, read from the source key: the attributes settable at
    creation, then sharing and quorum values in the same command."""
    attrs, info = source["attributes"], source["key-info"]
    out = ["--attributes", "decrypt=true", f"extractable={str(attrs['extractable']).lower()}",
           f"id={attrs['id']}"]
    shared = [u["username"] for u in info["shared-users"]]
    if shared:
        out += ["--share-crypto-users", *shared]
    quorum = info["key-quorum-values"]
    if any(quorum.values()):
        out += ["--manage-key-quorum-value", str(quorum["manage-key-quorum-value"]),
                "--use-key-quorum-value", str(quorum["use-key-quorum-value"])]
    return out


def test_the_guides_procedure_moves_each_key_with_real_crypto(twin):
    t = twin
    source = source_view(t)
    assert set(source) >= set(OWNERS) | {"k-des3-nonextractable"}
    # 1. on the target: the wrapping pair (shared with the second CU, who migrates its keys)
    assert t.run("hsm2m", "cu1", "key", "generate-asymmetric-pair", "rsa", "--public-label",
                 "g-wrap", "--private-label", "g-unwrap", "--modulus-size-bits", "2048",
                 "--public-exponent", "65537", "--public-attributes", "wrap=true",
                 "--private-attributes", "unwrap=true").ok
    assert t.run("hsm2m", "cu1", "key", "share", "--filter", "attr.label=g-unwrap",
                 "--username", "cu2", "--role", CU).ok
    # 2.-4. its public key as PEM, imported on the source
    pem = t.root / "g-wrap.pem"
    assert t.run("hsm2m", "cu1", "key", "generate-file", "--encoding", "pem", "--path",
                 str(pem), "--filter", "attr.label=g-wrap").ok
    assert t.run("hsm1", "cu1", "key", "import", "pem", "--path", str(pem), "--label",
                 "g-wrap", "--key-type-class", "rsa-public", "--attributes", "wrap=true").ok
    # 5.-7. each key wrapped by its owner (RSA-AES, sha256), unwrapped by the same CU
    for label, owner in OWNERS.items():
        blob = t.root / f"g-{label}.bin"
        assert wrap(t, "hsm1", owner, label, "g-wrap", "--path", str(blob)).ok, label
        done = t.run("hsm2m", owner, "key", "unwrap", "rsa-aes", "--filter",
                     "attr.label=g-unwrap", "--key-type-class", "des3", "--label", label, *SHA,
                     "--data-path", str(blob), *unwrap_options(source[label]))
        assert done.ok, (label, done)
        assert done.data["key"]["attributes"]["encrypt"] is False  # not given: the default
    # only extractable keys move (the guide's first consideration)
    refused = wrap(t, "hsm1", "cu1", "k-des3-nonextractable", "g-wrap")
    assert refused.error_code == 1 and "not extractable" in refused.data
    # 8. what was not set at unwrap, afterwards, by the owner
    for label, owner in OWNERS.items():
        assert set_attr(t, "hsm2m", owner, label, "encrypt", "true").ok, label
    check_the_target(t, source)
    check_data_crosses_both_ways(t)


def check_the_target(t: Twin, source: dict[str, dict]) -> None:
    for label, owner in OWNERS.items():
        [key] = t.run("hsm2m", owner, "key", "list", "--filter", f"attr.label={label}",
                      "--verbose").data["matched_keys"]
        info, attrs, src = key["key-info"], key["attributes"], source[label]
        assert info["key-owners"] == [{"username": owner, "key-coverage": "full"}]
        assert info["shared-users"] == src["key-info"]["shared-users"], label
        assert info["key-quorum-values"] == src["key-info"]["key-quorum-values"], label
        assert attrs["check-value"] == src["attributes"]["check-value"], label
        assert (attrs["id"], attrs["local"], attrs["encrypt"]) == (
            src["attributes"]["id"], False, True), label


def check_data_crosses_both_ways(t: Twin) -> None:
    """The guide's proof: a message encrypted with the key on one cluster decrypts with the
    moved key on the other (PKCS #11 on the two SoftHSM tokens), in both directions."""
    message, iv = b"migrated 3DES payment key test!!".hex(), "0102030405060708"
    ways = [(label, there, back) for label in OWNERS
            for there, back in (("hsm1", "hsm2m"), ("hsm2m", "hsm1"))]
    op = {"mechanism": "DES3_CBC_PAD", "iv_hex": iv}
    sealed = t.tokens(*[{**op, "op": "encrypt", "token": there, "label": label,
                         "data_hex": message} for label, there, _ in ways])
    opened = t.tokens(*[{**op, "op": "decrypt", "token": back, "label": label,
                         "data_hex": ciphertext} for (label, _, back), ciphertext
                        in zip(ways, sealed)])
    assert opened == [message] * len(ways) and message not in sealed


def test_the_owner_unshares_and_the_shared_user_no_longer_sees_the_key(twin):
    assert aes(twin, "lab", "cu5", "unshare-me", "--share-crypto-users", "cu6").ok
    seen = ("key", "list", "--filter", "attr.label=unshare-me")
    assert twin.run("lab", "cu6", *seen).data["total_key_count"] == 1
    unshare = ("key", "unshare", "--filter", "attr.label=unshare-me", "--role", CU,
               "--username", "cu6")
    refused = twin.run("lab", "cu6", *unshare)
    assert refused.error_code == 1 and "Only the owner of a key can unshare" in refused.data
    assert twin.run("lab", "cu5", *unshare).data == {"message": "Key unshared successfully"}
    assert twin.run("lab", "cu6", *seen).data["total_key_count"] == 0
