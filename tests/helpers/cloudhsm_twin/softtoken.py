"""A stand-in cluster's keys as its SoftHSM token holds them: opening the token, naming its
objects the way the CLI names them, and reading what identifies a key without revealing it.

Every key material operation happens inside the token. A secret key's check value and
fingerprint come from the token encrypting a zero block (HMAC for a generic secret): with the
key itself when it may encrypt, else with a session copy that may (destroyed at once); an RSA
key's from its public modulus and exponent. ``check-value`` is the first 3 bytes (CloudHSM:
"symmetric keys: first 3 bytes of the result of encrypting a zero-block"); the fingerprint,
the SHA-256 of the whole block, is what the state keeps to find a key again (SoftHSM 2.6 has
no CKA_UNIQUE_ID).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pkcs11
from pkcs11 import Attribute as A
from pkcs11 import KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error
from pkcs11.types import Object, Session

CLASSES = {ObjectClass.SECRET_KEY: "secret-key", ObjectClass.PRIVATE_KEY: "private-key",
           ObjectClass.PUBLIC_KEY: "public-key"}
KEY_TYPES = {KeyType.AES: "aes", KeyType.DES3: "3des", KeyType.GENERIC_SECRET: "generic-secret",
             KeyType.RSA: "rsa", KeyType.EC: "ec", KeyType.DES2: "des2"}
_CHECK = {"aes": (Mechanism.AES_ECB, 16, A.ENCRYPT), "3des": (Mechanism.DES3_ECB, 8, A.ENCRYPT),
          "des2": (Mechanism.DES3_ECB, 8, A.ENCRYPT),
          "generic-secret": (Mechanism.SHA256_HMAC, 16, A.SIGN)}
# CLI attribute name -> PKCS #11 attribute, for the booleans SoftHSM holds
BOOLEANS = {"encrypt": A.ENCRYPT, "decrypt": A.DECRYPT, "token": A.TOKEN,
            "always-sensitive": A.ALWAYS_SENSITIVE, "derive": A.DERIVE,
            "destroyable": A.DESTROYABLE, "extractable": A.EXTRACTABLE, "local": A.LOCAL,
            "modifiable": A.MODIFIABLE, "never-extractable": A.NEVER_EXTRACTABLE,
            "private": A.PRIVATE, "sensitive": A.SENSITIVE, "sign": A.SIGN, "unwrap": A.UNWRAP,
            "verify": A.VERIFY, "wrap": A.WRAP}
# what CloudHSM shows for a public key where PKCS #11 has no such attribute (the CLI pages'
# examples of public keys)
PUBLIC_DEFAULTS = {"decrypt": False, "always-sensitive": False, "extractable": True,
                   "never-extractable": False, "sensitive": False, "sign": False,
                   "unwrap": False}


@dataclass
class TokenKey:
    """One key object of the token, as the CLI names its class and type."""

    obj: Object
    cls: str
    key_type: str
    label: str
    id: str  # hex, "" when empty


def _load(module: str, conf: str) -> pkcs11.lib:
    os.environ["SOFTHSM2_CONF"] = conf
    return pkcs11.lib(module)


@contextmanager
def session(module: str, conf: str, label: str, pin: str) -> Iterator[Session]:
    token = _load(module, conf).get_token(token_label=label)
    with token.open(rw=True, user_pin=pin) as s:
        yield s


def keys(s: Session) -> list[TokenKey]:
    out = []
    for cls in CLASSES:
        for obj in s.get_objects({A.CLASS: cls}):
            got = obj.get_attributes([A.KEY_TYPE, A.LABEL, A.ID])
            out.append(TokenKey(obj, CLASSES[cls], KEY_TYPES.get(got[A.KEY_TYPE], "unknown"),
                                got[A.LABEL], bytes(got[A.ID]).hex()))
    return out


def _block(obj: Object, key_type: str) -> bytes | None:
    mechanism, size, allowed = _CHECK[key_type]

    def compute(key: Any) -> bytes:
        if allowed is A.SIGN:
            return bytes(key.sign(bytes(size), mechanism=mechanism))
        return bytes(key.encrypt(bytes(size), mechanism=mechanism))

    if obj[allowed]:
        return compute(obj)
    if not (obj[A.MODIFIABLE] and obj[A.COPYABLE]):
        return None
    copy = obj.copy({A.TOKEN: False, allowed: True})
    try:
        return compute(copy)
    finally:
        copy.destroy()


def identity(key: TokenKey) -> tuple[str | None, str]:
    """(fingerprint, check-value) of a key; (None, "") when the token cannot say."""
    try:
        if key.cls == "secret-key" and key.key_type in _CHECK:
            block = _block(key.obj, key.key_type)
            if block is None:
                return None, ""
            value = "" if key.key_type == "generic-secret" else "0x" + block[:3].hex()
            return hashlib.sha256(block).hexdigest(), value
        if key.key_type == "rsa":
            n, e = bytes(key.obj[A.MODULUS]), bytes(key.obj[A.PUBLIC_EXPONENT])
            return (hashlib.sha256(n + b"|" + e).hexdigest(),
                    "0x" + hashlib.sha1(n).hexdigest()[:6])
        if key.key_type == "ec" and key.cls == "public-key":
            point = bytes(key.obj[A.EC_POINT])
            return hashlib.sha256(point).hexdigest(), "0x" + hashlib.sha1(point).hexdigest()[:6]
    except PKCS11Error:
        pass
    return None, ""


def read(obj: Object, names: list[str]) -> dict[str, Any]:
    """The CLI booleans ``names`` of ``obj``; an attribute the object does not have is left out."""
    wanted = [BOOLEANS[n] for n in names]
    try:
        got = obj.get_attributes(wanted)
    except PKCS11Error:
        got = {}
        for attr in wanted:
            try:
                got[attr] = obj[attr]
            except PKCS11Error:
                pass
    by_attr = {v: k for k, v in BOOLEANS.items()}
    return {by_attr[a]: bool(v) for a, v in got.items()}


def length(key: TokenKey) -> int:
    """CKA_VALUE_LEN of a secret key (0 when SoftHSM did not set it: unwrapped keys), the
    modulus length of an RSA key."""
    if key.key_type == "3des":
        return 24  # SoftHSM gives a DES3 key no CKA_VALUE_LEN
    try:
        if key.cls == "secret-key":
            return int(key.obj[A.VALUE_LEN])
        if key.key_type == "rsa":
            return len(bytes(key.obj[A.MODULUS]))
    except PKCS11Error:
        pass
    return 0
