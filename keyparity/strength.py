"""The strength of the wrapping chain against each key it carries (PCI DSS v4.0 3.6.1: a
key-encrypting key is at least as strong as the keys it protects).

Every strength is NIST SP 800-57 Part 1 Rev. 5's comparable security strength (Table 2), read
from the one key-type table (keyparity.keytypes.classical_strength): RSA 2048 = 112, 3072 = 128,
7680 = 192, 15360 = 256 (a modulus between two rows has the lower row's strength: RSA-4096 is
128); AES-128/192/256; three-key TDEA 112, two-key TDEA 80; EC P-256 = 128, P-384 = 192,
P-521 = 256. A generic secret (an HMAC key) has the strength of its size, at most 256 (the
HMAC-SHA256 keyparity uses it with; SP 800-57 Part 1 Rev. 5 Table 3 and SP 800-107 Rev. 1
section 5.3.4).

The chain is the RSA wrapping pair, its OAEP hash and the temporary AES key (CKM_RSA_AES_KEY_WRAP,
or the same two steps inside the HSMs): its strength is the weakest of the three. The OAEP hash
counts with its strength for uses that need no collision resistance (SP 800-57 Part 1 Rev. 5
Table 3, the column of HMAC, key derivation and random bit generation: SHA-1 128, SHA-224 192,
SHA-256 and above 256): OAEP's security rests on the hash's preimage resistance in the mask
generation function and the label's digest, never on its collision resistance (SP 800-56B
Rev. 2, section 7.2.2, requires an approved hash; SHA-1 is approved there). So OAEP-SHA-1
under RSA-2048 is a 112-bit chain: the RSA modulus bounds it, not the hash.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .keytypes import classical_strength
from .profile import KeySpec, Wrapping

REFERENCE = "NIST SP 800-57 Part 1 Rev. 5, Table 2"
REQUIREMENT = "PCI DSS v4.0 3.6.1"
# SP 800-57 Part 1 Rev. 5 Table 3: a hash function's strength where no collision resistance
# is needed (OAEP's mask generation and label digest)
OAEP_HASH_STRENGTH = {"sha1": 128, "sha224": 192, "sha256": 256, "sha384": 256, "sha512": 256}
HMAC_MAX = 256  # keyparity uses a generic secret with HMAC-SHA256
# SP 800-131A Rev. 2, section 2: two-key TDEA encryption disallowed after 2015 (decryption for
# legacy use only); three-key TDEA encryption disallowed after 2023
TDEA_2KEY = ("two-key TDEA (80 bits): encryption disallowed since 2015, decryption of legacy "
             "data only (NIST SP 800-131A Rev. 2, section 2)")
TDEA_END = "2023-12-31"  # SP 800-131A Rev. 2: TDEA encryption disallowed after 2023


def key_strength(spec: KeySpec) -> int:
    """The key's comparable strength in bits."""
    if spec.type == "generic-secret":
        return min(spec.size or 0, HMAC_MAX)
    found = classical_strength(spec.type, spec.size, spec.curve)
    if found is None:
        raise ValueError(f"no comparable strength for {spec.type} {spec.size or spec.curve}")
    return found


@dataclass(frozen=True)
class Chain:
    """The wrapping chain's parts and their strengths."""

    rsa_bits: int
    oaep_hash: str
    aes_bits: int

    @property
    def parts(self) -> dict[str, int]:
        return {f"RSA-{self.rsa_bits}": classical_strength("rsa", self.rsa_bits, None) or 0,
                f"OAEP-{self.oaep_hash.upper()}": OAEP_HASH_STRENGTH.get(self.oaep_hash, 0),
                f"AES-{self.aes_bits}": self.aes_bits}

    @property
    def strength(self) -> int:
        return min(self.parts.values())

    def shown(self) -> str:
        return " + ".join(f"{name} ({bits})" for name, bits in self.parts.items())

    def record(self) -> dict[str, Any]:
        return {"rsa_bits": self.rsa_bits, "oaep_hash": self.oaep_hash,
                "aes_bits": self.aes_bits, "parts": self.parts, "strength": self.strength}


def chain_of(wrapping: Wrapping) -> Chain:
    return Chain(wrapping.rsa_bits, wrapping.oaep_hash, wrapping.aes_bits)


def key_record(spec: KeySpec) -> dict[str, Any]:
    """What an exception binds a key to (and the evidence records): label, type, size or
    curve, strength."""
    return {"label": spec.label, "type": spec.type, "size": spec.size, "curve": spec.curve,
            "strength": key_strength(spec)}


def weaker(spec: KeySpec, wrapping: Wrapping) -> bool:
    """The chain is weaker than the key."""
    return chain_of(wrapping).strength < key_strength(spec)


def shortfall(spec: KeySpec, wrapping: Wrapping) -> str:
    """One sentence naming both strengths."""
    chain = chain_of(wrapping)
    return (f"{spec.label!r} ({key_strength(spec)}-bit) is wrapped by a {chain.strength}-bit "
            f"chain ({chain.shown()}): {REQUIREMENT} wants a key-encrypting key at least as "
            f"strong as the keys it protects ({REFERENCE})")
