"""Unit tests of keyparity.hsm.attributes (compare, table, unwrap_template) on hand-made attribute
dicts, and of the PKCS #11 error mapping in keyparity.errors. No token involved."""
from __future__ import annotations

import pkcs11.exceptions as p11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11._pkcs11 import merge_templates
from pkcs11.attributes import AttributeMapper
from pkcs11.constants import DEFAULT
from pkcs11.defaults import DEFAULT_KEY_CAPABILITIES

from keyparity.hsm import attributes
from keyparity.hsm.attributes import (
    ABSENT, EXPECTED_AFTER_UNWRAP, SET_AT_UNWRAP, UNAVAILABLE, compare, table, unwrap_template,
)
from keyparity.errors import (
    KeyNotExtractable, LoginError, MechanismUnsupported, TokenError, describe, pkcs11_step,
)

# A secret key as attributes.read_standard() renders it: names, JSON-friendly values.
SOURCE = {
    "class": "SECRET_KEY", "key_type": "AES", "label": "k-aes", "id": "0a1b2c3d",
    "token": True, "private": True, "modifiable": True, "copyable": True, "destroyable": True,
    "start_date": ABSENT, "end_date": ABSENT, "derive": False, "local": True,
    "key_gen_mechanism": "AES_KEY_GEN", "unique_id": "17",
    "sensitive": True, "extractable": True, "always_sensitive": True,
    "never_extractable": False, "wrap_with_trusted": False,
    "encrypt": True, "decrypt": True, "sign": False, "verify": False, "wrap": False,
    "unwrap": False, "trusted": False, "value_len": 32, "check_value": "a1b2c3",
}


def diff(target_changes: dict, *, source_changes: dict | None = None, target_label: str = "k-aes",
         overrides: dict | None = None, intended: dict | None = None) -> list:
    source = {**SOURCE, **(source_changes or {})}
    target = {**SOURCE, **target_changes}
    return compare(source, target, target_label=target_label, overrides=overrides or {},
                   intended=intended or {})


def only(diffs: list) -> attributes.Difference:
    assert len(diffs) == 1, diffs
    return diffs[0]


# --- compare ------------------------------------------------------------------------------

def test_identical_attributes_have_no_differences():
    assert diff({}) == []
    assert compare({}, {}, target_label="x", overrides={}, intended={}) == []


# (attribute, source value, target value, expected?) - for every EXPECTED_AFTER_UNWRAP entry,
# values it allows and values it must not.
EXPECTED_CASES = [
    ("local", True, False, True),
    ("local", False, True, False),                 # a target key generated on the token: no
    ("always_sensitive", True, False, True),
    ("always_sensitive", False, True, False),
    ("never_extractable", True, False, True),
    ("never_extractable", False, True, False),
    ("key_gen_mechanism", "AES_KEY_GEN", ABSENT, True),
    ("key_gen_mechanism", "AES_KEY_GEN", "DES3_KEY_GEN", True),   # any value
    ("check_value", "a1b2c3", ABSENT, True),
    ("check_value", "a1b2c3", "", True),
    ("check_value", "a1b2c3", "d4e5f6", False),    # another key's check value: never
    ("value_len", 32, 0, True),
    ("value_len", 32, 16, False),                  # a shorter key: never
    ("unique_id", "17", "4", True),
    ("unique_id", "17", ABSENT, True),
]


@pytest.mark.parametrize("attr,source,target,expected", EXPECTED_CASES)
def test_expected_after_unwrap_only_for_allowed_values(attr, source, target, expected):
    d = only(diff({attr: target}, source_changes={attr: source}))
    assert (d.attribute, d.source, d.target, d.expected) == (attr, source, target, expected)
    if expected:
        assert d.reason == EXPECTED_AFTER_UNWRAP[attr].reason
    else:
        assert d.reason == "not expected"


def test_every_expected_difference_is_covered_above():
    assert {c[0] for c in EXPECTED_CASES} == set(EXPECTED_AFTER_UNWRAP)
    for attr, entry in EXPECTED_AFTER_UNWRAP.items():
        assert entry.reason, attr
        if entry.allowed is not None:
            assert any(c[0] == attr and not c[3] for c in EXPECTED_CASES), attr


def test_a_difference_outside_the_table_is_unexpected():
    d = only(diff({"sensitive": False}))
    assert not d.expected and d.reason == "not expected"
    d = only(diff({"extra": "x"}))             # only on the target
    assert (d.source, d.target, d.expected) == (ABSENT, "x", False)
    d = only(diff({}, source_changes={"extra": "x"}))  # only on the source
    assert (d.source, d.target, d.expected) == ("x", ABSENT, False)


def test_override_expected_only_when_the_target_has_the_asked_value():
    d = only(diff({"extractable": False}, overrides={"extractable": False}))
    assert d.expected and d.reason == "set by the inventory at unwrap"
    d = only(diff({}, overrides={"extractable": False}))          # the token ignored it
    assert not d.expected and d.reason == "the inventory asked for False at unwrap"
    d = only(diff({"extractable": False}, source_changes={"extractable": False},
                  overrides={"extractable": True}))
    assert not d.expected and "asked for True" in d.reason
    assert diff({}, overrides={"extractable": True}) == []        # asked what it had anyway


def test_override_wins_over_intended_and_the_unwrap_table():
    # an override is checked against its value, even where a reason would excuse a difference
    d = only(diff({"sensitive": False}, overrides={"sensitive": True},
                  intended={"sensitive": "lowered on purpose"}))
    assert not d.expected
    d = only(diff({"never_extractable": False}, source_changes={"never_extractable": True},
                  overrides={"never_extractable": True}))
    assert not d.expected


def test_override_of_id_is_compared_as_lower_case_hex():
    d = only(diff({"id": "beef01"}, overrides={"id": "BEEF01"}))
    assert d.expected and d.target == "beef01"
    d = only(diff({"id": "beef02"}, overrides={"id": "BEEF01"}))
    assert not d.expected and "'beef01'" in d.reason


def test_intended_difference_is_expected_with_its_reason():
    d = only(diff({"wrap": True}, intended={"wrap": "the target key wraps other keys"}))
    assert d.expected and d.reason == "intended: the target key wraps other keys"
    d = only(diff({"wrap": True}, intended={"unwrap": "another attribute"}))
    assert not d.expected


def test_target_label_difference_is_expected():
    d = only(diff({"label": "k-aes-new"}, target_label="k-aes-new"))
    assert d.expected and d.reason == "the inventory names another target label"
    d = only(diff({"label": "k-aes-other"}, target_label="k-aes-new"))
    assert not d.expected


def test_several_differences_are_all_reported_in_name_order():
    diffs = diff({"local": False, "sensitive": False, "label": "new"}, target_label="new")
    assert [(d.attribute, d.expected) for d in diffs] == [
        ("label", True), ("local", True), ("sensitive", False)]


# --- table --------------------------------------------------------------------------------

def test_table_renders_a_row_per_difference():
    diffs = diff({"local": False, "sensitive": False, "check_value": "d4e5f6"})
    lines = table(diffs).split("\n")
    assert lines[0].split() == ["attribute", "source", "target", "verdict"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"check_value", "local", "sensitive"}
    assert "UNEXPECTED: not expected" in rows["sensitive"]
    assert "UNEXPECTED: not expected" in rows["check_value"]
    assert rows["check_value"].split()[1:3] == ["a1b2c3", "d4e5f6"]
    assert "expected: C_UnwrapKey did not generate" in rows["local"]
    assert "UNEXPECTED" not in rows["local"]
    # columns line up: every verdict starts in the same column
    starts = {line.index("expected" if "expected:" in line else "verdict") for line in lines
              if "UNEXPECTED" not in line}
    starts |= {line.index("UNEXPECTED") for line in lines if "UNEXPECTED" in line}
    assert len(starts) == 1


def test_table_of_nothing_is_its_header():
    assert table([]).split() == ["attribute", "source", "target", "verdict"]


# --- unwrap_template ----------------------------------------------------------------------

def test_unwrap_template_copies_the_settable_attributes_of_a_secret_key():
    t = unwrap_template(SOURCE, ObjectClass.SECRET_KEY, "k-aes-target", {})
    settable = SET_AT_UNWRAP[ObjectClass.SECRET_KEY]
    assert set(t) == set(settable) | {Attribute.TOKEN, Attribute.LABEL}
    for attr in settable:
        if attr is not Attribute.ID:
            assert t[attr] == SOURCE[attributes.name(attr)], attr
    assert t[Attribute.ID] == bytes.fromhex("0a1b2c3d")
    assert t[Attribute.TOKEN] is True
    assert t[Attribute.LABEL] == "k-aes-target"
    assert DEFAULT not in t.values()
    for not_settable in (Attribute.LOCAL, Attribute.ALWAYS_SENSITIVE, Attribute.CHECK_VALUE,
                         Attribute.VALUE_LEN, Attribute.KEY_GEN_MECHANISM, Attribute.UNIQUE_ID,
                         Attribute.CLASS, Attribute.KEY_TYPE, Attribute.TRUSTED):
        assert not_settable not in t


def test_unwrap_template_skips_what_the_source_did_not_give():
    source = {**SOURCE, "derive": ABSENT, "copyable": UNAVAILABLE}
    del source["destroyable"]
    t = unwrap_template(source, ObjectClass.SECRET_KEY, "x", {})
    assert Attribute.DERIVE not in t and Attribute.COPYABLE not in t
    assert Attribute.DESTROYABLE not in t


def test_unwrap_template_applies_overrides_after_the_source():
    t = unwrap_template(SOURCE, ObjectClass.SECRET_KEY, "x",
                        {"extractable": False, "id": "BEEF", "wrap": True})
    assert t[Attribute.EXTRACTABLE] is False
    assert t[Attribute.ID] == b"\xbe\xef"
    assert t[Attribute.WRAP] is True
    assert t[Attribute.LABEL] == "x" and t[Attribute.TOKEN] is True


def test_unwrap_template_source_token_false_still_makes_a_token_object():
    t = unwrap_template({**SOURCE, "token": False}, ObjectClass.SECRET_KEY, "x", {})
    assert t[Attribute.TOKEN] is True


PRIVATE = {
    "class": "PRIVATE_KEY", "key_type": "RSA", "label": "k-rsa", "id": "", "token": True,
    "private": True, "modifiable": True, "copyable": True, "destroyable": True, "derive": False,
    "sensitive": True, "extractable": True, "wrap_with_trusted": False, "decrypt": True,
    "sign": True, "unwrap": False, "sign_recover": False, "always_authenticate": False,
    "local": True, "modulus": "c1" * 256, "public_exponent": "010001",
}


def test_unwrap_template_of_a_private_key_drops_public_capabilities():
    t = unwrap_template(PRIVATE, ObjectClass.PRIVATE_KEY, "k-rsa", {})
    for attr in (Attribute.ENCRYPT, Attribute.VERIFY, Attribute.WRAP):
        assert t[attr] is DEFAULT, attr
    assert (t[Attribute.DECRYPT], t[Attribute.SIGN], t[Attribute.UNWRAP]) == (True, True, False)
    assert t[Attribute.ID] == b""
    assert Attribute.MODULUS not in t and Attribute.SIGN_RECOVER not in t

    # what python-pkcs11 then hands to C_UnwrapKey: its default template (every capability
    # of an RSA key) merged with ours; DEFAULT removes an entry
    base = AttributeMapper().generic_key_template(
        {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.RSA},
        capabilities=DEFAULT_KEY_CAPABILITIES[KeyType.RSA], id_=None, label="k-rsa", store=False)
    assert {Attribute.ENCRYPT, Attribute.VERIFY, Attribute.WRAP} <= set(base)
    sent = merge_templates(base, t)
    assert not {Attribute.ENCRYPT, Attribute.VERIFY, Attribute.WRAP} & set(sent)
    assert sent[Attribute.TOKEN] is True and sent[Attribute.SIGN] is True


def test_unwrap_template_of_a_secret_key_keeps_them():
    t = unwrap_template({**SOURCE, "wrap": True, "verify": True}, ObjectClass.SECRET_KEY, "x", {})
    assert (t[Attribute.ENCRYPT], t[Attribute.VERIFY], t[Attribute.WRAP]) == (True, True, True)


# --- errors.pkcs11_step -------------------------------------------------------------------

def raised(exc: BaseException, step: str = "log in", where: str = "hsm1") -> BaseException:
    with pytest.raises(BaseException) as info, pkcs11_step(step, where):
        raise exc
    return info.value


def test_pin_incorrect_is_a_login_error():
    original = p11.PinIncorrect()
    err = raised(original)
    assert type(err) is LoginError
    assert str(err) == "log in on hsm1 failed: CKR_PIN_INCORRECT; check the PIN reference; not retried"
    assert err.__cause__ is original


def test_key_unextractable_says_rotate():
    err = raised(p11.KeyUnextractable(), "wrap 'k-aes'", "hsm1 (source)")
    assert type(err) is KeyNotExtractable
    assert str(err).startswith("wrap 'k-aes' on hsm1 (source) failed: CKR_KEY_UNEXTRACTABLE; ")
    assert "rotate the key" in str(err)
    assert type(raised(p11.KeyNotWrappable())) is KeyNotExtractable


def test_mechanism_invalid_is_mechanism_unsupported():
    err = raised(p11.MechanismInvalid(), "RSA-AES wrap", "hsm2")
    assert type(err) is MechanismUnsupported and "CKR_MECHANISM_INVALID" in str(err)


@pytest.mark.parametrize("exc", [p11.DataInvalid(), p11.KeyHandleInvalid()])
def test_unknown_pkcs11_error_is_a_token_error_naming_step_and_cluster(exc):
    err = raised(exc, "compute KCV (AES_ECB)", "hsm2 (target)")
    assert type(err) is TokenError
    assert str(err) == f"compute KCV (AES_ECB) on hsm2 (target) failed: {type(exc).__name__}"
    assert err.__cause__ is exc


@pytest.mark.parametrize("exc, ckr", [(p11.GeneralError(), "CKR_GENERAL_ERROR"),
                                      (p11.FunctionFailed(), "CKR_FUNCTION_FAILED")])
def test_a_token_failure_is_named_by_its_ckr_code(exc, ckr):
    err = raised(exc, "compute KCV (AES_ECB)", "hsm2 (target)")
    assert type(err) is TokenError and err.__cause__ is exc
    assert str(err).startswith(f"compute KCV (AES_ECB) on hsm2 (target) failed: {ckr}; ")


def test_a_pkcs11_error_keeps_its_own_message():
    err = raised(p11.GeneralError("from the daemon"), "find token", "hsm1")
    assert str(err) == ("find token on hsm1 failed: CKR_GENERAL_ERROR (from the daemon); the "
                        "token failed; check the HSM")
    err = raised(p11.DataInvalid("CKR_DATA_INVALID from the daemon"), "find token", "hsm1")
    assert str(err) == "find token on hsm1 failed: CKR_DATA_INVALID from the daemon"


def test_other_exceptions_pass_through_unchanged():
    original = ValueError("not a token error")
    assert raised(original) is original


def test_describe_names_the_ckr_code():
    assert describe(p11.PinLocked()) == "CKR_PIN_LOCKED"
    assert describe(p11.GeneralError()) == "CKR_GENERAL_ERROR"
    assert describe(p11.DataInvalid()) == "DataInvalid"


def test_a_cloudhsm_unwrap_template_sets_only_what_cloudhsm_lets_it_set_at_creation():
    """CloudHSM: CKA_PRIVATE and CKA_MODIFIABLE only at their default (true) when a key is made
    (pkcs11-attributes-interpreting, note 1), no CKA_COPYABLE; modifiable=false follows with
    C_SetAttributeValue (true -> false is allowed), private=false cannot be had at all."""
    from pkcs11 import Attribute, ObjectClass

    source = {"private": False, "modifiable": False, "copyable": True, "destroyable": True,
              "id": "0a", "sensitive": True, "extractable": True, "encrypt": True}
    template = attributes.unwrap_template(source, ObjectClass.SECRET_KEY, "k", {})
    at_creation, after, dropped = attributes.for_cloudhsm(template)
    assert Attribute.PRIVATE not in at_creation and Attribute.MODIFIABLE not in at_creation
    assert Attribute.COPYABLE not in at_creation
    assert after == {Attribute.MODIFIABLE: False}
    assert dropped == {Attribute.PRIVATE: False, Attribute.COPYABLE: True}
    assert at_creation[Attribute.ID] == b"\x0a" and at_creation[Attribute.LABEL] == "k"
    defaults = attributes.unwrap_template({**source, "private": True, "modifiable": True},
                                          ObjectClass.SECRET_KEY, "k", {})
    kept, after, _ = attributes.for_cloudhsm(defaults)
    assert kept[Attribute.PRIVATE] is True and kept[Attribute.MODIFIABLE] is True and not after


def test_attributes_unreadable_on_both_sides_are_never_equal():
    gone = "<unreadable: CKR_GENERAL_ERROR>"
    (diff,) = attributes.compare({"class": gone}, {"class": gone}, target_label="k",
                                 overrides={}, intended={})
    assert (diff.attribute, diff.expected, diff.reason) == (
        "class", False, "cannot be read on the source and target")
