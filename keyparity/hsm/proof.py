"""The proof that key material is the same, strong enough to act on: at least 128 bits of
token output over a random challenge made for that proof. Everything that acts on identity -
the migration's proof, the signed plan and the run's checks against it, the census's start and
end, ``retire``, ``cleanup``, the baseline and its re-verify - proves it here. The 3-byte KCV
(keyparity.hsm.identity) is for display and for CloudHSM's check-value only: three bytes
collide by brute force in a second.

Secret keys: the token computes over a 32-byte challenge (``os.urandom``) with the first
method of ``METHODS`` that every key involved permits; both sides use the same one:

* AES: ECB decryption of the challenge's two blocks (256 bits), else ECB encryption, else
  AES-CMAC of it (128 bits), else - a key that may only wrap - C_WrapKey (CKM_AES_KEY_WRAP,
  RFC 3394, deterministic) of a session AES-256 key whose value is the challenge (320 bits);
* 3DES (two- and three-key): DES3-ECB decryption of the challenge's four blocks (256 bits),
  else encryption, else DES3-CMAC of each 8-byte block (4 x 64 bits);
* a generic secret: HMAC-SHA256 of the challenge (256 bits).

Decryption comes first: ECB decryption is as much a keyed permutation as encryption, and it is
what a FIPS cluster still does with a 3DES key (it no longer encrypts with one) and what a key
kept only to process what it protected still permits. A key that permits none of its type's
methods (a DES key that may only wrap: no token here wraps with 3DES) cannot be proven: the
caller is told so (NotProvable) and acts as on a mismatch - nothing is destroyed, approved or
signed on it.

Key pairs: the SHA-256 of the SubjectPublicKeyInfo (RSA: from CKA_MODULUS and
CKA_PUBLIC_EXPONENT; EC: from the public object) is equal wherever a side exposes it, AND each
private half answers the challenge: it signs it (SHA256-RSA-PKCS, ECDSA over SHA-256) or, an
RSA key that may not sign, decrypts an RSA-OAEP (SHA-1: all SoftHSM accepts) encryption of it
made in software; the answer is checked in software with the other side's public key (an EC
private key alone exposes no public point: it answers for the public key the other side shows).

What is recorded never holds a token's output (a chosen plaintext/ciphertext pair of a
production key): the method, the challenge (hex), the number of bits and the SHA-256 of each
side's output, a commitment an auditor can recompute on the HSM over the same challenge. A
value fixed in advance (the plan, a baseline, a census, a journal entry) is a ``Commitment``: a
secret key's SHA-256 of its output over a challenge stored with it, a pair's public key (and
its SHA-256), against which a fresh answer is checked later (``check``).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
import pkcs11.exceptions as p11
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.types import Key

from ..errors import (KeyMismatch, KeyNotFound, NotPermitted, TokenError,
                      pkcs11_step)
from ..keytypes import KEY_TYPES
from . import direct, identity, keyinfo
from .locate import Side

CHALLENGE_BYTES = 32
MIN_BITS = 128
PAIR = "spki-sha256+answer"  # a key pair's method, by name
PAIR_TEXT = ("SHA-256 of the public key (SubjectPublicKeyInfo), equal on both sides, and each "
             "private key's signature or decryption over the challenge, checked in software "
             "with the other side's public key")
_OAEP_SHA1 = (Mechanism.SHA_1, MGF.SHA1, None)
# what a token answers for an RSA-OAEP ciphertext that its key did not make (SoftHSM:
# CKR_GENERAL_ERROR); anything else (a lost session, a refusal) is the token's error
_NOT_DECRYPTED = (p11.GeneralError, p11.EncryptedDataInvalid, p11.EncryptedDataLenRange)
_WRAP_LABEL = "keyparity-proof"


class NotProvable(NotPermitted):
    """No method of the strong proof is permitted for this key (or these keys): its material
    cannot be proven, so nothing may act on it."""


def challenge() -> bytes:
    """A fresh random challenge: made for one proof, never reused for another."""
    return os.urandom(CHALLENGE_BYTES)


# ---- secret keys --------------------------------------------------------------------------

@dataclass(frozen=True)
class Method:
    """One way a token computes over a challenge with a secret key."""

    name: str        # recorded, and how a commitment names its method
    op: str          # the python-pkcs11 method the key must have: decrypt encrypt sign wrap_key
    mechanism: Mechanism
    text: str        # for the evidence

    def compute(self, key: Key, data: bytes, where: str) -> bytes:
        """The token's output over ``data`` (NotPermitted: the key may not do it)."""
        run = getattr(key, self.op, None)
        if run is None:
            raise NotProvable(f"the key on {where} may not {self.op.split('_')[0]} "
                               f"(CKA_{self.op.split('_')[0].upper()} is false there): "
                               f"its material cannot be proven by {self.text}")
        run = direct.fast(key, self.op, run)
        with pkcs11_step(f"prove the key material ({self.name})", where):
            if self.op == "wrap_key":
                return _wrap(key.session, run, self.mechanism, data)
            if self.mechanism is Mechanism.DES3_CMAC:  # 64 bits a MAC: one per block
                return b"".join(bytes(run(data[i:i + 8], mechanism=self.mechanism))
                                for i in range(0, len(data), 8))
            return bytes(run(data, mechanism=self.mechanism))


def _wrap(session: Any, wrap: Callable[..., Any], mechanism: Mechanism, data: bytes) -> bytes:
    """C_WrapKey (``wrap``: the key's) of a session AES key whose value is ``data`` (the
    challenge: test data, not key material), made in the key's ``session`` and destroyed at
    once: the proof's own object."""
    session_key = session.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
        Attribute.TOKEN: False, Attribute.LABEL: _WRAP_LABEL, Attribute.VALUE: bytes(data),
        Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    try:
        return bytes(wrap(session_key, mechanism=mechanism))
    finally:
        session_key.destroy()  # keyparity.hsm.destruction's "own" kind: it imports this module


_AES = (Method("aes-ecb-decrypt", "decrypt", Mechanism.AES_ECB,
               "AES-ECB decryption of the challenge's blocks"),
        Method("aes-ecb-encrypt", "encrypt", Mechanism.AES_ECB,
               "AES-ECB encryption of the challenge's blocks"),
        Method("aes-cmac", "sign", Mechanism.AES_CMAC, "AES-CMAC of the challenge"),
        Method("aes-key-wrap", "wrap_key", Mechanism.AES_KEY_WRAP,
               "C_WrapKey (CKM_AES_KEY_WRAP) of a session AES key whose value is the "
               "challenge"))
_DES = (Method("des3-ecb-decrypt", "decrypt", Mechanism.DES3_ECB,
               "DES3-ECB decryption of the challenge's blocks"),
        Method("des3-ecb-encrypt", "encrypt", Mechanism.DES3_ECB,
               "DES3-ECB encryption of the challenge's blocks"),
        Method("des3-cmac", "sign", Mechanism.DES3_CMAC,
               "DES3-CMAC of each 8-byte block of the challenge"))
BY_NAME = {m.name: m for m in (*_AES, *_DES, Method("hmac-sha256", "sign", Mechanism.SHA256_HMAC,
                                                   "HMAC-SHA256 of the challenge"))}
# the methods of each key type, as keyparity.keytypes lists them
METHODS: dict[KeyType, tuple[Method, ...]] = {
    t.pkcs11: tuple(BY_NAME[name] for name in t.proof_methods)
    for t in KEY_TYPES.values() if t.proof_methods}


def choose(keys: Sequence[Key], where: str) -> Method:
    """The first method of the keys' type that every one of them permits (NotProvable when
    there is none, or the keys are not of one type)."""
    types = {direct.key_type(k) for k in keys}
    if len(types) != 1:
        raise NotProvable(f"keys of different types on {where} ("
                          f"{', '.join(sorted(t.name for t in types))}): other key material")
    (key_type,) = types
    methods = METHODS.get(key_type, ())
    for method in methods:
        if all(hasattr(k, method.op) for k in keys):
            return method
    tried = ", ".join(m.name for m in methods) or "none exists"
    raise NotProvable(f"no strong proof of a {key_type.name} key is permitted on {where} "
                      f"(tried: {tried}): its material cannot be proven")


def _output(method: Method, key: Key, data: bytes, where: str) -> bytes:
    out = method.compute(key, data, where)
    if len(out) * 8 < MIN_BITS:  # a table error, never a weak proof
        raise NotProvable(f"{method.name} gave {len(out) * 8} bits on {where}: fewer than "
                          f"{MIN_BITS}, not a proof")
    return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- key pairs ----------------------------------------------------------------------------

def spki(key: Key | None, curve: str | None) -> bytes | None:
    """The DER SubjectPublicKeyInfo a key object exposes (an RSA object of either half, an EC
    public object); None for an EC private key (it exposes no public point)."""
    if key is None:
        return None
    if key.key_type == KeyType.RSA:
        public: Any = identity.rsa_public(key)
    elif key.key_type == KeyType.EC and key.object_class == ObjectClass.PUBLIC_KEY and curve:
        public = identity.ec_public(key, curve)
    else:
        return None
    return public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def answers(private: Key, public_der: bytes, data: bytes, where: str) -> tuple[bool, str, int]:
    """Whether the private key object answers ``data`` so that the public key ``public_der``
    accepts it, how, and the bits of the answer (NotProvable: it may neither sign nor
    decrypt)."""
    public = serialization.load_der_public_key(public_der)
    if private.key_type == KeyType.RSA and isinstance(public, rsa.RSAPublicKey):
        if hasattr(private, "sign"):
            with pkcs11_step("prove the key material (RSA signature)", where):
                sig = bytes(direct.fast(private, "sign", private.sign)(
                    data, mechanism=Mechanism.SHA256_RSA_PKCS))
            try:
                public.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
                return True, "SHA256-RSA-PKCS signature", len(sig) * 8
            except InvalidSignature:
                return False, "SHA256-RSA-PKCS signature", len(sig) * 8
        if hasattr(private, "decrypt"):
            sealed = public.encrypt(data, padding.OAEP(padding.MGF1(hashes.SHA1()),
                                                       hashes.SHA1(), None))
            with pkcs11_step("prove the key material (RSA-OAEP decryption)", where):
                try:
                    back = bytes(direct.fast(private, "decrypt", private.decrypt)(
                        sealed, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=_OAEP_SHA1))
                except _NOT_DECRYPTED:  # padding that does not check out: another key
                    return False, "RSA-OAEP decryption", len(data) * 8
            return back == data, "RSA-OAEP decryption", len(data) * 8
    elif private.key_type == KeyType.EC and isinstance(public, ec.EllipticCurvePublicKey):
        if hasattr(private, "sign"):
            ok = identity.signs(private, public, where, challenge=data)
            return ok, "ECDSA-SHA256 signature", 2 * ((public.curve.key_size + 7) // 8) * 8
    else:
        return False, f"a {private.key_type.name} key against another public key", 0
    raise NotProvable(f"the {private.key_type.name} private key on {where} may neither sign nor "
                      "decrypt: its material cannot be proven")


# ---- what is recorded ---------------------------------------------------------------------

@dataclass(frozen=True)
class Commitment:
    """A key's material fixed in advance: a secret key's SHA-256 of its output over
    ``challenge`` by ``method``; a pair's SubjectPublicKeyInfo (``public_key``, hex) and its
    SHA-256 (the private half answered ``challenge`` when it was made)."""

    method: str
    challenge: str   # hex
    bits: int
    sha256: str
    public_key: str | None = None

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "challenge": self.challenge,
                               "bits": self.bits, "sha256": self.sha256}
        if self.public_key is not None:
            out["public_key"] = self.public_key
        return out

    def token(self) -> str:
        """One line for a journal entry (the public key left out: its SHA-256 is kept)."""
        return json.dumps({k: v for k, v in self.record().items() if k != "public_key"},
                          sort_keys=True, separators=(",", ":"))

    @classmethod
    def parse(cls, value: Any) -> Commitment:
        """A commitment back from its record or its journal token (ValueError otherwise)."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError(f"not a commitment: {value[:40]!r}") from None
        if not isinstance(value, dict):
            raise ValueError(f"not a commitment: {type(value).__name__}")
        try:
            made = cls(str(value["method"]), str(value["challenge"]), int(value["bits"]),
                       str(value["sha256"]), value.get("public_key"))
            bytes.fromhex(made.challenge)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a commitment ({type(exc).__name__}: {exc})") from None
        if made.method != PAIR and made.method not in BY_NAME:
            raise ValueError(f"not a commitment: unknown method {made.method!r}")
        return made

    @property
    def text(self) -> str:
        return BY_NAME[self.method].text if self.method in BY_NAME else PAIR_TEXT


def commit(side: Side, data: bytes | None = None) -> Commitment:
    """Fix the material of the key on ``side`` now, over ``data`` (default: a fresh
    challenge). A pair's private half must answer the challenge with its own public key (its
    public object, or an RSA key's modulus), else KeyMismatch."""
    data = challenge() if data is None else data
    key, where, public, curve = side.key, side.cluster, side.public, side.curve
    if key.object_class == ObjectClass.SECRET_KEY:
        method = choose([key], where)
        out = _output(method, key, data, where)
        return Commitment(method.name, data.hex(), len(out) * 8, _sha(out))
    der = spki(public, curve) or spki(key, curve)
    if der is None:
        raise NotProvable(f"the {key.key_type.name} private key on {where} exposes no public "
                          "key and none is given: its material cannot be fixed")
    bits = 0  # a public object alone: its public key is all there is to fix
    if key.object_class == ObjectClass.PRIVATE_KEY:
        ok, how, bits = answers(key, der, data, where)
        if not ok:
            raise KeyMismatch(f"the private key on {where} does not answer for its own public "
                              f"key ({how} over the challenge does not verify)")
    return Commitment(PAIR, data.hex(), bits, _sha(der), der.hex())


def check(commitment: Commitment, side: Side) -> str:
    """The key on ``side`` holds the committed material (returns the SHA-256 found, equal to
    the committed one): KeyMismatch otherwise, NotProvable when the key may not compute what
    the commitment needs. A secret key recomputes over the stored challenge; a pair shows the
    committed public key (where it exposes one) and its private half answers a FRESH
    challenge that the committed public key accepts."""
    key, where, public, curve = side.key, side.cluster, side.public, side.curve
    if key.object_class == ObjectClass.SECRET_KEY:
        if commitment.method not in BY_NAME or BY_NAME[commitment.method] not in \
                METHODS.get(key.key_type, ()):
            raise KeyMismatch(f"the key on {where} is a {key.key_type.name} key; the "
                              f"commitment is of {commitment.method}: other key material")
        out = _output(BY_NAME[commitment.method], key, bytes.fromhex(commitment.challenge),
                      where)
        if _sha(out) != commitment.sha256:
            raise KeyMismatch(f"the key on {where} holds other key material: "
                              f"{commitment.method} over the challenge {commitment.challenge[:16]}"
                              f"... gives SHA-256 {_sha(out)[:16]}..., committed "
                              f"{commitment.sha256[:16]}...")
        return _sha(out)
    if commitment.method != PAIR:
        raise KeyMismatch(f"the key on {where} is a {key.key_type.name} key pair; the "
                          f"commitment is of {commitment.method}: other key material")
    shown = spki(public, curve) or spki(key, curve)
    committed = bytes.fromhex(commitment.public_key) if commitment.public_key else shown
    if committed is None:
        raise NotProvable(f"the {key.key_type.name} private key on {where} exposes no public "
                          "key and the commitment holds only its SHA-256: it cannot be proven")
    if _sha(committed) != commitment.sha256:
        raise KeyMismatch(f"the key on {where} has another public key than the committed one "
                          f"(SHA-256 {_sha(committed)[:16]}..., committed "
                          f"{commitment.sha256[:16]}...)")
    if shown is not None and shown != committed:
        raise KeyMismatch(f"the key on {where} has another public key (SHA-256 "
                          f"{_sha(shown)[:16]}..., committed {commitment.sha256[:16]}...)")
    if key.object_class == ObjectClass.PRIVATE_KEY:
        ok, how, _ = answers(key, committed, challenge(), where)
        if not ok:
            raise KeyMismatch(f"the private key on {where} holds other key material: its {how} "
                              "over a fresh challenge does not verify with the committed public "
                              "key")
    return _sha(committed)


@dataclass(frozen=True)
class Proof:
    """Two key objects proven to hold the same material, as the evidence records it."""

    method: str
    challenge: bytes
    bits: int
    source: str   # SHA-256 of the source's output, or of its public key
    target: str
    answers: dict[str, str] | None = None  # a pair: how each private half answered

    @property
    def match(self) -> bool:
        return self.source == self.target

    def record(self) -> dict[str, Any]:
        text = BY_NAME[self.method].text if self.method in BY_NAME else PAIR_TEXT
        out: dict[str, Any] = {"method": self.method, "description": text,
                               "challenge": self.challenge.hex(), "bits": self.bits,
                               "source": self.source, "target": self.target,
                               "match": self.match}
        if self.answers is not None:
            out["answers"] = dict(self.answers)
        return out

    def commitment(self) -> Commitment:
        """The material both sides were proven to hold, fixed (a journal entry's)."""
        return Commitment(self.method, self.challenge.hex(), self.bits, self.target)


def prove_key(spec: Any, source: Side, target: Side,
              started: Commitment | None = None) -> Proof:
    """``prove`` for an inventory key (``spec``: its KeySpec): an EC key needs its public
    object on one side (the source; the target holds the private key alone), and a token
    error is explained by the keys' sizes where they differ."""
    if spec.type == "ec" and source.public is None and target.public is None:
        raise KeyNotFound(f"no public key labelled {spec.label!r} on {source.cluster}: the EC "
                          "key cannot be proven without it")
    try:
        return prove(source, target, started)
    except KeyMismatch as exc:
        raise KeyMismatch(f"{spec.target_label!r} on {target.cluster} holds other key material "
                          f"than {spec.label!r} on {source.cluster}: {exc}",
                          identity=exc.identity) from exc
    except TokenError as exc:
        s, t = keyinfo.read(source.key), keyinfo.read(target.key)
        if s.size and t.size and s.size != t.size:
            raise KeyMismatch(f"{spec.target_label!r} on {target.cluster} is {t.describe()}; "
                              f"{spec.label!r} on {source.cluster} is {s.describe()}: other key "
                              "material") from exc
        raise


def prove(source: Side, target: Side, started: Commitment | None = None) -> Proof:
    """Prove that the keys on ``source`` and ``target`` hold the same key material;
    KeyMismatch when they do not, NotProvable when no method is permitted. ``started``: the
    source's commitment made for this proof just before (a migration makes it before the write
    and journals it): its challenge and the source's output are used, the target computes over
    the same challenge; otherwise a fresh challenge on both."""
    where = (source.cluster, target.cluster)
    if source.key.object_class == ObjectClass.SECRET_KEY:
        return _prove_secret(source.key, target.key, where, started)
    return _prove_pair(source.key, target.key, where, source.curve or target.curve,
                       source.public, target.public, started)


def _prove_secret(source: Key, target: Key, where: tuple[str, str],
                  started: Commitment | None) -> Proof:
    if target.object_class != ObjectClass.SECRET_KEY:
        raise KeyMismatch(f"the key on {where[1]} is not a secret key: other key material")
    both = f"{where[0]} and {where[1]}"
    method = choose([source, target], both)
    if started is not None and started.method == method.name:
        data, s = bytes.fromhex(started.challenge), started.sha256
    else:
        data = challenge()
        s = _sha(_output(method, source, data, where[0]))
    out = _output(method, target, data, where[1])
    proof = Proof(method.name, data, len(out) * 8, s, _sha(out))
    if not proof.match:
        raise KeyMismatch(f"{method.name} over the challenge {data.hex()[:16]}... gives SHA-256 "
                          f"{where[0]} {proof.source[:16]}..., {where[1]} {proof.target[:16]}"
                          "...: other key material", identity=proof.record())
    return proof


def _prove_pair(source: Key, target: Key, where: tuple[str, str], curve: str | None,
                source_public: Key | None, target_public: Key | None,
                started: Commitment | None) -> Proof:
    if target.object_class != ObjectClass.PRIVATE_KEY or target.key_type != source.key_type:
        raise KeyMismatch(f"the key on {where[1]} is not a {source.key_type.name} private key: "
                          "other key material")
    s_der = spki(source_public, curve) or spki(source, curve)
    t_der = spki(target_public, curve) or spki(target, curve)
    if s_der is None and t_der is None:
        raise NotProvable(f"neither {where[0]} nor {where[1]} exposes the public key: the "
                          "material cannot be proven")
    if s_der is not None and t_der is not None and s_der != t_der:
        raise KeyMismatch(f"the public key on {where[1]} is not the one on {where[0]} (SHA-256 "
                          f"{where[0]} {_sha(s_der)[:16]}..., {where[1]} {_sha(t_der)[:16]}...): "
                          "other key material", identity=Proof(PAIR, b"", 0, _sha(s_der),
                                                               _sha(t_der)).record())
    s_pub, t_pub = s_der or t_der, t_der or s_der
    assert s_pub is not None and t_pub is not None
    reuse = started is not None and started.method == PAIR and started.sha256 == _sha(s_pub)
    data = bytes.fromhex(started.challenge) if reuse and started else challenge()
    s_ok, s_how, s_bits = (True, "answered when its commitment was made", started.bits) \
        if reuse and started else answers(source, t_pub, data, where[0])
    t_ok, t_how, t_bits = answers(target, s_pub, data, where[1])
    for ok, how, here, other in ((s_ok, s_how, where[0], where[1]),
                                 (t_ok, t_how, where[1], where[0])):
        if not ok:
            raise KeyMismatch(f"the {how} over the challenge by the private key on {here} does "
                              f"not verify with the public key of {other}: other key material")
    return Proof(PAIR, data, min(s_bits, t_bits), _sha(s_pub), _sha(t_pub),
                 {"source": s_how, "target": t_how})
