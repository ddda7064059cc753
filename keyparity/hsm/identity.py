"""What shows key material to people without revealing it: key check values and public keys.

* a secret key's KCV (``kcv``): 3 bytes of a zero block's encryption (or HMAC) computed by the
  token (``CKA_CHECK_VALUE`` is not trusted: SoftHSM does not set it on unwrapped keys) - for
  display, the CBOM and CloudHSM's check-value only: three bytes collide by brute force in a
  second, so nothing acts on a KCV (the proof of identity is keyparity.hsm.proof's);
* a public key's fingerprint (``fingerprint``): the SHA-256 of its SubjectPublicKeyInfo,
  rebuilt from CKA_MODULUS/CKA_PUBLIC_EXPONENT (RSA) or CKA_EC_POINT (EC);
* ``signs``: whether an EC private key object signs a challenge so that a public key verifies
  it (ECDSA over SHA-256).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from pkcs11 import Attribute, Mechanism
from pkcs11.types import Key

from ..errors import NotPermitted, pkcs11_step
from . import direct
from .direct import operation
from ..keytypes import BY_PKCS11, CURVES, KEY_TYPES



@dataclass(frozen=True)
class Kcv:
    value: str   # hex
    method: str


def material_check(key: Key, where: str, fips: bool = False) -> bytes:
    """The whole output of the KCV computation (a full encrypted zero block, or the full HMAC),
    computed by the token; never recorded. The census shows its first 3 bytes; no command acts
    on it (keyparity.hsm.proof proves key material). KeyError: no method for the key type.
    ``fips``: ``where`` is a cluster in FIPS mode, which refuses to encrypt with a key type
    FIPS no longer approves (3DES: AWS CloudHSM pkcs11-key-types, note 1): not tried there,
    NotPermitted says why."""
    with pkcs11_step("read the key type", where):
        key_type = key.key_type
    info = BY_PKCS11[key_type]
    method = info.kcv
    if method is None:
        raise KeyError(key_type)
    if fips and not info.fips_approved:
        raise NotPermitted(f"no KCV on {where}: a cluster in FIPS mode refuses {info.shown} "
                           "encryption, so it is not asked; the key is proven by decryption, "
                           "and its KCV can be read on the target")
    mechanism, size = method.mechanism, method.block
    op = "sign" if mechanism is Mechanism.SHA256_HMAC else "encrypt"
    compute = operation(key, op, where, f"no KCV ({mechanism.name}) can be computed with it")
    with pkcs11_step(f"compute KCV ({mechanism.name})", where):
        return bytes(compute(bytes(size), mechanism=mechanism))


def kcv(key: Key, where: str, fips: bool = False) -> Kcv:
    """The key check value of a secret key, computed by the token that holds it (``fips``:
    see material_check)."""
    check = material_check(key, where, fips)
    method = BY_PKCS11[key.key_type].kcv
    assert method is not None  # material_check computed it
    return Kcv(check[:3].hex(), method.description)


# What a payment HSM shows (AWS Payment Cryptography's KeyCheckValueAlgorithm names): TDES keys
# ANSI_X9_24 (a zero block encrypted, the first 3 bytes); AES keys CMAC, ANSI X9.24-1:2017's
# method ("the KCV is computed using a CMAC algorithm where the input data is 16 bytes of zero
# and retaining the 3 highest order bytes": AWS Payment Cryptography Data Plane, WrappedKey),
# beside the legacy ECB value CloudHSM's check-value shows. People compare them; nothing acts on
# one (keyparity.hsm.proof proves key material).
CMAC = "CMAC"
CMAC_TEXT = ("AES-CMAC of a 16-byte zero block, first 3 bytes (ANSI X9.24-1:2017; AWS Payment "
             "Cryptography KeyCheckValueAlgorithm CMAC)")
_BLOCK = 16
_R128 = 0x87  # SP 800-38B's R_128: the subkey doubling's reduction


def cmac_block(encrypt: Any, block: bytes) -> bytes:
    """AES-CMAC of one complete 16-byte block from the block cipher alone (NIST SP 800-38B
    6.1-6.2): L = E_K(0^128), K1 = L doubled in GF(2^128), CMAC = E_K(block xor K1).
    ``encrypt``: AES-ECB encryption by the token that holds K."""
    low = int.from_bytes(encrypt(bytes(_BLOCK)), "big")
    k1 = ((low << 1) & ((1 << 128) - 1)) ^ (_R128 if low >> 127 else 0)
    return bytes(encrypt((int.from_bytes(block, "big") ^ k1).to_bytes(_BLOCK, "big")))


def cmac_check(key: Key, where: str) -> bytes:
    """The AES-CMAC of a zero block computed by the token: C_Sign (CKM_AES_CMAC) where the key
    may sign, else from two AES-ECB encryptions (``cmac_block``). NotPermitted: neither."""
    sign = operation(key, "sign", where, "") if getattr(key, "sign", None) else None
    with pkcs11_step("compute the CMAC check value", where):
        if sign is not None:
            return bytes(sign(bytes(_BLOCK), mechanism=Mechanism.AES_CMAC))
        encrypt = operation(key, "encrypt", where, "no CMAC check value can be computed with "
                            "it (CKA_SIGN is false too)")
        return cmac_block(lambda data: encrypt(data, mechanism=Mechanism.AES_ECB), bytes(_BLOCK))


def check_values(key: Key, type_name: str, where: str, fips: bool = False) -> list[dict[str, Any]]:
    """Every check value of a secret key an operator may compare with another HSM, each
    labelled with its algorithm: the legacy one, and for AES the CMAC one. One the key's
    attributes (or the cluster's mode) forbid says why instead; a token or session failure
    raises (TokenError), as any other step of a key's test. A key pair has none (it is
    shown by its public key's fingerprint)."""
    info = KEY_TYPES.get(type_name)
    if info is None or info.kcv is None:
        return []
    out: list[dict[str, Any]] = []
    kinds = [(info.kcv.algorithm, None)] + ([(CMAC, CMAC_TEXT)] if info.cmac_kcv else [])
    for algorithm, text in kinds:
        entry: dict[str, Any] = {"algorithm": algorithm, "cluster": where}
        try:
            if algorithm == CMAC:
                entry |= {"value": cmac_check(key, where)[:3].hex(), "method": text}
            else:
                found = kcv(key, where, fips)
                entry |= {"value": found.value, "method": found.method}
        except (NotPermitted, KeyError) as exc:  # a token's fault is the test's: it raises
            entry |= {"value": None, "reason": str(exc)}
        out.append(entry)
    return out


# where a run keeps a key object's public key once read (python-pkcs11's object, the run's
# own instance: another object under the same label is another instance, read apart)
_PUBLIC = "keyparity_public"


def rsa_public(obj: Key) -> rsa.RSAPublicKey:
    """The RSA public key of a public or private key object, from CKA_MODULUS/PUBLIC_EXPONENT
    (read once per object: a run's vectors and proofs ask for it again and again)."""
    known = vars(obj).get(_PUBLIC)
    if known is None:
        known = vars(obj)[_PUBLIC] = _rsa_public(obj)
    return known


def _rsa_public(obj: Key) -> rsa.RSAPublicKey:
    got = direct.attributes(obj, [Attribute.MODULUS, Attribute.PUBLIC_EXPONENT]) or {}
    if not all(isinstance(got.get(a), bytes) for a in (Attribute.MODULUS,
                                                       Attribute.PUBLIC_EXPONENT)):
        got = {a: obj[a] for a in (Attribute.MODULUS, Attribute.PUBLIC_EXPONENT)}
    return rsa.RSAPublicNumbers(int.from_bytes(got[Attribute.PUBLIC_EXPONENT], "big"),
                                int.from_bytes(got[Attribute.MODULUS], "big")).public_key()


def ec_public(obj: Key, curve_name: str) -> ec.EllipticCurvePublicKey:
    """The EC public key of a public key object (CKA_EC_POINT, DER OCTET STRING or raw),
    read once per object and curve."""
    known = vars(obj).get(_PUBLIC)
    if known is None or known[0] != curve_name:
        curve = getattr(ec, CURVES[curve_name].name.upper())()  # ec.SECP384R1 for secp384r1
        known = vars(obj)[_PUBLIC] = (curve_name, ec.EllipticCurvePublicKey.from_encoded_point(
            curve, _point(bytes(direct.attribute(obj, Attribute.EC_POINT)), curve)))
    return known[1]


def _point(value: bytes, curve: ec.EllipticCurve) -> bytes:
    """The encoded point of a CKA_EC_POINT: the value itself when it has a raw point's length
    (uncompressed 1 + 2n or compressed 1 + n bytes, n the field size), else the content of the
    DER OCTET STRING around it (short or 0x81 long form, its length checked). A raw point's
    first byte can look like a DER header (X starting 0x3f or 0x81 on P-256), so the length
    decides first; anything else is left to cryptography to refuse."""
    n = (curve.key_size + 7) // 8
    if len(value) in (1 + 2 * n, 1 + n):
        return value
    if value[:1] == b"\x04" and len(value) > 2 and value[1] == len(value) - 2:
        return value[2:]
    if value[:2] == b"\x04\x81" and len(value) > 3 and value[2] == len(value) - 3:
        return value[3:]
    return value


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


def signs(private: Key, public: ec.EllipticCurvePublicKey, where: str,
          challenge: bytes | None = None) -> bool:
    """Whether an EC private key object signs a challenge (default: a fresh 32 random bytes)
    so that ``public`` verifies it (ECDSA over SHA-256 of the challenge, computed by the
    token)."""
    digest = hashlib.sha256(os.urandom(32) if challenge is None else challenge).digest()
    sign = operation(private, "sign", where, "its material cannot be proven by an ECDSA challenge")
    with pkcs11_step("ECDSA signature for identity", where):
        raw = sign(digest, mechanism=Mechanism.ECDSA)
    return ecdsa_verifies(public, raw, digest, "sha256")
