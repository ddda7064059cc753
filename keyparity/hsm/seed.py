"""Seed a source token with an inventory's keys (the demo, tests and the benchmark use it).

Keys are generated inside the token; their values are never seen here.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

from pkcs11 import Attribute, KeyType
from pkcs11.types import Session
from pkcs11.util.ec import encode_named_curve_parameters

from .. import roles
from ..keytypes import KEY_TYPES, key_class
from ..profile import KeySpec
from .attributes import BY_NAME

# a pair's usage attributes: the private half's, the public half's
_PRIVATE_OPS, _PUBLIC_OPS = ("sign", "decrypt", "unwrap", "derive"), ("verify", "encrypt", "wrap")


def _usage(role: str, ops: tuple[str, ...]) -> dict:
    """The usage attributes among ``ops`` a key of ``role`` is made with (keyparity.roles):
    what its role permits, nothing else; {} for a key without a role (the defaults below)."""
    return {BY_NAME[op]: allowed for op, allowed in roles.usage(role).items() if op in ops}


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
            public_template={Attribute.VERIFY: True, Attribute.ENCRYPT: True, Attribute.WRAP: False,
                             **_usage(spec.role, _PUBLIC_OPS)},
            private_template={**common, Attribute.SIGN: True, Attribute.DECRYPT: True,
                              Attribute.UNWRAP: False, **_usage(spec.role, _PRIVATE_OPS)})
    elif spec.type == "ec":
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(spec.curve)},
            local=True)
        params.generate_keypair(
            store=True, label=label, id=kid,
            public_template={Attribute.VERIFY: True, **_usage(spec.role, ("verify",))},
            private_template={**common, Attribute.SIGN: True, Attribute.DERIVE: False,
                              **_usage(spec.role, ("sign", "derive"))})
    else:
        mac = spec.type == "generic-secret"
        session.generate_key(
            KEY_TYPES[spec.type].pkcs11, spec.size or KEY_TYPES[spec.type].stored_bits, store=True, label=label, id=kid,
            template={**common, Attribute.ENCRYPT: not mac, Attribute.DECRYPT: not mac,
                      Attribute.SIGN: True, Attribute.VERIFY: True, Attribute.WRAP: False,
                      Attribute.UNWRAP: False, Attribute.DERIVE: False,
                      **_usage(spec.role, roles.OPERATIONS)})


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
