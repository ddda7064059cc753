"""Every cross-cluster vector keyparity knows, as data (the one table): its name, the key types
it applies to, how it is exchanged (the runner's parameters), the mechanism a token must offer
for it, the key types (EC: the curves) it is a default for, and whether a cluster in FIPS mode
may produce it. Profile validation, the FIPS policy, preflight and the runners read it. What a
vector makes the key do (``Vector.operations``) is what a key's role must permit
(keyparity.roles): a key-encrypting key is exercised by wrapping, a MAC key by MACs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pkcs11 import Mechanism
from pkcs11.mechanisms import CTRParams, GCMParams

from . import roles


@dataclass(frozen=True)
class Cipher:
    mechanism: Mechanism
    iv: int = 0          # IV / nonce length in bytes
    aad: int = 0
    msg: int = 32
    tag: int = 0

    def param(self, iv: bytes, aad: bytes) -> Any:
        if self.mechanism is Mechanism.AES_GCM:
            return GCMParams(iv, aad, self.tag * 8)
        if self.mechanism is Mechanism.AES_CTR:
            return CTRParams(iv)
        return iv or None


@dataclass(frozen=True)
class Mac:
    mechanism: Mechanism
    msg: int = 48


@dataclass(frozen=True)
class RsaSig:
    mechanism: Mechanism
    pss: bool
    msg: int = 64


@dataclass(frozen=True)
class RsaOaep:
    hash: str
    msg: int = 32


@dataclass(frozen=True)
class Ecdsa:
    hash: str
    msg: int = 64


@dataclass(frozen=True)
class KeyWrap:
    """The producer wraps a session AES key whose value is the seeded message (test data, made
    for the vector); the consumer unwraps it and wraps the result again: the same bytes."""
    mechanism: Mechanism
    msg: int = 32


Params = Cipher | Mac | RsaSig | RsaOaep | Ecdsa | KeyWrap
# what each kind of vector makes the key (and its public half) do
OPERATIONS: dict[type, tuple[str, ...]] = {
    Cipher: ("encrypt", "decrypt"), RsaOaep: ("encrypt", "decrypt"), Mac: ("sign", "verify"),
    RsaSig: ("sign", "verify"), Ecdsa: ("sign", "verify"), KeyWrap: ("wrap", "unwrap")}


@dataclass(frozen=True)
class Vector:
    name: str
    key_types: tuple[str, ...]
    params: Params
    needs: Mechanism          # the mechanism each token must list (preflight)
    default_for: tuple[str, ...] = ()  # key types; EC: "ec:<curve>"
    fips_producer: bool = True  # False: a FIPS cluster does not produce it (SP 800-131A)

    @property
    def operations(self) -> tuple[str, ...]:
        return OPERATIONS[type(self.params)]


_DES, _EC = ("des2", "des3"), ("ec",)
TABLE: dict[str, Vector] = {v.name: v for v in (
    Vector("des3-ecb", _DES, Cipher(Mechanism.DES3_ECB, msg=24), Mechanism.DES3_ECB, _DES,
           fips_producer=False),
    Vector("des3-cbc", _DES, Cipher(Mechanism.DES3_CBC, iv=8, msg=24), Mechanism.DES3_CBC, _DES,
           fips_producer=False),
    Vector("aes-ecb", ("aes",), Cipher(Mechanism.AES_ECB), Mechanism.AES_ECB, ("aes",)),
    Vector("aes-cbc", ("aes",), Cipher(Mechanism.AES_CBC, iv=16), Mechanism.AES_CBC, ("aes",)),
    Vector("aes-ctr", ("aes",), Cipher(Mechanism.AES_CTR, iv=8, msg=37), Mechanism.AES_CTR,
           ("aes",)),
    Vector("aes-gcm", ("aes",), Cipher(Mechanism.AES_GCM, iv=12, aad=20, msg=37, tag=16),
           Mechanism.AES_GCM, ("aes",)),
    Vector("des3-cmac", _DES, Mac(Mechanism.DES3_CMAC), Mechanism.DES3_CMAC,
           fips_producer=False),
    Vector("aes-cmac", ("aes",), Mac(Mechanism.AES_CMAC), Mechanism.AES_CMAC),
    Vector("aes-key-wrap", ("aes",), KeyWrap(Mechanism.AES_KEY_WRAP), Mechanism.AES_KEY_WRAP),
    Vector("hmac-sha256", ("generic-secret",), Mac(Mechanism.SHA256_HMAC),
           Mechanism.SHA256_HMAC, ("generic-secret",)),
    Vector("hmac-sha384", ("generic-secret",), Mac(Mechanism.SHA384_HMAC),
           Mechanism.SHA384_HMAC),
    Vector("hmac-sha512", ("generic-secret",), Mac(Mechanism.SHA512_HMAC),
           Mechanism.SHA512_HMAC),
    Vector("rsa-pkcs1v15-sha256", ("rsa",), RsaSig(Mechanism.SHA256_RSA_PKCS, pss=False),
           Mechanism.SHA256_RSA_PKCS, ("rsa",)),
    Vector("rsa-pss-sha256", ("rsa",), RsaSig(Mechanism.SHA256_RSA_PKCS_PSS, pss=True),
           Mechanism.SHA256_RSA_PKCS_PSS, ("rsa",)),
    Vector("rsa-oaep-sha1", ("rsa",), RsaOaep("sha1"), Mechanism.RSA_PKCS_OAEP, ("rsa",)),
    Vector("rsa-oaep-sha256", ("rsa",), RsaOaep("sha256"), Mechanism.RSA_PKCS_OAEP),
    Vector("ecdsa-sha256", _EC, Ecdsa("sha256"), Mechanism.ECDSA, ("ec:secp256r1",)),
    Vector("ecdsa-sha384", _EC, Ecdsa("sha384"), Mechanism.ECDSA,
           ("ec:secp384r1", "ec:secp521r1")),
    Vector("ecdsa-sha512", _EC, Ecdsa("sha512"), Mechanism.ECDSA),
)}


def allowed(key_type: str) -> tuple[str, ...]:
    """The vectors a key of this type may name, in the table's order."""
    return tuple(v.name for v in TABLE.values() if key_type in v.key_types)


def defaults(key_type: str, curve: str | None = None,
             role: str = roles.UNSPECIFIED) -> tuple[str, ...]:
    """The vectors a key of this type runs when the inventory names none (EC: per curve,
    normalised as secp256r1...): the type's defaults its role permits, or else the first vector
    of the type the role permits (a MAC key: a MAC; a key-encrypting key: a wrap); none when the
    role permits none (a 3DES key-encrypting key: no vector wraps with 3DES; SoftHSM does not)."""
    wanted = f"ec:{curve}" if key_type == "ec" else key_type
    permitted = [v for v in TABLE.values()
                 if key_type in v.key_types and roles.permits(role, v.operations)]
    chosen = [v for v in permitted if wanted in v.default_for]
    if not chosen and any(wanted in v.default_for for v in TABLE.values()):
        chosen = permitted[:1]  # the role ruled the type's defaults out
    return tuple(v.name for v in chosen)
