"""Check values a person compares with a payment HSM (keyparity.hsm.identity.check_values):
TDES by ANSI X9.24 (a zero block encrypted), AES by the legacy ECB method and by CMAC (ANSI
X9.24-1:2017; AWS Payment Cryptography KeyCheckValueAlgorithm CMAC: the first 3 bytes of the
AES-CMAC of 16 zero bytes), each labelled. The CMAC is the token's C_Sign (CKM_AES_CMAC) where
the key may sign, else it is made from two AES-ECB encryptions by the token (NIST SP 800-38B):
both are checked against the published AES-CMAC example of SP 800-38B / RFC 4493 and against
an independent implementation (pyca/cryptography)."""
from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC
from pkcs11 import Attribute, KeyType, Mechanism

from keyparity.hsm import identity
from p11tokens import secret, tokens  # noqa: F401 - the fixture

# NIST SP 800-38B Appendix D.1 / RFC 4493 section 4, Example 2: AES-128, one 16-byte block
KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
BLOCK = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
PUBLISHED = bytes.fromhex("070a16b46b4d4144f79bdd9dd04a287c")
ENCRYPT_ONLY = {Attribute.SIGN: False, Attribute.VERIFY: False}


def software_cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def ecb(key: bytes):
    return lambda data: Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(data)


def test_cmac_from_the_block_cipher_gives_the_published_value():
    assert identity.cmac_block(ecb(KEY), BLOCK) == PUBLISHED
    assert software_cmac(KEY, BLOCK) == PUBLISHED  # the independent implementation agrees


def test_the_tokens_cmac_by_sign_and_by_encryption_give_the_published_value(tokens):
    signs = secret(tokens["hsm1"], "kcv-signs", KeyType.AES, KEY)
    encrypts = secret(tokens["hsm1"], "kcv-encrypts", KeyType.AES, KEY, extra=ENCRYPT_ONLY)
    assert bytes(signs.sign(BLOCK, mechanism=Mechanism.AES_CMAC)) == PUBLISHED
    assert identity.cmac_block(lambda d: encrypts.encrypt(d, mechanism=Mechanism.AES_ECB),
                               BLOCK) == PUBLISHED
    zero = software_cmac(KEY, bytes(16))
    assert identity.cmac_check(signs, "hsm1") == identity.cmac_check(encrypts, "hsm1") == zero


def test_an_aes_key_shows_both_check_values_labelled(tokens):
    key = secret(tokens["hsm1"], "kcv-aes", KeyType.AES, bytes(range(32)), extra=ENCRYPT_ONLY)
    ecb_zero = ecb(bytes(range(32)))(bytes(16))
    assert identity.check_values(key, "aes", "hsm1") == [
        {"algorithm": "ECB (legacy; CloudHSM's check-value)", "cluster": "hsm1",
         "value": ecb_zero[:3].hex(),
         "method": "AES-ECB encryption of a 16-byte zero block, first 3 bytes"},
        {"algorithm": "CMAC", "cluster": "hsm1",
         "value": software_cmac(bytes(range(32)), bytes(16))[:3].hex(),
         "method": identity.CMAC_TEXT}]
    assert ecb_zero[:3] != software_cmac(bytes(range(32)), bytes(16))[:3]  # they differ


def test_a_key_that_may_neither_sign_nor_encrypt_says_why_and_tdes_stays_x9_24(tokens):
    wraps = secret(tokens["hsm1"], "kcv-kek", KeyType.AES, KEY,
                   extra={**ENCRYPT_ONLY, Attribute.ENCRYPT: False, Attribute.DECRYPT: False,
                          Attribute.WRAP: True, Attribute.UNWRAP: True})
    values = identity.check_values(wraps, "aes", "hsm1")
    assert [v["value"] for v in values] == [None, None]
    assert "CKA_ENCRYPT is false" in values[0]["reason"]
    assert "no CMAC check value can be computed" in values[1]["reason"]
    des3 = secret(tokens["hsm1"], "kcv-des3", KeyType.DES3,
                  bytes.fromhex("0123456789abcdef23456789abcdef01456789abcdef0123"))
    (tdes,) = identity.check_values(des3, "des3", "hsm1")
    assert tdes["algorithm"] == "ANSI_X9_24" and len(tdes["value"]) == 6
    assert identity.check_values(des3, "rsa", "hsm1") == []  # a pair has no check value
