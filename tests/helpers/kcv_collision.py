"""Two AES-256 keys with the same 3-byte KCV, found by brute force in software (`cryptography`).

A 3-byte KCV has 2^24 values: by the birthday bound two random keys share one after about
2^12 tries, a few milliseconds. This is what an insider needs to pass a KCV check with a key
of their own choosing (the issue measured 0.4 s in C for a key matching one GIVEN KCV, the
2^24 case); keyparity must tell such keys apart.
"""
from __future__ import annotations

import os
from functools import cache

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def kcv(value: bytes) -> bytes:
    """AES-ECB encryption of a zero block, first 3 bytes (the KCV keyparity displays)."""
    enc = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    return (enc.update(bytes(16)) + enc.finalize())[:3]


@cache
def colliding_pair(size: int = 32) -> tuple[bytes, bytes]:
    """Two different AES keys of ``size`` bytes whose KCVs are equal (one search per process)."""
    seen: dict[bytes, bytes] = {}
    while True:
        value = os.urandom(size)
        check = kcv(value)
        other = seen.setdefault(check, value)
        if other != value:
            assert kcv(other) == kcv(value) and other != value
            return other, value
