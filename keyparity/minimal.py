"""Minimal data: what of a key's inputs and outputs a bundle may hold (PCI DSS v4.0 3.5, 3.6:
exposure of cryptographic material kept to the minimum).

A cross-cluster vector is a chosen plaintext and the ciphertext (or MAC, signature) a key made
of it. In a test environment the evidence keeps both, so anyone can replay the exchange. In
production a bundle goes to auditors, ticket systems and archives for years, and a pair of a
payment key is what a brute force of a 2-key TDEA key, or any known-plaintext attack, starts
from: the truncated check value exists precisely so that no such pair need be shown. So in
production each vector keeps, instead of its fields, a salted commitment:

    SHA-256(salt || for each field present, in PAIR_FIELDS' order: name || 0x00 || len || value)

with a fresh 256-bit salt from ``os.urandom`` that is never recorded. Without the salt nobody -
the auditor included - can recompute it, recover the pair or test a guessed key against it
(2^256 salts). What it proves is narrow, and the evidence says so: the signed record was made
over one particular exchange, which the run's ``ok`` reports on; what an auditor can recompute
is the identity proof (keyparity.hsm.proof: a fresh challenge and the SHA-256 of each token's
output, never a pair).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

PAIR_FIELDS = ("msg", "iv", "aad", "ct", "tag", "sig")
SALT_BYTES = 32
ALGORITHM = ("SHA-256(salt || name || 0x00 || len32 || value, per field); salt: 256 random "
             "bits, never recorded")
TEST = "test: the vectors' messages and outputs are recorded (msg, ct, tag, sig)"
PRODUCTION = ("production: no plaintext/ciphertext pair of a key is recorded; each vector "
              "carries a salted commitment (the salt is discarded)")


def minimal_data(production: bool) -> str:
    """The evidence's ``run.minimal_data``: what the run's vectors record."""
    return PRODUCTION if production else TEST


def commit(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` without its pair fields (hex), with their commitment instead."""
    present = [f for f in PAIR_FIELDS if f in record]
    if not present:
        return dict(record)
    digest = hashlib.sha256(os.urandom(SALT_BYTES))
    for name in present:
        value = bytes.fromhex(record[name])
        digest.update(name.encode() + b"\0" + len(value).to_bytes(4, "big") + value)
    out = {k: v for k, v in record.items() if k not in PAIR_FIELDS}
    out["commitment"] = {"algorithm": ALGORITHM, "sha256": digest.hexdigest(),
                         "salt": "discarded", "fields": present}
    return out
