"""keyparity.hsm.proof on real SoftHSM key objects of known material: each method's token output
equals what software computes from the key value over the same challenge; the first method
every key permits is chosen; a commitment recomputes over its stored challenge and a pair's
private half answers a fresh one; two keys of other material never prove equal, and no
method that gives fewer than 128 bits is accepted. The 3-byte KCV plays no part."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from keyparity.errors import KeyMismatch, KeyNotFound, NotPermitted, TokenError
from keyparity.hsm import proof
from keyparity.hsm.locate import Side
from keyparity.profile import KeySpec
from p11tokens import ec_key, ec_pair, rsa_key, rsa_pair, secret
from p11tokens import tokens  # noqa: F401 - the fixture

AES_128 = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
AES_256 = bytes(range(32))
DES3 = bytes.fromhex("0123456789abcdef23456789abcdef01456789abcdef0123")
DES2 = bytes.fromhex("0123456789abcdeffedcba9876543210")
HMAC_KEY = bytes(range(100, 132))
CHALLENGE = bytes(range(200, 232))
NONE = {Attribute.ENCRYPT: False, Attribute.DECRYPT: False, Attribute.SIGN: False,
        Attribute.VERIFY: False, Attribute.WRAP: False, Attribute.TOKEN: False}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ecb(algorithm, data: bytes, decrypt: bool) -> bytes:
    c = Cipher(algorithm, modes.ECB())
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def cmac(algorithm, data: bytes) -> bytes:
    c = CMAC(algorithm)
    c.update(data)
    return c.finalize()


def session_secret(session, label, key_type, value, extra=None):
    return secret(session, label, key_type, value, extra={Attribute.TOKEN: False, **(extra or {})})


def side(key, where="hsm1", public=None, curve=None) -> Side:
    return Side(key, public, where, curve)


def spki(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def spec(type_: str, curve: str | None = None) -> KeySpec:
    return KeySpec(index=0, label="k-src", target_label="k-tgt", type=type_, size=None,
                   curve=curve, attributes={}, vectors=(), disposition="migrate",
                   expected_differences={})


# ---- the methods ------------------------------------------------------------------------------

def test_the_method_table():
    table = {t: [(m.name, m.op, m.mechanism) for m in ms] for t, ms in proof.METHODS.items()}
    des = [("des3-ecb-decrypt", "decrypt", Mechanism.DES3_ECB),
           ("des3-ecb-encrypt", "encrypt", Mechanism.DES3_ECB),
           ("des3-cmac", "sign", Mechanism.DES3_CMAC)]
    assert table == {
        KeyType.AES: [("aes-ecb-decrypt", "decrypt", Mechanism.AES_ECB),
                      ("aes-ecb-encrypt", "encrypt", Mechanism.AES_ECB),
                      ("aes-cmac", "sign", Mechanism.AES_CMAC),
                      ("aes-key-wrap", "wrap_key", Mechanism.AES_KEY_WRAP)],
        KeyType.DES2: des, KeyType.DES3: des,
        KeyType.GENERIC_SECRET: [("hmac-sha256", "sign", Mechanism.SHA256_HMAC)]}
    assert set(proof.BY_NAME) == {m[0] for ms in table.values() for m in ms}
    assert proof.CHALLENGE_BYTES == 32 and proof.MIN_BITS == 128
    assert proof.BY_NAME["aes-ecb-decrypt"].text == "AES-ECB decryption of the challenge's blocks"


def test_a_fresh_challenge_each_time():
    a, b = proof.challenge(), proof.challenge()
    assert len(a) == len(b) == 32 and a != b


@pytest.mark.parametrize("name, key_type, value, software", [
    ("aes-ecb-decrypt", KeyType.AES, AES_256,
     lambda: ecb(algorithms.AES(AES_256), CHALLENGE, True)),
    ("aes-ecb-encrypt", KeyType.AES, AES_128,
     lambda: ecb(algorithms.AES(AES_128), CHALLENGE, False)),
    ("aes-cmac", KeyType.AES, AES_128, lambda: cmac(algorithms.AES(AES_128), CHALLENGE)),
    ("aes-key-wrap", KeyType.AES, AES_256, lambda: aes_key_wrap(AES_256, CHALLENGE)),
    ("des3-ecb-decrypt", KeyType.DES3, DES3, lambda: ecb(TripleDES(DES3), CHALLENGE, True)),
    ("des3-ecb-encrypt", KeyType.DES2, DES2, lambda: ecb(TripleDES(DES2 + DES2[:8]), CHALLENGE, False)),
    ("des3-cmac", KeyType.DES3, DES3, lambda: b"".join(
        cmac(TripleDES(DES3), CHALLENGE[i:i + 8]) for i in range(0, 32, 8))),
    ("hmac-sha256", KeyType.GENERIC_SECRET, HMAC_KEY,
     lambda: hmac.new(HMAC_KEY, CHALLENGE, "sha256").digest()),
], ids=lambda v: v if isinstance(v, str) else "")
def test_each_method_is_what_software_computes(tokens, name, key_type, value, software):
    key = session_secret(tokens["hsm1"], f"m-{name}", key_type, value, {Attribute.WRAP: True})
    out = proof.BY_NAME[name].compute(key, CHALLENGE, "hsm1")
    assert out == software() and len(out) * 8 >= 128
    if name == "aes-key-wrap":  # the proof's session key is gone again
        assert not list(tokens["hsm1"].get_objects({Attribute.LABEL: "keyparity-proof"}))


def test_a_method_the_key_does_not_permit(tokens):
    key = session_secret(tokens["hsm1"], "m-none", KeyType.AES, AES_128, NONE)
    with pytest.raises(NotPermitted) as info:
        proof.BY_NAME["aes-ecb-decrypt"].compute(key, CHALLENGE, "hsm1")
    assert str(info.value) == ("the key on hsm1 may not decrypt (CKA_DECRYPT is false there): "
                               "its material cannot be proven by AES-ECB decryption of the "
                               "challenge's blocks")
    with pytest.raises(NotPermitted) as info:
        proof.BY_NAME["aes-key-wrap"].compute(key, CHALLENGE, "hsm2")
    assert str(info.value).startswith("the key on hsm2 may not wrap (CKA_WRAP is false there)")


def test_fewer_than_128_bits_is_no_proof(tokens):
    key = session_secret(tokens["hsm1"], "m-short", KeyType.DES3, DES3)
    with pytest.raises(proof.NotProvable) as info:
        proof._output(proof.BY_NAME["des3-cmac"], key, CHALLENGE[:8], "hsm1")
    assert str(info.value) == "des3-cmac gave 64 bits on hsm1: fewer than 128, not a proof"
    assert len(proof._output(proof.BY_NAME["des3-cmac"], key, CHALLENGE[:16], "hsm1")) == 16


@pytest.mark.parametrize("forbidden, chosen", [
    ({}, "aes-ecb-decrypt"),
    ({Attribute.DECRYPT: False}, "aes-ecb-encrypt"),
    ({Attribute.DECRYPT: False, Attribute.ENCRYPT: False}, "aes-cmac"),
    ({Attribute.DECRYPT: False, Attribute.ENCRYPT: False, Attribute.SIGN: False,
      Attribute.WRAP: True}, "aes-key-wrap"),
])
def test_the_first_method_every_key_permits(tokens, forbidden, chosen):
    full = session_secret(tokens["hsm1"], "c-full", KeyType.AES, AES_128, {Attribute.WRAP: True})
    some = session_secret(tokens["hsm2"], "c-some", KeyType.AES, AES_128, forbidden)
    assert proof.choose([some], "hsm2").name == chosen
    assert proof.choose([full, some], "hsm1 and hsm2").name == chosen  # both permit it
    assert proof.choose([full], "hsm1").name == "aes-ecb-decrypt"


def test_no_method_no_proof(tokens):
    key = session_secret(tokens["hsm1"], "c-none", KeyType.AES, AES_128, NONE)
    with pytest.raises(proof.NotProvable) as info:
        proof.choose([key], "hsm1")
    assert str(info.value) == ("no strong proof of a AES key is permitted on hsm1 (tried: "
                               "aes-ecb-decrypt, aes-ecb-encrypt, aes-cmac, aes-key-wrap): its "
                               "material cannot be proven")
    des = session_secret(tokens["hsm1"], "c-des-wrap", KeyType.DES3, DES3,
                         {**NONE, Attribute.WRAP: True})
    with pytest.raises(proof.NotProvable, match=r"tried: des3-ecb-decrypt, des3-ecb-encrypt, "
                                                r"des3-cmac\)"):
        proof.choose([des], "hsm1")
    pub = rsa_pair(tokens["hsm1"], "c-rsa", rsa_key(0), token=False)[1]
    with pytest.raises(proof.NotProvable, match=r"no strong proof of a RSA key is permitted on "
                                                r"hsm1 \(tried: none exists\)"):
        proof.choose([pub], "hsm1")
    aes = session_secret(tokens["hsm1"], "c-aes", KeyType.AES, AES_128)
    hmac_key = session_secret(tokens["hsm2"], "c-hmac", KeyType.GENERIC_SECRET, HMAC_KEY)
    with pytest.raises(proof.NotProvable) as info:
        proof.choose([aes, hmac_key], "hsm1 and hsm2")
    assert str(info.value) == ("keys of different types on hsm1 and hsm2 (AES, GENERIC_SECRET):"
                               " other key material")


# ---- secret keys: prove, commit, check ---------------------------------------------------------

def test_prove_a_secret_key(tokens, monkeypatch):
    s = side(session_secret(tokens["hsm1"], "p-aes", KeyType.AES, AES_256))
    t = side(session_secret(tokens["hsm2"], "p-aes", KeyType.AES, AES_256), "hsm2")
    monkeypatch.setattr(proof.os, "urandom", lambda n: CHALLENGE[:n])
    found = proof.prove(s, t)
    out = sha(ecb(algorithms.AES(AES_256), CHALLENGE, True))
    assert found.record() == {
        "method": "aes-ecb-decrypt", "description": "AES-ECB decryption of the challenge's "
        "blocks", "challenge": CHALLENGE.hex(), "bits": 256, "source": out, "target": out,
        "match": True}
    assert found.match and found.answers is None
    assert found.commitment() == proof.Commitment("aes-ecb-decrypt", CHALLENGE.hex(), 256, out)
    other = side(session_secret(tokens["hsm2"], "p-aes-other", KeyType.AES, AES_128), "hsm2")
    with pytest.raises(KeyMismatch) as info:
        proof.prove(s, other)
    theirs = sha(ecb(algorithms.AES(AES_128), CHALLENGE, True))
    assert str(info.value) == (  # each value labelled by its cluster, the source first
        f"aes-ecb-decrypt over the challenge {CHALLENGE.hex()[:16]}... gives SHA-256 "
        f"hsm1 {out[:16]}..., hsm2 {theirs[:16]}...: other key material")
    # what differed is kept for the record (the report shows both sides)
    assert info.value.identity == {**found.record(), "target": theirs, "match": False}


def test_a_3des_key_that_differs_in_its_third_des_key_is_other_material(tokens):
    s = side(session_secret(tokens["hsm1"], "p-des", KeyType.DES3, DES3))
    t = side(session_secret(tokens["hsm2"], "p-des", KeyType.DES3, DES3[:16] + bytes(8)), "hsm2")
    with pytest.raises(KeyMismatch):
        proof.prove(s, t)
    assert proof.prove(s, side(session_secret(tokens["hsm2"], "p-des2", KeyType.DES3, DES3),
                               "hsm2")).bits == 256


def test_each_proof_has_a_challenge_of_its_own(tokens):
    s = side(session_secret(tokens["hsm1"], "p-fresh", KeyType.GENERIC_SECRET, HMAC_KEY))
    t = side(session_secret(tokens["hsm2"], "p-fresh", KeyType.GENERIC_SECRET, HMAC_KEY), "hsm2")
    a, b = proof.prove(s, t), proof.prove(s, t)
    assert a.challenge != b.challenge and a.source != b.source and a.match and b.match
    assert a.source == sha(hmac.new(HMAC_KEY, a.challenge, "sha256").digest())


def test_prove_with_the_source_half_made_before(tokens):
    t = side(session_secret(tokens["hsm2"], "p-started", KeyType.AES, AES_128), "hsm2")
    out = sha(ecb(algorithms.AES(AES_128), CHALLENGE, True))
    src = session_secret(tokens["hsm1"], "p-started", KeyType.AES, AES_128)
    untouched = side(src)
    started = proof.Commitment("aes-ecb-decrypt", CHALLENGE.hex(), 256, out)
    found = proof.prove(untouched, t, started)
    assert (found.challenge, found.source, found.target) == (CHALLENGE, out, out)
    with pytest.raises(KeyMismatch):  # the commitment is what the source said
        proof.prove(untouched, t, proof.Commitment("aes-ecb-decrypt", CHALLENGE.hex(), 256,
                                                   "00" * 32))
    # a commitment of another method than both keys permit: a fresh challenge instead
    found = proof.prove(untouched, t, proof.Commitment("aes-cmac", CHALLENGE.hex(), 128, "x"))
    assert found.challenge != CHALLENGE and found.match and found.method == "aes-ecb-decrypt"


def test_a_secret_key_is_not_a_pair(tokens):
    s = side(session_secret(tokens["hsm1"], "p-kind", KeyType.AES, AES_128))
    private = rsa_pair(tokens["hsm2"], "p-kind", rsa_key(0), token=False)[0]
    with pytest.raises(KeyMismatch, match="^the key on hsm2 is not a secret key: other key "
                                          "material$"):
        proof.prove(s, side(private, "hsm2"))
    with pytest.raises(KeyMismatch, match="^the key on hsm1 is not a RSA private key"):
        proof.prove(side(private, "hsm2"), s)


def test_commit_then_check_a_secret_key(tokens):
    s = side(session_secret(tokens["hsm1"], "k-des2", KeyType.DES2, DES2))
    made = proof.commit(s, CHALLENGE)
    out = ecb(TripleDES(DES2 + DES2[:8]), CHALLENGE, True)
    assert made == proof.Commitment("des3-ecb-decrypt", CHALLENGE.hex(), 256, sha(out))
    assert made.record() == {"method": "des3-ecb-decrypt", "challenge": CHALLENGE.hex(),
                             "bits": 256, "sha256": sha(out)}
    assert made.text == "DES3-ECB decryption of the challenge's blocks"
    same = side(session_secret(tokens["hsm2"], "k-des2", KeyType.DES2, DES2), "hsm2")
    assert proof.check(made, same) == sha(out)
    other = side(session_secret(tokens["hsm2"], "k-des2-other", KeyType.DES2, DES2[::-1]), "hsm2")
    with pytest.raises(KeyMismatch) as info:
        proof.check(made, other)
    assert str(info.value).startswith(f"the key on hsm2 holds other key material: des3-ecb-"
                                      f"decrypt over the challenge {CHALLENGE.hex()[:16]}... "
                                      "gives SHA-256 ")
    assert str(info.value).endswith(f"..., committed {sha(out)[:16]}...")
    aes = side(session_secret(tokens["hsm2"], "k-not-des", KeyType.AES, AES_128), "hsm2")
    with pytest.raises(KeyMismatch) as info:
        proof.check(made, aes)
    assert str(info.value) == ("the key on hsm2 is a AES key; the commitment is of "
                               "des3-ecb-decrypt: other key material")
    fresh = proof.commit(s)
    assert fresh.challenge != made.challenge and proof.check(fresh, same) == fresh.sha256


def test_check_needs_the_committed_method(tokens):
    made = proof.commit(side(session_secret(tokens["hsm1"], "k-m", KeyType.AES, AES_128)),
                        CHALLENGE)
    no_decrypt = side(session_secret(tokens["hsm2"], "k-m", KeyType.AES, AES_128,
                                     {Attribute.DECRYPT: False}), "hsm2")
    with pytest.raises(NotPermitted):
        proof.check(made, no_decrypt)
    pair = proof.Commitment(proof.PAIR, CHALLENGE.hex(), 2048, "00" * 32)
    with pytest.raises(KeyMismatch, match="the commitment is of spki-sha256\\+answer"):
        proof.check(pair, no_decrypt)


def test_commitment_tokens_and_records_read_back():
    made = proof.Commitment("hmac-sha256", CHALLENGE.hex(), 256, "ab" * 32)
    assert json.loads(made.token()) == made.record()
    assert made.token() == ('{"bits":256,"challenge":"' + CHALLENGE.hex()
                            + '","method":"hmac-sha256","sha256":"' + "ab" * 32 + '"}')
    assert proof.Commitment.parse(made.token()) == made
    assert proof.Commitment.parse(made.record()) == made
    pair = proof.Commitment(proof.PAIR, CHALLENGE.hex(), 512, "cd" * 32, "3059")
    assert pair.record()["public_key"] == "3059" and "public_key" not in pair.token()
    assert proof.Commitment.parse(pair.record()) == pair
    assert proof.Commitment.parse(pair.token()).public_key is None
    assert pair.text == proof.PAIR_TEXT
    for bad, said in [("abc", "not a commitment: 'abc'"),
                      ([1], "not a commitment: list"),
                      (None, "not a commitment: NoneType"),
                      ({"method": "hmac-sha256"}, "not a commitment (KeyError: 'challenge')"),
                      ({**made.record(), "challenge": "zz"}, "not a commitment (ValueError"),
                      ({**made.record(), "bits": "many"}, "not a commitment (ValueError"),
                      ({**made.record(), "method": "kcv"}, "unknown method 'kcv'")]:
        with pytest.raises(ValueError) as info:
            proof.Commitment.parse(bad)
        assert said in str(info.value), (bad, str(info.value))


# ---- key pairs --------------------------------------------------------------------------------

def test_the_public_key_a_key_object_exposes(tokens):
    rsa_priv, rsa_pub = rsa_pair(tokens["hsm1"], "s-rsa", rsa_key(0), token=False)
    ec_priv, ec_pub = ec_pair(tokens["hsm1"], "s-ec", ec_key(0), "secp256r1", token=False)
    want = spki(rsa_key(0).public_key())
    assert proof.spki(rsa_priv, None) == proof.spki(rsa_pub, None) == want
    assert proof.spki(ec_pub, "secp256r1") == spki(ec_key(0).public_key())
    assert proof.spki(ec_pub, None) is None          # no curve: nothing to read it with
    assert proof.spki(ec_priv, "secp256r1") is None  # a private EC key shows no point
    assert proof.spki(None, "secp256r1") is None


def test_a_private_key_answers_for_its_public_key(tokens):
    session = tokens["hsm1"]
    signer = rsa_pair(session, "a-rsa", rsa_key(0), token=False)[0]
    mine, theirs = spki(rsa_key(0).public_key()), spki(rsa_key(1).public_key())
    assert proof.answers(signer, mine, CHALLENGE, "hsm1") == (True, "SHA256-RSA-PKCS signature",
                                                              2048)
    assert proof.answers(signer, theirs, CHALLENGE, "hsm1") == (
        False, "SHA256-RSA-PKCS signature", 2048)
    decrypter = rsa_pair(session, "a-rsa-dec", rsa_key(0), token=False)[0]
    decrypter[Attribute.SIGN] = False
    decrypter = next(session.get_objects({Attribute.LABEL: "a-rsa-dec",
                                          Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
    assert proof.answers(decrypter, mine, CHALLENGE, "hsm1") == (True, "RSA-OAEP decryption", 256)
    assert proof.answers(decrypter, theirs, CHALLENGE, "hsm1") == (
        False, "RSA-OAEP decryption", 256)
    ec_priv = ec_pair(session, "a-ec", ec_key(0), "secp256r1", token=False)[0]
    ec_mine = spki(ec_key(0).public_key())
    assert proof.answers(ec_priv, ec_mine, CHALLENGE, "hsm1") == (True, "ECDSA-SHA256 signature",
                                                                  512)
    assert proof.answers(ec_priv, spki(ec_key(1).public_key()), CHALLENGE, "hsm1")[0] is False
    assert proof.answers(ec_priv, mine, CHALLENGE, "hsm1") == (
        False, "a EC key against another public key", 0)
    assert proof.answers(signer, ec_mine, CHALLENGE, "hsm1")[0] is False


def test_a_private_key_that_may_neither_sign_nor_decrypt(tokens):
    session = tokens["hsm1"]
    key = rsa_pair(session, "n-rsa", rsa_key(0), token=False)[0]
    key[Attribute.SIGN] = False
    key[Attribute.DECRYPT] = False
    key = next(session.get_objects({Attribute.LABEL: "n-rsa",
                                    Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
    with pytest.raises(proof.NotProvable) as info:
        proof.answers(key, spki(rsa_key(0).public_key()), CHALLENGE, "hsm1")
    assert str(info.value) == ("the RSA private key on hsm1 may neither sign nor decrypt: its "
                               "material cannot be proven")
    ec_priv = ec_pair(session, "n-ec", ec_key(0), "secp256r1", token=False)[0]
    ec_priv[Attribute.SIGN] = False
    ec_priv = next(session.get_objects({Attribute.LABEL: "n-ec",
                                        Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
    with pytest.raises(proof.NotProvable, match="EC private key on hsm1 may neither"):
        proof.answers(ec_priv, spki(ec_key(0).public_key()), CHALLENGE, "hsm1")


def test_an_rsa_decryption_that_fails_is_no_answer(tokens, monkeypatch):
    session = tokens["hsm1"]
    key = rsa_pair(session, "d-rsa", rsa_key(0), token=False)[0]
    key[Attribute.SIGN] = False
    key = next(session.get_objects({Attribute.LABEL: "d-rsa",
                                    Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
    # a ciphertext the token's padding check refuses (another key's): not it, not an error
    real = padding.OAEP
    monkeypatch.setattr(proof.padding, "OAEP", lambda *a: padding.PKCS1v15())
    assert proof.answers(key, spki(rsa_key(0).public_key()), CHALLENGE, "hsm1") == (
        False, "RSA-OAEP decryption", 256)
    monkeypatch.setattr(proof.padding, "OAEP", real)


def test_prove_an_rsa_key_pair(tokens, monkeypatch):
    key = rsa_key(0)
    s = Side(*rsa_pair(tokens["hsm1"], "r", key, token=False), "hsm1")
    t = side(rsa_pair(tokens["hsm2"], "r", key, public=False, token=False)[0], "hsm2")
    monkeypatch.setattr(proof.os, "urandom", lambda n: CHALLENGE[:n])
    found = proof.prove(s, t)
    fp = sha(spki(key.public_key()))
    assert found.record() == {"method": proof.PAIR, "description": proof.PAIR_TEXT,
                              "challenge": CHALLENGE.hex(), "bits": 2048, "source": fp,
                              "target": fp, "match": True,
                              "answers": {"source": "SHA256-RSA-PKCS signature",
                                          "target": "SHA256-RSA-PKCS signature"}}
    other = side(rsa_pair(tokens["hsm2"], "r-other", rsa_key(1), public=False, token=False)[0],
                 "hsm2")
    with pytest.raises(KeyMismatch) as info:
        proof.prove(s, other)
    theirs = sha(spki(rsa_key(1).public_key()))
    assert str(info.value) == (f"the public key on hsm2 is not the one on hsm1 (SHA-256 "
                               f"hsm1 {fp[:16]}..., hsm2 {theirs[:16]}...): other key material")
    assert (info.value.identity["source"], info.value.identity["target"],
            info.value.identity["match"]) == (fp, theirs, False)


def test_a_private_key_whose_modulus_lies_is_caught_by_its_answer(tokens):
    """A private key object with the right CKA_MODULUS and another key's private exponent: its
    public key matches, its signature does not."""
    key, liar = rsa_key(0), rsa_key(1)
    s = Side(*rsa_pair(tokens["hsm1"], "lie", key, token=False), "hsm1")
    pn, fake = key.private_numbers().public_numbers, liar.private_numbers()
    n = lambda v: v.to_bytes((v.bit_length() + 7) // 8, "big")  # noqa: E731
    bad = tokens["hsm2"].create_object({
        Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.RSA,
        Attribute.TOKEN: False, Attribute.LABEL: "lie", Attribute.MODULUS: n(pn.n),
        Attribute.PUBLIC_EXPONENT: n(pn.e), Attribute.PRIVATE_EXPONENT: n(fake.d),
        Attribute.SIGN: True, Attribute.SENSITIVE: True})
    with pytest.raises(KeyMismatch) as info:
        proof.prove(s, side(bad, "hsm2"))
    assert str(info.value) == ("the SHA256-RSA-PKCS signature over the challenge by the private "
                               "key on hsm2 does not verify with the public key of hsm1: other "
                               "key material")
    with pytest.raises(KeyMismatch, match="the private key on hsm2 holds other key material: "
                                          "its SHA256-RSA-PKCS signature over a fresh"):
        proof.check(proof.commit(s), side(bad, "hsm2"))
    with pytest.raises(KeyMismatch, match="does not answer for its own public key"):
        proof.commit(side(bad, "hsm2"))
    with pytest.raises(KeyMismatch, match="^the SHA256-RSA-PKCS signature over the challenge "
                                          "by the private key on hsm1 does not verify"):
        proof.prove(side(bad, "hsm1"), Side(s.key, None, "hsm2"))


def test_prove_an_ec_key_alone_on_the_target(tokens):
    key = ec_key(0, "secp256r1")
    s = Side(*ec_pair(tokens["hsm1"], "e", key, "secp256r1", token=False), "hsm1", "secp256r1")
    t = Side(ec_pair(tokens["hsm2"], "e", key, "secp256r1", public=False, token=False)[0], None,
             "hsm2", "secp256r1")
    found = proof.prove(s, t)
    fp = sha(spki(key.public_key()))
    assert (found.source, found.target, found.bits, found.match) == (fp, fp, 512, True)
    assert found.answers == {"source": "ECDSA-SHA256 signature",
                             "target": "ECDSA-SHA256 signature"}
    # either way round: the copy that stays may be the one without a public object
    assert proof.prove(t, s).match
    other = Side(ec_pair(tokens["hsm2"], "e-other", ec_key(1, "secp256r1"), "secp256r1",
                         public=False, token=False)[0], None, "hsm2", "secp256r1")
    with pytest.raises(KeyMismatch) as info:
        proof.prove(s, other)
    assert str(info.value) == ("the ECDSA-SHA256 signature over the challenge by the private key "
                               "on hsm2 does not verify with the public key of hsm1: other key "
                               "material")
    with pytest.raises(proof.NotProvable) as info:
        proof.prove(Side(t.key, None, "hsm1", "secp256r1"), t)
    assert str(info.value) == ("neither hsm1 nor hsm2 exposes the public key: the material "
                               "cannot be proven")


def test_commit_and_check_a_pair(tokens, monkeypatch):
    key = ec_key(0, "secp256r1")
    s = Side(*ec_pair(tokens["hsm1"], "ce", key, "secp256r1", token=False), "hsm1", "secp256r1")
    made = proof.commit(s, CHALLENGE)
    der = spki(key.public_key())
    assert made == proof.Commitment(proof.PAIR, CHALLENGE.hex(), 512, sha(der), der.hex())
    alone = Side(ec_pair(tokens["hsm2"], "ce", key, "secp256r1", public=False, token=False)[0],
                 None, "hsm2", "secp256r1")
    seen = []
    real = proof.os.urandom
    monkeypatch.setattr(proof.os, "urandom", lambda n: seen.append(n) or real(n))
    assert proof.check(made, alone) == sha(der)       # answers for the committed public key
    assert seen == [32]                              # over a FRESH challenge
    with pytest.raises(proof.NotProvable) as info:   # only its SHA-256: nothing to check with
        proof.check(proof.Commitment.parse(made.token()), alone)
    assert str(info.value) == ("the EC private key on hsm2 exposes no public key and the "
                               "commitment holds only its SHA-256: it cannot be proven")
    assert proof.check(proof.Commitment.parse(made.token()), s) == sha(der)
    public_only = Side(s.public, None, "hsm1", "secp256r1")
    assert proof.commit(public_only, CHALLENGE) == proof.Commitment(
        proof.PAIR, CHALLENGE.hex(), 0, sha(der), der.hex())
    assert proof.check(made, public_only) == sha(der)
    other = Side(*ec_pair(tokens["hsm2"], "ce-o", ec_key(1, "secp256r1"), "secp256r1",
                          token=False), "hsm2", "secp256r1")
    with pytest.raises(KeyMismatch, match="^the key on hsm2 has another public key \\(SHA-256"):
        proof.check(made, other)
    altered = proof.Commitment(proof.PAIR, CHALLENGE.hex(), 512, "00" * 32, der.hex())
    with pytest.raises(KeyMismatch, match="than the committed one"):
        proof.check(altered, s)
    with pytest.raises(KeyMismatch, match="commitment is of aes-ecb-decrypt"):
        proof.check(proof.Commitment("aes-ecb-decrypt", CHALLENGE.hex(), 256, "00"), s)
    with pytest.raises(proof.NotProvable, match="exposes no public key and none is given"):
        proof.commit(alone)


def test_a_pair_proven_with_the_source_half_made_before(tokens, monkeypatch):
    key = rsa_key(0)
    s = Side(*rsa_pair(tokens["hsm1"], "ps", key, token=False), "hsm1")
    t = side(rsa_pair(tokens["hsm2"], "ps", key, public=False, token=False)[0], "hsm2")
    started = proof.commit(s, CHALLENGE)
    calls = []
    real = proof.answers
    monkeypatch.setattr(proof, "answers", lambda k, *a: calls.append(k) or real(k, *a))
    found = proof.prove(s, t, started)
    assert calls == [t.key] and found.challenge == CHALLENGE  # the source answered already
    assert found.answers == {"source": "answered when its commitment was made",
                             "target": "SHA256-RSA-PKCS signature"}
    calls.clear()
    other = proof.Commitment(proof.PAIR, CHALLENGE.hex(), 2048, "00" * 32)
    found = proof.prove(s, t, other)   # not this key's commitment: both answer afresh
    assert calls == [s.key, t.key] and found.challenge != CHALLENGE


def test_prove_an_inventory_key(tokens):
    key = ec_key(0, "secp256r1")
    alone = ec_pair(tokens["hsm1"], "ik", key, "secp256r1", public=False, token=False)[0]
    with pytest.raises(KeyNotFound) as info:
        proof.prove_key(spec("ec", "secp256r1"), Side(alone, None, "hsm1 (source)"),
                        Side(alone, None, "hsm2"))
    assert str(info.value) == ("no public key labelled 'k-src' on hsm1 (source): the EC key "
                               "cannot be proven without it")
    s = side(session_secret(tokens["hsm1"], "ik-hmac", KeyType.GENERIC_SECRET, HMAC_KEY))
    short = side(session_secret(tokens["hsm2"], "ik-hmac", KeyType.GENERIC_SECRET, AES_128),
                 "hsm2")
    with pytest.raises(KeyMismatch) as info:   # the token refuses a key this short for HMAC
        proof.prove_key(spec("generic-secret"), s, short)
    assert str(info.value) == ("'k-tgt' on hsm2 is generic secret of 128 bits; 'k-src' on hsm1 "
                               "is generic secret of 256 bits: other key material")
    assert isinstance(info.value.__cause__, TokenError)
    with pytest.raises(TokenError):            # the same size: the token's refusal is the error
        proof.prove_key(spec("generic-secret"), short, short)
    same = side(session_secret(tokens["hsm2"], "ik-hmac2", KeyType.GENERIC_SECRET, HMAC_KEY),
                "hsm2")
    assert proof.prove_key(spec("generic-secret"), s, same).match
    other = side(session_secret(tokens["hsm2"], "ik-hmac3", KeyType.GENERIC_SECRET,
                                HMAC_KEY[::-1]), "hsm2")
    with pytest.raises(KeyMismatch) as info:
        proof.prove_key(spec("generic-secret"), s, other)
    assert str(info.value).startswith("'k-tgt' on hsm2 holds other key material than 'k-src' on "
                                      "hsm1: hmac-sha256 over the challenge ")


# ---- what a token's refusal says, and the corners of each path ---------------------------------

def refused(session, label, key_type=KeyType.AES, value=AES_128, attribute=Attribute.DECRYPT):
    """A session key whose Python object offers the operation the token then refuses (the
    attribute cleared after the object was made): a TokenError naming the step and the
    cluster, never a silent mismatch."""
    key = session_secret(session, label, key_type, value)
    key[attribute] = False
    return key


def test_a_token_refusal_names_the_step_and_the_cluster(tokens):
    step = "prove the key material (aes-ecb-decrypt) on {} failed: Unmapped error code 0x68"
    src = side(refused(tokens["hsm1"], "r-src"))
    tgt = side(session_secret(tokens["hsm2"], "r-tgt", KeyType.AES, AES_128), "hsm2")
    for call in (lambda: proof.prove(src, tgt), lambda: proof.commit(src),
                 lambda: proof.BY_NAME["aes-ecb-decrypt"].compute(src.key, CHALLENGE, "hsm1"),
                 lambda: proof._output(proof.BY_NAME["aes-ecb-decrypt"], src.key, CHALLENGE,
                                       "hsm1"),
                 lambda: proof.check(proof.commit(tgt), src)):
        with pytest.raises(TokenError) as info:
            call()
        assert str(info.value) == step.format("hsm1"), str(info.value)
    bad_target = side(refused(tokens["hsm2"], "r-tgt2"), "hsm2")
    with pytest.raises(TokenError) as info:
        proof.prove(tgt, bad_target)
    assert str(info.value) == step.format("hsm2")
    with pytest.raises(TokenError) as info:  # the same size: the token's refusal is the error
        proof.prove(side(session_secret(tokens["hsm1"], "r-s", KeyType.AES, AES_128)),
                    bad_target, proof.Commitment("aes-ecb-decrypt", CHALLENGE.hex(), 256, "0"))
    assert str(info.value) == step.format("hsm2")


def test_the_keys_that_permit_nothing_are_named_with_both_clusters(tokens):
    a = side(session_secret(tokens["hsm1"], "x-a", KeyType.AES, AES_128, NONE))
    b = side(session_secret(tokens["hsm2"], "x-b", KeyType.AES, AES_128, NONE), "hsm2")
    with pytest.raises(proof.NotProvable) as info:
        proof.prove(a, b)
    assert str(info.value).startswith("no strong proof of a AES key is permitted on hsm1 and "
                                      "hsm2 (tried: ")
    with pytest.raises(proof.NotProvable) as info:
        proof.commit(b)
    assert str(info.value).startswith("no strong proof of a AES key is permitted on hsm2 (")


def test_fewer_than_128_bits_of_any_method_is_refused():
    from types import SimpleNamespace
    for n, ok in ((15, False), (16, True)):
        method = SimpleNamespace(name="m", compute=lambda key, data, where, n=n: bytes(n))
        if ok:
            assert proof._output(method, None, CHALLENGE, "hsm1") == bytes(16)
        else:
            with pytest.raises(proof.NotProvable, match="^m gave 120 bits on hsm1"):
                proof._output(method, None, CHALLENGE, "hsm1")


def test_the_wrap_method_wraps_a_session_key_of_the_challenge_that_is_gone_after(tokens):
    key = session_secret(tokens["hsm1"], "w-aes", KeyType.AES, AES_256,
                         {Attribute.WRAP: True, Attribute.DECRYPT: False,
                          Attribute.ENCRYPT: False, Attribute.SIGN: False})
    out = proof.commit(side(key), CHALLENGE)
    assert out.method == "aes-key-wrap" and out.bits == 320
    assert out.sha256 == sha(aes_key_wrap(AES_256, CHALLENGE))
    assert not list(tokens["hsm1"].get_objects({Attribute.LABEL: "keyparity-proof"}))
    made = []

    class Watched:  # the key's session, seen through: what the proof asks it to create
        def create_object(self, template):
            made.append(dict(template))
            return tokens["hsm1"].create_object(template)

    out = proof._wrap(Watched(), key.wrap_key, Mechanism.AES_KEY_WRAP, CHALLENGE)
    assert out == aes_key_wrap(AES_256, CHALLENGE)
    (template,) = made  # a session object (never stored), whose value may be wrapped
    assert template[Attribute.TOKEN] is False and template[Attribute.SENSITIVE] is False
    assert template[Attribute.EXTRACTABLE] is True and template[Attribute.VALUE] == CHALLENGE
    assert template[Attribute.LABEL] == "keyparity-proof"


def test_a_commitment_of_another_key_type_or_of_none(tokens):
    made = proof.Commitment("aes-ecb-decrypt", CHALLENGE.hex(), 256, "00" * 32)
    other_type = side(session_secret(tokens["hsm1"], "t-sha", KeyType.SHA256_HMAC, HMAC_KEY))
    with pytest.raises(KeyMismatch) as info:
        proof.check(made, other_type)
    assert str(info.value) == ("the key on hsm1 is a SHA256_HMAC key; the commitment is of "
                               "aes-ecb-decrypt: other key material")
    with pytest.raises(proof.NotProvable, match="no strong proof of a SHA256_HMAC key is "
                                                r"permitted on hsm1 \(tried: none exists\)"):
        proof.commit(other_type)
    long = "x" * 60
    with pytest.raises(ValueError) as info:
        proof.Commitment.parse(long)
    assert str(info.value) == f"not a commitment: {'x' * 40!r}"


def test_exact_messages_of_a_secret_key_check(tokens):
    key = side(session_secret(tokens["hsm2"], "e-aes", KeyType.AES, AES_128), "hsm2")
    made = proof.Commitment("aes-ecb-decrypt", CHALLENGE.hex(), 256, "ab" * 32)
    found = sha(ecb(algorithms.AES(AES_128), CHALLENGE, True))
    with pytest.raises(KeyMismatch) as info:
        proof.check(made, key)
    assert str(info.value) == (f"the key on hsm2 holds other key material: aes-ecb-decrypt over "
                               f"the challenge {CHALLENGE.hex()[:16]}... gives SHA-256 "
                               f"{found[:16]}..., committed {'ab' * 8}...")


def test_exact_messages_of_a_pair_check(tokens):
    key0, key1 = rsa_key(0), rsa_key(1)
    der0, der1 = spki(key0.public_key()), spki(key1.public_key())
    other_alone = side(rsa_pair(tokens["hsm2"], "m-rsa1", key1, public=False, token=False)[0],
                       "hsm2")
    with pytest.raises(KeyMismatch) as info:  # its modulus shows another public key
        proof.check(proof.Commitment(proof.PAIR, CHALLENGE.hex(), 2048, sha(der0),
                                     der0.hex()), other_alone)
    assert str(info.value) == (f"the key on hsm2 has another public key (SHA-256 "
                               f"{sha(der1)[:16]}..., committed {sha(der0)[:16]}...)")
    with pytest.raises(KeyMismatch) as info:  # only the SHA-256 committed: the one shown
        proof.check(proof.Commitment(proof.PAIR, CHALLENGE.hex(), 2048, sha(der0)), other_alone)
    assert str(info.value) == (f"the key on hsm2 has another public key than the committed one "
                               f"(SHA-256 {sha(der1)[:16]}..., committed {sha(der0)[:16]}...)")
    liar = Side(rsa_pair(tokens["hsm2"], "m-rsa0", key1, public=False, token=False)[0],
                rsa_pair(tokens["hsm2"], "m-rsa0-pub", key0, token=False)[1], "hsm2")
    with pytest.raises(KeyMismatch) as info:  # a public object of key 0, a private of key 1
        proof.check(proof.Commitment(proof.PAIR, CHALLENGE.hex(), 2048, sha(der0),
                                     der0.hex()), liar)
    assert str(info.value) == ("the private key on hsm2 holds other key material: its "
                               "SHA256-RSA-PKCS signature over a fresh challenge does not verify "
                               "with the committed public key")
    # an EC public object alone, checked against the SHA-256 of its public key only
    ec_pub = ec_pair(tokens["hsm1"], "m-ec", ec_key(0), "secp256r1", token=False)[1]
    der = spki(ec_key(0).public_key())
    assert proof.check(proof.Commitment(proof.PAIR, CHALLENGE.hex(), 0, sha(der)),
                       Side(ec_pub, None, "hsm1", "secp256r1")) == sha(der)


def test_token_refusals_of_a_pairs_answer_name_the_step_and_the_cluster(tokens):
    session = tokens["hsm2"]
    key = rsa_key(0)
    der = spki(key.public_key())
    signer = rsa_pair(session, "q-rsa", key, token=False)[0]
    signer[Attribute.SIGN] = False  # the object still offers sign(): the token refuses
    with pytest.raises(TokenError) as info:
        proof.answers(signer, der, CHALLENGE, "hsm2")
    assert str(info.value) == ("prove the key material (RSA signature) on hsm2 failed: "
                               "Unmapped error code 0x68")
    decrypter = rsa_pair(session, "q-rsa-d", key, token=False)[0]
    decrypter[Attribute.SIGN] = False
    decrypter = next(session.get_objects({Attribute.LABEL: "q-rsa-d",
                                          Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
    decrypter[Attribute.DECRYPT] = False  # ... and now refuses to decrypt
    with pytest.raises(TokenError) as info:
        proof.answers(decrypter, der, CHALLENGE, "hsm2")
    assert str(info.value) == ("prove the key material (RSA-OAEP decryption) on hsm2 failed: "
                               "Unmapped error code 0x68")
    ec_priv, ec_pub = ec_pair(session, "q-ec", ec_key(0), "secp256r1", token=False)
    ec_priv[Attribute.SIGN] = False
    with pytest.raises(TokenError, match="^ECDSA signature for identity on hsm2 failed"):
        proof.answers(ec_priv, spki(ec_key(0).public_key()), CHALLENGE, "hsm2")
    source = Side(*rsa_pair(tokens["hsm1"], "q-src", key, token=False), "hsm1")
    with pytest.raises(TokenError, match=r"\(RSA signature\) on hsm2 failed"):
        proof.prove(source, side(signer, "hsm2"))
    with pytest.raises(TokenError, match=r"\(RSA signature\) on hsm2 failed"):
        proof.prove(side(signer, "hsm2"), Side(source.key, None, "hsm1"))
    with pytest.raises(TokenError, match=r"\(RSA signature\) on hsm2 failed"):
        proof.commit(side(signer, "hsm2"))
    with pytest.raises(TokenError, match=r"\(RSA signature\) on hsm2 failed"):
        proof.check(proof.commit(source), side(signer, "hsm2"))


def test_a_pair_is_proven_against_a_private_key_only(tokens):
    key = rsa_key(0)
    source = Side(*rsa_pair(tokens["hsm1"], "o-rsa", key, token=False), "hsm1")
    public_only = side(rsa_pair(tokens["hsm2"], "o-rsa", key, token=False)[1], "hsm2")
    ec = side(ec_pair(tokens["hsm2"], "o-ec", ec_key(0), "secp256r1", token=False)[0], "hsm2")
    for target in (public_only, ec):
        with pytest.raises(KeyMismatch) as info:
            proof.prove(source, target)
        assert str(info.value) == ("the key on hsm2 is not a RSA private key: other key "
                                   "material")
    # the source's public key is read from its own object when it has no public one
    other = side(rsa_pair(tokens["hsm2"], "o-rsa1", rsa_key(1), public=False, token=False)[0],
                 "hsm2")
    with pytest.raises(KeyMismatch) as info:
        proof.prove(Side(source.key, None, "hsm1"), other)
    assert str(info.value).startswith("the public key on hsm2 is not the one on hsm1 (SHA-256 ")
    # an EC public object where the private key was expected: it cannot answer
    ec_pub = ec_pair(tokens["hsm1"], "o-ec-pub", ec_key(0), "secp256r1", token=False)[1]
    with pytest.raises(proof.NotProvable) as info:
        proof.prove(Side(ec_pub, None, "hsm1", "secp256r1"),
                    Side(ec.key, None, "hsm2", "secp256r1"))
    assert str(info.value) == ("the EC private key on hsm1 may neither sign nor decrypt: its "
                               "material cannot be proven")


def test_the_curve_of_either_side_reads_the_public_key(tokens):
    key = ec_key(0, "secp256r1")
    s = Side(*ec_pair(tokens["hsm1"], "cv", key, "secp256r1", token=False), "hsm1", "secp256r1")
    t = Side(ec_pair(tokens["hsm2"], "cv", key, "secp256r1", public=False, token=False)[0], None,
             "hsm2", None)
    assert proof.prove(s, t).match  # the target's side names no curve: the source's does
    assert proof.prove(Side(s.key, s.public, "hsm1", None),
                       Side(t.key, None, "hsm2", "secp256r1")).match


def test_prove_key_passes_the_source_half_on(tokens):
    s = side(session_secret(tokens["hsm1"], "pk-aes", KeyType.AES, AES_128))
    t = side(session_secret(tokens["hsm2"], "pk-aes", KeyType.AES, AES_128), "hsm2")
    started = proof.commit(s, CHALLENGE)
    found = proof.prove_key(spec("aes"), s, t, started)
    assert found.challenge == CHALLENGE and found.source == started.sha256
