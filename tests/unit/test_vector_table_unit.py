"""keyparity.vector_table's functions: the mechanism parameter each cipher vector passes to
the token (Cipher.param), and which vectors a key type may name (allowed) and runs when the
inventory names none (defaults), in the table's order."""
from __future__ import annotations

import pytest
from pkcs11 import Mechanism
from pkcs11.mechanisms import CTRParams, GCMParams

from keyparity import roles, vector_table
from keyparity.vector_table import TABLE, Cipher

IV, AAD = bytes(range(12)), b"associated data"


@pytest.mark.parametrize("tag", [16, 12, 0])
def test_gcm_gets_its_nonce_aad_and_tag_length_in_bits(tag):
    param = Cipher(Mechanism.AES_GCM, iv=12, aad=15, tag=tag).param(IV, AAD)
    assert type(param) is GCMParams
    assert (param.nonce, param.aad, param.tag_bits) == (IV, AAD, tag * 8)


def test_the_gcm_vector_has_a_128_bit_tag():
    param = TABLE["aes-gcm"].params.param(IV, AAD)
    assert (param.nonce, param.aad, param.tag_bits) == (IV, AAD, 128)


def test_ctr_gets_its_nonce():
    param = Cipher(Mechanism.AES_CTR, iv=8).param(IV[:8], b"")
    assert type(param) is CTRParams and param.nonce == IV[:8]


@pytest.mark.parametrize("mechanism", [Mechanism.AES_CBC, Mechanism.DES3_CBC])
def test_cbc_gets_the_iv_itself(mechanism):
    assert Cipher(mechanism, iv=16).param(IV + b"1234", b"ignored") == IV + b"1234"


@pytest.mark.parametrize("mechanism", [Mechanism.AES_ECB, Mechanism.DES3_ECB])
def test_ecb_gets_no_parameter(mechanism):
    assert Cipher(mechanism).param(b"", b"") is None
    assert Cipher(mechanism).param(b"", AAD) is None


def test_allowed_vectors_per_key_type_in_the_tables_order():
    assert vector_table.allowed("des2") == vector_table.allowed("des3") == ("des3-ecb",
                                                                             "des3-cbc",
                                                                             "des3-cmac")
    assert vector_table.allowed("aes") == ("aes-ecb", "aes-cbc", "aes-ctr", "aes-gcm", "aes-cmac",
                                            "aes-key-wrap")
    assert vector_table.allowed("generic-secret") == ("hmac-sha256", "hmac-sha384",
                                                      "hmac-sha512")
    assert vector_table.allowed("rsa") == ("rsa-pkcs1v15-sha256", "rsa-pss-sha256",
                                           "rsa-oaep-sha1", "rsa-oaep-sha256")
    assert vector_table.allowed("ec") == ("ecdsa-sha256", "ecdsa-sha384", "ecdsa-sha512")
    assert vector_table.allowed("ec:secp256r1") == ()
    assert vector_table.allowed("dsa") == ()


def test_default_vectors_per_key_type_and_curve():
    assert vector_table.defaults("des2") == vector_table.defaults("des3") == ("des3-ecb",
                                                                               "des3-cbc")
    assert vector_table.defaults("aes") == ("aes-ecb", "aes-cbc", "aes-ctr", "aes-gcm")
    assert vector_table.defaults("generic-secret") == ("hmac-sha256",)
    assert vector_table.defaults("rsa") == ("rsa-pkcs1v15-sha256", "rsa-pss-sha256",
                                            "rsa-oaep-sha1")
    assert vector_table.defaults("ec", "secp256r1") == ("ecdsa-sha256",)
    assert vector_table.defaults("ec", "secp384r1") == ("ecdsa-sha384",)
    assert vector_table.defaults("ec", "secp521r1") == ("ecdsa-sha384",)
    assert vector_table.defaults("ec") == ()          # "ec:None": no curve, no default
    assert vector_table.defaults("ec", "secp256k1") == ()
    # the curve counts for EC keys only
    assert vector_table.defaults("aes", "secp256r1") == vector_table.defaults("aes")
    assert vector_table.defaults("dsa") == ()


def test_a_roles_defaults_are_only_vectors_it_permits():
    assert vector_table.defaults("aes", role="data-encryption") == vector_table.defaults("aes")
    assert vector_table.defaults("aes", role="mac") == ("aes-cmac",)
    assert vector_table.defaults("aes", role="key-encryption") == ("aes-key-wrap",)
    assert vector_table.defaults("des3", role="mac") == ("des3-cmac",)
    assert vector_table.defaults("des3", role="key-encryption") == ()  # no 3DES wrap vector
    assert vector_table.defaults("rsa", role="signing") == ("rsa-pkcs1v15-sha256",
                                                            "rsa-pss-sha256")
    assert vector_table.defaults("ec", "secp384r1", role="ca") == ("ecdsa-sha384",)
    for name, vector in vector_table.TABLE.items():
        assert set(vector.operations) <= set(roles.OPERATIONS), name
