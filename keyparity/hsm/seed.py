"""Seed a source token with an inventory's keys (the demo, tests and the benchmark use it).

Keys are generated inside the token; their values are never seen here.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

from pkcs11 import Attribute, KeyType
from pkcs11.types import Session
from pkcs11.util.ec import encode_named_curve_parameters

from ..keytypes import KEY_TYPES, key_class
from ..profile import KeySpec

def key_id(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()[:8]


def create(session: Session, spec: KeySpec, *, extractable: bool | None = None,
           label: str | None = None) -> None:
    """Generate one inventory key (a pair for rsa/ec) on the token, as a token object."""
    label = label or spec.label
    extractable = spec.disposition != "rotate" if extractable is None else extractable
    common = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: extractable,
              Attribute.PRIVATE: True, Attribute.MODIFIABLE: True}
    kid = key_id(label)
    if spec.type == "rsa":
        session.generate_keypair(
            KeyType.RSA, spec.size, store=True, label=label, id=kid,
            public_template={Attribute.VERIFY: True, Attribute.ENCRYPT: True, Attribute.WRAP: False},
            private_template={**common, Attribute.SIGN: True, Attribute.DECRYPT: True,
                              Attribute.UNWRAP: False})
    elif spec.type == "ec":
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(spec.curve)},
            local=True)
        params.generate_keypair(
            store=True, label=label, id=kid,
            public_template={Attribute.VERIFY: True},
            private_template={**common, Attribute.SIGN: True, Attribute.DERIVE: False})
    else:
        mac = spec.type == "generic-secret"
        session.generate_key(
            KEY_TYPES[spec.type].pkcs11, spec.size or KEY_TYPES[spec.type].stored_bits, store=True, label=label, id=kid,
            template={**common, Attribute.ENCRYPT: not mac, Attribute.DECRYPT: not mac,
                      Attribute.SIGN: True, Attribute.VERIFY: True, Attribute.WRAP: False,
                      Attribute.UNWRAP: False, Attribute.DERIVE: False})


def seed(session: Session, specs: Iterable[KeySpec]) -> list[str]:
    """Create every inventory key that the token does not hold yet; returns the labels created."""
    existing = {obj[Attribute.LABEL] for obj in session.get_objects()}
    created = []
    for spec in specs:
        if spec.label not in existing:
            create(session, spec)
            created.append(spec.label)
    return created


__all__ = ["create", "seed", "key_id", "key_class"]
