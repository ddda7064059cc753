"""Unit tests for keyparity.profile and keyparity.secrets."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pickle
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from keyparity import vector_table
from keyparity.profile import (
    ATTRIBUTE_NAMES, DIFFERENCE_NAMES, KEY_TYPES, ProfileError, default_vectors,
    load_profile, resolve_profile_arg,
)
from keyparity.secrets import SecretError, SecretRef, parse_secret_ref

LITERAL = "a literal secret is not allowed; use env:NAME or file:PATH"


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """profiles/ dir plus a fake module and pin files one level up."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    module = tmp_path / "libfake.so"
    module.write_bytes(b"\x7fELF")
    (state / "hsm1.pin").write_text("1234\n")
    (state / "hsm2.pin").write_text("5678\n")
    return {"root": tmp_path, "profiles": profiles, "state": state, "module": module}


def base_profile(layout: dict[str, Path]) -> dict[str, Any]:
    return {
        "name": "softhsm",
        "description": "Embedded demo",
        "environment": "test",
        "clusters": {
            "source": {
                "name": "hsm1",
                "module": str(layout["module"]),
                "token_label": "hsm1",
                "pin": "file:../state/hsm1.pin",
                "mode": "FIPS",
            },
            "target": {
                "name": "hsm2",
                "module": str(layout["module"]),
                "slot": 0,
                "pin": "env:HSM2_PIN",
                "mode": "NON_FIPS",
            },
        },
        "keys": [{"label": "demo-3des", "type": "des3"}],
    }


def write(layout: dict[str, Path], data: Any, name: str = "p.yaml") -> Path:
    path = layout["profiles"] / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def error_for(layout: dict[str, Path], data: Any) -> ProfileError:
    path = write(layout, data)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(info.value).startswith(f"{path}: ")
    assert info.value.path == path
    return info.value


# --------------------------------------------------------------------------- valid profiles


def test_full_profile_round_trip(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["module_env"] = {"SOFTHSM2_CONF": "../state/softhsm2.conf", "PKCS11SPY": "x/y",
                          "PKCS11SPY_OUTPUT": "./a"}
    data["clusters"]["target"]["module"] = "../libfake.so"
    data["wrapping"] = {"mechanism": "rsa-aes", "rsa_bits": 4096, "oaep_hash": "sha384",
                        "mgf": "mgf1-sha384", "aes_bits": 128}
    data["migration"] = {"mode": "verify-only"}
    data["keys"] = [
        {"label": "demo-3des", "type": "des3", "vectors": ["des3-ecb"],
         "attributes": {"encrypt": True, "sensitive": False, "id": "0a0B"},
         "expected_differences": {"local": "unwrapped keys are never local"}},
        {"label": "a", "target_label": "a-new", "type": "aes", "size": 256, "disposition": "rotate"},
        {"label": "h", "type": "generic-secret", "size": 512},
        {"label": "r", "type": "rsa", "size": 2048},
        {"label": "e1", "type": "ec", "curve": "P-256"},
        {"label": "e2", "type": "ec", "curve": "P-384"},
        {"label": "e3", "type": "ec", "curve": "secp521r1", "vectors": ["ecdsa-sha512"]},
        {"label": "d2", "type": "des2"},
    ]
    path = write(layout, data)
    p = load_profile(path)
    root, state = layout["root"], layout["state"]

    assert p.path == path and p.path.is_absolute()
    assert len(p.sha256) == 64 and p.sha256 == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert (p.name, p.description, p.environment) == ("softhsm", "Embedded demo", "test")
    assert dict(p.module_env) == {"SOFTHSM2_CONF": str(state / "softhsm2.conf"),
                                  "PKCS11SPY": "x/y",
                                  "PKCS11SPY_OUTPUT": str(layout["profiles"] / "a")}
    src, tgt = p.source, p.target
    assert (src.role, src.name, src.module, src.token_label, src.slot, src.mode) == (
        "source", "hsm1", layout["module"], "hsm1", None, "FIPS")
    assert (tgt.role, tgt.name, tgt.module, tgt.token_label, tgt.slot, tgt.mode) == (
        "target", "hsm2", root / "libfake.so", None, 0, "NON_FIPS")
    assert src.pin == SecretRef("file", str(state / "hsm1.pin"), "clusters.source.pin")
    assert tgt.pin == SecretRef("env", "HSM2_PIN", "clusters.target.pin")
    assert (p.wrapping.mechanism, p.wrapping.rsa_bits, p.wrapping.oaep_hash,
            p.wrapping.mgf, p.wrapping.aes_bits) == ("rsa-aes", 4096, "sha384", "mgf1-sha384", 128)
    assert p.migration_mode == "verify-only"

    k = p.keys
    assert [s.index for s in k] == list(range(8))
    assert k[0].vectors == ("des3-ecb",)
    assert dict(k[0].attributes) == {"encrypt": True, "sensitive": False, "id": "0a0B"}
    assert dict(k[0].expected_differences) == {"local": "unwrapped keys are never local"}
    assert (k[0].target_label, k[0].size, k[0].curve, k[0].disposition) == ("demo-3des", None, None, "migrate")
    assert (k[1].target_label, k[1].size, k[1].disposition) == ("a-new", 256, "rotate")
    assert k[1].vectors == ("aes-ecb", "aes-cbc", "aes-ctr", "aes-gcm")
    assert k[2].vectors == ("hmac-sha256",)
    assert k[3].vectors == ("rsa-pkcs1v15-sha256", "rsa-pss-sha256", "rsa-oaep-sha1")
    assert (k[4].curve, k[4].vectors) == ("secp256r1", ("ecdsa-sha256",))
    assert (k[5].curve, k[5].vectors) == ("secp384r1", ("ecdsa-sha384",))
    assert (k[6].curve, k[6].vectors) == ("secp521r1", ("ecdsa-sha512",))
    assert k[7].vectors == ("des3-ecb", "des3-cbc")
    assert [s.is_asymmetric for s in k] == [False, False, False, True, True, True, True, False]
    assert p.key("r") is k[3]
    with pytest.raises(KeyError):
        p.key("a-new")


def test_defaults_applied(layout: dict[str, Path]) -> None:
    p = load_profile(write(layout, base_profile(layout)))
    assert dict(p.module_env) == {}
    assert (p.wrapping.mechanism, p.wrapping.rsa_bits, p.wrapping.oaep_hash,
            p.wrapping.mgf, p.wrapping.aes_bits) == ("rsa-aes", 2048, "sha256", "mgf1-sha256", 256)
    assert p.migration_mode == "migrate"
    spec = p.keys[0]
    assert dict(spec.attributes) == {} and dict(spec.expected_differences) == {}
    assert spec.disposition == "migrate"


def test_mgf_defaults_to_oaep_hash(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["wrapping"] = {"oaep_hash": "sha512"}
    assert load_profile(write(layout, data)).wrapping.mgf == "mgf1-sha512"


def test_an_mgf_hash_other_than_the_oaep_hash_is_refused(layout: dict[str, Path]) -> None:
    """CloudHSM (cloudhsm_cli-key-wrap-rsa-aes): the MGF's hash must match the OAEP hash."""
    data = base_profile(layout)
    data["wrapping"] = {"oaep_hash": "sha256", "mgf": "mgf1-sha1"}
    err = error_for(layout, data)
    assert err.field == "wrapping.mgf"
    assert "mgf1-sha1" in str(err) and "must be mgf1-sha256" in str(err)


def test_share_with_beyond_seven_users_is_refused(layout: dict[str, Path]) -> None:
    """CloudHSM shares a key with at most seven crypto users besides its owner
    (cloudhsm_cli-key-share): refused when the profile is read, not at the eighth `key share`."""
    data = base_profile(layout)
    data["keys"][0]["share_with"] = [f"cu{i}" for i in range(7)]
    assert len(load_profile(write(layout, data)).keys[0].share_with) == 7
    data["keys"][0]["share_with"] = [f"cu{i}" for i in range(8)]
    err = error_for(layout, data)
    assert err.field == "keys[0].share_with"
    assert "at most 7" in str(err) and "8 given" in str(err)


def test_profile_is_frozen_and_serialisable(layout: dict[str, Path]) -> None:
    p = load_profile(write(layout, base_profile(layout)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.keys[0].attributes["encrypt"] = True  # type: ignore[index]
    assert pickle.loads(pickle.dumps(p)) == p
    assert copy.deepcopy(p) == p
    json.dumps(dataclasses.asdict(p), default=str)
    hash(p)


def test_relative_profile_path_works(layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    write(layout, base_profile(layout))
    monkeypatch.chdir(layout["root"])
    p = load_profile("profiles/p.yaml")
    assert p.path == layout["profiles"] / "p.yaml"
    assert p.source.pin.target == str(layout["state"] / "hsm1.pin")


# --------------------------------------------------------------------------- file-level errors


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: profile file not found"
    assert info.value.field == ""


def test_malformed_yaml_reports_line(layout: dict[str, Path]) -> None:
    err = error_for(layout, "name: x\ndescription: y\nclusters: [unclosed\nkeys: {\n")
    assert err.field == ""
    assert "invalid YAML at line " in str(err)
    assert "\n" not in str(err)


def test_malformed_yaml_line_number_exact(layout: dict[str, Path]) -> None:
    err = error_for(layout, "name: x\ndescription: y\n  bad: indent\n")
    assert "line 3" in err.message


def test_duplicate_yaml_key(layout: dict[str, Path]) -> None:
    err = error_for(layout, "name: a\nname: b\n")
    assert "duplicate key 'name'" in err.message and "line 2" in err.message


@pytest.mark.parametrize("text,kind", [("- a\n- b\n", "list"), ("just text\n", "string"), ("", None)])
def test_top_level_not_mapping(layout: dict[str, Path], text: str, kind: str | None) -> None:
    err = error_for(layout, text)
    assert err.field == ""
    if kind:
        assert err.message == f"top level must be a mapping, got {kind}"
    else:
        assert "empty" in err.message


# --------------------------------------------------------------------------- schema errors


def test_unknown_top_level_field(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["xyz"] = 1
    err = error_for(layout, data)
    assert err.field == "xyz"
    assert err.message.startswith("unknown field 'xyz' (allowed: name, description, environment,")
    assert str(err) == f"{err.path}: xyz: {err.message}"


def test_unknown_nested_field(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["clusters"]["source"]["pni"] = "env:X"
    err = error_for(layout, data)
    assert err.field == "clusters.source.pni"
    assert err.message == "unknown field 'pni' (allowed: name, module, token_label, slot, pin, mode, tls, user, hsm_type, aws, cloudhsm_cli, client_config, lock_dir)"


def test_unknown_attribute(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["keys"][0]["attributes"] = {"encrypt": True, "encrpyt": True}
    err = error_for(layout, data)
    assert err.field == "keys[0].attributes.encrpyt"
    assert err.message.startswith("unknown field 'encrpyt' (allowed: token, private,")


def test_attribute_must_be_bool(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["keys"][0]["attributes"] = {"encrypt": "yes please"}
    err = error_for(layout, data)
    assert (err.field, err.message) == ("keys[0].attributes.encrypt", "expected a boolean (true/false), got string")


def test_attribute_id_must_be_even_hex(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["keys"][0]["attributes"] = {"id": "abc"}
    err = error_for(layout, data)
    assert err.field == "keys[0].attributes.id"
    assert "even-length hex" in err.message


def test_literal_pin_rejected_without_echo(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["clusters"]["target"]["pin"] = "s3cr3t-Pin-9876"
    err = error_for(layout, data)
    assert (err.field, err.message) == ("clusters.target.pin", LITERAL)
    assert "s3cr3t-Pin-9876" not in str(err) and "s3cr3t-Pin-9876" not in repr(err)


def test_numeric_literal_pin_rejected_without_echo(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["clusters"]["source"]["pin"] = 987654
    err = error_for(layout, data)
    assert (err.field, err.message) == ("clusters.source.pin", LITERAL)
    assert "987654" not in str(err)


def test_missing_pin(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    del data["clusters"]["source"]["pin"]
    err = error_for(layout, data)
    assert (err.field, err.message) == ("clusters.source.pin", "required field missing")


def test_missing_top_level_required(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    del data["description"]
    err = error_for(layout, data)
    assert (err.field, err.message) == ("description", "required field missing")
    assert str(err) == f"{err.path}: description: required field missing"


def test_bad_enum(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["clusters"]["source"]["mode"] = "FIPS140"
    err = error_for(layout, data)
    assert (err.field, err.message) == ("clusters.source.mode", "'FIPS140' is not one of: FIPS, NON_FIPS")


def test_bad_wrapping_enum(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["wrapping"] = {"oaep_hash": "md5"}
    err = error_for(layout, data)
    assert (err.field, err.message) == ("wrapping.oaep_hash", "'md5' is not one of: sha1, sha256, sha384, sha512")


def test_bad_name_pattern(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["name"] = "soft hsm"
    err = error_for(layout, data)
    assert err.field == "name" and "letters, digits" in err.message


def test_empty_keys_list(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["keys"] = []
    err = error_for(layout, data)
    assert (err.field, err.message) == ("keys", "must contain at least 1 item(s)")


def test_negative_slot(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["clusters"]["target"]["slot"] = -1
    err = error_for(layout, data)
    assert (err.field, err.message) == ("clusters.target.slot", "must be >= 0")


def test_wrong_type_in_list(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["keys"].append({"label": "x", "type": "aes", "size": "big"})
    err = error_for(layout, data)
    assert (err.field, err.message) == ("keys[1].size", "expected an integer, got string")


def test_empty_expected_difference_reason(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["keys"][0]["expected_differences"] = {"local": "  "}
    err = error_for(layout, data)
    assert (err.field, err.message) == ("keys[0].expected_differences.local", "reason must be a non-empty string")


def test_shallowest_error_reported_first(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["keys"][0]["type"] = "nope"
    data["environment"] = "prod"
    err = error_for(layout, data)
    assert err.field == "environment"


def test_module_env_name_and_value(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["module_env"] = {"BAD-NAME": "x"}
    err = error_for(layout, data)
    assert err.field == "module_env.BAD-NAME"
    data["module_env"] = {"SOFTHSM2_CONF": 5}
    err = error_for(layout, data)
    assert (err.field, err.message) == ("module_env.SOFTHSM2_CONF",
                                        "expected a string, got integer")


@pytest.mark.parametrize("name, said", [
    ("SRC_PIN", "SRC_PIN is the variable of a secret reference (clusters.source.pin: "
                "env:SRC_PIN): module_env would put the secret in the profile; set SRC_PIN in "
                "the environment of the process instead"),
    ("LD_PRELOAD", "LD_PRELOAD is not a variable of a PKCS #11 module keyparity knows (it "
                   "changes what code every process loads: never taken from a profile); "
                   "module_env may set KEYPARITY_P11_CALLS, KEYPARITY_P11_LATENCY_US, "
                   "KEYPARITY_P11_TARGET, PKCS11SPY, PKCS11SPY_OUTPUT, SOFTHSM2_CONF"),
    ("PYTHONPATH", "(it changes what code every process loads: never taken from a profile)"),
    ("HTTPS_PROXY", "HTTPS_PROXY is not a variable of a PKCS #11 module keyparity knows; "
                    "module_env may set"),
])
def test_module_env_sets_only_what_a_known_module_reads(layout: dict[str, Path], name: str,
                                                       said: str) -> None:
    """A PIN reference's variable would put the PIN in the profile; a loader variable would
    run code in keyparity and every process it starts; anything else no known module reads."""
    data = base_profile(layout)
    data["clusters"]["source"]["pin"] = "env:SRC_PIN"
    data["module_env"] = {"SOFTHSM2_CONF": "../state/softhsm2.conf", name: "the value"}
    err = error_for(layout, data)
    assert err.field == f"module_env.{name}" and said in err.message, err.message
    assert "the value" not in str(err)


# --------------------------------------------------------------------------- semantic errors


def test_env_pin_valid(layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HSM2_PIN", raising=False)
    p = load_profile(write(layout, base_profile(layout)))  # not resolved at load time
    assert (p.target.pin.scheme, p.target.pin.target) == ("env", "HSM2_PIN")
    monkeypatch.setenv("HSM2_PIN", "4321")
    assert p.target.pin.resolve() == "4321"
    assert p.source.pin.resolve() == "1234"


def test_file_pin_missing(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["clusters"]["target"]["pin"] = "file:../state/absent.pin"
    err = error_for(layout, data)
    assert err.field == "clusters.target.pin"
    assert err.message == f"secret file not found: {layout['state'] / 'absent.pin'}"


def test_file_pin_contents_never_shown(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["clusters"]["target"]["pin"] = "file:../state"  # a directory, not a file
    err = error_for(layout, data)
    assert err.field == "clusters.target.pin"
    assert "1234" not in str(err) and "5678" not in str(err)


def test_missing_module(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["clusters"]["source"]["module"] = "../lib/absent.so"
    err = error_for(layout, data)
    assert err.field == "clusters.source.module"
    assert err.message == f"PKCS#11 module not found: {layout['root'] / 'lib' / 'absent.so'}"


def test_both_token_label_and_slot(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["clusters"]["source"]["slot"] = 1
    err = error_for(layout, data)
    assert (err.field, err.message) == ("clusters.source", "exactly one of token_label or slot is required")


def test_neither_token_label_nor_slot(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    del data["clusters"]["target"]["slot"]
    err = error_for(layout, data)
    assert (err.field, err.message) == ("clusters.target", "exactly one of token_label or slot is required")


def test_duplicate_labels(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["keys"] += [{"label": "b", "type": "des2"}, {"label": "c", "type": "des2"},
                     {"label": "b", "type": "des3"}]
    err = error_for(layout, data)
    assert (err.field, err.message) == ("keys[3].label", "duplicate label 'b' (also keys[1])")


def test_duplicate_target_labels(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["keys"] += [{"label": "b", "target_label": "demo-3des", "type": "des2"}]
    err = error_for(layout, data)
    assert (err.field, err.message) == ("keys[1].target_label", "duplicate target label 'demo-3des' (also keys[0])")


@pytest.mark.parametrize("key,field,message", [
    ({"type": "aes"}, "size", "required field missing for type aes"),
    ({"type": "aes", "size": 512}, "size", "512 is not one of: 128, 192, 256 (type aes)"),
    ({"type": "des3", "size": 192}, "size", "not allowed for type des3"),
    ({"type": "ec", "curve": "P-256", "size": 256}, "size", "not allowed for type ec"),
    ({"type": "generic-secret"}, "size", "required field missing for type generic-secret"),
    ({"type": "generic-secret", "size": 12}, "size",
     "12 must be a multiple of 8 between 8 and 4096 (type generic-secret)"),
    ({"type": "rsa", "size": 512}, "size", "512 must be between 1024 and 8192 (type rsa)"),
    ({"type": "rsa"}, "size", "required field missing for type rsa"),
    ({"type": "ec"}, "curve", "required field missing for type ec"),
    ({"type": "aes", "size": 128, "curve": "P-256"}, "curve", "not allowed for type aes"),
])
def test_size_and_curve_rules(layout: dict[str, Path], key: dict[str, Any], field: str, message: str) -> None:
    data = base_profile(layout)
    data["keys"].append({"label": "k", **key})
    err = error_for(layout, data)
    assert (err.field, err.message) == (f"keys[1].{field}", message)


def test_vector_not_allowed_for_type(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["keys"][0]["vectors"] = ["des3-cbc", "aes-gcm"]
    err = error_for(layout, data)
    assert err.field == "keys[0].vectors[1]"
    assert err.message == "'aes-gcm' is not allowed for type des3 (allowed: des3-ecb, des3-cbc, des3-cmac)"


def test_duplicate_vectors(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["keys"][0]["vectors"] = ["des3-cbc", "des3-cbc"]
    err = error_for(layout, data)
    assert (err.field, err.message) == ("keys[0].vectors", "must not contain duplicates")


# --------------------------------------------------------------------------- tables / schema


def test_vector_table() -> None:
    assert vector_table.defaults("generic-secret") == ("hmac-sha256",)
    assert "hmac-sha512" in vector_table.allowed("generic-secret")
    assert "rsa-oaep-sha256" in vector_table.allowed("rsa")
    assert "rsa-oaep-sha256" not in vector_table.defaults("rsa")
    assert default_vectors("ec", "P-521") == ("ecdsa-sha384",)
    assert default_vectors("ec", "secp256r1") == ("ecdsa-sha256",)
    for key_type in KEY_TYPES:
        for curve in (None, "secp256r1", "secp384r1", "secp521r1"):
            assert set(vector_table.defaults(key_type, curve)) <= set(
                vector_table.allowed(key_type))
        assert vector_table.allowed(key_type), key_type
    assert {t for v in vector_table.TABLE.values() for t in v.key_types} == set(KEY_TYPES)


def test_schema_names_match_constants() -> None:
    schema = json.loads(resources.files("keyparity.schemas").joinpath("profile.schema.json").read_text())
    key = schema["$defs"]["key"]["properties"]
    assert tuple(key["attributes"]["properties"]) == ATTRIBUTE_NAMES
    assert tuple(key["expected_differences"]["properties"]) == DIFFERENCE_NAMES
    assert tuple(key["type"]["enum"]) == KEY_TYPES


# --------------------------------------------------------------------------- secrets


def test_parse_secret_ref(tmp_path: Path) -> None:
    assert parse_secret_ref("env:MY_PIN", "f", tmp_path) == SecretRef("env", "MY_PIN", "f")
    ref = parse_secret_ref("file:sub/../pin.txt", "f", tmp_path)
    assert ref == SecretRef("file", str(tmp_path / "pin.txt"), "f")
    assert parse_secret_ref("file:/abs/pin", "f", tmp_path).target == "/abs/pin"
    assert repr(ref) == str(ref) == f"file:{tmp_path / 'pin.txt'}"
    assert str(SecretRef("env", "X", "f")) == "env:X"


@pytest.mark.parametrize("text", ["hunter2", "env:1BAD", "env:", "ENV:X", "file:"])
def test_parse_secret_ref_rejects_without_echo(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_secret_ref(text, "f", tmp_path)
    if text == "hunter2":
        assert str(info.value) == LITERAL
    assert "hunter2" not in str(info.value)


def test_secret_env_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = SecretRef("env", "KP_TEST_PIN", "clusters.source.pin")
    monkeypatch.setenv("KP_TEST_PIN", "topsecret")
    assert ref.resolve() == "topsecret"
    assert "topsecret" not in repr(ref)
    monkeypatch.delenv("KP_TEST_PIN")
    with pytest.raises(SecretError) as info:
        ref.resolve()
    assert str(info.value) == "clusters.source.pin: environment variable KP_TEST_PIN is not set"
    monkeypatch.setenv("KP_TEST_PIN", "")
    with pytest.raises(SecretError, match="is empty"):
        ref.resolve()


@pytest.mark.parametrize("content,expected", [
    (b"pin-1\n", "pin-1"), (b"pin-1\r\n", "pin-1"), (b"pin-1", "pin-1"), (b"p in\n", "p in"),
])
def test_secret_file_resolve(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "pin"
    path.write_bytes(content)
    assert SecretRef("file", str(path), "f").resolve() == expected


@pytest.mark.parametrize("content, said", [
    (b"pin-1\n\n", "holds a line break or another control character besides its one trailing "
                   "newline: a secret is one line; not sent"),
    (b"pin-1\r", "holds a line break"), (b"pin\n-1\n", "holds a line break"),
    (b"pin\t1", "another control character"),
    ("\ufeffpin-1\n".encode(), "starts with a UTF-8 byte order mark (an editor added it): save "
                               "it without one"),
])
def test_a_secret_is_one_line_from_a_file_and_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, said: str) -> None:
    """Exactly one trailing newline is stripped; anything else is an error naming the field,
    never the value, and nothing is sent as a PIN."""
    path = tmp_path / "pin"
    path.write_bytes(content)
    with pytest.raises(SecretError) as info:
        SecretRef("file", str(path), "clusters.source.pin").resolve()
    assert str(info.value).startswith(f"clusters.source.pin: secret file {path} ")
    assert said in str(info.value) and "pin-1" not in str(info.value)
    monkeypatch.setenv("KP_TEST_PIN", content.decode())
    with pytest.raises(SecretError) as info:
        SecretRef("env", "KP_TEST_PIN", "clusters.source.pin").resolve()
    assert str(info.value).startswith("clusters.source.pin: environment variable KP_TEST_PIN ")
    assert said in str(info.value)
    monkeypatch.setenv("KP_TEST_PIN", "pin-1\n")
    assert SecretRef("env", "KP_TEST_PIN", "f").resolve() == "pin-1"


def test_a_secret_file_is_a_regular_file_never_a_link_fifo_device_or_directory(
        layout: dict[str, Path], tmp_path: Path) -> None:
    """A link is refused, not followed (it named /etc/shadow, sent whole as a PIN); a FIFO
    (reading it blocks), a device or a directory is "not a regular file", never "not found";
    at the profile's load and when the secret is read alike."""
    real = tmp_path / "real.pin"
    real.write_text("pin-1\n")
    (tmp_path / "link.pin").symlink_to(real)
    os.mkfifo(tmp_path / "fifo.pin")
    (tmp_path / "dir.pin").mkdir()
    cases = {"link.pin": "is a symbolic link: name the file itself (a link to a secret is never "
                         "followed)",
             "fifo.pin": "is not a regular file", "dir.pin": "is not a regular file"}
    for name, said in {**cases, "/dev/zero": "is not a regular file"}.items():
        target = tmp_path / name
        with pytest.raises(SecretError) as info:
            SecretRef("file", str(target), "clusters.source.pin").resolve()
        assert said in str(info.value) and "not found" not in str(info.value), info.value
        data = base_profile(layout)
        data["clusters"]["source"]["pin"] = f"file:{target}"
        err = error_for(layout, data)
        assert err.field == "clusters.source.pin" and said in err.message, err.message


def test_secret_file_errors_do_not_leak(tmp_path: Path) -> None:
    missing = SecretRef("file", str(tmp_path / "absent"), "clusters.target.pin")
    with pytest.raises(SecretError) as info:
        missing.resolve()
    assert str(info.value).startswith(f"clusters.target.pin: cannot read secret file {tmp_path / 'absent'}")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SecretError, match="is empty"):
        SecretRef("file", str(empty), "f").resolve()
    binary = tmp_path / "bin"
    binary.write_bytes(b"sekrit\xff\xfe")
    with pytest.raises(SecretError) as info:
        SecretRef("file", str(binary), "f").resolve()
    assert "sekrit" not in str(info.value) and "xff" not in str(info.value)


# --------------------------------------------------------------------------- resolve_profile_arg


@pytest.mark.parametrize("arg,expected", [
    ("softhsm", "/root/hsm_profiles/softhsm.yaml"),
    ("prod.yaml", "prod.yaml"),
    ("prod.yml", "prod.yml"),
    ("dir/prod", "dir/prod"),
    ("/abs/x.yaml", "/abs/x.yaml"),
    ("./softhsm", "./softhsm"),
])
def test_resolve_profile_arg(arg: str, expected: str) -> None:
    assert resolve_profile_arg(arg, Path("/root")) == Path(expected)


def test_resolve_profile_arg_no_existence_check(tmp_path: Path) -> None:
    assert not resolve_profile_arg("nothing", tmp_path).exists()
    assert os.fspath(resolve_profile_arg("nothing", tmp_path)) == str(tmp_path / "hsm_profiles" / "nothing.yaml")


def test_unknown_field_preferred_over_missing(layout: dict[str, Path]) -> None:
    data = base_profile(layout)
    data["kys"] = data.pop("keys")
    err = error_for(layout, data)
    assert err.field == "kys" and err.message.startswith("unknown field 'kys'")


@pytest.mark.parametrize("cls, refused", [(None, True), ("secret", True), ("public", True),
                                          ("certificate", False), ("data", False)])
def test_an_inventory_key_s_label_may_be_excluded_only_for_objects_that_are_not_keys(
        layout: dict[str, Path], cls: str | None, refused: bool) -> None:
    """A key's certificate (or a data object) under the key's label is excluded by its class;
    the key's own objects are migrated, never excluded."""
    data = base_profile(layout)
    data["exclude"] = [{"label": "demo-3des", "reason": "kept", **({"class": cls} if cls else {})}]
    if refused:
        err = error_for(layout, data)
        assert err.field == "exclude[0].label"
        assert "'demo-3des' is an inventory key (keys:)" in err.message
    else:
        path = write(layout, data)
        assert [(x.label, x.cls) for x in load_profile(path).exclude] == [("demo-3des", cls)]


# --------------------------------------------------------------------------- owners


def owners_profile(layout: dict[str, Path]) -> dict[str, Any]:
    """Two owners, each with a crypto user per cluster, and the CLI backend."""
    data = base_profile(layout)
    for role in ("source", "target"):
        data["clusters"][role]["cloudhsm_cli"] = {"path": "/opt/cli", "user": "cu1",
                                                  "password": "env:CU1"}
    data["migration"] = {"backend": "cloudhsm-cli"}
    data["owners"] = [{"name": n, "source": {"user": n, "password": f"env:{n.upper()}_SRC"},
                       "target": {"user": n, "password": "file:../state/hsm2.pin"}}
                      for n in ("cu1", "cu2")]
    data["keys"] = [{"label": "a", "type": "des3", "owner": "cu1"},
                    {"label": "b", "type": "des3", "owner": "cu2"},
                    {"label": "c", "type": "aes", "size": 256, "disposition": "rotate"}]
    return data


def test_owners_each_log_in_as_their_own_user(layout: dict[str, Path]) -> None:
    p = load_profile(write(layout, owners_profile(layout)))
    assert [o.name for o in p.owners] == ["cu1", "cu2"]
    cu2 = p.cli_spec("source", "cu2")
    assert (cu2.user, cu2.path) == ("cu2", Path("/opt/cli"))
    assert (cu2.password.scheme, cu2.password.target) == ("env", "CU2_SRC")
    assert p.cli_spec("target", "cu2").password.target == str(layout["state"] / "hsm2.pin")
    assert p.cli_spec("source", None).user == "cu1"  # the cluster's own login
    assert [p.owner_of(k) for k in p.keys] == ["cu1", "cu2", None]
    assert "owners[1].target.password" in {f["field"] for f in p.secret_files}


@pytest.mark.parametrize("change,field,words", [
    (lambda d: d["keys"][1].pop("owner"), "keys[1].owner", "no owner is one of owners"),
    (lambda d: d["keys"][1].update(owner="cu3"), "keys[1].owner", "'cu3' is not one of owners"),
    (lambda d: d["owners"][1].update(name="cu1"), "owners[1].name", "duplicate owner 'cu1'"),
    (lambda d: d["clusters"]["target"].pop("cloudhsm_cli"), "owners[0].target",
     "clusters.target has no cloudhsm_cli block"),
    (lambda d: d["owners"][0]["target"].update(password="hunter2"), "owners[0].target.password",
     "a literal secret is not allowed"),
], ids=["key-without-owner", "unknown-owner", "duplicate", "no-cli-block",
        "literal-password"])
def test_a_bad_owners_section_names_the_field(layout, change, field, words) -> None:
    data = owners_profile(layout)
    change(data)
    err = error_for(layout, data)
    assert err.field == field and words in err.message, str(err)


def test_owners_need_a_backend_that_moves_keys_per_owner(layout: dict[str, Path]) -> None:
    from keyparity.backends import owners_errors

    data = owners_profile(layout)
    assert owners_errors(load_profile(write(layout, data))) == []
    data["migration"] = {"backend": "pkcs11"}
    [why] = owners_errors(load_profile(write(layout, data)))
    assert "owners: migration.backend pkcs11 moves every key as one user" in why
