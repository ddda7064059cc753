"""The bare loop the benches compare keyparity with: the PKCS #11 calls keyparity makes for an
AES key, written out as plain python-pkcs11, with no keyparity code in between.

``Bare.migrate`` is what ``Migrator.ensure`` does (``keyparity bench``): the source's output
over a fresh 32-byte challenge before the write and the target's over the same challenge after
it (keyparity.hsm.proof: AES-ECB decryption of the challenge, SHA-256 of each output);
``Bare.prove_all`` adds what the suites do for the key after it has moved (``keyparity bench
--pytest``): the preflight read of the source key, the proof again over a challenge of its
own, every default AES vector in both directions, and the attribute reads on both sides.
``Bare.census`` is the census: one enumeration of each token, class, label and CKA_ID read per
object, and each source secret key's output over the census's challenge.
"""
from __future__ import annotations

import hashlib
import os
import random
from typing import Any

from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error

from .. import vector_table
from ..hsm import attributes
from ..hsm.mechanisms import WrapParams
from ..hsm.vectors import DIRECTIONS
from .common import WRAPPING

# The same attribute lists the harness uses (data, not code): what is read from the source key
# and what is copied into the unwrap template.
_READ = attributes.READ[ObjectClass.SECRET_KEY]
_SETTABLE = attributes.SET_AT_UNWRAP[ObjectClass.SECRET_KEY]
# What keyparity reads apart from the one bulk C_GetAttributeValue (keyparity.hsm.attributes):
# values python-pkcs11 cannot decode (an empty CK_DATE, an unavailable key-generation
# mechanism), read one by one.
_APART = (Attribute.START_DATE, Attribute.END_DATE, Attribute.KEY_GEN_MECHANISM)
_BULK = [a for a in _READ if a not in _APART]
_EPHEMERAL = {Attribute.TOKEN: False, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True,
              Attribute.WRAP: True, Attribute.UNWRAP: True, Attribute.ENCRYPT: False,
              Attribute.DECRYPT: False}
_OAEP = WrapParams(WRAPPING.oaep_hash, WRAPPING.mgf, WRAPPING.aes_bits).oaep
# The AES vectors the suites run for an AES key that names none (the table's defaults).
_AES_VECTORS = tuple(vector_table.TABLE[name].params for name in vector_table.defaults("aes"))


def _read(key: Any) -> dict[Any, Any]:
    """The standard attributes of a secret key: one bulk read, the three others one by one
    (all one by one if the bulk read cannot be decoded), as keyparity does."""
    try:
        got, apart = key.get_attributes(_BULK), _APART
    except ValueError:
        got, apart = {}, _READ
    for attr in apart:
        try:
            got[attr] = key[attr]
        except ValueError:
            got[attr] = None
        except PKCS11Error:
            pass
    return got


def _proof(key: Any, challenge: bytes) -> str:
    """SHA-256 of the key's AES-ECB decryption of the challenge (the strong proof's)."""
    return hashlib.sha256(key.decrypt(challenge, mechanism=Mechanism.AES_ECB)).hexdigest()


class Bare:
    """Plain python-pkcs11 for AES keys: generate ephemeral AES, RSA-OAEP wrap,
    CKM_AES_KEY_WRAP_PAD wrap, destroy; RSA-OAEP unwrap, CKM_AES_KEY_WRAP_PAD unwrap with the
    same template, destroy; the same attribute reads; the proof's decryptions; the vectors.
    Source keys come from one enumeration, like the harness's index."""

    def __init__(self, lib: Any, source_label: str, target_label: str, target_pin: str,
                 source_pin: str | None = None) -> None:
        # A token already logged in by this process needs no second C_Login (login state is
        # per token and process): pass no pin for it.
        self.src = lib.get_token(token_label=source_label).open(user_pin=source_pin, rw=True)
        self.tgt = lib.get_token(token_label=target_label).open(user_pin=target_pin, rw=True)
        self.keys: dict[str, Any] = {}
        self.moved: dict[str, Any] = {}
        self.objects = 0
        self.public: Any = None
        self.private: Any = None
        self.temporary: list[Any] = []
        self.census_challenge = os.urandom(32)

    def enumerate(self) -> None:
        """One C_FindObjects pass per token, the label of each object read once."""
        for session in (self.src, self.tgt):
            for obj in session.get_objects():
                try:
                    label = obj[Attribute.LABEL]
                except PKCS11Error:
                    continue
                self.objects += 1
                if session is self.src and obj.object_class is ObjectClass.SECRET_KEY:
                    self.keys[label] = obj

    def census(self) -> int:
        """One enumeration of each token, class, label and CKA_ID read per object, and each
        source secret key's output over the census's one challenge (as the census commits to
        its material, at the start and again at the end); returns the number of objects seen."""
        seen = 0
        for session in (self.src, self.tgt):
            for obj in list(session.get_objects()):  # (no decryption while C_FindObjects runs)
                try:
                    obj.get_attributes([Attribute.CLASS, Attribute.LABEL, Attribute.ID])
                except PKCS11Error:
                    pass
                if session is self.src and obj.object_class is ObjectClass.SECRET_KEY:
                    _proof(obj, self.census_challenge)
                seen += 1
        return seen

    def wrapping_pair(self) -> None:
        """An RSA pair on the target, its public half imported on the source (session objects)."""
        pub, self.private = self.tgt.generate_keypair(
            KeyType.RSA, WRAPPING.rsa_bits, store=False, label="bench-bare-wrap",
            public_template={Attribute.WRAP: True, Attribute.ENCRYPT: False,
                             Attribute.VERIFY: False},
            private_template={Attribute.UNWRAP: True, Attribute.DECRYPT: False,
                              Attribute.SIGN: False, Attribute.SENSITIVE: True,
                              Attribute.EXTRACTABLE: False})
        self.public = self.src.create_object({
            Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA,
            Attribute.TOKEN: False, Attribute.LABEL: "bench-bare-wrap", Attribute.WRAP: True,
            Attribute.ENCRYPT: False, Attribute.VERIFY: False,
            Attribute.MODULUS: pub[Attribute.MODULUS],
            Attribute.PUBLIC_EXPONENT: pub[Attribute.PUBLIC_EXPONENT]})
        self.temporary = [pub, self.private, self.public]

    def migrate(self, label: str) -> tuple[str, str]:
        """Move one key; returns the SHA-256 of the source's and the target's output over one
        challenge (the source's made before the write, as the harness journals it)."""
        key = self.keys[label]
        challenge = os.urandom(32)
        before = _proof(key, challenge)
        got = _read(key)
        if got.get(Attribute.EXTRACTABLE) is not True:
            raise RuntimeError(f"bare loop: {label} is not extractable")
        template = {a: got[a] for a in _SETTABLE if a in got}
        template[Attribute.TOKEN] = True
        template[Attribute.LABEL] = label
        ephemeral = self.src.generate_key(KeyType.AES, WRAPPING.aes_bits, store=False,
                                          template=_EPHEMERAL)
        head = self.public.wrap_key(ephemeral, mechanism=Mechanism.RSA_PKCS_OAEP,
                                    mechanism_param=_OAEP)
        tail = ephemeral.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        ephemeral.destroy()
        ephemeral = self.private.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, head,
                                            mechanism=Mechanism.RSA_PKCS_OAEP,
                                            mechanism_param=_OAEP, store=False,
                                            template=_EPHEMERAL)
        moved = ephemeral.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, tail, label=label,
                                     mechanism=Mechanism.AES_KEY_WRAP_PAD, template=template)
        ephemeral.destroy()
        self.moved[label] = moved
        return before, _proof(moved, challenge)

    def prove_all(self, label: str, seed: int) -> bool:
        """After ``migrate``: what the suites do for the key. The preflight read of the source
        key; the proof again over a challenge of its own; each default AES vector produced on
        one side and consumed on the other, both directions; the attribute reads on both sides.
        True when all agree."""
        key, moved = self.keys[label], self.moved[label]
        ok = _read(key).get(Attribute.EXTRACTABLE) is True
        challenge = os.urandom(32)
        ok = _proof(key, challenge) == _proof(moved, challenge) and ok
        for spec in _AES_VECTORS:
            for direction in DIRECTIONS:
                producer, consumer = (key, moved) if direction == DIRECTIONS[0] else (moved, key)
                rng = random.Random(f"{seed}/{label}/{spec.mechanism}/{direction}")
                msg, iv, aad = rng.randbytes(spec.msg), rng.randbytes(spec.iv), \
                    rng.randbytes(spec.aad)
                param = spec.param(iv, aad)
                out = producer.encrypt(msg, mechanism=spec.mechanism, mechanism_param=param)
                back = consumer.decrypt(out, mechanism=spec.mechanism, mechanism_param=param)
                ok = back == msg and ok
        source, target = _read(key), _read(moved)
        return ok and source[Attribute.LABEL] == target[Attribute.LABEL]

    def close(self) -> None:
        for obj in reversed(self.temporary):
            try:
                obj.destroy()
            except PKCS11Error:
                pass
        self.temporary.clear()
        for session in (self.src, self.tgt):
            try:
                session.close()
            except PKCS11Error:
                pass


def slice_loop(lib: Any, source: str, target: str, pins: dict[str, str], labels: list[str],
               seed: int, census: bool = False) -> int:
    """The bare loop over ``labels`` (all of the keys, or one process's share of a split loop):
    its own sessions, enumeration and wrapping pair, then each key moved and proven; with
    ``census``, the census before and after, as a run takes it. Returns how many keys agreed
    everywhere. Each loop logs in to both of its tokens (closing the last session logs out)."""
    bare = Bare(lib, source, target, pins[target], source_pin=pins[source])
    proven = 0
    try:
        bare.enumerate()
        bare.wrapping_pair()
        if census:
            bare.census()
        for label in labels:
            source_kcv, target_kcv = bare.migrate(label)
            proven += source_kcv == target_kcv and bare.prove_all(label, seed)
        if census:
            bare.census()
    finally:
        bare.close()
    return proven
