"""keyparity.hsm.vectors.exchange on real SoftHSM keys of known material, one token per cluster:
every vector in both directions agrees when both clusters hold the same key, and says
why not when they hold different keys; what the producer made is checked again in software
from the known key (so a record cannot claim an exchange that did not happen); inputs are
the seeded ones; a FIPS producer of 3DES and an EC consumer without its public point are not
applicable.

A faulty HSM, whose verification disagrees with software, cannot be had from SoftHSM: for that
one case the consumer's real public key object is wrapped so that its C_Verify answer is
inverted (everything else still comes from the token)."""
from __future__ import annotations

import hashlib
import hmac
import random
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.mechanisms import CTRParams, GCMParams

from keyparity import policy
from keyparity.hsm import vectors
from keyparity.errors import MechanismUnsupported, NotPermitted, TokenError
from keyparity.hsm.locate import Side
from keyparity.hsm.vectors import DIRECTIONS, NotApplicable, exchange
from keyparity.vector_table import TABLE
from p11tokens import ec_key, ec_pair, rsa_key, rsa_pair, secret, tokens  # noqa: F401

SPECS = {name: v.params for name, v in TABLE.items()}


def Party(name, key, public=None, curve=None, mode=None):  # noqa: N802 - reads as the old class
    """One side of an exchange, in the order the tests name it: cluster first."""
    return Side(key, public, name, curve, mode)


VALUES = {
    "aes": bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
    "des3": bytes.fromhex("0123456789abcdef23456789abcdef01456789abcdef0123"),
    "hmac": bytes(range(64, 128)),  # SoftHSM wants at least 64 bytes for HMAC-SHA512
}
OTHER_VALUES = {"aes": bytes(32), "des3": bytes.fromhex("fedcba9876543210" * 3)[:24][::-1],
                "hmac": bytes(range(64))}
# SoftHSM 2.6 does OAEP with SHA-1 only (CKR_ARGUMENTS_BAD otherwise): rsa-oaep-sha256 is
# exercised as far as the token allows (test_oaep_sha256_is_refused_by_softhsm)
ON_SOFTHSM = [v for v in SPECS if v != "rsa-oaep-sha256"]
KIND = {"des3-ecb": "des3", "des3-cbc": "des3", "aes-ecb": "aes", "aes-cbc": "aes",
        "aes-ctr": "aes", "aes-gcm": "aes", "hmac-sha256": "hmac", "hmac-sha384": "hmac",
        "hmac-sha512": "hmac", "rsa-pkcs1v15-sha256": "rsa", "rsa-pss-sha256": "rsa",
        "rsa-oaep-sha1": "rsa", "rsa-oaep-sha256": "rsa", "ecdsa-sha256": "ec",
        "ecdsa-sha384": "ec", "ecdsa-sha512": "ec", "des3-cmac": "des3", "aes-cmac": "aes",
        "aes-key-wrap": "aes"}
SEED, LABEL = 20261123, "k-test"


def _des3():
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:  # older cryptography
        TripleDES = algorithms.TripleDES  # noqa: N806
    return TripleDES


@pytest.fixture(scope="module")
def parties(tokens) -> dict[str, Any]:
    """For each kind of key: the same material on hsm1 and hsm2, and other material on hsm2."""
    out: dict[str, Any] = {}
    for token in ("hsm1", "hsm2"):
        s = tokens[token]
        for kind, key_type in (("aes", KeyType.AES), ("des3", KeyType.DES3),
                               ("hmac", KeyType.GENERIC_SECRET)):
            wraps = {Attribute.WRAP: True, Attribute.UNWRAP: True} if kind == "aes" else {}
            out[token, kind] = (secret(s, f"k-{kind}", key_type, VALUES[kind], extra=wraps),
                                None)
            if token == "hsm2":
                out["other", kind] = (secret(s, f"o-{kind}", key_type, OTHER_VALUES[kind],
                                             extra=wraps), None)
        out[token, "rsa"] = rsa_pair(s, "k-rsa", rsa_key(0))
        out[token, "ec"] = ec_pair(s, "k-ec", ec_key(0), "secp256r1")
        if token == "hsm2":
            out["other", "rsa"] = rsa_pair(s, "o-rsa", rsa_key(1))
            out["other", "ec"] = ec_pair(s, "o-ec", ec_key(1), "secp256r1")
    return out


def party(parties, who: str, kind: str, *, name: str | None = None, public: bool = True,
          mode: str | None = "NON_FIPS") -> Party:
    key, pub = parties[who, kind]
    return Party(name or ("hsm1" if who == "hsm1" else "hsm2"), key,
                 pub if public else None, "secp256r1" if kind == "ec" else None, mode)


def inputs(vector: str, direction: str, seed: int = SEED, label: str = LABEL) -> dict[str, bytes]:
    """The seeded inputs, drawn as the module documents: message, then IV, then AAD."""
    spec = SPECS[vector]
    rng = random.Random(f"{seed}/{label}/{vector}/{direction}")
    return {"msg": rng.randbytes(spec.msg), "iv": rng.randbytes(getattr(spec, "iv", 0)),
            "aad": rng.randbytes(getattr(spec, "aad", 0))}


def run(vector, direction, source, target, tc_id=7, seed=SEED, label=LABEL) -> dict[str, Any]:
    return exchange(vector, direction, source, target, label=label, seed=seed, tc_id=tc_id)


# ---- the table -------------------------------------------------------------------------------

def test_the_vector_table():
    assert {v: (type(s).__name__, s.msg) for v, s in SPECS.items()} == {
        "des3-ecb": ("Cipher", 24), "des3-cbc": ("Cipher", 24), "aes-ecb": ("Cipher", 32),
        "aes-cbc": ("Cipher", 32), "aes-ctr": ("Cipher", 37), "aes-gcm": ("Cipher", 37),
        "hmac-sha256": ("Mac", 48), "hmac-sha384": ("Mac", 48), "hmac-sha512": ("Mac", 48),
        "rsa-pkcs1v15-sha256": ("RsaSig", 64), "rsa-pss-sha256": ("RsaSig", 64),
        "rsa-oaep-sha1": ("RsaOaep", 32), "rsa-oaep-sha256": ("RsaOaep", 32),
        "ecdsa-sha256": ("Ecdsa", 64), "ecdsa-sha384": ("Ecdsa", 64),
        "ecdsa-sha512": ("Ecdsa", 64), "des3-cmac": ("Mac", 48), "aes-cmac": ("Mac", 48),
        "aes-key-wrap": ("KeyWrap", 32)}
    gcm = SPECS["aes-gcm"]
    assert (gcm.iv, gcm.aad, gcm.tag) == (12, 20, 16)
    assert (SPECS["aes-ctr"].iv, SPECS["aes-cbc"].iv, SPECS["des3-cbc"].iv) == (8, 16, 8)
    assert DIRECTIONS == ("source->target", "target->source")


def test_cipher_parameters():
    p = SPECS["aes-gcm"].param(b"\x01" * 12, b"\x02" * 20)
    assert isinstance(p, GCMParams)
    assert isinstance(SPECS["aes-ctr"].param(b"\x03" * 8, b""), CTRParams)
    assert SPECS["aes-cbc"].param(b"\x04" * 16, b"") == b"\x04" * 16
    assert SPECS["aes-ecb"].param(b"", b"") is None


def test_inputs_are_seeded_by_seed_label_vector_and_direction():
    spec = SPECS["aes-gcm"]
    got = vectors._inputs(SEED, LABEL, "aes-gcm", DIRECTIONS[0], spec)
    assert got == inputs("aes-gcm", DIRECTIONS[0])
    assert (len(got["msg"]), len(got["iv"]), len(got["aad"])) == (37, 12, 20)
    assert got != vectors._inputs(SEED + 1, LABEL, "aes-gcm", DIRECTIONS[0], spec)
    assert got != vectors._inputs(SEED, "k-other", "aes-gcm", DIRECTIONS[0], spec)
    assert got != vectors._inputs(SEED, LABEL, "aes-gcm", DIRECTIONS[1], spec)
    mac = vectors._inputs(SEED, LABEL, "hmac-sha256", DIRECTIONS[0], SPECS["hmac-sha256"])
    assert (len(mac["msg"]), mac["iv"], mac["aad"]) == (48, b"", b"")


# ---- the same key on both clusters: every vector agrees, both ways ----------------------------

MECHANISMS = {
    "des3-ecb": "CKM_DES3_ECB", "des3-cbc": "CKM_DES3_CBC", "aes-ecb": "CKM_AES_ECB",
    "aes-cbc": "CKM_AES_CBC", "aes-ctr": "CKM_AES_CTR", "aes-gcm": "CKM_AES_GCM",
    "hmac-sha256": "CKM_SHA256_HMAC", "hmac-sha384": "CKM_SHA384_HMAC",
    "hmac-sha512": "CKM_SHA512_HMAC", "rsa-pkcs1v15-sha256": "CKM_SHA256_RSA_PKCS",
    "rsa-pss-sha256": "CKM_SHA256_RSA_PKCS_PSS", "rsa-oaep-sha1": "CKM_RSA_PKCS_OAEP (sha1)",
    "rsa-oaep-sha256": "CKM_RSA_PKCS_OAEP (sha256)", "ecdsa-sha256": "CKM_ECDSA over SHA256",
    "ecdsa-sha384": "CKM_ECDSA over SHA384", "ecdsa-sha512": "CKM_ECDSA over SHA512",
    "des3-cmac": "CKM_DES3_CMAC", "aes-cmac": "CKM_AES_CMAC", "aes-key-wrap": "CKM_AES_KEY_WRAP",
}
FIELDS = {"Cipher": {"ct"}, "Mac": {"tag"}, "RsaSig": {"sig"}, "RsaOaep": {"ct"},
          "Ecdsa": {"sig"}, "KeyWrap": {"ct"}}
COMMENTS = {
    "Cipher": "decrypts to the message", "Mac": "MAC verifies", "RsaOaep": "decrypts to the message",
    "KeyWrap": "unwraps, and wraps again to the same bytes",
    "RsaSig": "software, with {c}'s public key: valid; on {c}: valid",
    "Ecdsa": "software, with {c}'s public key: valid; on {c}: valid",
}


def software_check(vector: str, record: dict[str, Any], data: dict[str, bytes]) -> None:
    """What the producer recorded is what the known key makes of the seeded message."""
    kind, msg = KIND[vector], data["msg"]
    spec = SPECS[vector]
    if vector in ("aes-ecb", "aes-cbc", "aes-ctr", "des3-ecb", "des3-cbc"):
        algorithm = algorithms.AES(VALUES["aes"]) if kind == "aes" else _des3()(VALUES["des3"])
        mode = {"ecb": modes.ECB(), "cbc": None, "ctr": None}[vector.split("-")[1]]
        if vector.endswith("cbc"):
            mode = modes.CBC(data["iv"])
        if vector == "aes-ctr":
            mode = modes.CTR(data["iv"] + bytes(7) + b"\x01")  # CK_AES_CTR_PARAMS counter block
        enc = Cipher(algorithm, mode).encryptor()
        assert record["ct"] == (enc.update(msg) + enc.finalize()).hex()
    elif vector == "aes-gcm":
        ct = bytes.fromhex(record["ct"]) + bytes.fromhex(record["tag"])
        assert len(bytes.fromhex(record["tag"])) == 16 and len(bytes.fromhex(record["ct"])) == 37
        assert AESGCM(VALUES["aes"]).decrypt(data["iv"], ct, data["aad"]) == msg
    elif vector.endswith("-cmac"):  # an independent CMAC (pyca/cryptography)
        mac = CMAC(algorithms.AES(VALUES["aes"]) if kind == "aes" else _des3()(VALUES["des3"]))
        mac.update(msg)
        assert record["tag"] == mac.finalize().hex()
    elif vector == "aes-key-wrap":  # RFC 3394 in software: what the producer's token wrapped
        assert record["ct"] == aes_key_wrap(VALUES["aes"], msg).hex()
    elif kind == "hmac":
        algo = vector.split("-")[1]
        assert record["tag"] == hmac.new(VALUES["hmac"], msg, algo).hexdigest()
    elif vector.startswith("rsa-oaep"):
        h = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256()}[spec.hash]
        back = rsa_key(0).decrypt(bytes.fromhex(record["ct"]),
                                  padding.OAEP(padding.MGF1(h), h, None))
        assert back == msg
    elif kind == "rsa":
        pad = (padding.PSS(padding.MGF1(hashes.SHA256()), 32) if spec.pss
               else padding.PKCS1v15())
        rsa_key(0).public_key().verify(bytes.fromhex(record["sig"]), msg, pad, hashes.SHA256())
        if not spec.pss:  # deterministic: exactly the software signature
            assert record["sig"] == rsa_key(0).sign(msg, pad, hashes.SHA256()).hex()
        else:  # PSS with a 32-byte salt, not the maximum: verifying with salt 32 alone passes
            with pytest.raises(InvalidSignature):
                rsa_key(0).public_key().verify(
                    bytes.fromhex(record["sig"]), msg,
                    padding.PSS(padding.MGF1(hashes.SHA256()), 31), hashes.SHA256())
    else:
        digest = hashlib.new(spec.hash, msg).digest()
        sig = bytes.fromhex(record["sig"])
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                   int.from_bytes(sig[32:], "big"))
        algo = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
                "sha512": hashes.SHA512()}[spec.hash]
        ec_key(0).public_key().verify(der, digest, ec.ECDSA(Prehashed(algo)))


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("vector", ON_SOFTHSM)
def test_the_same_key_on_both_clusters_agrees(parties, vector, direction):
    kind = KIND[vector]
    source, target = party(parties, "hsm1", kind), party(parties, "hsm2", kind)
    record = run(vector, direction, source, target, tc_id=41)
    data = inputs(vector, direction)
    producer, consumer = ("hsm1", "hsm2") if direction == DIRECTIONS[0] else ("hsm2", "hsm1")
    spec = SPECS[vector]
    kind_name = type(spec).__name__
    expected_fields = {"tcId", "keyLabel", "vector", "direction", "producer", "consumer",
                       "result", "msg", "mechanism", "ok", "comment"} | FIELDS[kind_name]
    if getattr(spec, "iv", 0):
        expected_fields.add("iv")
    if getattr(spec, "aad", 0):
        expected_fields.add("aad")
    if getattr(spec, "tag", 0):
        expected_fields.add("tag")
    assert set(record) == expected_fields
    assert record["ok"] is True
    assert record["comment"] == COMMENTS[kind_name].format(c=consumer)
    assert (record["tcId"], record["keyLabel"], record["vector"], record["direction"],
            record["consumer"], record["result"]) == (41, LABEL, vector, direction, consumer,
                                                      "valid")
    assert record["producer"] == (f"{producer} (its public key object)"
                                  if kind_name == "RsaOaep" else producer)
    assert record["mechanism"] == MECHANISMS[vector]
    assert record["msg"] == data["msg"].hex()
    if "iv" in record:
        assert record["iv"] == data["iv"].hex()
    if "aad" in record:
        assert record["aad"] == data["aad"].hex()
    software_check(vector, record, data)


# ---- different keys: every vector says so -----------------------------------------------------

REFUSALS = {"aes-gcm"}  # the consumer refuses (tag); the others decrypt to something else


@pytest.mark.parametrize("vector", ON_SOFTHSM)
def test_different_keys_disagree(parties, vector):
    kind = KIND[vector]
    source, target = party(parties, "hsm1", kind), party(parties, "other", kind)
    record = run(vector, DIRECTIONS[0], source, target)
    assert record["ok"] is False
    name = type(SPECS[vector]).__name__
    comment = record["comment"]
    if name == "Cipher" and vector in REFUSALS:
        assert comment.startswith("hsm2 refuses it (decrypt (CKM_AES_GCM) on hsm2 failed: ")
        assert comment.endswith("): different key material")
    elif name == "Cipher":
        assert comment == "decrypts to something else: different key material"
    elif name == "Mac":
        assert comment == "MAC does not verify"
    elif name == "KeyWrap":
        assert comment.startswith("hsm2 refuses it (unwrap (CKM_AES_KEY_WRAP) on hsm2 failed: ")
        assert comment.endswith("): different key material")
    elif name == "RsaOaep":
        assert comment.startswith("hsm2 refuses it (OAEP decrypt (sha1) on hsm2 failed: ")
        assert comment.endswith("): different key material")
    else:
        assert comment == ("software, with hsm2's public key: INVALID; on hsm2: INVALID")
    # the producer's output is still right for its own key
    software_check(vector, record, inputs(vector, DIRECTIONS[0]))


def test_the_other_direction_has_the_roles_swapped(parties):
    source, target = party(parties, "hsm1", "aes"), party(parties, "other", "aes")
    record = run("aes-cbc", DIRECTIONS[1], source, target)
    assert (record["producer"], record["consumer"], record["ok"]) == ("hsm2", "hsm1", False)
    # hsm2 (other key) produced: the ciphertext is not the known key's
    data = inputs("aes-cbc", DIRECTIONS[1])
    enc = Cipher(algorithms.AES(OTHER_VALUES["aes"]), modes.CBC(data["iv"])).encryptor()
    assert record["ct"] == (enc.update(data["msg"]) + enc.finalize()).hex()


# ---- what does not apply ------------------------------------------------------------------------

@pytest.mark.parametrize("vector", ["des3-ecb", "des3-cbc"])
def test_a_fips_producer_of_3des_is_not_applicable_but_a_fips_consumer_is(parties, vector):
    source = party(parties, "hsm1", "des3", mode="FIPS")
    target = party(parties, "hsm2", "des3", mode="NON_FIPS")
    with pytest.raises(NotApplicable) as info:
        run(vector, DIRECTIONS[0], source, target)
    assert str(info.value) == policy.producer_restriction(vector, "hsm1", "FIPS")
    assert str(info.value).startswith("hsm1 is in FIPS mode: 3DES encryption is not approved")
    record = run(vector, DIRECTIONS[1], source, target)  # hsm2 produces, FIPS hsm1 decrypts
    assert record["ok"] is True and record["producer"] == "hsm2"


def test_a_fips_producer_of_aes_is_fine(parties):
    source = party(parties, "hsm1", "aes", mode="FIPS")
    assert run("aes-ecb", DIRECTIONS[0], source, party(parties, "hsm2", "aes"))["ok"] is True


def test_ecdsa_towards_a_consumer_without_its_public_key_is_not_applicable(parties):
    source = party(parties, "hsm1", "ec")
    target = party(parties, "hsm2", "ec", public=False)
    with pytest.raises(NotApplicable) as info:
        run("ecdsa-sha256", DIRECTIONS[0], source, target)
    assert str(info.value) == ("hsm2 holds only the EC private key, which exposes no public "
                               "point; the other direction proves the pair")
    record = run("ecdsa-sha256", DIRECTIONS[1], source, target)  # hsm1 has its public key
    assert record["ok"] is True and record["consumer"] == "hsm1"


# ---- RSA without public key objects --------------------------------------------------------------

@pytest.mark.parametrize("vector", ["rsa-pkcs1v15-sha256", "rsa-pss-sha256"])
def test_rsa_signature_checked_in_software_only_without_a_public_object(parties, vector):
    source = party(parties, "hsm1", "rsa")
    target = party(parties, "hsm2", "rsa", public=False)
    record = run(vector, DIRECTIONS[0], source, target)
    assert record["ok"] is True
    assert record["comment"] == "software, with hsm2's public key: valid"
    other = party(parties, "other", "rsa", public=False)
    record = run(vector, DIRECTIONS[0], source, other)
    assert record["ok"] is False
    assert record["comment"] == "software, with hsm2's public key: INVALID"


def test_oaep_sha256_is_refused_by_softhsm_as_a_mechanism_not_as_a_mismatch(parties):
    source, target = party(parties, "hsm1", "rsa"), party(parties, "hsm2", "rsa")
    with pytest.raises(MechanismUnsupported, match=r"^OAEP encrypt \(sha256\) on hsm1 failed: "
                                                   "CKR_ARGUMENTS_BAD"):
        run("rsa-oaep-sha256", DIRECTIONS[0], source, target)
    source = party(parties, "hsm1", "rsa", public=False)  # software encrypts, hsm2 decrypts
    with pytest.raises(MechanismUnsupported, match=r"^OAEP decrypt \(sha256\) on hsm2 failed: "
                                                   "CKR_ARGUMENTS_BAD"):
        run("rsa-oaep-sha256", DIRECTIONS[0], source, target)


@pytest.mark.parametrize("vector", ["rsa-oaep-sha1"])
def test_oaep_in_software_when_the_producer_has_no_public_object(parties, vector):
    source = party(parties, "hsm1", "rsa", public=False)
    target = party(parties, "hsm2", "rsa")
    record = run(vector, DIRECTIONS[0], source, target)
    assert record["producer"] == ("software, with hsm1's public key (CKA_MODULUS of its "
                                  "private key)")
    assert record["ok"] is True and record["comment"] == "decrypts to the message"
    software_check(vector, record, inputs(vector, DIRECTIONS[0]))
    record = run(vector, DIRECTIONS[0], source, party(parties, "other", "rsa"))
    assert record["ok"] is False and record["comment"].startswith("hsm2 refuses it (OAEP "
                                                                  "decrypt (")


# ---- software and HSM must both agree --------------------------------------------------------

class Disagrees:
    """A real public key object whose C_Verify answer is inverted: a faulty HSM."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getitem__(self, attribute: Any) -> Any:
        return self._real[attribute]

    def verify(self, *args: Any, **kwargs: Any) -> bool:
        return not self._real.verify(*args, **kwargs)


@pytest.mark.parametrize("vector", ["rsa-pkcs1v15-sha256", "rsa-pss-sha256", "ecdsa-sha384"])
def test_a_signature_software_accepts_but_the_hsm_rejects_fails(parties, vector):
    kind = KIND[vector]
    source = party(parties, "hsm1", kind)
    target = party(parties, "hsm2", kind)
    faulty = Party(target.cluster, target.key, Disagrees(target.public), target.curve, target.mode)
    record = run(vector, DIRECTIONS[0], source, faulty)
    assert record["ok"] is False
    assert record["comment"] == "software, with hsm2's public key: valid; on hsm2: INVALID"
    # and the other way round: software rejects (other key), the faulty HSM accepts
    other = party(parties, "other", kind)
    faulty = Party("hsm2", other.key, Disagrees(other.public), other.curve, other.mode)
    record = run(vector, DIRECTIONS[0], source, faulty)
    assert record["ok"] is False
    assert record["comment"] == "software, with hsm2's public key: INVALID; on hsm2: valid"


def test_a_mac_accepted_by_the_consumer_is_ok_only_then(parties):
    # HMAC is checked by the consumer's token alone (no software side: the key is secret)
    source, target = party(parties, "hsm1", "hmac"), party(parties, "hsm2", "hmac")
    ns = SimpleNamespace(**{k: v for k, v in vars(target).items()})
    ns.key = Disagrees(target.key)
    record = run("hmac-sha256", DIRECTIONS[0], source, ns)
    assert record["ok"] is False and record["comment"] == "MAC does not verify"


def test_every_spec_type_has_a_runner():
    assert set(vectors._RUNNERS) == {type(s) for s in SPECS.values()}
    assert vectors._PSS == (Mechanism.SHA256, vectors.MGF.SHA256, 32)


class Garbles:
    """A real private key object whose C_Decrypt answer comes back altered: a faulty HSM."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getitem__(self, attribute: Any) -> Any:
        return self._real[attribute]

    def decrypt(self, *args: Any, **kwargs: Any) -> bytes:
        out = bytes(self._real.decrypt(*args, **kwargs))
        return bytes([out[0] ^ 1]) + out[1:]


def test_oaep_that_decrypts_to_something_else_is_not_ok(parties):
    source, target = party(parties, "hsm1", "rsa"), party(parties, "hsm2", "rsa")
    faulty = Party(target.cluster, Garbles(target.key), target.public, None, target.mode)
    record = run("rsa-oaep-sha1", DIRECTIONS[0], source, faulty)
    assert record["ok"] is False and record["comment"] == "decrypts to something else"


# ---- a token that refuses names the step and the cluster -----------------------------------------

def revoked(obj: Any, attribute: Any) -> Any:
    """The key object, its capability then taken away on the token (the Python object still
    offers the operation; the token refuses it with CKR_KEY_FUNCTION_NOT_PERMITTED)."""
    obj[attribute] = False
    return obj


REFUSED = "Unmapped error code 0x68"  # CKR_KEY_FUNCTION_NOT_PERMITTED


def test_a_producer_that_may_not_encrypt(tokens):
    key = revoked(secret(tokens["hsm1"], "rv-aes", KeyType.AES, VALUES["aes"],
                         extra={Attribute.TOKEN: False}), Attribute.ENCRYPT)
    other = secret(tokens["hsm2"], "rv-aes2", KeyType.AES, VALUES["aes"],
                   extra={Attribute.TOKEN: False})
    with pytest.raises(TokenError) as info:
        run("aes-cbc", DIRECTIONS[0], Party("hsm1", key), Party("hsm2", other))
    assert str(info.value) == f"encrypt (CKM_AES_CBC) on hsm1 failed: {REFUSED}"


def test_a_mac_producer_or_consumer_that_may_not(tokens):
    good = secret(tokens["hsm2"], "rv-mac", KeyType.GENERIC_SECRET, VALUES["hmac"],
                  extra={Attribute.TOKEN: False})
    no_sign = revoked(secret(tokens["hsm1"], "rv-mac-s", KeyType.GENERIC_SECRET,
                             VALUES["hmac"], extra={Attribute.TOKEN: False}), Attribute.SIGN)
    with pytest.raises(TokenError) as info:
        run("hmac-sha384", DIRECTIONS[0], Party("hsm1", no_sign), Party("hsm2", good))
    assert str(info.value) == f"sign (CKM_SHA384_HMAC) on hsm1 failed: {REFUSED}"
    no_verify = revoked(secret(tokens["hsm1"], "rv-mac-v", KeyType.GENERIC_SECRET,
                               VALUES["hmac"], extra={Attribute.TOKEN: False}),
                        Attribute.VERIFY)
    with pytest.raises(TokenError) as info:
        run("hmac-sha256", DIRECTIONS[0], Party("hsm2", good), Party("hsm1", no_verify))
    assert str(info.value) == f"verify (CKM_SHA256_HMAC) on hsm1 failed: {REFUSED}"


def test_an_rsa_signer_or_verifier_that_may_not(tokens, parties):
    private, public = rsa_pair(tokens["hsm1"], "rv-rsa", rsa_key(0))
    revoked(private, Attribute.SIGN)
    target = party(parties, "hsm2", "rsa")
    with pytest.raises(TokenError) as info:
        run("rsa-pss-sha256", DIRECTIONS[0], Party("hsm1", private, public), target)
    assert str(info.value) == f"sign (CKM_SHA256_RSA_PKCS_PSS) on hsm1 failed: {REFUSED}"
    private2, public2 = rsa_pair(tokens["hsm1"], "rv-rsa2", rsa_key(0))
    revoked(public2, Attribute.VERIFY)
    with pytest.raises(TokenError) as info:
        run("rsa-pkcs1v15-sha256", DIRECTIONS[0], target, Party("hsm1", private2, public2))
    assert str(info.value) == f"verify (CKM_SHA256_RSA_PKCS) on hsm1 failed: {REFUSED}"


def test_an_ecdsa_signer_or_verifier_that_may_not(tokens, parties):
    private, public = ec_pair(tokens["hsm1"], "rv-ec", ec_key(0), "secp256r1")
    revoked(private, Attribute.SIGN)
    target = party(parties, "hsm2", "ec")
    with pytest.raises(TokenError) as info:
        run("ecdsa-sha256", DIRECTIONS[0], Party("hsm1", private, public, "secp256r1"), target)
    assert str(info.value) == f"ECDSA sign on hsm1 failed: {REFUSED}"
    private2, public2 = ec_pair(tokens["hsm1"], "rv-ec2", ec_key(0), "secp256r1")
    revoked(public2, Attribute.VERIFY)
    with pytest.raises(TokenError) as info:
        run("ecdsa-sha512", DIRECTIONS[0], target,
            Party("hsm1", private2, public2, "secp256r1"))
    assert str(info.value) == f"ECDSA verify on hsm1 failed: {REFUSED}"


NOT_PERMITTED = ("this vector cannot be exchanged; the attribute table shows whether the "
                 "source allows it")


def test_a_key_that_may_not_encrypt_decrypt_sign_or_verify_is_not_permitted(tokens, parties):
    """A key created with CKA_ENCRYPT (DECRYPT, SIGN, VERIFY) false has no such method in
    python-pkcs11: NotPermitted names the operation, the attribute and the cluster."""
    s = tokens["hsm1"]
    no_encrypt = secret(s, "np-aes", KeyType.AES, VALUES["aes"],
                        extra={Attribute.ENCRYPT: False, Attribute.TOKEN: False})
    target = party(parties, "hsm2", "aes")
    with pytest.raises(NotPermitted) as info:
        run("aes-cbc", DIRECTIONS[0], Party("hsm1", no_encrypt), target)
    assert str(info.value) == ("the key on hsm1 may not encrypt (CKA_ENCRYPT is false there): "
                               + NOT_PERMITTED)
    no_decrypt = secret(s, "np-aes2", KeyType.AES, VALUES["aes"],
                        extra={Attribute.DECRYPT: False, Attribute.TOKEN: False})
    with pytest.raises(NotPermitted) as info:
        run("aes-gcm", DIRECTIONS[0], target, Party("hsm1 (source)", no_decrypt))
    assert str(info.value) == ("the key on hsm1 (source) may not decrypt (CKA_DECRYPT is false "
                               "there): " + NOT_PERMITTED)
    no_verify = secret(s, "np-hmac", KeyType.GENERIC_SECRET, VALUES["hmac"],
                       extra={Attribute.VERIFY: False, Attribute.TOKEN: False})
    with pytest.raises(NotPermitted) as info:
        run("hmac-sha256", DIRECTIONS[1], Party("hsm1", no_verify),
            party(parties, "hsm2", "hmac"))
    assert str(info.value) == ("the key on hsm1 may not verify (CKA_VERIFY is false there): "
                               + NOT_PERMITTED)
