"""The wrapping chain's strength against each key's (keyparity.strength): SP 800-57 Part 1
Rev. 5 Table 2's comparable strengths, and the chain bounded by its weakest part."""
from __future__ import annotations

import pytest

from keyparity import strength
from keyparity.profile import KeySpec, Wrapping


def key(type_: str, size: int | None = None, curve: str | None = None) -> KeySpec:
    return KeySpec(index=0, label=f"k-{type_}-{size or curve}", target_label="t", type=type_,
                   size=size, curve=curve, attributes={}, vectors=(), disposition="migrate",
                   expected_differences={})


def wrapping(rsa_bits: int = 2048, oaep_hash: str = "sha1", aes_bits: int = 256) -> Wrapping:
    return Wrapping("rsa-aes", rsa_bits, oaep_hash, f"mgf1-{oaep_hash}", aes_bits)


@pytest.mark.parametrize(("spec", "bits"), [
    (key("des2"), 80), (key("des3"), 112), (key("aes", 128), 128), (key("aes", 192), 192),
    (key("aes", 256), 256), (key("rsa", 2048), 112), (key("rsa", 3072), 128),
    (key("rsa", 4096), 128), (key("rsa", 8192), 192), (key("ec", curve="secp256r1"), 128),
    (key("ec", curve="secp384r1"), 192), (key("ec", curve="secp521r1"), 256),
    (key("generic-secret", 128), 128), (key("generic-secret", 512), 256)])
def test_key_strengths_are_sp_800_57_table_2(spec, bits):
    assert strength.key_strength(spec) == bits


@pytest.mark.parametrize(("chain", "bits"), [
    (wrapping(2048, "sha1", 256), 112),   # the SoftHSM demo: RSA-2048 bounds it, not SHA-1
    (wrapping(3072, "sha1", 256), 128),   # SHA-1 counts 128 (no collision resistance needed)
    (wrapping(4096, "sha256", 256), 128),  # CloudHSM's default: RSA-4096 is Table 2's 3072 row
    (wrapping(4096, "sha256", 128), 128),
    (wrapping(3072, "sha256", 128), 128)])
def test_the_chain_is_as_strong_as_its_weakest_part(chain, bits):
    assert strength.chain_of(chain).strength == bits


def test_aes256_under_rsa2048_oaep_sha1_is_weaker_and_the_message_names_both():
    aes = key("aes", 256)
    assert strength.weaker(aes, wrapping())
    said = strength.shortfall(aes, wrapping())
    assert "(256-bit) is wrapped by a 112-bit chain" in said
    assert "RSA-2048 (112) + OAEP-SHA1 (128) + AES-256 (256)" in said
    assert "PCI DSS v4.0 3.6.1" in said and "SP 800-57 Part 1 Rev. 5, Table 2" in said


def test_three_key_tdea_under_rsa2048_passes_and_two_key_too():
    assert not strength.weaker(key("des3"), wrapping())
    assert not strength.weaker(key("des2"), wrapping())
    assert not strength.weaker(key("rsa", 2048), wrapping())
    assert strength.weaker(key("aes", 128), wrapping())  # 128 > 112
    assert not strength.weaker(key("aes", 128), wrapping(3072))
