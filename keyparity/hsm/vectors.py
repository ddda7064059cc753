"""Cross-cluster test vectors: one side produces, the other consumes, and each exchange is
recorded as data (Wycheproof-like fields), with which cluster produced and which consumed.

Inputs come from a seeded generator, so a run can be repeated with ``--hsm-seed``.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding
from pkcs11 import MGF, Mechanism
from pkcs11.mechanisms import CTRParams, GCMParams
from pkcs11.types import Key

from . import identity
from ..cloudhsm import policy
from ..errors import KeyparityError, TokenError, pkcs11_step

DIRECTIONS = ("source->target", "target->source")


class NotApplicable(KeyparityError):
    """This direction cannot be exercised for this key type; the reason says why."""


class NotPermitted(KeyparityError):
    """The key may not do what the vector needs (its CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN or
    CKA_VERIFY is false): python-pkcs11 gives such a key no method for it."""


def _op(party: Party, key: Key, op: str) -> Callable[..., Any]:
    """``key.<op>``, or NotPermitted saying which attribute forbids it on which cluster."""
    method = getattr(key, op, None)
    if method is None:
        raise NotPermitted(f"the key on {party.name} may not {op} (CKA_{op.upper()} is false "
                           "there): this vector cannot be exchanged; the attribute table "
                           "shows whether the source allows it")
    return method


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


SPECS: dict[str, Cipher | Mac | RsaSig | RsaOaep | Ecdsa] = {
    "des3-ecb": Cipher(Mechanism.DES3_ECB, msg=24),
    "des3-cbc": Cipher(Mechanism.DES3_CBC, iv=8, msg=24),
    "aes-ecb": Cipher(Mechanism.AES_ECB),
    "aes-cbc": Cipher(Mechanism.AES_CBC, iv=16),
    "aes-ctr": Cipher(Mechanism.AES_CTR, iv=8, msg=37),
    "aes-gcm": Cipher(Mechanism.AES_GCM, iv=12, aad=20, msg=37, tag=16),
    "hmac-sha256": Mac(Mechanism.SHA256_HMAC),
    "hmac-sha384": Mac(Mechanism.SHA384_HMAC),
    "hmac-sha512": Mac(Mechanism.SHA512_HMAC),
    "rsa-pkcs1v15-sha256": RsaSig(Mechanism.SHA256_RSA_PKCS, pss=False),
    "rsa-pss-sha256": RsaSig(Mechanism.SHA256_RSA_PKCS_PSS, pss=True),
    "rsa-oaep-sha1": RsaOaep("sha1"),
    "rsa-oaep-sha256": RsaOaep("sha256"),
    "ecdsa-sha256": Ecdsa("sha256"),
    "ecdsa-sha384": Ecdsa("sha384"),
    "ecdsa-sha512": Ecdsa("sha512"),
}
_PSS = (Mechanism.SHA256, MGF.SHA256, 32)
_OAEP = {"sha1": (Mechanism.SHA_1, MGF.SHA1, None), "sha256": (Mechanism.SHA256, MGF.SHA256, None)}


@dataclass
class Party:
    """One side of an exchange: its cluster name, key, public key object if any, and its
    cluster's mode (FIPS / NON_FIPS: what it may produce, see keyparity.cloudhsm.policy)."""

    name: str
    key: Key
    public: Key | None = None
    curve: str | None = None
    mode: str | None = None


def _inputs(seed: int, label: str, vector: str, direction: str, spec: Any) -> dict[str, bytes]:
    rng = random.Random(f"{seed}/{label}/{vector}/{direction}")
    return {"msg": rng.randbytes(spec.msg), "iv": rng.randbytes(getattr(spec, "iv", 0)),
            "aad": rng.randbytes(getattr(spec, "aad", 0))}


def exchange(vector: str, direction: str, source: Party, target: Party, *, label: str,
             seed: int, tc_id: int) -> dict[str, Any]:
    """Run one vector in one direction. The record's ``ok`` says whether the consumer agreed."""
    spec = SPECS[vector]
    producer, consumer = (source, target) if direction == DIRECTIONS[0] else (target, source)
    refused = policy.producer_restriction(vector, producer.name, producer.mode)
    if refused:
        raise NotApplicable(refused)
    data = _inputs(seed, label, vector, direction, spec)
    record: dict[str, Any] = {
        "tcId": tc_id, "keyLabel": label, "vector": vector, "direction": direction,
        "producer": producer.name, "consumer": consumer.name, "result": "valid",
        "msg": data["msg"].hex(),
    }
    runner: Callable[..., None] = _RUNNERS[type(spec)]
    runner(spec, producer, consumer, data, record)
    return record


def _cipher(spec: Cipher, producer: Party, consumer: Party, data: dict[str, bytes],
            record: dict[str, Any]) -> None:
    record["mechanism"] = f"CKM_{spec.mechanism.name}"
    param = spec.param(data["iv"], data["aad"])
    if spec.iv:
        record["iv"] = data["iv"].hex()
    if spec.aad:
        record["aad"] = data["aad"].hex()
    with pkcs11_step(f"encrypt ({record['mechanism']})", producer.name):
        out = _op(producer, producer.key, "encrypt")(data["msg"], mechanism=spec.mechanism,
                                                     mechanism_param=param)
    ct, tag = (out[:-spec.tag], out[-spec.tag:]) if spec.tag else (out, b"")
    record["ct"] = ct.hex()
    if spec.tag:
        record["tag"] = tag.hex()
    try:
        with pkcs11_step(f"decrypt ({record['mechanism']})", consumer.name):
            back = _op(consumer, consumer.key, "decrypt")(out, mechanism=spec.mechanism,
                                                          mechanism_param=param)
    except TokenError as exc:  # e.g. a GCM tag that does not verify: SoftHSM says GeneralError
        record["ok"] = False
        record["comment"] = f"{consumer.name} refuses it ({exc}): different key material"
        return
    record["ok"] = back == data["msg"]
    record["comment"] = ("decrypts to the message" if record["ok"]
                         else "decrypts to something else: different key material")


def _mac(spec: Mac, producer: Party, consumer: Party, data: dict[str, bytes],
         record: dict[str, Any]) -> None:
    record["mechanism"] = f"CKM_{spec.mechanism.name}"
    with pkcs11_step(f"sign ({record['mechanism']})", producer.name):
        tag = _op(producer, producer.key, "sign")(data["msg"], mechanism=spec.mechanism)
    record["tag"] = tag.hex()
    with pkcs11_step(f"verify ({record['mechanism']})", consumer.name):
        record["ok"] = bool(_op(consumer, consumer.key, "verify")(data["msg"], tag,
                                                                  mechanism=spec.mechanism))
    record["comment"] = "MAC verifies" if record["ok"] else "MAC does not verify"


def _rsa_sig(spec: RsaSig, producer: Party, consumer: Party, data: dict[str, bytes],
             record: dict[str, Any]) -> None:
    record["mechanism"] = f"CKM_{spec.mechanism.name}"
    param = _PSS if spec.pss else None
    with pkcs11_step(f"sign ({record['mechanism']})", producer.name):
        sig = _op(producer, producer.key, "sign")(data["msg"], mechanism=spec.mechanism,
                                                  mechanism_param=param)
    record["sig"] = sig.hex()
    pad = (padding.PSS(padding.MGF1(identity.HASHES["sha256"]), 32) if spec.pss
           else padding.PKCS1v15())
    public = identity.rsa_public(consumer.public or consumer.key)
    try:
        public.verify(sig, data["msg"], pad, identity.HASHES["sha256"])
        soft = True
    except InvalidSignature:
        soft = False
    checks = [f"software, with {consumer.name}'s public key: {'valid' if soft else 'INVALID'}"]
    ok = soft
    if consumer.public is not None:
        with pkcs11_step(f"verify ({record['mechanism']})", consumer.name):
            hsm = bool(_op(consumer, consumer.public, "verify")(data["msg"], sig,
                                                               mechanism=spec.mechanism,
                                                               mechanism_param=param))
        checks.append(f"on {consumer.name}: {'valid' if hsm else 'INVALID'}")
        ok = ok and hsm
    record["ok"], record["comment"] = ok, "; ".join(checks)


def _rsa_oaep(spec: RsaOaep, producer: Party, consumer: Party, data: dict[str, bytes],
              record: dict[str, Any]) -> None:
    """The producer encrypts with its own public key; the consumer's private key decrypts."""
    record["mechanism"] = f"CKM_RSA_PKCS_OAEP ({spec.hash})"
    if producer.public is not None:
        with pkcs11_step(f"OAEP encrypt ({spec.hash})", producer.name):
            ct = _op(producer, producer.public, "encrypt")(data["msg"],
                                                         mechanism=Mechanism.RSA_PKCS_OAEP,
                                                         mechanism_param=_OAEP[spec.hash])
        record["producer"] = f"{producer.name} (its public key object)"
    else:
        h = identity.HASHES[spec.hash]
        ct = identity.rsa_public(producer.key).encrypt(
            data["msg"], padding.OAEP(padding.MGF1(h), h, None))
        record["producer"] = (f"software, with {producer.name}'s public key "
                              "(CKA_MODULUS of its private key)")
    record["ct"] = ct.hex()
    try:
        with pkcs11_step(f"OAEP decrypt ({spec.hash})", consumer.name):
            back = _op(consumer, consumer.key, "decrypt")(ct, mechanism=Mechanism.RSA_PKCS_OAEP,
                                                         mechanism_param=_OAEP[spec.hash])
    except TokenError as exc:  # OAEP padding that does not check out: SoftHSM says GeneralError
        record["ok"] = False
        record["comment"] = f"{consumer.name} refuses it ({exc}): different key material"
        return
    record["ok"] = back == data["msg"]
    record["comment"] = "decrypts to the message" if record["ok"] else "decrypts to something else"


def _ecdsa(spec: Ecdsa, producer: Party, consumer: Party, data: dict[str, bytes],
           record: dict[str, Any]) -> None:
    record["mechanism"] = f"CKM_ECDSA over {spec.hash.upper()}"
    if consumer.public is None:
        raise NotApplicable(f"{consumer.name} holds only the EC private key, which exposes no "
                            "public point; the other direction proves the pair")
    digest = hashlib.new(spec.hash, data["msg"]).digest()
    with pkcs11_step("ECDSA sign", producer.name):
        sig = _op(producer, producer.key, "sign")(digest, mechanism=Mechanism.ECDSA)
    record["sig"] = sig.hex()
    soft = identity.ecdsa_verifies(identity.ec_public(consumer.public, consumer.curve), sig,
                                   digest, spec.hash)
    with pkcs11_step("ECDSA verify", consumer.name):
        hsm = bool(_op(consumer, consumer.public, "verify")(digest, sig,
                                                           mechanism=Mechanism.ECDSA))
    record["ok"] = soft and hsm
    record["comment"] = (f"software, with {consumer.name}'s public key: "
                         f"{'valid' if soft else 'INVALID'}; on {consumer.name}: "
                         f"{'valid' if hsm else 'INVALID'}")


_RUNNERS: dict[type, Callable[..., None]] = {
    Cipher: _cipher, Mac: _mac, RsaSig: _rsa_sig, RsaOaep: _rsa_oaep, Ecdsa: _ecdsa,
}
