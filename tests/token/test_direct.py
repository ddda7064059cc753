"""One call where python-pkcs11 makes two (keyparity.hsm.direct), on real SoftHSM tokens: every
mechanism the suites use goes the one-call way (``crypt`` returns the output, never None) and
gives what python-pkcs11's own call gives; a wrap gives python-pkcs11's blob; an attribute read
gives python-pkcs11's values and leaves out what the token refuses; a failure, or a session
nobody registered, goes through python-pkcs11, which raises its own error."""
from __future__ import annotations

import pkcs11.exceptions as p11
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from pkcs11 import MGF, Attribute, KeyType, Mechanism
from pkcs11.mechanisms import CTRParams, GCMParams

from keyparity.hsm import direct
from keyparity.hsm.softhsm import find_module
from p11tokens import ec_key, ec_pair, rsa_key, rsa_pair, secret, tokens  # noqa: F401

AES = bytes(range(32))
DES3 = bytes(range(1, 25))


@pytest.fixture
def registered(tokens):  # noqa: F811 - the fixture
    for session in tokens.sessions.values():
        direct.register(session, find_module())
    yield tokens
    for session in tokens.sessions.values():
        direct.forget(session)


@pytest.mark.parametrize(("key_type", "value", "mechanism", "param", "data"), [
    (KeyType.AES, AES, Mechanism.AES_ECB, None, bytes(32)),
    (KeyType.AES, AES, Mechanism.AES_CBC, bytes(16), bytes(range(48))),
    (KeyType.AES, AES, Mechanism.AES_CTR, CTRParams(bytes(8)), bytes(range(37))),
    (KeyType.AES, AES, Mechanism.AES_GCM, GCMParams(bytes(12), b"aad" * 7, 128), bytes(37)),
    (KeyType.DES3, DES3, Mechanism.DES3_ECB, None, bytes(24)),
    (KeyType.DES3, DES3, Mechanism.DES3_CBC, bytes(8), bytes(range(24))),
], ids=lambda v: getattr(v, "name", None))
def test_a_cipher_is_one_init_and_one_call_with_python_pkcs11_s_output(
        registered, key_type, value, mechanism, param, data):
    key = secret(registered["hsm1"], f"d-{mechanism.name}", key_type, value)
    given = {} if param is None else {"mechanism_param": param}
    out = direct.crypt(key, "encrypt", data, mechanism, param)
    assert out is not None and out == bytes(key.encrypt(data, mechanism=mechanism, **given))
    assert direct.crypt(key, "decrypt", out, mechanism, param) == data


@pytest.mark.parametrize(("key_type", "value", "mechanism"), [
    (KeyType.GENERIC_SECRET, AES, Mechanism.SHA256_HMAC),
    (KeyType.AES, AES, Mechanism.AES_CMAC),
], ids=lambda v: getattr(v, "name", None))
def test_a_mac_is_one_call_with_python_pkcs11_s_output(registered, key_type, value, mechanism):
    key = secret(registered["hsm1"], f"m-{mechanism.name}", key_type, value)
    tag = direct.crypt(key, "sign", b"message", mechanism)
    assert tag is not None and tag == bytes(key.sign(b"message", mechanism=mechanism))


def test_rsa_signatures_and_oaep_go_the_one_call_way(registered):
    key = rsa_key(3)
    private, public = rsa_pair(registered["hsm1"], "d-rsa", key)
    sig = direct.crypt(private, "sign", b"data", Mechanism.SHA256_RSA_PKCS)
    assert sig == bytes(private.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS))
    pss = direct.crypt(private, "sign", b"data", Mechanism.SHA256_RSA_PKCS_PSS,
                       (Mechanism.SHA256, MGF.SHA256, 32))
    key.public_key().verify(pss, b"data", padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                            hashes.SHA256())
    for param in ((Mechanism.SHA_1, MGF.SHA1, None), None):  # given, and python-pkcs11's default
        sealed = direct.crypt(public, "encrypt", b"secret", Mechanism.RSA_PKCS_OAEP, param)
        assert sealed is not None and len(sealed) == 256
        assert direct.crypt(private, "decrypt", sealed, Mechanism.RSA_PKCS_OAEP, param) == \
            b"secret"


def test_ecdsa_goes_the_one_call_way(registered):
    key = ec_key(4, "secp256r1")
    private, _ = ec_pair(registered["hsm1"], "d-ec", key, "secp256r1")
    digest = bytes(range(32))
    raw = direct.crypt(private, "sign", digest, Mechanism.ECDSA)
    assert raw is not None and len(raw) == 64
    key.public_key().verify(encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                                 int.from_bytes(raw[32:], "big")),
                            digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def test_a_wrap_is_one_call_with_python_pkcs11_s_blob(registered):
    session = registered["hsm1"]
    kek = secret(session, "d-kek", KeyType.AES, AES, extra={Attribute.WRAP: True})
    key = secret(session, "d-payload", KeyType.AES, bytes(16))
    blob = direct.wrap(kek, key, Mechanism.AES_KEY_WRAP_PAD, None, 16384)
    assert blob is not None and blob == bytes(kek.wrap_key(key,
                                                           mechanism=Mechanism.AES_KEY_WRAP_PAD))
    assert direct.wrap(kek, key, Mechanism.AES_KEY_WRAP_PAD, None, 8) == blob  # room too small


def test_an_attribute_read_is_one_call_and_leaves_out_what_the_token_refuses(registered):
    key = secret(registered["hsm1"], "d-read", KeyType.AES, AES, id_=b"\x01\x02")
    wanted = [Attribute.LABEL, Attribute.ID, Attribute.VALUE_LEN, Attribute.KEY_TYPE,
              Attribute.VALUE, Attribute.MODULUS]  # VALUE: sensitive; MODULUS: no such
    got = direct.attributes(key, wanted)
    assert got == key.get_attributes([Attribute.LABEL, Attribute.ID, Attribute.VALUE_LEN,
                                       Attribute.KEY_TYPE])
    assert got[Attribute.KEY_TYPE] is KeyType.AES and got[Attribute.ID] == b"\x01\x02"
    assert direct.attribute(key, Attribute.LABEL) == "d-read"
    assert direct.key_type(key) is KeyType.AES


def test_find_reads_each_object_once(registered):
    session = registered["hsm2"]
    for label in ("f-1", "f-2"):
        secret(session, label, KeyType.AES, AES)
    found = direct.find(session, {Attribute.LABEL: "f-2"}, [Attribute.LABEL, Attribute.ID])
    assert found == [{Attribute.LABEL: "f-2", Attribute.ID: b""}]


def test_an_unregistered_session_goes_through_python_pkcs11(tokens):  # noqa: F811
    key = secret(tokens["hsm1"], "d-unregistered", KeyType.AES, AES)
    assert direct.crypt(key, "encrypt", bytes(16), Mechanism.AES_ECB) is None
    assert direct.attributes(key, [Attribute.LABEL]) is None
    run = direct.fast(key, "encrypt", key.encrypt)
    assert run(bytes(16), mechanism=Mechanism.AES_ECB) == bytes(
        key.encrypt(bytes(16), mechanism=Mechanism.AES_ECB))


def test_a_failed_call_raises_python_pkcs11_s_own_error(registered):
    key = secret(registered["hsm1"], "d-fails", KeyType.AES, AES)
    # a 15-byte block: AES-ECB refuses it (CKR_DATA_LEN_RANGE), the one call gives None and
    # python-pkcs11 is asked, which raises its own error for the same answer
    assert direct.crypt(key, "encrypt", bytes(15), Mechanism.AES_ECB) is None
    with pytest.raises(p11.PKCS11Error):
        direct.fast(key, "encrypt", key.encrypt)(bytes(15), mechanism=Mechanism.AES_ECB)
    registered["hsm1"].close()  # a session gone: the same
    assert direct.crypt(key, "encrypt", bytes(16), Mechanism.AES_ECB) is None
    with pytest.raises(p11.SessionHandleInvalid):
        direct.fast(key, "encrypt", key.encrypt)(bytes(16), mechanism=Mechanism.AES_ECB)
