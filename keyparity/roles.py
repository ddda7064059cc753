"""Key roles: what a key is for, and so what it may do (the one table).

A payment or data key has one purpose (PCI DSS v4.0 3.6.1 and 3.7; PCI PIN v3.1 key
separation; NIST SP 800-57 Part 1 5.2: "a single key shall be used for only one purpose").
``keys[].role`` names it; the attributes suite checks the TARGET key's usage attributes against
it after the move (``violations``), the profile keeps only the vectors the role permits
(``permits``), and the demo's seeding gives each key exactly its role's usage (``usage``).

The operations are PKCS #11's usage attributes over both halves of a pair: a private key's
sign, decrypt, unwrap and derive, its public key's verify, encrypt and wrap.

``unspecified`` is the role of a key whose profile names none: nothing is checked, and the
evidence says so. A test environment may leave roles out (a warning, and the key's role check
skips saying why); a production profile must name every key's role (keyparity.profile).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPERATIONS = ("encrypt", "decrypt", "sign", "verify", "wrap", "unwrap", "derive")
UNSPECIFIED = "unspecified"
_SYMMETRIC = ("aes", "des2", "des3")
_PAIRS = ("rsa", "ec")


@dataclass(frozen=True)
class Role:
    name: str
    purpose: str                   # for people: the evidence and the report show it
    key_types: tuple[str, ...]     # the key types that may hold the role
    permits: frozenset[str]        # the operations a key of the role may do
    reference: str                 # where the separation is required

    @property
    def checked(self) -> bool:
        return self.name != UNSPECIFIED


_SEPARATION = "PCI DSS v4.0 3.6.1, 3.7.1; NIST SP 800-57 Part 1 5.2"
ROLES: dict[str, Role] = {r.name: r for r in (
    Role("data-encryption", "encrypts and decrypts data; never wraps keys, never MACs or signs",
         _SYMMETRIC, frozenset({"encrypt", "decrypt"}), _SEPARATION),
    Role("key-encryption", "wraps and unwraps other keys (KEK, ZMK); never encrypts data",
         (*_SYMMETRIC, "rsa"), frozenset({"wrap", "unwrap"}), _SEPARATION),
    Role("mac", "computes and verifies MACs only", (*_SYMMETRIC, "generic-secret"),
         frozenset({"sign", "verify"}), _SEPARATION),
    Role("pin", "encrypts and decrypts PIN blocks only (PEK); never wraps keys, never MACs",
         _SYMMETRIC, frozenset({"encrypt", "decrypt"}),
         "PCI PIN v3.1 Control Objective 5 (key usage and separation); " + _SEPARATION),
    Role("signing", "signs (the private half) and verifies (the public half) only", _PAIRS,
         frozenset({"sign", "verify"}), _SEPARATION),
    Role("ca", "signs certificates and CRLs only (the private half), verifies (the public half)",
         _PAIRS, frozenset({"sign", "verify"}), _SEPARATION),
    Role("tokenisation", "encrypts and decrypts tokenised data only; never wraps keys", ("aes",),
         frozenset({"encrypt", "decrypt"}), _SEPARATION),
    Role(UNSPECIFIED, "no role named: key usage is not checked",
         (*_SYMMETRIC, "generic-secret", *_PAIRS), frozenset(OPERATIONS),
         "a profile of a test environment only"),
)}
NAMES = tuple(ROLES)


def problem(role: str, key_type: str) -> str | None:
    """Why a key of ``key_type`` cannot hold ``role`` (None: it can)."""
    found = ROLES.get(role)
    if found is None:
        return f"unknown role {role!r} (one of: {', '.join(NAMES)})"
    if key_type not in found.key_types:
        return (f"a {key_type} key cannot hold the role {role} (it is for "
                f"{', '.join(found.key_types)} keys)")
    return None


def permits(role: str, operations: tuple[str, ...]) -> bool:
    """Whether a key of ``role`` may do every one of ``operations`` (a vector's)."""
    return set(operations) <= ROLES[role].permits


def usage(role: str) -> dict[str, bool]:
    """The usage attributes a key of ``role`` is made with: each operation its role permits,
    and none else (``unspecified``: an empty mapping, the maker's own defaults)."""
    found = ROLES[role]
    return {op: op in found.permits for op in OPERATIONS} if found.checked else {}


def violations(role: str, *attribute_sets: Mapping[str, Any]) -> list[str]:
    """What the key's usage attributes (of the key object, and of its public object for a
    pair) allow beyond its role, one line each; and a key that may do nothing its role needs.
    ``unspecified``: nothing."""
    found = ROLES[role]
    if not found.checked:
        return []
    allowed = {op for attrs in attribute_sets for op in OPERATIONS if attrs.get(op) is True}
    out = [f"{op}=true: a {role} key {found.purpose}" for op in OPERATIONS
           if op in allowed and op not in found.permits]
    if not allowed & found.permits:
        out.append(f"none of {', '.join(sorted(found.permits))} is true: the key cannot do what "
                   f"a {role} key is for")
    return out


def check(role: str, *attribute_sets: Mapping[str, Any]) -> dict[str, Any]:
    """The record of a key's role check (the evidence's ``role_check``): the role, what it
    permits, what the key may do, and each violation."""
    found = ROLES[role]
    allowed = sorted({op for attrs in attribute_sets for op in OPERATIONS
                      if attrs.get(op) is True}, key=OPERATIONS.index)
    out = {"role": role, "purpose": found.purpose, "checked": found.checked,
           "permits": sorted(found.permits, key=OPERATIONS.index), "allowed": allowed,
           "violations": violations(role, *attribute_sets), "reference": found.reference}
    if not found.checked:
        out["reason"] = ("the profile names no role for the key: its usage is not checked (a "
                         "production profile requires one)")
    return out


def infer(attributes: Mapping[str, Any], key_type: str) -> str | None:
    """A draft role from a key's usage attributes (``keyparity inventory``), or None when they
    fit no role: a person decides. Every operation the key may do must be one its role permits;
    of the roles that fit, the one whose operations it uses most, the first in the table where
    several do (data-encryption before pin and tokenisation, signing before ca: the draft says
    what the attributes show, no more)."""
    allowed = frozenset(op for op in OPERATIONS if attributes.get(op) is True)
    if not allowed:
        return None
    fits = [r for r in ROLES.values() if r.checked and key_type in r.key_types
            and allowed <= r.permits]
    if not fits:
        return None
    best = max(len(allowed & r.permits) for r in fits)
    return next(r.name for r in fits if len(allowed & r.permits) == best)
