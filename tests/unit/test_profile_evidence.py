"""The profile's ``evidence`` block: signers of each type, threshold, and clear errors."""
import os
from pathlib import Path

import pytest
import yaml

from conftest import as_production
from keyparity.profile import ProfileError, load_profile


def write(tmp_path: Path, evidence: dict) -> Path:
    module = tmp_path / "libmodule.so"
    module.write_bytes(b"")
    (tmp_path / "pin").write_text("1234\n")
    (tmp_path / "signer.pem").write_text("not read at load time\n")
    cluster = {"name": "c", "module": str(module), "token_label": "t", "pin": "file:pin",
               "mode": "FIPS"}
    doc = {"name": "p", "description": "d", "environment": "test",
           "clusters": {"source": cluster, "target": {**cluster, "mode": "NON_FIPS"}},
           "keys": [{"label": "k", "type": "des3"}], "evidence": evidence}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_no_evidence_block_means_unsigned(tmp_path):
    profile = load_profile(write(tmp_path, {}))
    assert profile.evidence.signers == () and profile.evidence.threshold == 0


def test_signers_of_each_type_and_default_threshold(tmp_path):
    profile = load_profile(write(tmp_path, {"signers": [
        {"name": "a", "type": "file", "path": "signer.pem", "password": "env:SIGNER_PASS"},
        {"name": "b", "type": "pkcs11", "module": "libmodule.so", "token_label": "t",
         "pin": "file:pin", "key_label": "ca"},
        {"name": "c", "type": "kms", "key_id": "alias/evidence", "region": "eu-west-1"},
    ]}))
    a, b, c = profile.evidence.signers
    assert a.path == tmp_path / "signer.pem" and str(a.password) == "env:SIGNER_PASS"
    assert b.module == tmp_path / "libmodule.so" and b.key_label == "ca" and b.pin.scheme == "file"
    assert c.key_id == "alias/evidence" and c.region == "eu-west-1"
    assert profile.evidence.threshold == 3


@pytest.mark.parametrize(("evidence", "field", "words"), [
    ({"signers": [{"name": "a", "type": "file"}]}, "evidence.signers[0].path",
     "required field missing for a file signer"),
    ({"signers": [{"name": "a", "type": "kms", "key_id": "k", "path": "signer.pem"}]},
     "evidence.signers[0].path", "not allowed for a kms signer"),
    ({"signers": [{"name": "a", "type": "file", "path": "missing.pem"}]},
     "evidence.signers[0].path", "file not found"),
    ({"signers": [{"name": "a", "type": "pkcs11", "module": "libmodule.so", "pin": "file:pin",
                   "key_label": "k"}]}, "evidence.signers[0]", "exactly one of token_label or slot"),
    ({"signers": [{"name": "a", "type": "pkcs11", "module": "libmodule.so", "token_label": "t",
                   "pin": "s3cret-literal", "key_label": "k"}]}, "evidence.signers[0].pin",
     "a literal secret is not allowed"),
    ({"signers": [{"name": "a", "type": "kms", "key_id": "k"},
                  {"name": "a", "type": "kms", "key_id": "l"}]}, "evidence.signers[1].name",
     "duplicate signer name"),
    ({"signers": [{"name": "a", "type": "kms", "key_id": "k"}], "threshold": 2},
     "evidence.threshold", "2 signatures required but 1 signer(s) configured"),
    ({"signers": [{"name": "a", "type": "gpg"}]}, "evidence.signers[0].type", "is not one of"),
])
def test_bad_evidence_block_names_the_field(tmp_path, evidence, field, words):
    with pytest.raises(ProfileError) as info:
        load_profile(write(tmp_path, evidence))
    assert info.value.field == field and words in info.value.message
    assert "s3cret-literal" not in str(info.value)


@pytest.mark.parametrize("written", ["2027-03-31", "'2027-03-31'"])
def test_cutover_date_quoted_or_not(tmp_path, written):
    path = write(tmp_path, {})
    path.write_text(path.read_text() + f"cutover: {written}\n")
    assert str(load_profile(path).cutover) == "2027-03-31"


def test_cutover_that_is_not_a_date_names_the_field(tmp_path):
    path = write(tmp_path, {})
    path.write_text(path.read_text() + "cutover: 2027-02-30\n")
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert info.value.field == "cutover"


def test_the_same_key_under_two_signer_names_is_refused_when_the_profile_loads(tmp_path):
    """The profile alone shows it: one key file (by its real path), one token key, one KMS
    key; dual control needs a key per custodian."""
    (tmp_path / "other.pem").symlink_to(tmp_path / "signer.pem")
    same = {
        "file": [{"name": "a", "type": "file", "path": "signer.pem"},
                 {"name": "b", "type": "file", "path": "signer.pem"}],
        "pkcs11": [{"name": "a", "type": "pkcs11", "module": "libmodule.so", "token_label": "t",
                    "pin": "file:pin", "key_label": "ca"},
                   {"name": "b", "type": "pkcs11", "module": "libmodule.so",
                    "token_label": "t", "pin": "file:pin", "key_label": "ca"}],
        "kms": [{"name": "a", "type": "kms", "key_id": "alias/e", "region": "eu-west-1"},
                {"name": "b", "type": "kms", "key_id": "alias/e", "region": "eu-west-1"}],
    }
    for kind, signers in same.items():
        with pytest.raises(ProfileError) as info:
            load_profile(write(tmp_path, {"signers": signers}))
        assert info.value.field == "evidence.signers[1]", kind
        assert "signer 'b' uses the same key as 'a'" in info.value.message, info.value
    fine = load_profile(write(tmp_path, {"signers": [
        same["kms"][0], {**same["kms"][1], "region": "us-east-1"}]}))
    assert len(fine.evidence.signers) == 2


def _production(path: Path) -> Path:
    doc = yaml.safe_load(path.read_text())
    as_production(doc)
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_signer_key_others_may_read_is_refused_in_production(tmp_path):
    """A file signer's private key is held to the PIN-file rules: readable by the group or
    others is refused in production (a warning in a test profile: its run's header and
    run.secret_files), and so is a link to it."""
    path = write(tmp_path, {"signers": [{"name": "a", "type": "file", "path": "signer.pem"}]})
    (tmp_path / "pin").chmod(0o600)
    key = tmp_path / "signer.pem"
    key.chmod(0o644)
    test = load_profile(path)
    assert [(f["field"], f["mode"], f["ok"]) for f in test.secret_files
            if f["field"].startswith("evidence")] == [("evidence.signers[0].path", "0644", False)]
    with pytest.raises(ProfileError) as info:
        load_profile(_production(path))
    assert info.value.field == "evidence.signers[0].path"
    assert info.value.message == (f"secret file {key} is readable by others (mode 0644): a "
                                  f"production profile refuses it; chmod 600 {key}")
    key.chmod(0o600)
    assert load_profile(path).environment == "production"
    (tmp_path / "link.pem").symlink_to(key)
    with pytest.raises(ProfileError, match="is a symbolic link"):
        load_profile(write(tmp_path, {"signers": [{"name": "a", "type": "file",
                                                   "path": "link.pem"}]}))


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_signer_key_another_user_owns_is_refused_in_production(tmp_path):
    path = _production(write(tmp_path, {"signers": [{"name": "a", "type": "file",
                                                     "path": "signer.pem"}]}))
    (tmp_path / "pin").chmod(0o600)
    key = tmp_path / "signer.pem"
    key.chmod(0o600)
    os.chown(key, 4242, -1)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert info.value.message == (f"secret file {key} is owned by uid 4242, not by the user "
                                  f"keyparity runs as (uid 0): a production profile refuses "
                                  f"it; chown it to the user keyparity runs as: {key}")
