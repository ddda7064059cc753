"""What identifies key material without revealing it: key check values and public keys.

KCVs are computed by the tokens (the value of ``CKA_CHECK_VALUE`` is not trusted: SoftHSM
does not set it on unwrapped keys). Public keys are rebuilt from public attributes only.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.types import Key

from ..errors import pkcs11_step

KCV_METHODS = {
    KeyType.DES2: (Mechanism.DES3_ECB, 8, "DES3-ECB encryption of an 8-byte zero block, first 3 bytes"),
    KeyType.DES3: (Mechanism.DES3_ECB, 8, "DES3-ECB encryption of an 8-byte zero block, first 3 bytes"),
    KeyType.AES: (Mechanism.AES_ECB, 16, "AES-ECB encryption of a 16-byte zero block, first 3 bytes"),
    KeyType.GENERIC_SECRET: (Mechanism.SHA256_HMAC, 16,
                             "HMAC-SHA256 of a 16-byte zero block, first 3 bytes"),
}
_CURVES = {
    "secp256r1": ec.SECP256R1(),
    "secp384r1": ec.SECP384R1(),
    "secp521r1": ec.SECP521R1(),
}


@dataclass(frozen=True)
class Kcv:
    value: str   # hex
    method: str


def material_check(key: Key, where: str) -> bytes:
    """The whole output of the KCV computation (a full encrypted zero block, or the full HMAC),
    computed by the token. It compares key material where a 3-byte KCV could collide by
    chance (thousands of keys); it is never recorded. KeyError: no method for the key type."""
    mechanism, size, _ = KCV_METHODS[key.key_type]
    with pkcs11_step(f"compute KCV ({mechanism.name})", where):
        if mechanism is Mechanism.SHA256_HMAC:
            return bytes(key.sign(bytes(size), mechanism=mechanism))
        return bytes(key.encrypt(bytes(size), mechanism=mechanism))


def kcv(key: Key, where: str) -> Kcv:
    """The key check value of a secret key, computed by the token that holds it."""
    return Kcv(material_check(key, where)[:3].hex(), KCV_METHODS[key.key_type][2])


def rsa_public(obj: Key) -> rsa.RSAPublicKey:
    """The RSA public key of a public or private key object, from CKA_MODULUS/PUBLIC_EXPONENT."""
    n = int.from_bytes(obj[Attribute.MODULUS], "big")
    e = int.from_bytes(obj[Attribute.PUBLIC_EXPONENT], "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


def ec_public(obj: Key, curve_name: str) -> ec.EllipticCurvePublicKey:
    """The EC public key of a public key object (CKA_EC_POINT, DER OCTET STRING or raw)."""
    point = bytes(obj[Attribute.EC_POINT])
    if point[:1] == b"\x04" and len(point) > 2 and point[1] in (len(point) - 2, 0x81):
        # DER OCTET STRING around the uncompressed point
        point = point[3:] if point[1] == 0x81 else point[2:]
    return ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[curve_name], point)


def fingerprint(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, hex: the usual public key fingerprint."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def public_pem(public_key: rsa.RSAPublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


HASHES = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512(),
          "sha1": hashes.SHA1()}


def ecdsa_verifies(public_key: ec.EllipticCurvePublicKey, raw: bytes, digest: bytes,
                   hash_name: str) -> bool:
    """Check a PKCS #11 ECDSA signature (r || s) over a digest, in software."""
    half = len(raw) // 2
    der = encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
    try:
        public_key.verify(der, digest, ec.ECDSA(Prehashed(HASHES[hash_name])))
    except InvalidSignature:
        return False
    return True
