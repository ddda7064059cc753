"""keyparity.hsm.attributes.read on real SoftHSM objects (in process): every answer a token can
give - a value, no such attribute, a sensitive one, an empty date, a failed read - lands
as the value or marker the module documents, in one bulk read plus the dates; and the
branches of ``compare``, ``unwrap_template`` and ``table`` that tests/unit/test_attributes_unit.py
leaves: unreadable and missing identifying attributes, whole Difference records, the table's
columns."""
from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import pytest
from pkcs11 import Attribute, KeyType, ObjectClass

from keyparity.hsm import attributes
from keyparity.hsm.attributes import (ABSENT, UNAVAILABLE, Difference, compare, read,
                                  read_standard, table, unwrap_template)
from p11tokens import ec_key, ec_pair, rsa_key, rsa_pair, secret, tokens  # noqa: F401


class Counting:
    """A real key object, counting the attribute reads made through it (C_GetAttributeValue
    calls: one per ``get_attributes``, one per ``obj[attr]``)."""

    def __init__(self, real: Any) -> None:
        self.real, self.bulk, self.single = real, [], []

    def get_attributes(self, attrs):
        self.bulk.append(list(attrs))
        return self.real.get_attributes(attrs)

    def __getitem__(self, attr):
        self.single.append(attr)
        return self.real[attr]


# ---- read -----------------------------------------------------------------------------------

def test_read_standard_of_a_secret_key(tokens):
    key = secret(tokens["hsm1"], "rd-aes", KeyType.AES, bytes(range(16)), id_=b"\x0a\x1b")
    got = read_standard(key)
    assert list(got) == [attributes.name(a) for a in attributes.READ[ObjectClass.SECRET_KEY]]
    assert got == {
        "class": "SECRET_KEY", "key_type": "AES", "label": "rd-aes", "id": "0a1b",
        "token": True, "private": True, "modifiable": True, "copyable": True,
        "destroyable": True,
        "start_date": UNAVAILABLE, "end_date": UNAVAILABLE,  # SoftHSM's empty CK_DATE
        "derive": False, "local": False, "key_gen_mechanism": UNAVAILABLE,
        "unique_id": ABSENT,  # SoftHSM 2.6 has no CKA_UNIQUE_ID
        "sensitive": True, "extractable": True, "always_sensitive": False,
        "never_extractable": False, "wrap_with_trusted": False,
        "encrypt": True, "decrypt": True, "sign": True, "verify": True, "wrap": True,
        "unwrap": True, "trusted": False, "value_len": 16,
        "check_value": "c6a13b",  # AES-128 key 00..0f: KCV of the zero block
    }


def test_read_standard_of_an_rsa_private_key(tokens):
    private, _ = rsa_pair(tokens["hsm1"], "rd-rsa", rsa_key(0))
    got = read_standard(private)
    n = rsa_key(0).public_key().public_numbers().n
    assert got["class"] == "PRIVATE_KEY" and got["key_type"] == "RSA"
    assert got["modulus"] == n.to_bytes(256, "big").hex()
    assert got["public_exponent"] == "010001"
    assert got["ec_params"] == ABSENT and got["subject"] == ""
    assert list(got) == [attributes.name(a) for a in attributes.READ[ObjectClass.PRIVATE_KEY]]


def test_one_bulk_read_then_the_dates_one_by_one(tokens):
    key = Counting(secret(tokens["hsm1"], "rd-count", KeyType.AES, bytes(16)))
    wanted = [Attribute.LABEL, Attribute.START_DATE, Attribute.VALUE_LEN, Attribute.END_DATE,
              Attribute.MODULUS, Attribute.VALUE]
    got = read(key, wanted)
    assert key.bulk == [[Attribute.LABEL, Attribute.VALUE_LEN, Attribute.MODULUS,
                         Attribute.VALUE]]
    assert key.single == [Attribute.START_DATE, Attribute.END_DATE]
    assert list(got.items()) == [("label", "rd-count"), ("start_date", UNAVAILABLE),
                                 ("value_len", 16), ("end_date", UNAVAILABLE),
                                 ("modulus", ABSENT),  # no such attribute on a secret key
                                 ("value", ABSENT)]    # sensitive: never shown
    only_dates = Counting(key.real)
    assert read(only_dates, iter([Attribute.END_DATE])) == {"end_date": UNAVAILABLE}
    assert only_dates.bulk == [] and only_dates.single == [Attribute.END_DATE]
    assert read(key.real, []) == {}


def test_absent_and_sensitive_attributes_read_one_by_one_are_absent(tokens):
    key = secret(tokens["hsm1"], "rd-apart", KeyType.AES, bytes(16))
    # one by one only when the bulk read fails: here the session's handle makes it fail
    spy = Counting(key)
    spy.get_attributes = lambda attrs: (_ for _ in ()).throw(RuntimeError("bulk refused"))
    assert read(spy, [Attribute.MODULUS, Attribute.VALUE, Attribute.LABEL,
                      Attribute.END_DATE]) == {
        "modulus": ABSENT, "value": ABSENT, "label": "rd-apart", "end_date": UNAVAILABLE}
    assert spy.single == [Attribute.MODULUS, Attribute.VALUE, Attribute.LABEL,
                          Attribute.END_DATE]


def test_a_failed_read_is_unreadable_never_absent(tokens):
    session = tokens.lib.get_token(token_label="hsm1").open(rw=True)  # shares the login
    key = secret(session, "rd-gone", KeyType.AES, bytes(16), extra={Attribute.TOKEN: False})
    session.close()
    got = read(key, [Attribute.LABEL, Attribute.START_DATE, Attribute.MODULUS])
    assert got == {"label": "<unreadable: CKR_SESSION_HANDLE_INVALID>",
                   "start_date": "<unreadable: CKR_SESSION_HANDLE_INVALID>",
                   "modulus": "<unreadable: CKR_SESSION_HANDLE_INVALID>"}
    assert all(attributes.unreadable(v) for v in got.values())


def test_a_date_the_token_fails_to_return_is_unreadable(tokens):
    key = secret(tokens["hsm1"], "rd-date", KeyType.AES, bytes(16),
                 extra={Attribute.START_DATE: dt.date(2026, 1, 2)})
    # SoftHSM 2.6 answers CKR_GENERAL_ERROR for a CK_DATE that was set
    assert read(key, [Attribute.START_DATE]) == {"start_date": "<unreadable: CKR_GENERAL_ERROR>"}


def test_plain_values():
    class Colour(enum.Enum):
        RED = 1

    assert attributes._plain(Colour.RED) == "RED"
    assert attributes._plain(KeyType.AES) == "AES"
    assert attributes._plain(b"\x00\xff") == "00ff"
    assert attributes._plain(bytearray(b"\x01")) == "01"
    for v in (True, False, 0, 7, "x", "", None):
        assert attributes._plain(v) is v or attributes._plain(v) == v
    assert attributes._plain(None) is None
    assert attributes._plain(dt.date(2026, 1, 2)) == "2026-01-02"
    assert attributes._plain(1.5) == "1.5"


def test_unreadable():
    assert attributes.unreadable("<unreadable: CKR_GENERAL_ERROR>")
    assert not attributes.unreadable(UNAVAILABLE) and not attributes.unreadable(ABSENT)
    assert not attributes.unreadable(b"<unreadable") and not attributes.unreadable(None)


def test_an_ec_private_keys_parameters_are_read(tokens):
    private, public = ec_pair(tokens["hsm2"], "rd-ec", ec_key(0), "secp256r1")
    got = read_standard(private)
    assert got["ec_params"] == "06082a8648ce3d030107" and got["modulus"] == ABSENT


# ---- compare: what cannot be compared ----------------------------------------------------------

BASE = {"class": "SECRET_KEY", "key_type": "AES", "label": "k", "sensitive": True,
        "encrypt": True, "wrap": False}
BAD = "<unreadable: CKR_GENERAL_ERROR>"


def cmp(source: dict, target: dict, **kw) -> list[Difference]:
    kw.setdefault("target_label", "k")
    kw.setdefault("overrides", {})
    kw.setdefault("intended", {})
    return compare(source, target, **kw)


def test_an_unreadable_value_on_either_side_is_never_equal():
    assert cmp({**BASE, "sensitive": BAD}, {**BASE, "sensitive": BAD}) == [
        Difference("sensitive", BAD, BAD, False, "cannot be read on the source and target")]
    assert cmp({**BASE, "wrap": BAD}, BASE) == [
        Difference("wrap", BAD, False, False, "cannot be read on the source")]
    assert cmp(BASE, {**BASE, "wrap": BAD}) == [
        Difference("wrap", False, BAD, False, "cannot be read on the target")]
    # even where an override, an intention or the unwrap table would excuse a difference
    assert cmp({**BASE, "local": True}, {**BASE, "local": BAD},
               overrides={"local": False}, intended={"local": "x"}) == [
        Difference("local", True, BAD, False, "cannot be read on the target")]


def test_a_missing_class_or_key_type_makes_the_objects_incomparable():
    src = {k: v for k, v in BASE.items() if k != "class"}
    assert cmp(src, BASE) == [Difference(
        "class", ABSENT, "SECRET_KEY", False,
        "cannot be read on the source: the objects cannot be compared")]
    tgt = {k: v for k, v in BASE.items() if k != "key_type"}
    assert cmp(BASE, tgt) == [Difference(
        "key_type", "AES", ABSENT, False,
        "cannot be read on the target: the objects cannot be compared")]
    both = {**BASE, "key_type": ABSENT}  # as read() renders an attribute the token lacks
    assert cmp(both, both) == [Difference(
        "key_type", ABSENT, ABSENT, False,
        "cannot be read on the source and target: the objects cannot be compared")]
    # another attribute absent on both sides is equal, not incomparable
    assert cmp({**BASE, "label": ABSENT}, {**BASE, "label": ABSENT}) == []


def test_every_attribute_is_compared_past_equal_and_incomparable_ones():
    src = {**BASE, "a": 1, "b": BAD, "c": ABSENT, "d": 1, "e": 1, "wrap": False}
    tgt = {**BASE, "a": 1, "b": 1, "d": 2, "e": 2, "wrap": True, "label": "k2"}
    src.pop("class")
    diffs = cmp(src, tgt, target_label="k2", overrides={"e": 2}, intended={"wrap": "why"})
    assert [(d.attribute, d.expected) for d in diffs] == [
        ("b", False), ("class", False), ("d", False), ("e", True), ("label", True),
        ("wrap", True)]


# ---- compare: whole records ----------------------------------------------------------------------

def test_whole_difference_records():
    src = {**BASE, "extractable": True, "id": "0a", "label": "old", "wrap": False,
           "local": True, "sensitive": True}
    tgt = {**BASE, "extractable": False, "id": "0b", "label": "new", "wrap": True,
           "local": False, "sensitive": False}
    diffs = cmp(src, tgt, target_label="new", overrides={"extractable": False, "id": "0C"},
                intended={"wrap": "the target wraps keys"})
    assert diffs == [
        Difference("extractable", True, False, True, "set by the inventory at unwrap"),
        Difference("id", "0a", "0b", False, "the inventory asked for '0c' at unwrap"),
        Difference("label", "old", "new", True, "the inventory names another target label"),
        Difference("local", True, False, True, attributes.EXPECTED_AFTER_UNWRAP["local"].reason),
        Difference("sensitive", True, False, False, "not expected"),
        Difference("wrap", False, True, True, "intended: the target wraps keys"),
    ]


def test_expected_allows():
    assert attributes.Expected(None, "any").allows(object())
    assert attributes.Expected((False,), "r").allows(False)
    assert not attributes.Expected((False,), "r").allows(True)
    assert not attributes.Expected((), "r").allows(None)


# ---- unwrap_template ------------------------------------------------------------------------------

def test_unwrap_template_keeps_going_past_what_the_source_did_not_give():
    source = {"private": ABSENT, "modifiable": UNAVAILABLE, "copyable": True,
              "destroyable": False, "id": "0a", "derive": ABSENT, "sensitive": True,
              "extractable": True, "wrap_with_trusted": False, "decrypt": True, "sign": True,
              "unwrap": UNAVAILABLE}
    t = unwrap_template(source, ObjectClass.PRIVATE_KEY, "lbl", {"derive": True})
    assert t == {Attribute.ENCRYPT: attributes.DEFAULT, Attribute.VERIFY: attributes.DEFAULT,
                 Attribute.WRAP: attributes.DEFAULT, Attribute.COPYABLE: True,
                 Attribute.DESTROYABLE: False, Attribute.ID: b"\x0a",
                 Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True,
                 Attribute.WRAP_WITH_TRUSTED: False, Attribute.DECRYPT: True,
                 Attribute.SIGN: True, Attribute.DERIVE: True, Attribute.TOKEN: True,
                 Attribute.LABEL: "lbl"}


# ---- table -----------------------------------------------------------------------------------------

def test_table_columns_are_as_wide_as_their_widest_cell():
    diffs = [Difference("a", "s-long-value", "t", False, "not expected"),
             Difference("attribute-long", "s", "target-longer-value", True, "why")]
    assert table(diffs).split("\n") == [
        "attribute       source        target               verdict",
        "a               s-long-value  t                    UNEXPECTED: not expected",
        "attribute-long  s             target-longer-value  expected: why",
    ]
