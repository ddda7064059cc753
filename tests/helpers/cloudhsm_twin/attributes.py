"""The CLI's key attributes: their names and order in ``key list --verbose``, their defaults,
which may be given when a key is made, and how a ``name=value`` is read.

Source: AWS CloudHSM user guide, "Supported attributes for CloudHSM CLI"
(cloudhsm_cli-key-attributes-table): columns Value (the default), "Modifiable with key
set-attribute" and "Settable at key creation"; defaults of a new key as the CLI's own examples
show them (cloudhsm_cli-key-generate-symmetric-aes, cloudhsm_cli-key-generate-asymmetric-pair-
rsa). What may change afterwards, and who may change it, is in rules.py.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import TwinError

ORDER = ("key-type", "label", "id", "check-value", "class", "encrypt", "decrypt", "token",
         "always-sensitive", "derive", "destroyable", "extractable", "local", "modifiable",
         "never-extractable", "private", "sensitive", "sign", "trusted", "unwrap", "verify",
         "wrap", "wrap-with-trusted", "key-length-bytes")
RSA_EXTRA = ("public-exponent", "modulus", "modulus-size-bits")
EC_EXTRA = ("ec-point", "curve")
BOOLEAN = frozenset(ORDER[5:23])
# "Settable at key creation: No" (the table): the HSM sets them
NOT_AT_CREATION = frozenset({"always-sensitive", "check-value", "local", "never-extractable",
                             "key-length-bytes", "ec-point", "modulus", "curve",
                             "modulus-size-bits", "public-exponent"})
# PKCS #11 attribute tables for Client SDK 5 (pkcs11-attributes-interpreting): what each class
# of key has at all (✖ = not supported for the key type)
FOR_CLASS = {
    "secret-key": BOOLEAN,
    "private-key": BOOLEAN - {"encrypt", "verify", "wrap", "trusted"},
    "public-key": BOOLEAN - {"decrypt", "sign", "unwrap", "sensitive", "extractable",
                             "always-sensitive", "never-extractable", "wrap-with-trusted"},
}
LABEL_MAX = 127  # "127 characters for Client SDK 5.11 and after" (generate pages, <LABEL>)


def defaults(cls: str, key_type: str) -> dict[str, Any]:
    """A new key's attributes before ``--attributes``: the table's defaults ("encrypt: Default
    False", "sign: Default True for AES keys, False for RSA and EC keys", "sensitive: True for
    AES keys and EC and RSA private keys, False for public keys" ...)."""
    symmetric = cls == "secret-key"
    out = {"encrypt": False, "decrypt": False, "token": True, "derive": False,
           "destroyable": True, "extractable": True, "modifiable": True, "private": True,
           "sensitive": cls != "public-key", "sign": symmetric, "trusted": False,
           "unwrap": False, "verify": symmetric, "wrap": False, "wrap-with-trusted": False}
    return {k: v for k, v in out.items() if k in FOR_CLASS[cls]}


def value(name: str, text: str) -> Any:
    """One attribute value as the CLI reads it: booleans true/false, ``id`` as hex (``0x``
    optional), ``label`` as text."""
    if name in BOOLEAN:
        low = text.strip().lower()
        if low not in ("true", "false"):
            raise TwinError(f"Invalid value for key attribute {name}: {text!r} (true or false)")
        return low == "true"
    if name == "id":
        hexa = text[2:] if text.lower().startswith("0x") else text
        if not re.fullmatch(r"(?:[0-9a-fA-F]{2})*", hexa):
            raise TwinError(f"Invalid value for key attribute id: {text!r} (hexadecimal)")
        return hexa.lower()
    if name == "label":
        if len(text) > LABEL_MAX:
            raise TwinError(f"Invalid label: longer than {LABEL_MAX} characters")
        return text
    if name in ("class", "key-type"):
        return text
    raise TwinError(f"Invalid key attribute: {name}")


def known(name: str) -> bool:
    return name in ORDER or name in RSA_EXTRA or name in EC_EXTRA


def parse(pairs: Sequence[str]) -> dict[str, Any]:
    """``["encrypt=true", "id=0x0a"]`` -> ``{"encrypt": True, "id": "0a"}``; an attribute the CLI
    does not know (``copyable``: CloudHSM has no CKA_COPYABLE) is refused."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().lower()
        if not sep or not known(name):
            raise TwinError(f"Invalid key attribute: {name or pair}")
        if name in out:
            raise TwinError(f"Key attribute {name} is given more than once")
        out[name] = value(name, text)
    return out


def render(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The ``attributes`` object of ``key list --verbose``, in the CLI's order."""
    merged = {**base, **extra}
    names = ORDER + (RSA_EXTRA if merged.get("key-type") == "rsa" else ()) + (
        EC_EXTRA if merged.get("key-type") == "ec" else ())
    return {n: merged[n] for n in names if n in merged}
