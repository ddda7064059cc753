"""Key attributes: which ones we read and copy, how values look in evidence, and which
differences after C_UnwrapKey are expected (one table, a reason for each).

Sensitive values (CKA_VALUE, private exponents, primes) are not in any list here: the
harness never asks for them.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import pkcs11.exceptions as p11
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.constants import DEFAULT
from pkcs11.types import Object

from ..errors import describe
from . import direct

ABSENT = "<absent>"          # the token does not have the attribute for this object
UNAVAILABLE = "<unavailable>"  # the token has it but returned no usable value
UNREADABLE = "<unreadable"   # prefix: the read failed for another reason (``<unreadable: why>``)
# the only answers that mean "this object has no such attribute (or may not show it)"
_ABSENT_ANSWERS = (p11.AttributeTypeInvalid, p11.AttributeSensitive)
# without these no two objects can be compared at all
IDENTIFYING = ("class", "key_type")


def unreadable(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(UNREADABLE)

_COMMON = (
    Attribute.CLASS, Attribute.KEY_TYPE, Attribute.LABEL, Attribute.ID, Attribute.TOKEN,
    Attribute.PRIVATE, Attribute.MODIFIABLE, Attribute.COPYABLE, Attribute.DESTROYABLE,
    Attribute.START_DATE, Attribute.END_DATE, Attribute.DERIVE, Attribute.LOCAL,
    Attribute.KEY_GEN_MECHANISM, Attribute.UNIQUE_ID,
)
_SENSITIVITY = (
    Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.ALWAYS_SENSITIVE,
    Attribute.NEVER_EXTRACTABLE, Attribute.WRAP_WITH_TRUSTED,
)
READ: dict[ObjectClass, tuple[Attribute, ...]] = {
    ObjectClass.SECRET_KEY: _COMMON + _SENSITIVITY + (
        Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.SIGN, Attribute.VERIFY, Attribute.WRAP,
        Attribute.UNWRAP, Attribute.TRUSTED, Attribute.VALUE_LEN, Attribute.CHECK_VALUE),
    ObjectClass.PRIVATE_KEY: _COMMON + _SENSITIVITY + (
        Attribute.SUBJECT, Attribute.DECRYPT, Attribute.SIGN, Attribute.SIGN_RECOVER,
        Attribute.UNWRAP, Attribute.ALWAYS_AUTHENTICATE, Attribute.MODULUS,
        Attribute.PUBLIC_EXPONENT, Attribute.EC_PARAMS),
}
# a public key's usage attributes (a pair's role check reads them beside the private half's)
PUBLIC_USAGE = (Attribute.ENCRYPT, Attribute.VERIFY, Attribute.WRAP, Attribute.DERIVE)

# Attributes given at C_UnwrapKey: by default copied from the source key.
_SET_COMMON = (
    Attribute.PRIVATE, Attribute.MODIFIABLE, Attribute.COPYABLE, Attribute.DESTROYABLE,
    Attribute.ID, Attribute.DERIVE, Attribute.SENSITIVE, Attribute.EXTRACTABLE,
    Attribute.WRAP_WITH_TRUSTED,
)
SET_AT_UNWRAP: dict[ObjectClass, tuple[Attribute, ...]] = {
    ObjectClass.SECRET_KEY: _SET_COMMON + (
        Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.SIGN, Attribute.VERIFY,
        Attribute.WRAP, Attribute.UNWRAP),
    ObjectClass.PRIVATE_KEY: _SET_COMMON + (Attribute.DECRYPT, Attribute.SIGN, Attribute.UNWRAP),
}
# python-pkcs11 puts every capability into an unwrap template; these do not apply to a class.
_NOT_FOR = {
    ObjectClass.SECRET_KEY: (),
    ObjectClass.PRIVATE_KEY: (Attribute.ENCRYPT, Attribute.VERIFY, Attribute.WRAP),
}


def name(attr: Attribute) -> str:
    """The profile's name for an attribute: ``Attribute.WRAP_WITH_TRUSTED`` -> wrap_with_trusted."""
    return attr.name.lower()


BY_NAME = {name(a): a for a in Attribute}


def _plain(value: Any) -> Any:
    """An attribute value as it appears in evidence (JSON-friendly, no key material)."""
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    return str(value)


# python-pkcs11 cannot decode an empty CK_DATE (SoftHSM's default), nor the
# CK_UNAVAILABLE_INFORMATION a token gives for an unwrapped key's CKA_KEY_GEN_MECHANISM (it is
# no Mechanism), and either fails the whole bulk read, sending every attribute one by one
# (about 60 C_GetAttributeValue calls instead of 8; the benchmarks showed each as the largest
# cost of its path): these three are read apart.
_READ_APART = frozenset({Attribute.START_DATE, Attribute.END_DATE, Attribute.KEY_GEN_MECHANISM})


def read(obj: Object, attrs: Iterable[Attribute]) -> dict[str, Any]:
    """Read attributes in one call where the token allows (keyparity.hsm.direct: one
    C_GetAttributeValue with room for every value); else in python-pkcs11's bulk read and one
    by one where it does not."""
    wanted = list(attrs)
    once = direct.attributes(obj, wanted)
    if once is not None:
        return {name(a): _decoded(once[a]) if a in once else ABSENT for a in wanted}
    bulk = [a for a in wanted if a not in _READ_APART]
    try:
        got = obj.get_attributes(bulk) if bulk else {}
        apart = [a for a in wanted if a in _READ_APART]
    except Exception:  # noqa: BLE001 - a value python-pkcs11 cannot decode: go one by one
        got, apart = {}, wanted
    for attr in apart:
        try:
            got[attr] = obj[attr]
        except ValueError:
            got[attr] = UNAVAILABLE
        except _ABSENT_ANSWERS:  # the object has no such attribute, or may not show it
            pass
        except Exception as exc:  # noqa: BLE001 - recorded as unreadable: never "absent"
            got[attr] = f"{UNREADABLE}: {describe(exc)}>"
    return {name(a): (_plain(got[a]) if a in got else ABSENT) for a in wanted}


def _decoded(value: Any) -> Any:
    """A value of the one-call read as ``read`` records it: one python-pkcs11 cannot decode
    is unavailable (ValueError, as ``obj[attr]`` raises it) or unreadable."""
    if isinstance(value, ValueError):
        return UNAVAILABLE
    if isinstance(value, Exception):
        return f"{UNREADABLE}: {describe(value)}>"
    return _plain(value)


def read_standard(obj: Object) -> dict[str, Any]:
    """Every standard, non-secret attribute of a key object, read now."""
    return read(obj, READ[obj.object_class])


# where a run keeps what it read of an object (python-pkcs11's object: its own cached
# key_type lives there too); the objects are the run's own, found by its enumerations
_KNOWN = "keyparity_standard"


def standard(obj: Object) -> dict[str, Any]:
    """The key object's standard attributes as this run read them, once: the census read the
    source's keys, the first use reads a target key (after its unwrap); the preflight, the
    migration's template and proof and the attribute parity test use that read, as the
    calls-per-key budget counts it (docs/benchmarks.md). A command that must see a change it
    made reads again (``read_standard``)."""
    known = vars(obj).get(_KNOWN)
    if known is None:
        known = read_standard(obj)
        vars(obj)[_KNOWN] = known
        key_type = known.get("key_type")
        if isinstance(key_type, str) and key_type in KeyType.__members__:
            direct.knows_key_type(obj, KeyType[key_type])
    return known


def unwrap_template(source: Mapping[str, Any], key_class: ObjectClass, label: str,
                    overrides: Mapping[str, Any]) -> dict[Attribute, Any]:
    """The template for C_UnwrapKey: the source's settable attributes, then the inventory's."""
    template: dict[Attribute, Any] = {a: DEFAULT for a in _NOT_FOR[key_class]}
    for attr in SET_AT_UNWRAP[key_class]:
        value = source.get(name(attr), ABSENT)
        if value in (ABSENT, UNAVAILABLE):
            continue
        template[attr] = bytes.fromhex(value) if attr is Attribute.ID else value
    for key, value in overrides.items():
        attr = BY_NAME[key]
        template[attr] = bytes.fromhex(value) if attr is Attribute.ID else value
    template[Attribute.TOKEN] = True
    template[Attribute.LABEL] = label
    return template


# What CloudHSM's PKCS #11 library lets C_UnwrapKey set only at its default (AWS CloudHSM,
# pkcs11-attributes-interpreting, note 1: "must be explicitly set only to the default value"),
# and what it does not have at all (no CKA_COPYABLE in its attribute table).
CLOUDHSM_DEFAULT_ONLY = {Attribute.PRIVATE: True, Attribute.MODIFIABLE: True}
CLOUDHSM_ABSENT = frozenset({Attribute.COPYABLE})
# set after the unwrap instead, with C_SetAttributeValue: modifiable goes from true to false
# only (cloudhsm_cli-key-attributes-table); private never changes
CLOUDHSM_AFTER = frozenset({Attribute.MODIFIABLE})


def for_cloudhsm(template: Mapping[Attribute, Any]) -> tuple[dict[Attribute, Any],
                                                             dict[Attribute, Any],
                                                             dict[Attribute, Any]]:
    """An unwrap template split for a CloudHSM target: (what C_UnwrapKey may be given, what
    is set after it with C_SetAttributeValue, what can be set neither way - left to the
    attribute suite to show)."""
    at_creation, after, dropped = {}, {}, {}
    for attr, value in template.items():
        if attr in CLOUDHSM_ABSENT:
            dropped[attr] = value
        elif attr in CLOUDHSM_DEFAULT_ONLY and value != CLOUDHSM_DEFAULT_ONLY[attr]:
            (after if attr in CLOUDHSM_AFTER else dropped)[attr] = value
        else:
            at_creation[attr] = value
    return at_creation, after, dropped


@dataclass(frozen=True)
class Expected:
    """A difference C_UnwrapKey is allowed to make, and why."""

    allowed: tuple[Any, ...] | None  # the values the target may have; None: any value
    reason: str

    def allows(self, value: Any) -> bool:
        return self.allowed is None or value in self.allowed


EXPECTED_AFTER_UNWRAP: dict[str, Expected] = {
    "local": Expected((False,), "C_UnwrapKey did not generate the key on the token, so CKA_LOCAL is "
                             "false (PKCS #11 v2.40, 4.4)"),
    "always_sensitive": Expected((False,), "the key existed outside the target (wrapped) before "
                                        "it was unwrapped, so it was not always sensitive there"),
    "never_extractable": Expected((False,), "the key was extractable in order to be wrapped"),
    "key_gen_mechanism": Expected(None, "an unwrapped key has no generation mechanism "
                                        "(CK_UNAVAILABLE_INFORMATION)"),
    "check_value": Expected((ABSENT, ""), "SoftHSM sets no CKA_CHECK_VALUE on unwrapped keys; key check "
                                    "values are computed by encryption on both sides instead"),
    "value_len": Expected((0,), "SoftHSM 2.6 leaves CKA_VALUE_LEN at 0 on unwrapped secret keys; "
                                "the key itself is proven by its KCV and the vectors"),
    "unique_id": Expected(None, "CKA_UNIQUE_ID is assigned by each token"),
}


@dataclass(frozen=True)
class Difference:  # noqa: D101
    attribute: str
    source: Any
    target: Any
    expected: bool
    reason: str


def compare(source: Mapping[str, Any], target: Mapping[str, Any], *, target_label: str,
            overrides: Mapping[str, Any], intended: Mapping[str, str]) -> list[Difference]:
    """Every attribute whose values differ, each marked expected (with its reason) or not."""
    out = []
    for attr in sorted(set(source) | set(target)):
        s, t = source.get(attr, ABSENT), target.get(attr, ABSENT)
        if unreadable(s) or unreadable(t):  # never "equal": nothing was compared
            side = " and ".join(n for n, v in (("source", s), ("target", t)) if unreadable(v))
            out.append(Difference(attr, s, t, False, f"cannot be read on the {side}"))
            continue
        if attr in IDENTIFYING and ABSENT in (s, t):  # every key object has both
            side = " and ".join(n for n, v in (("source", s), ("target", t)) if v == ABSENT)
            out.append(Difference(attr, s, t, False, f"cannot be read on the {side}: the "
                                  "objects cannot be compared"))
            continue
        if attr in overrides:
            want = overrides[attr]
            want = want.lower() if isinstance(want, str) else want
            if t == want:
                if s != t:
                    out.append(Difference(attr, s, t, True, "set by the inventory at unwrap"))
            else:
                out.append(Difference(attr, s, t, False,
                                      f"the inventory asked for {want!r} at unwrap"))
            continue
        if s == t:
            continue
        if attr == "label" and t == target_label:
            out.append(Difference(attr, s, t, True, "the inventory names another target label"))
        elif attr in intended:
            out.append(Difference(attr, s, t, True, f"intended: {intended[attr]}"))
        elif attr in EXPECTED_AFTER_UNWRAP and EXPECTED_AFTER_UNWRAP[attr].allows(t):
            out.append(Difference(attr, s, t, True, EXPECTED_AFTER_UNWRAP[attr].reason))
        else:
            out.append(Difference(attr, s, t, False, "not expected"))
    return out


def table(diffs: Iterable[Difference]) -> str:
    """A plain-text table of differences, for failure messages."""
    rows = [("attribute", "source", "target", "verdict")]
    rows += [(d.attribute, str(d.source), str(d.target),
              ("expected: " if d.expected else "UNEXPECTED: ") + d.reason) for d in diffs]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}"
                     for r in rows)
