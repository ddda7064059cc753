"""Two real SoftHSM tokens (hsm1, hsm2) opened in the test process itself, for unit tests of
code that takes PKCS #11 key objects (keyparity.hsm.identity, .vectors, .census, .attributes.read).

Most tests of this repository drive tokens in a child process (tests/helpers/tokentool.py), because
python-pkcs11 keeps one library per process and SoftHSM reads SOFTHSM2_CONF when it is
initialised. Here the library is re-initialised instead (``lib.reinitialize()``: C_Finalize,
then C_Initialize, which makes SoftHSM read the configuration named by SOFTHSM2_CONF again),
and again when the tokens are closed, after SOFTHSM2_CONF is put back: a later user of the
library in this process sees its own configuration, as if the library were loaded afresh.

Keys with KNOWN material are imported (CKA_VALUE, or the RSA/EC private numbers made in
software here), so that the same key can be put on both tokens, a different one next to it,
and software can compute what the token must answer.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.types import Session
from pkcs11.util.ec import encode_named_curve_parameters

from keyparity.hsm.softhsm import find_module, provision

TMPFS = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
LABELS = ("hsm1", "hsm2")


class Tokens:
    """Logged-in read-write sessions on two fresh tokens of a directory of their own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = provision(root, LABELS)
        self.pins = {t: (root / f"{t}.pin").read_text().strip() for t in LABELS}
        self._previous = os.environ.get("SOFTHSM2_CONF")
        os.environ["SOFTHSM2_CONF"] = str(self.conf)
        self.lib = pkcs11.lib(find_module())
        self.lib.reinitialize()
        self.sessions: dict[str, Session] = {}
        for t in LABELS:
            token = self.lib.get_token(token_label=t)
            self.sessions[t] = token.open(user_pin=self.pins[t], rw=True)

    def __getitem__(self, token: str) -> Session:
        return self.sessions[token]

    def close(self) -> None:
        for s in self.sessions.values():
            try:
                s.close()
            except Exception:  # noqa: BLE001 - the library is re-initialised anyway
                pass
        if self._previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = self._previous
        try:  # best effort: with no configuration to read SoftHSM may refuse to initialise
            self.lib.reinitialize()
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture(scope="module")
def tokens() -> Iterator[Tokens]:
    root = Path(tempfile.mkdtemp(prefix="keyparity-p11-", dir=TMPFS))
    t = Tokens(root)
    try:
        yield t
    finally:
        t.close()
        shutil.rmtree(root, ignore_errors=True)


# ---- keys of known material ------------------------------------------------------------------

def secret(session: Session, label: str, key_type: KeyType, value: bytes, *,
           id_: bytes = b"", extra: dict[Attribute, Any] | None = None) -> Any:
    """A secret key of known value that can encrypt, decrypt, sign and verify."""
    template = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: key_type,
                Attribute.TOKEN: True, Attribute.LABEL: label, Attribute.ID: id_,
                Attribute.VALUE: value, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True,
                Attribute.ENCRYPT: True, Attribute.DECRYPT: True, Attribute.SIGN: True,
                Attribute.VERIFY: True}
    template.update(extra or {})
    return session.create_object(template)


@cache
def rsa_key(n: int = 0, bits: int = 2048) -> rsa.RSAPrivateKey:
    """The n-th software RSA key of this process (one generation each)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@cache
def ec_key(n: int = 0, curve: str = "secp256r1") -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key({"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1(),
                                    "secp521r1": ec.SECP521R1()}[curve])


def _int(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def rsa_pair(session: Session, label: str, key: rsa.RSAPrivateKey, *,
             public: bool = True, token: bool = True) -> tuple[Any, Any | None]:
    """The RSA private key object (and, with ``public``, its public key object); ``token``
    False: session objects, which no enumeration of token objects sees."""
    priv = key.private_numbers()
    pub = priv.public_numbers
    private = session.create_object({
        Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.RSA,
        Attribute.TOKEN: token, Attribute.LABEL: label, Attribute.ID: b"",
        Attribute.MODULUS: _int(pub.n), Attribute.PUBLIC_EXPONENT: _int(pub.e),
        Attribute.PRIVATE_EXPONENT: _int(priv.d), Attribute.PRIME_1: _int(priv.p),
        Attribute.PRIME_2: _int(priv.q), Attribute.EXPONENT_1: _int(priv.dmp1),
        Attribute.EXPONENT_2: _int(priv.dmq1), Attribute.COEFFICIENT: _int(priv.iqmp),
        Attribute.SIGN: True, Attribute.DECRYPT: True, Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: True})
    if not public:
        return private, None
    return private, session.create_object({
        Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA,
        Attribute.TOKEN: token, Attribute.LABEL: label, Attribute.ID: b"",
        Attribute.MODULUS: _int(pub.n), Attribute.PUBLIC_EXPONENT: _int(pub.e),
        Attribute.VERIFY: True, Attribute.ENCRYPT: True})


def der_octet_string(data: bytes) -> bytes:
    """DER OCTET STRING around ``data`` (how PKCS #11 wants CKA_EC_POINT)."""
    n = len(data)
    if n < 0x80:
        return b"\x04" + bytes([n]) + data
    if n < 0x100:
        return b"\x04\x81" + bytes([n]) + data
    return b"\x04\x82" + n.to_bytes(2, "big") + data


def uncompressed_point(key: ec.EllipticCurvePublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint)


def ec_pair(session: Session, label: str, key: ec.EllipticCurvePrivateKey, curve: str, *,
            public: bool = True, point: bytes | None = None,
            token: bool = True) -> tuple[Any, Any | None]:
    """The EC private key object (and its public key object, CKA_EC_POINT as ``point`` or
    DER-wrapped)."""
    params = encode_named_curve_parameters(curve)
    size = (key.curve.key_size + 7) // 8
    private = session.create_object({
        Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.EC,
        Attribute.TOKEN: token, Attribute.LABEL: label, Attribute.ID: b"",
        Attribute.EC_PARAMS: params,
        Attribute.VALUE: key.private_numbers().private_value.to_bytes(size, "big"),
        Attribute.SIGN: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True})
    if not public:
        return private, None
    if point is None:
        point = der_octet_string(uncompressed_point(key.public_key()))
    return private, session.create_object({
        Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.EC,
        Attribute.TOKEN: token, Attribute.LABEL: label, Attribute.ID: b"",
        Attribute.EC_PARAMS: params, Attribute.EC_POINT: point, Attribute.VERIFY: True})
