"""keyparity.hsm.identity on real SoftHSM key objects of known material: KCVs (for display, and
CloudHSM's check-value) and the full check computed by the token equal what software computes
from the key value; public keys rebuilt
from CKA_MODULUS / CKA_EC_POINT (DER short form, DER long form, raw) are the software keys;
fingerprints are SHA-256 of the DER SubjectPublicKeyInfo; ECDSA (r || s) signatures made by
the token verify in software, and anything else does not."""
from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pkcs11 import Attribute, KeyType, Mechanism

from keyparity.hsm import identity
from keyparity.errors import NotPermitted, TokenError
from keyparity.keytypes import BY_PKCS11, KEY_TYPES
from p11tokens import (
    der_octet_string,
    ec_key,
    ec_pair,
    rsa_key,
    rsa_pair,
    secret,
    tokens,  # noqa: F401 - the fixture
    uncompressed_point,
)

AES_128 = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
AES_256 = bytes(range(32))
DES3 = bytes.fromhex("0123456789abcdef23456789abcdef01456789abcdef0123")
DES2 = bytes.fromhex("0123456789abcdeffedcba9876543210")
HMAC_KEY = bytes(range(100, 132))


def aes_ecb_zero(value: bytes) -> bytes:
    enc = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    return enc.update(bytes(16)) + enc.finalize()


def des3_ecb_zero(value: bytes) -> bytes:
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:  # older cryptography
        TripleDES = algorithms.TripleDES  # noqa: N806
    enc = Cipher(TripleDES(value), modes.ECB()).encryptor()
    return enc.update(bytes(8)) + enc.finalize()


# ---- KCV and the full check --------------------------------------------------------------------

def test_the_kcv_table_names_one_method_per_secret_key_type():
    assert {t.pkcs11: (t.kcv.mechanism, t.kcv.block, t.kcv.description)
            for t in KEY_TYPES.values() if t.kcv is not None} == {
        KeyType.DES2: (Mechanism.DES3_ECB, 8,
                       "DES3-ECB encryption of an 8-byte zero block, first 3 bytes"),
        KeyType.DES3: (Mechanism.DES3_ECB, 8,
                       "DES3-ECB encryption of an 8-byte zero block, first 3 bytes"),
        KeyType.AES: (Mechanism.AES_ECB, 16,
                      "AES-ECB encryption of a 16-byte zero block, first 3 bytes"),
        KeyType.GENERIC_SECRET: (Mechanism.SHA256_HMAC, 16,
                                 "HMAC-SHA256 of a 16-byte zero block, first 3 bytes"),
    }
    assert not [t.name for t in KEY_TYPES.values() if (t.kcv is None) != t.asymmetric]


@pytest.mark.parametrize("key_type, value, expected", [
    (KeyType.AES, AES_128, aes_ecb_zero(AES_128)),
    (KeyType.AES, AES_256, aes_ecb_zero(AES_256)),
    (KeyType.DES3, DES3, des3_ecb_zero(DES3)),
    (KeyType.DES2, DES2, des3_ecb_zero(DES2 + DES2[:8])),
    (KeyType.GENERIC_SECRET, HMAC_KEY, hmac.new(HMAC_KEY, bytes(16), "sha256").digest()),
], ids=["aes128", "aes256", "des3", "des2", "hmac"])
def test_material_check_and_kcv_are_what_software_computes(tokens, key_type, value, expected):
    key = secret(tokens["hsm1"], f"kcv-{key_type.name}-{len(value)}", key_type, value)
    full = identity.material_check(key, "hsm1")
    assert type(full) is bytes and full == expected  # the whole block / the whole HMAC
    kcv = identity.kcv(key, "hsm1")
    assert kcv == identity.Kcv(expected[:3].hex(), BY_PKCS11[key_type].kcv.description)
    assert len(kcv.value) == 6


def test_the_kcv_of_the_same_value_on_two_tokens_agrees_and_of_another_value_not(tokens):
    a = secret(tokens["hsm1"], "same-a", KeyType.AES, AES_128)
    b = secret(tokens["hsm2"], "same-b", KeyType.AES, AES_128)
    c = secret(tokens["hsm2"], "other-c", KeyType.AES, AES_256)
    assert identity.kcv(a, "hsm1") == identity.kcv(b, "hsm2")
    assert identity.material_check(a, "hsm1") == identity.material_check(b, "hsm2")
    assert identity.kcv(a, "hsm1") != identity.kcv(c, "hsm2")


def test_a_token_failure_names_the_step_and_the_cluster(tokens):
    # keys made able to encrypt / sign, then forbidden to on the token: the token refuses
    aes = secret(tokens["hsm1"], "refused-aes", KeyType.AES, AES_128)
    aes[Attribute.ENCRYPT] = False
    with pytest.raises(TokenError) as info:
        identity.kcv(aes, "hsm1 (source)")
    # CKR_KEY_FUNCTION_NOT_PERMITTED (0x68), which python-pkcs11 does not name
    assert str(info.value) == ("compute KCV (AES_ECB) on hsm1 (source) failed: "
                               "Unmapped error code 0x68")
    mac = secret(tokens["hsm1"], "refused-hmac", KeyType.GENERIC_SECRET, HMAC_KEY)
    mac[Attribute.SIGN] = False
    with pytest.raises(TokenError) as info:
        identity.material_check(mac, "hsm2")
    assert str(info.value) == "compute KCV (SHA256_HMAC) on hsm2 failed: Unmapped error code 0x68"


def test_a_key_type_without_a_kcv_method_is_a_key_error(tokens):
    private, _ = rsa_pair(tokens["hsm1"], "kcv-rsa", rsa_key(0), public=False)
    with pytest.raises(KeyError):
        identity.material_check(private, "hsm1")
    with pytest.raises(KeyError):
        identity.kcv(private, "hsm1")


# ---- public keys -------------------------------------------------------------------------------

def spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def test_rsa_public_key_from_the_private_and_the_public_object(tokens):
    key = rsa_key(0)
    private, public = rsa_pair(tokens["hsm1"], "pub-rsa", key)
    for obj in (private, public):
        rebuilt = identity.rsa_public(obj)
        assert rebuilt.public_numbers() == key.public_key().public_numbers()
    fp = identity.fingerprint(identity.rsa_public(private))
    assert fp == hashlib.sha256(spki(key.public_key())).hexdigest()
    assert identity.public_pem(identity.rsa_public(public)) == key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert identity.public_pem(key.public_key()).startswith(b"-----BEGIN PUBLIC KEY-----\n")


def test_another_rsa_key_has_another_fingerprint(tokens):
    a, _ = rsa_pair(tokens["hsm1"], "fp-a", rsa_key(0), public=False)
    b, _ = rsa_pair(tokens["hsm1"], "fp-b", rsa_key(1), public=False)
    assert identity.fingerprint(identity.rsa_public(a)) != identity.fingerprint(
        identity.rsa_public(b))


@pytest.mark.parametrize("curve", ["secp256r1", "secp384r1", "secp521r1"])
def test_ec_public_key_from_a_der_wrapped_point(tokens, curve):
    # P-256 and P-384: short-form length (04 41 04.., 04 61 04..); P-521: long form (04 81 85 04..)
    key = ec_key(0, curve)
    _, public = ec_pair(tokens["hsm1"], f"der-{curve}", key, curve)
    point = bytes(public[Attribute.EC_POINT])
    assert point[:1] == b"\x04" and point[1:2] == (b"\x81" if curve == "secp521r1" else
                                                  bytes([len(point) - 2]))
    rebuilt = identity.ec_public(public, curve)
    assert rebuilt.public_numbers() == key.public_key().public_numbers()
    assert identity.fingerprint(rebuilt) == hashlib.sha256(spki(key.public_key())).hexdigest()


def _raw_point_key(curve: str, first: int | None = None, avoid: tuple[int, ...] = ()):
    """A software key whose raw point's X starts with ``first`` (or with none of ``avoid``)."""
    n = 0
    while True:
        key = ec_key(100 + n, curve)
        x0 = uncompressed_point(key.public_key())[1]
        if (first is None and x0 not in avoid) or x0 == first:
            return key
        n += 1


@pytest.mark.parametrize("curve", ["secp256r1", "secp384r1", "secp521r1"])
def test_ec_public_key_from_a_raw_point(tokens, curve):
    size = {"secp256r1": 65, "secp384r1": 97, "secp521r1": 133}[curve]
    key = _raw_point_key(curve, avoid=(size - 2, 0x81))
    raw = uncompressed_point(key.public_key())
    _, public = ec_pair(tokens["hsm2"], f"raw-{curve}", key, curve, point=raw)
    assert bytes(public[Attribute.EC_POINT]) == raw and len(raw) == size
    assert identity.ec_public(public, curve).public_numbers() == \
        key.public_key().public_numbers()


@pytest.mark.parametrize("curve", ["secp256r1", "secp384r1"])  # P-521's X starts 0x00 or 0x01
@pytest.mark.parametrize("first", [0x3F, 0x5F, 0x81])
def test_a_raw_point_that_looks_like_a_der_header(tokens, first, curve):
    """A raw point whose X coordinate starts with what a DER length could be (0x3f = 65 - 2 on
    P-256, 0x5f = 97 - 2 on P-384, 0x81 the long form) is still a raw point: its length says
    so, and the key is rebuilt, not cut."""
    key = _raw_point_key(curve, first=first)
    raw = uncompressed_point(key.public_key())
    _, public = ec_pair(tokens["hsm2"], f"raw-{first:02x}-{curve}", key, curve, point=raw)
    assert identity.ec_public(public, curve).public_numbers() == \
        key.public_key().public_numbers()


def test_a_point_of_another_curve_is_refused(tokens):
    key = ec_key(0, "secp384r1")
    _, public = ec_pair(tokens["hsm1"], "wrong-curve", key, "secp384r1")
    with pytest.raises(ValueError):
        identity.ec_public(public, "secp256r1")
    with pytest.raises(KeyError):
        identity.ec_public(public, "P-384")  # identity takes the curve's SEC name


def test_the_hash_table():
    assert {k: type(v) for k, v in identity.HASHES.items()} == {
        "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
        "sha1": hashes.SHA1}


# ---- ECDSA ----------------------------------------------------------------------------------

def raw_signature(key: ec.EllipticCurvePrivateKey, digest: bytes, algorithm) -> bytes:
    r, s = decode_dss_signature(key.sign(digest, ec.ECDSA(Prehashed(algorithm))))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


@pytest.mark.parametrize("curve, hash_name", [("secp256r1", "sha256"), ("secp384r1", "sha384"),
                                              ("secp521r1", "sha512"), ("secp256r1", "sha1")])
def test_software_signatures_verify_and_altered_ones_do_not(curve, hash_name):
    key = ec_key(0, curve)
    digest = hashlib.new(hash_name, b"keyparity").digest()
    sig = raw_signature(key, digest, identity.HASHES[hash_name])
    assert identity.ecdsa_verifies(key.public_key(), sig, digest, hash_name) is True
    half = len(sig) // 2
    swapped = sig[half:] + sig[:half]  # s || r
    assert identity.ecdsa_verifies(key.public_key(), swapped, digest, hash_name) is False
    flipped = sig[:-1] + bytes([sig[-1] ^ 1])
    assert identity.ecdsa_verifies(key.public_key(), flipped, digest, hash_name) is False
    other = bytes([digest[0] ^ 1]) + digest[1:]
    assert identity.ecdsa_verifies(key.public_key(), sig, other, hash_name) is False
    assert identity.ecdsa_verifies(ec_key(1, curve).public_key(), sig, digest, hash_name) is False


def test_the_hash_name_decides_the_digest_length():
    key = ec_key(0, "secp384r1")
    digest = hashlib.sha384(b"x").digest()
    sig = raw_signature(key, digest, hashes.SHA384())
    with pytest.raises(ValueError):  # a SHA-384 digest is not a SHA-256 one
        identity.ecdsa_verifies(key.public_key(), sig, digest, "sha256")
    with pytest.raises(KeyError):
        identity.ecdsa_verifies(key.public_key(), sig, digest, "sha3-384")


@pytest.mark.parametrize("curve", ["secp256r1", "secp521r1"])
def test_a_signature_made_by_the_token_verifies_in_software(tokens, curve):
    key = ec_key(0, curve)
    private, public = ec_pair(tokens["hsm1"], f"sig-{curve}", key, curve)
    digest = hashlib.sha256(b"made on the token").digest()
    sig = bytes(private.sign(digest, mechanism=Mechanism.ECDSA))
    rebuilt = identity.ec_public(public, curve)
    assert identity.ecdsa_verifies(rebuilt, sig, digest, "sha256") is True
    assert identity.ecdsa_verifies(rebuilt, sig, hashlib.sha256(b"other").digest(),
                                   "sha256") is False


def test_a_key_whose_type_cannot_be_read_names_the_step_and_the_cluster(tokens):
    gone = secret(tokens["hsm1"], "gone-aes", KeyType.AES, AES_128, extra={Attribute.TOKEN: False})
    gone.destroy()  # the Python object is left; the token no longer knows its handle
    with pytest.raises(TokenError) as info:
        identity.material_check(gone, "hsm1 (source)")
    assert str(info.value) == "read the key type on hsm1 (source) failed: ObjectHandleInvalid"


def test_a_key_that_may_not_encrypt_or_sign_has_no_kcv(tokens):
    """python-pkcs11 gives a key whose CKA_ENCRYPT (CKA_SIGN for HMAC) is false no method for
    it: NotPermitted names the attribute, the cluster and the KCV's mechanism."""
    aes = secret(tokens["hsm1"], "no-encrypt-aes", KeyType.AES, AES_128,
                 extra={Attribute.ENCRYPT: False, Attribute.TOKEN: False})
    with pytest.raises(NotPermitted) as info:
        identity.kcv(aes, "hsm1")
    assert str(info.value) == ("the key on hsm1 may not encrypt (CKA_ENCRYPT is false there): "
                               "no KCV (AES_ECB) can be computed with it")
    mac = secret(tokens["hsm2"], "no-sign-hmac", KeyType.GENERIC_SECRET, HMAC_KEY,
                 extra={Attribute.SIGN: False, Attribute.TOKEN: False})
    with pytest.raises(NotPermitted) as info:
        identity.material_check(mac, "hsm2 (target)")
    assert str(info.value) == ("the key on hsm2 (target) may not sign (CKA_SIGN is false "
                               "there): no KCV (SHA256_HMAC) can be computed with it")
    # an HMAC key that may not encrypt, and an AES key that may not sign, still have a KCV
    mac2 = secret(tokens["hsm2"], "no-encrypt-hmac", KeyType.GENERIC_SECRET, HMAC_KEY,
                  extra={Attribute.ENCRYPT: False, Attribute.TOKEN: False})
    assert identity.material_check(mac2, "hsm2") == hmac.new(HMAC_KEY, bytes(16),
                                                             "sha256").digest()
    aes2 = secret(tokens["hsm2"], "no-sign-aes", KeyType.AES, AES_128,
                  extra={Attribute.SIGN: False, Attribute.TOKEN: False})
    assert identity.material_check(aes2, "hsm2") == aes_ecb_zero(AES_128)


# ---- _point: raw or DER-wrapped CKA_EC_POINT ------------------------------------------------------

P256, P384, P521 = ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()


@pytest.mark.parametrize("curve, n", [(P256, 32), (P384, 48), (P521, 66)])
def test_point_returns_a_value_of_a_raw_points_length_as_it_is(curve, n):
    # uncompressed (1 + 2n) and compressed (1 + n) lengths, whatever the bytes look like
    for value in (b"\x04" + bytes([2 * n - 1]) + bytes(2 * n - 1),   # "04 <len - 2> ..."
                  b"\x04\x81" + bytes([2 * n - 2]) + bytes(2 * n - 2),  # "04 81 <len - 3>"
                  b"\x04" + bytes([n - 1]) + bytes(n - 1),          # compressed length
                  b"\x04\x81" + bytes([n - 2]) + bytes(n - 2),
                  b"\x03" + bytes(n)):
        assert identity._point(value, curve) == value


def test_point_takes_the_content_of_a_der_octet_string():
    content = bytes(range(1, 65))
    # short form: 04 <len> content, for any length that is not a raw point's
    assert identity._point(b"\x04\x40" + content, P256) == content
    assert identity._point(b"\x04\x20" + content[:32], P256) == content[:32]   # 34 bytes
    assert identity._point(b"\x04\x01\xaa", P256) == b"\xaa"
    assert identity._point(b"\x04\x00", P256) == b"\x04\x00"           # nothing inside: left
    assert identity._point(b"\x04", P256) == b"\x04"
    assert identity._point(b"", P256) == b""
    # long form: 04 81 <len> content
    long = bytes(range(133))
    assert identity._point(b"\x04\x81\x85" + long, P521) == long
    assert identity._point(b"\x04\x81\x01\xaa", P256) == b"\xaa"
    assert identity._point(b"\x04\x81\x00", P256) == b"\x04\x81\x00"   # nothing inside: left
    # a length that does not match is not a DER OCTET STRING: the value is left as it is
    for value in (b"\x04\x41" + content, b"\x04\x3f" + content, b"\x05\x40" + content,
                  b"\x04\x81\x41" + content, b"\x04\x81\x3f" + content,
                  b"\x04\x82\x40" + content, b"\x05\x81\x40" + content):
        assert identity._point(value, P256) == value, value[:3]


def test_a_compressed_point_raw_or_der_wrapped(tokens):
    key = ec_key(0, "secp256r1")
    compressed = key.public_key().public_bytes(serialization.Encoding.X962,
                                               serialization.PublicFormat.CompressedPoint)
    assert len(compressed) == 33
    for point in (compressed, der_octet_string(compressed)):
        _, public = ec_pair(tokens["hsm2"], f"compressed-{len(point)}", key, "secp256r1",
                            point=point, token=False)
        assert identity.ec_public(public, "secp256r1").public_numbers() == \
            key.public_key().public_numbers()


# ---- signs ------------------------------------------------------------------------------

def test_signs_a_fresh_challenge_that_the_public_key_verifies(tokens, monkeypatch):
    key = ec_key(0, "secp256r1")
    private, _ = ec_pair(tokens["hsm1"], "signs", key, "secp256r1", public=False, token=False)
    assert identity.signs(private, key.public_key(), "hsm1") is True
    assert identity.signs(private, ec_key(1, "secp256r1").public_key(), "hsm1") is False
    # the challenge: SHA-256 of 32 fresh random bytes, signed as CKM_ECDSA (r || s)
    seen = []
    monkeypatch.setattr(identity.os, "urandom", lambda n: seen.append(n) or b"\x01" * n)
    signed = []
    real = type(private).sign

    def sign(self, data, **kw):
        signed.append((data, kw))
        return real(self, data, **kw)
    monkeypatch.setattr(type(private), "sign", sign)
    assert identity.signs(private, key.public_key(), "hsm1") is True
    assert seen == [32]
    assert signed == [(hashlib.sha256(b"\x01" * 32).digest(), {"mechanism": Mechanism.ECDSA})]
    # a challenge given (the strong proof's): that one, no random bytes of its own
    signed.clear()
    assert identity.signs(private, key.public_key(), "hsm1", challenge=b"\x02" * 32) is True
    assert seen == [32] and signed[0][0] == hashlib.sha256(b"\x02" * 32).digest()


def test_a_signature_the_token_refuses_names_the_step_and_the_cluster(tokens):
    key = ec_key(0, "secp256r1")
    private, _ = ec_pair(tokens["hsm2"], "refuses-sign", key, "secp256r1", public=False,
                         token=False)
    private[Attribute.SIGN] = False  # the Python object still offers sign(); the token refuses
    with pytest.raises(TokenError) as info:
        identity.signs(private, key.public_key(), "hsm2 (target)")
    assert str(info.value) == ("ECDSA signature for identity on hsm2 (target) failed: "
                               "Unmapped error code 0x68")


def test_no_3des_kcv_is_asked_of_a_fips_cluster():
    """A FIPS CloudHSM cluster refuses 3DES encryption (pkcs11-key-types, note 1): keyparity
    does not try it there (the census, the plan), and says why; decryption proves the key."""
    from types import SimpleNamespace

    calls: list[object] = []
    key = SimpleNamespace(key_type=KeyType.DES3,
                          encrypt=lambda *a, **k: calls.append(a) or bytes(8))
    with pytest.raises(NotPermitted, match="FIPS.*3DES"):
        identity.material_check(key, "hsm1", fips=True)
    assert calls == []
    assert identity.material_check(key, "hsm2m") == bytes(8) and len(calls) == 1
