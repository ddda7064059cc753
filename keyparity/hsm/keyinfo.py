"""What a key object is, from its public attributes only: class, type, size or curve, CKA_ID,
whether it can be extracted. The census, the inventory scan and the size/curve check before a
write all read a key through here. No key material is ever asked for.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.types import Object
from pkcs11.util.ec import encode_named_curve_parameters

from . import attributes
from ..errors import KeyMismatch
from ..keytypes import CURVES as KEYTYPE_CURVES
from ..keytypes import BY_PKCS11, KEY_TYPES, curve_name

CLASSES = {ObjectClass.SECRET_KEY: "secret", ObjectClass.PRIVATE_KEY: "private",
           ObjectClass.PUBLIC_KEY: "public"}
KEY_CLASSES = tuple(CLASSES.values())  # the classes of key objects
# every other class a token may show its user (PKCS #11 3.0, CKO_*): the census accounts for
# them too (keyparity.hsm.census), and ``exclude:`` names them so
OTHER_CLASSES = {ObjectClass.DATA: "data", ObjectClass.CERTIFICATE: "certificate",
                 ObjectClass.DOMAIN_PARAMETERS: "domain-parameters",
                 ObjectClass.OTP_KEY: "otp-key", ObjectClass.HW_FEATURE: "hw-feature",
                 ObjectClass.MECHANISM: "mechanism", ObjectClass.PROFILE: "profile"}
CLASS_NAMES = KEY_CLASSES + tuple(OTHER_CLASSES.values())
CLASS_BY_NAME = {v: k for k, v in CLASSES.items()}
TYPES = {t.pkcs11: name for name, t in KEY_TYPES.items()}
# a curve by its CKA_EC_PARAMS (the named curve's OID, DER), hex
CURVES = {encode_named_curve_parameters(name).hex(): name for name in KEYTYPE_CURVES}

# what is read of each class beyond the common part (one C_GetAttributeValue per object)
_COMMON = (Attribute.CLASS, Attribute.KEY_TYPE, Attribute.LABEL, Attribute.ID, Attribute.TOKEN)
_OTHER = (Attribute.CLASS, Attribute.LABEL, Attribute.ID, Attribute.TOKEN)
READ: dict[ObjectClass, tuple[Attribute, ...]] = {
    ObjectClass.SECRET_KEY: _COMMON + (Attribute.VALUE_LEN, Attribute.EXTRACTABLE),
    ObjectClass.PRIVATE_KEY: _COMMON + (Attribute.EXTRACTABLE,),
    ObjectClass.PUBLIC_KEY: _COMMON,
    # a data object has no CKA_ID; its CKA_VALUE may be a secret: never read
    ObjectClass.DATA: (Attribute.CLASS, Attribute.LABEL, Attribute.TOKEN, Attribute.APPLICATION),
    ObjectClass.CERTIFICATE: _OTHER + (Attribute.CERTIFICATE_TYPE,),
}


@dataclass(frozen=True)
class KeyFacts:
    """One key object as the token describes it (``size`` in bits, None when the token does not
    say: SoftHSM leaves CKA_VALUE_LEN at 0 on unwrapped keys)."""

    cls: str                 # secret | private | public | the class's PKCS #11 name
    type: str                # des2 des3 aes generic-secret rsa ec | the key type's PKCS #11 name
    label: str | None
    id: str                  # CKA_ID, hex ("" when empty)
    size: int | None = None
    curve: str | None = None
    extractable: bool | None = None   # None: a public key, or not readable
    token: bool = True
    application: str | None = None    # a data object's CKA_APPLICATION
    certificate_type: str | None = None  # a certificate's CKA_CERTIFICATE_TYPE (X_509, ...)

    @property
    def known_type(self) -> bool:
        return self.type in KEY_TYPES

    @property
    def is_key(self) -> bool:
        return self.cls in KEY_CLASSES

    def kind(self) -> str:
        """``secret key``, ``data object (application 'vault')``, ``certificate (X_509)``."""
        if self.is_key:
            return f"{self.cls} key"
        if self.application:
            return f"{self.cls} object (application {self.application!r})"
        if self.certificate_type:
            return f"{self.cls} ({self.certificate_type})"
        return f"{self.cls} object"

    def describe(self) -> str:
        """``AES-128``, ``RSA-2048``, ``EC P-384``, ``3DES (three-key)``."""
        info = KEY_TYPES.get(self.type)
        shown = info.shown if info else self.type
        if self.curve:
            return f"{shown} {curve_name(self.curve)}"
        if self.size and (info is None or info.sizes.given):
            return f"{shown}-{self.size}" if info and info.size_in_name else \
                f"{shown} of {self.size} bits"
        return shown

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "class": self.cls, "key_type": self.type,
                               "id": self.id}
        if self.size is not None:
            out["size"] = self.size
        if self.curve is not None:
            out["curve"] = curve_name(self.curve)
        if self.extractable is not None:
            out["extractable"] = self.extractable
        if self.application is not None:
            out["application"] = self.application
        if self.certificate_type is not None:
            out["certificate_type"] = self.certificate_type
        return out


def _name(table: Mapping[Any, str], value: Any) -> str:
    if value in table:
        return table[value]
    return getattr(value, "name", None) or str(value)


def from_attributes(values: Mapping[str, Any]) -> KeyFacts:
    """Facts from attribute values as ``keyparity.hsm.attributes.read`` returns them (enum names,
    hex for bytes, ``<absent>``)."""
    def get(name: str) -> Any:
        value = values.get(name, attributes.ABSENT)
        return None if value in (attributes.ABSENT, attributes.UNAVAILABLE) else value

    cls = _name(CLASSES | OTHER_CLASSES, _enum(ObjectClass, get("class")))
    key_type = (_name(TYPES, _enum(KeyType, get("key_type"))) if cls in KEY_CLASSES
                else "")  # a data object or a certificate has no key type
    size = curve = None
    if key_type in ("aes", "generic-secret") and isinstance(get("value_len"), int):
        size = get("value_len") * 8 or None
    elif key_type == "rsa" and get("modulus"):
        size = int(get("modulus"), 16).bit_length()
    elif key_type == "ec" and get("ec_params"):
        curve = CURVES.get(get("ec_params"), f"EC parameters {get('ec_params')}")
    extractable = get("extractable") if isinstance(get("extractable"), bool) else None
    return KeyFacts(cls=cls, type=key_type, label=get("label"), id=get("id") or "",
                    size=size, curve=curve, extractable=extractable,
                    token=get("token") is not False, application=get("application"),
                    certificate_type=get("certificate_type"))


def _enum(kind: Any, value: Any) -> Any:
    """An enum member back from its name (``attributes.read`` writes enums by name)."""
    try:
        return kind[value] if isinstance(value, str) else value
    except KeyError:
        return value


def read(obj: Object) -> KeyFacts:
    """Read one object's facts in one attribute read (a secret or private key: its standard
    attributes, kept for the run, ``attributes.standard``; a public key: with the size or
    curve of any key type), and one more for an object python-pkcs11 gives no class of its
    own (a data object: its class first)."""
    cls = obj.object_class
    if cls is None:
        cls = _enum(ObjectClass, attributes.read(obj, (Attribute.CLASS,))["class"])
    if cls in attributes.READ:
        return from_attributes(attributes.standard(obj))
    attrs = READ.get(cls, _OTHER)
    if cls == ObjectClass.PUBLIC_KEY:
        attrs = (*attrs, *_SHAPES)
    return from_attributes(attributes.read(obj, attrs))


# where any key type keeps its size or curve, read with a public key's other attributes: one
# its type has not is left out by the token (CKR_ATTRIBUTE_TYPE_INVALID for it alone), and
# from_attributes reads only its own type's
_SHAPES = tuple(dict.fromkeys(a for info in BY_PKCS11.values() for a in info.shape))


def check(spec: Any, facts: KeyFacts, where: str) -> None:
    """Raise KeyMismatch, in one line, when the token's key is not what the inventory says:
    another type, size, curve or CKA_ID. A size the token does not report is not compared."""
    label = spec.label
    said = None
    if facts.type != spec.type:
        said = spec.type
    elif spec.size is not None and facts.size is not None and facts.size != spec.size:
        said = str(spec.size)
    elif spec.curve is not None and facts.curve != spec.curve:
        said = curve_name(spec.curve)
    if said is not None:
        raise KeyMismatch(f"{label!r} on {where} is {facts.describe()}; the inventory says "
                          f"{said}")
    want = getattr(spec, "id", None)
    if want is not None and facts.id != want:
        raise KeyMismatch(f"{label!r} on {where} has CKA_ID {facts.id or '(empty)'}; the "
                          f"inventory says {want or '(empty)'}")
