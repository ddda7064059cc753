"""Key roles (keyparity.roles): the one table, what a role permits, the violations the
attributes suite reports, the drafts of ``keyparity inventory``, and the profile's rules
(a role fits its key type, production requires one, vectors only what the role permits)."""
from __future__ import annotations

import pytest
import yaml

from keyparity import roles
from keyparity.profile import ProfileError, load_profile

SECRET = {"encrypt": True, "decrypt": True, "sign": False, "verify": False, "wrap": False,
          "unwrap": False, "derive": False}


def test_every_role_permits_only_known_operations_and_names_where_it_is_required():
    for role in roles.ROLES.values():
        assert role.permits <= set(roles.OPERATIONS), role.name
        assert role.reference and role.purpose and role.key_types
    assert [r for r in roles.ROLES.values() if not r.checked] == [roles.ROLES["unspecified"]]


@pytest.mark.parametrize("name, attributes, found", [
    ("data-encryption", SECRET, []),
    ("data-encryption", {**SECRET, "wrap": True},
     ["wrap=true: a data-encryption key encrypts and decrypts data; never wraps keys, never "
      "MACs or signs"]),
    ("key-encryption", {**SECRET, "wrap": True, "unwrap": True},
     ["encrypt=true: a key-encryption key wraps and unwraps other keys (KEK, ZMK); never "
      "encrypts data", "decrypt=true: a key-encryption key wraps and unwraps other keys (KEK, "
      "ZMK); never encrypts data"]),
    ("mac", {**SECRET, "encrypt": False, "decrypt": False},
     ["none of sign, verify is true: the key cannot do what a mac key is for"]),
    ("mac", {**SECRET, "encrypt": False, "decrypt": False, "sign": True, "verify": True}, []),
    ("unspecified", {op: True for op in roles.OPERATIONS}, []),
])
def test_violations_name_each_operation_beyond_the_role(name, attributes, found):
    assert roles.violations(name, attributes) == found


def test_a_pair_is_checked_over_both_halves():
    private = {"sign": True, "decrypt": False, "unwrap": False, "derive": False}
    public = {"verify": True, "encrypt": True, "wrap": False}
    record = roles.check("signing", private, public)
    assert record["allowed"] == ["encrypt", "sign", "verify"]
    assert record["violations"] == ["encrypt=true: a signing key signs (the private half) and "
                                    "verifies (the public half) only"]
    assert record["checked"] is True


@pytest.mark.parametrize("key_type, attributes, draft", [
    ("aes", SECRET, "data-encryption"),
    ("aes", {"wrap": True, "unwrap": True}, "key-encryption"),
    ("generic-secret", {"sign": True, "verify": True}, "mac"),
    ("rsa", {"sign": True}, "signing"),
    ("aes", {"encrypt": True, "sign": True}, None),   # fits no single role: a person decides
    ("aes", {}, None),
])
def test_inventory_drafts_the_role_the_attributes_show(key_type, attributes, draft):
    assert roles.infer(attributes, key_type) == draft


def _profile(tmp_path, environment="test", **key):
    pin = tmp_path / "pin"
    pin.write_text("1234\n")
    pin.chmod(0o600)
    cluster = {"module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "t",
               "pin": f"file:{pin}"}
    doc = {"name": "p", "description": "d", "environment": environment,
           "clusters": {"source": {**cluster, "name": "a", "mode": "NON_FIPS"},
                        "target": {**cluster, "name": "b", "mode": "NON_FIPS"}},
           "keys": [{"label": "k", "type": "aes", "size": 128, **key}]}
    if environment == "production":
        doc["classification"] = "confidential"
        doc["clusters"]["target"]["aws"] = {"cluster_id": "cluster-x", "region": "eu-west-1"}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_production_profile_requires_every_keys_role(tmp_path):
    with pytest.raises(ProfileError) as err:
        load_profile(_profile(tmp_path, "production"))
    assert err.value.field == "keys[0].role"
    assert err.value.message.startswith("required in production: what the key is for")
    assert load_profile(_profile(tmp_path, "production", role="tokenisation")).keys[0].role == \
        "tokenisation"


def test_a_test_profile_without_roles_is_unspecified(tmp_path):
    profile = load_profile(_profile(tmp_path))
    assert profile.keys[0].role == "unspecified"
    assert profile.without_role == profile.keys


def test_a_role_must_fit_the_key_type(tmp_path):
    with pytest.raises(ProfileError) as err:
        load_profile(_profile(tmp_path, role="signing"))
    assert (err.value.field, err.value.message) == (
        "keys[0].role", "a aes key cannot hold the role signing (it is for rsa, ec keys)")


def test_a_vector_the_role_does_not_permit_is_refused(tmp_path):
    with pytest.raises(ProfileError) as err:
        load_profile(_profile(tmp_path, role="key-encryption", vectors=["aes-cbc"]))
    assert (err.value.field, err.value.message) == (
        "keys[0].vectors[0]", "'aes-cbc' makes the key encrypt and decrypt, which a "
        "key-encryption key may not do (keys[0].role)")
    profile = load_profile(_profile(tmp_path, role="key-encryption"))
    assert profile.keys[0].vectors == ("aes-key-wrap",)


def test_production_requires_a_classification(tmp_path):
    path = _profile(tmp_path, "production", role="mac")
    doc = yaml.safe_load(path.read_text())
    del doc["classification"]
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert err.value.field == "classification"
    assert load_profile(_profile(tmp_path)).classification == "internal"
