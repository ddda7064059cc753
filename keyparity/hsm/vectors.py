"""Cross-cluster test vectors: one side produces, the other consumes, and each exchange is
recorded as data (Wycheproof-like fields), with which cluster produced and which consumed.

Inputs come from a seeded generator, so a run can be repeated with ``--hsm-seed``.
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from typing import Any, Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.types import Key

from . import identity
from .. import vector_table
from .. import minimal as minimal_data, policy
from ..vector_table import Cipher, Ecdsa, KeyWrap, Mac, RsaOaep, RsaSig
from .locate import Side
from ..errors import KeyparityError, TokenError, pkcs11_step
from .direct import operation

DIRECTIONS = ("source->target", "target->source")


class NotApplicable(KeyparityError):
    """This direction cannot be exercised for this key type; the reason says why."""


def _op(party: Side, key: Key, op: str) -> Callable[..., Any]:
    """``key.<op>``, or NotPermitted saying which attribute forbids it on which cluster."""
    return operation(key, op, party.cluster, "this vector cannot be exchanged; the attribute "
                     "table shows whether the source allows it")


_PSS = (Mechanism.SHA256, MGF.SHA256, 32)
_OAEP = {"sha1": (Mechanism.SHA_1, MGF.SHA1, None), "sha256": (Mechanism.SHA256, MGF.SHA256, None)}


def _inputs(seed: int, label: str, vector: str, direction: str, spec: Any) -> dict[str, bytes]:
    rng = random.Random(f"{seed}/{label}/{vector}/{direction}")
    return {"msg": rng.randbytes(spec.msg), "iv": rng.randbytes(getattr(spec, "iv", 0)),
            "aad": rng.randbytes(getattr(spec, "aad", 0))}


def exchanges(vectors: Iterable[str], source: Side, target: Side, *, label: str, seed: int,
              case: str, minimal: bool = False) -> Iterator[dict[str, Any]]:
    """Every vector of a key in both directions, one record each; a direction a side may not
    produce (keyparity.policy) is a record with result "n/a" and the reason. Each
    record's tcId is derived from ``case`` (the test's node id), the vector and the direction.
    ``minimal`` (production): each record holds a salted commitment instead of its message
    and outputs (keyparity.minimal), made before it leaves this function."""
    for vector in vectors:
        for direction in DIRECTIONS:
            tc_id = int(hashlib.sha256(f"{case}-{vector}-{direction}".encode()).hexdigest()[:6],
                        16)
            try:
                record = exchange(vector, direction, source, target, label=label, seed=seed,
                                  tc_id=tc_id)
                yield minimal_data.commit(record) if minimal else record
            except NotApplicable as exc:
                yield {"vector": vector, "direction": direction, "result": "n/a",
                       "comment": str(exc)}


def exchange(vector: str, direction: str, source: Side, target: Side, *, label: str,
             seed: int, tc_id: int) -> dict[str, Any]:
    """Run one vector in one direction. The record's ``ok`` says whether the consumer agreed."""
    spec = vector_table.TABLE[vector].params
    producer, consumer = (source, target) if direction == DIRECTIONS[0] else (target, source)
    refused = policy.producer_restriction(vector, producer.cluster, producer.mode)
    if refused:
        raise NotApplicable(refused)
    data = _inputs(seed, label, vector, direction, spec)
    record: dict[str, Any] = {
        "tcId": tc_id, "keyLabel": label, "vector": vector, "direction": direction,
        "producer": producer.cluster, "consumer": consumer.cluster, "result": "valid",
        "msg": data["msg"].hex(),
    }
    runner: Callable[..., None] = _RUNNERS[type(spec)]
    runner(spec, producer, consumer, data, record)
    return record


def _cipher(spec: Cipher, producer: Side, consumer: Side, data: dict[str, bytes],
            record: dict[str, Any]) -> None:
    record["mechanism"] = f"CKM_{spec.mechanism.name}"
    param = spec.param(data["iv"], data["aad"])
    if spec.iv:
        record["iv"] = data["iv"].hex()
    if spec.aad:
        record["aad"] = data["aad"].hex()
    with pkcs11_step(f"encrypt ({record['mechanism']})", producer.cluster):
        out = _op(producer, producer.key, "encrypt")(data["msg"], mechanism=spec.mechanism,
                                                     mechanism_param=param)
    ct, tag = (out[:-spec.tag], out[-spec.tag:]) if spec.tag else (out, b"")
    record["ct"] = ct.hex()
    if spec.tag:
        record["tag"] = tag.hex()
    try:
        with pkcs11_step(f"decrypt ({record['mechanism']})", consumer.cluster):
            back = _op(consumer, consumer.key, "decrypt")(out, mechanism=spec.mechanism,
                                                          mechanism_param=param)
    except TokenError as exc:  # e.g. a GCM tag that does not verify: SoftHSM says GeneralError
        record["ok"] = False
        record["comment"] = f"{consumer.cluster} refuses it ({exc}): different key material"
        return
    record["ok"] = back == data["msg"]
    record["comment"] = ("decrypts to the message" if record["ok"]
                         else "decrypts to something else: different key material")


def _mac(spec: Mac, producer: Side, consumer: Side, data: dict[str, bytes],
         record: dict[str, Any]) -> None:
    record["mechanism"] = f"CKM_{spec.mechanism.name}"
    with pkcs11_step(f"sign ({record['mechanism']})", producer.cluster):
        tag = _op(producer, producer.key, "sign")(data["msg"], mechanism=spec.mechanism)
    record["tag"] = tag.hex()
    with pkcs11_step(f"verify ({record['mechanism']})", consumer.cluster):
        record["ok"] = bool(_op(consumer, consumer.key, "verify")(data["msg"], tag,
                                                                  mechanism=spec.mechanism))
    record["comment"] = "MAC verifies" if record["ok"] else "MAC does not verify"


def _rsa_sig(spec: RsaSig, producer: Side, consumer: Side, data: dict[str, bytes],
             record: dict[str, Any]) -> None:
    record["mechanism"] = f"CKM_{spec.mechanism.name}"
    param = _PSS if spec.pss else None
    with pkcs11_step(f"sign ({record['mechanism']})", producer.cluster):
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
    checks = [f"software, with {consumer.cluster}'s public key: {'valid' if soft else 'INVALID'}"]
    ok = soft
    if consumer.public is not None:
        with pkcs11_step(f"verify ({record['mechanism']})", consumer.cluster):
            hsm = bool(_op(consumer, consumer.public, "verify")(data["msg"], sig,
                                                               mechanism=spec.mechanism,
                                                               mechanism_param=param))
        checks.append(f"on {consumer.cluster}: {'valid' if hsm else 'INVALID'}")
        ok = ok and hsm
    record["ok"], record["comment"] = ok, "; ".join(checks)


def _rsa_oaep(spec: RsaOaep, producer: Side, consumer: Side, data: dict[str, bytes],
              record: dict[str, Any]) -> None:
    """The producer encrypts with its own public key; the consumer's private key decrypts."""
    record["mechanism"] = f"CKM_RSA_PKCS_OAEP ({spec.hash})"
    if producer.public is not None:
        with pkcs11_step(f"OAEP encrypt ({spec.hash})", producer.cluster):
            ct = _op(producer, producer.public, "encrypt")(data["msg"],
                                                         mechanism=Mechanism.RSA_PKCS_OAEP,
                                                         mechanism_param=_OAEP[spec.hash])
        record["producer"] = f"{producer.cluster} (its public key object)"
    else:
        h = identity.HASHES[spec.hash]
        ct = identity.rsa_public(producer.key).encrypt(
            data["msg"], padding.OAEP(padding.MGF1(h), h, None))
        record["producer"] = (f"software, with {producer.cluster}'s public key "
                              "(CKA_MODULUS of its private key)")
    record["ct"] = ct.hex()
    try:
        with pkcs11_step(f"OAEP decrypt ({spec.hash})", consumer.cluster):
            back = _op(consumer, consumer.key, "decrypt")(ct, mechanism=Mechanism.RSA_PKCS_OAEP,
                                                         mechanism_param=_OAEP[spec.hash])
    except TokenError as exc:  # OAEP padding that does not check out: SoftHSM says GeneralError
        record["ok"] = False
        record["comment"] = f"{consumer.cluster} refuses it ({exc}): different key material"
        return
    record["ok"] = back == data["msg"]
    record["comment"] = "decrypts to the message" if record["ok"] else "decrypts to something else"


def _ecdsa(spec: Ecdsa, producer: Side, consumer: Side, data: dict[str, bytes],
           record: dict[str, Any]) -> None:
    record["mechanism"] = f"CKM_ECDSA over {spec.hash.upper()}"
    if consumer.public is None:
        raise NotApplicable(f"{consumer.cluster} holds only the EC private key, which exposes no "
                            "public point; the other direction proves the pair")
    digest = hashlib.new(spec.hash, data["msg"]).digest()
    with pkcs11_step("ECDSA sign", producer.cluster):
        sig = _op(producer, producer.key, "sign")(digest, mechanism=Mechanism.ECDSA)
    record["sig"] = sig.hex()
    soft = identity.ecdsa_verifies(identity.ec_public(consumer.public, consumer.curve), sig,
                                   digest, spec.hash)
    with pkcs11_step("ECDSA verify", consumer.cluster):
        hsm = bool(_op(consumer, consumer.public, "verify")(digest, sig,
                                                           mechanism=Mechanism.ECDSA))
    record["ok"] = soft and hsm
    record["comment"] = (f"software, with {consumer.cluster}'s public key: "
                         f"{'valid' if soft else 'INVALID'}; on {consumer.cluster}: "
                         f"{'valid' if hsm else 'INVALID'}")


_PAYLOAD_LABEL = "keyparity-vector-payload"  # the key-wrap vector's own session objects


def _key_wrap(spec: KeyWrap, producer: Side, consumer: Side, data: dict[str, bytes],
              record: dict[str, Any]) -> None:
    """A key-encrypting key's vector: the producer wraps a session AES key whose value is the
    seeded message (test data made for it, never anyone's key), the consumer unwraps it with
    its copy - AES key wrap checks its integrity, so other key material refuses it - and wraps
    the unwrapped key again: the same bytes (AES key wrap is deterministic). The session
    objects are destroyed at once."""
    record["mechanism"] = f"CKM_{spec.mechanism.name}"
    payload = producer.key.session.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
        Attribute.TOKEN: False, Attribute.LABEL: _PAYLOAD_LABEL, Attribute.VALUE: data["msg"],
        Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    try:
        with pkcs11_step(f"wrap ({record['mechanism']})", producer.cluster):
            ct = bytes(_op(producer, producer.key, "wrap_key")(payload,
                                                               mechanism=spec.mechanism))
    finally:
        payload.destroy()
    record["ct"] = ct.hex()
    try:
        with pkcs11_step(f"unwrap ({record['mechanism']})", consumer.cluster):
            back = _op(consumer, consumer.key, "unwrap_key")(
                ObjectClass.SECRET_KEY, KeyType.AES, ct, label=_PAYLOAD_LABEL, store=False,
                mechanism=spec.mechanism,
                template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    except TokenError as exc:  # the integrity check of AES key wrap failed
        record["ok"] = False
        record["comment"] = f"{consumer.cluster} refuses it ({exc}): different key material"
        return
    try:
        with pkcs11_step(f"wrap again ({record['mechanism']})", consumer.cluster):
            rewrap = _op(consumer, consumer.key, "wrap_key")
            again = bytes(rewrap(back, mechanism=spec.mechanism))
    finally:
        back.destroy()
    record["ok"] = again == ct
    record["comment"] = ("unwraps, and wraps again to the same bytes" if record["ok"]
                         else "unwraps to another key: different key material")


_RUNNERS: dict[type, Callable[..., None]] = {
    Cipher: _cipher, Mac: _mac, RsaSig: _rsa_sig, RsaOaep: _rsa_oaep, Ecdsa: _ecdsa,
    KeyWrap: _key_wrap,
}
