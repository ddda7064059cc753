"""Known answers made by a key itself, for baseline and re-verify runs on ONE cluster across
time.

A baseline run calls ``make`` for each inventory key: for each of its vectors, one record of
what the key made of the seeded inputs of ``vectors`` (direction ``"baseline"``): a
ciphertext (AES, 3DES, RSA-OAEP), a MAC (HMAC) or a signature (RSA, ECDSA); and stores
``public_key`` once per key next to them (an asymmetric key's SubjectPublicKeyInfo). After an
in-place HSM type change or a restore from backup, ``check`` shows that the key still decrypts
the baseline's ciphertexts, verifies its MACs and signatures, and makes new signatures that
the baseline's public key accepts.

Nothing here encrypts, signs or verifies on its own: everything runs through
``vectors.exchange``, so the mechanism parameters, the seeded inputs and the verdicts are the
cross-cluster exchange's own:

* ``make``: the key on both ends; it makes the record and consumes it too, so that no record
  is kept that the key could not check later;
* ``check``: a stand-in producer that answers with what the baseline recorded (``_Recorded``),
  the key as the consumer; for signatures also the key as the producer of a fresh signature
  and the baseline's public key as the consumer (``_Published``, software only; an EC key:
  ``identity.signs``, a fresh challenge).

A record holds the seeded inputs (test data, kept), the outputs and the seed; never key
material. ``result`` is "valid" or "n/a"; ``ok`` is True or False for a valid one (a check:
whether it held), None for n/a. Not applicable, with the reason (never an exception):

* a key whose attributes forbid what the vector needs (CKA_ENCRYPT false...): it is still
  baselined by its KCV and attributes;
* a 3DES vector on a cluster in FIPS mode (``policy.producer_restriction``): such a cluster
  does not produce 3DES, so it records no 3DES known answer. A 3DES record made while the
  cluster was NON_FIPS is still checked once it is FIPS: decrypting legacy data stays allowed;
* ECDSA for an EC private key alone: it exposes no public point, so there is no public key to
  record and nothing to verify its signatures with later.
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType

from . import identity
from ..errors import NotPermitted, operation
from ..vector_table import TABLE, Cipher, Ecdsa, KeyWrap, Mac, RsaOaep, RsaSig
from .locate import Side
from .vectors import DIRECTIONS, NotApplicable, exchange

DIRECTION = "baseline"   # the direction string of the seeded inputs
FRESH = "re-verify"      # ... of a fresh signature's (with a random seed)
BASELINE = "the baseline"
KINDS = {Cipher: "ciphertext", RsaOaep: "ciphertext", Mac: "mac", RsaSig: "signature",
         Ecdsa: "signature", KeyWrap: "wrapped key"}
_INPUTS, _OUTPUTS = ("msg", "iv", "aad"), ("ct", "tag", "sig")
# per kind: (object, operation, needed to check too); "public" only where the side has one
_NEEDS: dict[type, tuple[tuple[str, str, bool], ...]] = {
    Cipher: (("key", "encrypt", False), ("key", "decrypt", True)),
    Mac: (("key", "sign", True), ("key", "verify", True)),
    RsaSig: (("key", "sign", True), ("public", "verify", True)),
    RsaOaep: (("public", "encrypt", False), ("key", "decrypt", True)),
    Ecdsa: (("key", "sign", True), ("public", "verify", True)),
    KeyWrap: (("key", "wrap_key", True), ("key", "unwrap_key", True)),
}
MAKE_PURPOSE = "no known answer is recorded for it; the key is baselined by its KCV and attributes"
CHECK_PURPOSE = "the baseline's known answer cannot be checked"


def public_key(side: Side) -> str | None:
    """The SubjectPublicKeyInfo (DER, hex) of an RSA key (its public object, or CKA_MODULUS and
    CKA_PUBLIC_EXPONENT of the private key) or of an EC key with its public object; None for
    a secret key or an EC private key alone. A baseline stores it once per key."""
    if side.key.key_type == KeyType.RSA:
        key: Any = identity.rsa_public(side.public or side.key)
    elif side.key.key_type == KeyType.EC and side.public is not None and side.curve:
        key = identity.ec_public(side.public, side.curve)
    else:
        return None
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo).hex()


def _run(vector: str, direction: str, producer: Side, consumer: Side,
         **kwargs: Any) -> dict[str, Any]:
    """``exchange`` with ``producer`` making and ``consumer`` taking, for a direction of ours:
    any direction but "source->target" has the exchange's target produce."""
    if direction in DIRECTIONS:
        raise ValueError(f"{direction!r} is a cross-cluster direction")
    return exchange(vector, direction, consumer, producer, **kwargs)


def _permitted(side: Side, spec: Any, purpose: str, *, making: bool) -> None:
    """NotPermitted when the key's (or its public object's) attributes forbid a step."""
    for name, op, checking in _NEEDS[type(spec)]:
        obj = getattr(side, name)
        if obj is not None and (making or checking):
            operation(obj, op, side.cluster, purpose)


def make(side: Side, vectors: Sequence[str], *, label: str, seed: int) -> list[dict[str, Any]]:
    """One known-answer record per vector, made by the key on ``side`` alone from the seeded
    inputs of (``seed``, ``label``, vector, "baseline"). Token failures raise."""
    records: list[dict[str, Any]] = []
    for tc_id, vector in enumerate(vectors, 1):
        spec = TABLE[vector].params
        head = {"tcId": tc_id, "keyLabel": label, "seed": seed, "vector": vector,
                "kind": KINDS[type(spec)]}
        try:
            if isinstance(spec, KeyWrap):
                raise NotApplicable("a key-encrypting key's wrap is not replayed from a record "
                                    "(the stand-in producer makes no session key)")
            if isinstance(spec, Ecdsa) and side.public is None:
                raise NotApplicable(f"{side.cluster} holds only the EC private key, which exposes "
                                    "no public point: no public key to record, nothing to "
                                    "verify its signatures with later")
            _permitted(side, spec, MAKE_PURPOSE, making=True)
            made = _run(vector, DIRECTION, side, side, label=label, seed=seed, tc_id=tc_id)
        except (NotApplicable, NotPermitted) as exc:
            records.append(head | {"mechanism": f"CKM_{TABLE[vector].needs.name}",
                                   "producer": side.cluster, "result": "n/a", "ok": None,
                                   "comment": str(exc)})
            continue
        kept = ("mechanism", "producer", *_INPUTS, *_OUTPUTS)
        records.append(head | {k: made[k] for k in kept if k in made} | {
            "result": "valid", "ok": made["ok"],
            "comment": f"made by {side.cluster}, which consumes it too: {made['comment']}"})
    return records


class _Recorded:
    """Stands in for the key that made a baseline record: encrypting or signing gives what the
    record holds, so that ``exchange`` has the consumer take the baseline's output."""

    def __init__(self, out: bytes) -> None:
        self.out = out

    def encrypt(self, *_: Any, **__: Any) -> bytes:
        return self.out

    sign = encrypt


class _Published:
    """The baseline's RSA public key where ``exchange`` reads a key object's CKA_MODULUS and
    CKA_PUBLIC_EXPONENT (``identity.rsa_public``)."""

    def __init__(self, key: rsa.RSAPublicKey) -> None:
        n = key.public_numbers()
        self._values = {Attribute.MODULUS: n.n.to_bytes((n.n.bit_length() + 7) // 8, "big"),
                        Attribute.PUBLIC_EXPONENT: n.e.to_bytes((n.e.bit_length() + 7) // 8,
                                                                "big")}

    def __getitem__(self, attribute: Attribute) -> bytes:
        return self._values[attribute]


def _replay(side: Side, rec: dict[str, Any]) -> tuple[bool, str]:
    """The key on ``side`` consumes the baseline's output, as the consumer of an exchange."""
    out = b"".join(bytes.fromhex(rec.get(f, "")) for f in _OUTPUTS)
    got = _run(rec["vector"], DIRECTION, Side(_Recorded(out), _Recorded(out), BASELINE), side,
               label=rec["keyLabel"], seed=rec["seed"], tc_id=rec["tcId"])
    edited = [f for f in _INPUTS if got.get(f, "") != rec.get(f, "")]
    if edited:
        return False, (f"its {'/'.join(edited)} is not the seeded input of seed {rec['seed']}, "
                       f"label {rec['keyLabel']!r}: the record was edited")
    return got["ok"], got["comment"]


def _baseline_key(public: str | None) -> Any:
    return None if public is None else serialization.load_der_public_key(bytes.fromhex(public))


def _signature(spec: RsaSig | Ecdsa, side: Side, rec: dict[str, Any],
               public: str | None) -> tuple[bool, str]:
    """The recorded signature verifies (on the token where there is a public object), and a
    fresh one by the key verifies with the baseline's public key."""
    key, where = _baseline_key(public), side.cluster
    wanted, name = ((rsa.RSAPublicKey, "RSA") if isinstance(spec, RsaSig)
                    else (ec.EllipticCurvePublicKey, "EC"))
    if not isinstance(key, wanted):
        return False, f"{BASELINE} holds no {name} public key to check a fresh signature with"
    if isinstance(spec, Ecdsa) and side.public is None:
        digest = hashlib.new(spec.hash, bytes.fromhex(rec["msg"])).digest()
        ok = identity.ecdsa_verifies(key, bytes.fromhex(rec["sig"]), digest, spec.hash)
        said = (f"no public key object on {where}; software, with {BASELINE}'s public key: "
                f"{'valid' if ok else 'INVALID'}")
    else:
        ok, said = _replay(side, rec)
    if isinstance(spec, RsaSig):
        fresh = _run(rec["vector"], FRESH, side, Side(_Published(key), None, BASELINE),
                     label=rec["keyLabel"], seed=secrets.randbits(64), tc_id=rec["tcId"])
        new, news = fresh["ok"], fresh["comment"]
    else:
        new = identity.signs(side.key, key, where)
        news = (f"over a random challenge, software, with {BASELINE}'s public key: "
                f"{'valid' if new else 'INVALID'}")
    return ok and new, f"the baseline signature: {said}; a fresh signature by {where}: {news}"


def _mac(side: Side, rec: dict[str, Any]) -> tuple[bool, str]:
    """The key verifies the recorded MAC, and (HMAC is deterministic) makes the same again."""
    ok, said = _replay(side, rec)
    fresh = _run(rec["vector"], DIRECTION, side, side, label=rec["keyLabel"],
                 seed=rec["seed"], tc_id=rec["tcId"])
    same = fresh["tag"] == rec.get("tag")
    return ok and same, (f"the baseline MAC: {said} on {side.cluster}; a fresh MAC by "
                         f"{side.cluster} {'equals it' if same else 'DIFFERS'}")


def check(side: Side, records: Sequence[dict[str, Any]], *,
          public_key: str | None = None) -> list[dict[str, Any]]:
    """Check a key's baseline records against the key on ``side``, one result per record.
    ``public_key``: the baseline's SubjectPublicKeyInfo of the key (hex; ``public_key()``),
    needed for signature records. Failures are results with ``ok`` False; token failures
    raise."""
    results = []
    for rec in records:
        spec = TABLE[rec["vector"]].params
        out = {k: rec[k] for k in ("tcId", "keyLabel", "vector", "kind", "mechanism") if k in rec}
        out["cluster"] = side.cluster
        if rec.get("result") == "n/a":
            results.append(out | {"result": "n/a", "ok": None, "comment": rec["comment"]})
            continue
        if rec.get("ok") is not True:
            results.append(out | {"result": "valid", "ok": False, "comment": "the baseline "
                                  f"record did not hold when it was made: {rec.get('comment')}"})
            continue
        try:
            _permitted(side, spec, CHECK_PURPOSE, making=False)
            if isinstance(spec, Mac):
                ok, said = _mac(side, rec)
            elif isinstance(spec, (RsaSig, Ecdsa)):
                ok, said = _signature(spec, side, rec, public_key)
            else:
                ok, said = _replay(side, rec)
                said = f"the baseline ciphertext: {said}"
        except NotPermitted as exc:
            ok, said = False, str(exc)
        results.append(out | {"result": "valid", "ok": ok, "comment": said})
    return results
