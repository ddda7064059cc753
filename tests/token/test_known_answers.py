"""keyparity.hsm.known_answers on real SoftHSM keys of known material: what a baseline records
(made by the key on hsm1, checked in software from the known key), that a token holding the
same material checks it out, that other material under the same label, an edited record or a
fresh signature the baseline's public key rejects goes red, what is not applicable and why,
and that no record carries key material."""
from __future__ import annotations

import hashlib
import hmac
import json
import random
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pkcs11 import Attribute, KeyType

from keyparity import policy
from keyparity.hsm.known_answers import CHECK_PURPOSE, MAKE_PURPOSE, check, make, public_key
from keyparity.hsm.locate import Side
from keyparity.vector_table import TABLE, allowed
from p11tokens import ec_key, ec_pair, rsa_key, rsa_pair, secret, tokens  # noqa: F401

SEED = 7041
SECRETS = {  # kind -> (key type, this material, other material)
    "aes128": (KeyType.AES, bytes(range(16, 32)), bytes(16)),
    "aes256": (KeyType.AES, bytes(range(32)), bytes(range(100, 132))),
    "des3": (KeyType.DES3, bytes.fromhex("0123456789abcdef23456789abcdef01456789abcdef0123"),
             bytes.fromhex("3210fedcba98765410fedcba98765432fedcba9876543210")),
    "des2": (KeyType.DES2, bytes.fromhex("0123456789abcdef23456789abcdef01"),
             bytes.fromhex("fedcba98765432101032547698badcfe")),
    "hmac": (KeyType.GENERIC_SECRET, bytes(range(64, 128)), bytes(range(64))),
}
CURVES = {"ec256": "secp256r1", "ec384": "secp384r1"}
# SoftHSM 2.6 does OAEP with SHA-1 only
# the ciphers of AES and 3DES keys (their MACs and a KEK's wrap: test_a_mac_and_a_wrap_vector)
_AES, _DES = ("aes-ecb", "aes-cbc", "aes-ctr", "aes-gcm"), ("des3-ecb", "des3-cbc")
VECTORS = {"aes128": _AES, "aes256": _AES, "des3": _DES,
           "des2": _DES, "hmac": allowed("generic-secret"),
           "rsa": ("rsa-pkcs1v15-sha256", "rsa-pss-sha256", "rsa-oaep-sha1"),
           "ec256": allowed("ec"), "ec384": allowed("ec")}
KINDS = list(VECTORS)


def test_the_vectors_under_test_are_all_of_each_type():
    assert set(allowed("aes")) - set(VECTORS["aes128"]) == {"aes-cmac", "aes-key-wrap"}
    assert set(allowed("des3")) - set(VECTORS["des3"]) == {"des3-cmac"}
    assert VECTORS["hmac"] == ("hmac-sha256", "hmac-sha384", "hmac-sha512")
    assert VECTORS["ec256"] == ("ecdsa-sha256", "ecdsa-sha384", "ecdsa-sha512")


def label(kind: str) -> str:
    return f"k-{kind}"


@pytest.fixture(scope="module")
def sides(tokens) -> dict[tuple[str, str], Side]:
    """maker: hsm1; same: the same material on hsm2; other: other material on hsm2 under the
    same label (session objects). EC/RSA keys come with their public objects."""
    out: dict[tuple[str, str], Side] = {}
    for who, token, n in (("maker", "hsm1", 0), ("same", "hsm2", 0), ("other", "hsm2", 1)):
        s, extra = tokens[token], {Attribute.TOKEN: who != "other"}
        for kind, (key_type, value, other) in SECRETS.items():
            key = secret(s, label(kind), key_type, other if n else value, extra=extra)
            out[who, kind] = Side(key, None, token, None, "NON_FIPS")
        private, public = rsa_pair(s, label("rsa"), rsa_key(n), token=who != "other")
        out[who, "rsa"] = Side(private, public, token, None, "NON_FIPS")
        for kind, curve in CURVES.items():
            private, public = ec_pair(s, label(kind), ec_key(n, curve), curve,
                                      token=who != "other")
            out[who, kind] = Side(private, public, token, curve, "NON_FIPS")
    return out


def bare(side: Side, **changes: Any) -> Side:
    """The side without its public object (or otherwise changed)."""
    fields = {"key": side.key, "public": None, "cluster": side.cluster, "curve": side.curve,
              "mode": side.mode}
    return Side(**(fields | changes))


@pytest.fixture(scope="module")
def baseline(sides) -> dict[str, tuple[list[dict[str, Any]], str | None]]:
    """kind -> (the records made on hsm1, the public key recorded with them)."""
    return {kind: (make(sides["maker", kind], VECTORS[kind], label=label(kind), seed=SEED),
                   public_key(sides["maker", kind])) for kind in KINDS}


def seeded(vector: str, kind: str, seed: int = SEED) -> dict[str, str]:
    """The seeded inputs as vectors.py documents them, direction "baseline", as hex."""
    spec = TABLE[vector].params
    rng = random.Random(f"{seed}/{label(kind)}/{vector}/baseline")
    data = {"msg": rng.randbytes(spec.msg), "iv": rng.randbytes(getattr(spec, "iv", 0)),
            "aad": rng.randbytes(getattr(spec, "aad", 0))}
    return {k: v.hex() for k, v in data.items() if v}


def _des3() -> Any:
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:  # older cryptography
        TripleDES = algorithms.TripleDES  # noqa: N806
    return TripleDES


def software(kind: str, rec: dict[str, Any]) -> None:
    """What the record holds is what the known key makes of its message."""
    vector, msg = rec["vector"], bytes.fromhex(rec["msg"])
    out = {f: bytes.fromhex(rec[f]) for f in ("iv", "aad", "ct", "tag", "sig") if f in rec}
    if kind in SECRETS and kind != "hmac":
        value = SECRETS[kind][1]
        value += value[:8] if kind == "des2" else b""  # two-key 3DES as K1 K2 K1
        if vector == "aes-gcm":
            assert AESGCM(value).decrypt(out["iv"], out["ct"] + out["tag"], out["aad"]) == msg
            return
        algorithm = algorithms.AES(value) if kind.startswith("aes") else _des3()(value)
        mode = {"ecb": lambda: modes.ECB(), "cbc": lambda: modes.CBC(out["iv"]),
                "ctr": lambda: modes.CTR(out["iv"] + bytes(7) + b"\x01")}[vector[-3:]]()
        dec = Cipher(algorithm, mode).decryptor()
        assert dec.update(out["ct"]) + dec.finalize() == msg
    elif kind == "hmac":
        assert rec["tag"] == hmac.new(SECRETS[kind][1], msg, vector.split("-")[1]).hexdigest()
    elif vector == "rsa-oaep-sha1":
        oaep = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
        assert rsa_key(0).decrypt(out["ct"], oaep) == msg
    elif kind == "rsa":
        pad = (padding.PSS(padding.MGF1(hashes.SHA256()), 32) if "pss" in vector
               else padding.PKCS1v15())
        rsa_key(0).public_key().verify(out["sig"], msg, pad, hashes.SHA256())
    else:
        name = TABLE[vector].params.hash
        half = len(out["sig"]) // 2
        der = encode_dss_signature(int.from_bytes(out["sig"][:half], "big"),
                                   int.from_bytes(out["sig"][half:], "big"))
        ec_key(0, CURVES[kind]).public_key().verify(
            der, hashlib.new(name, msg).digest(),
            ec.ECDSA(Prehashed({"sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
                                "sha512": hashes.SHA512()}[name])))


OUTPUT = {"Cipher": {"ct"}, "Mac": {"tag"}, "RsaSig": {"sig"}, "RsaOaep": {"ct"},
          "Ecdsa": {"sig"}}
KIND_NAME = {"Cipher": "ciphertext", "RsaOaep": "ciphertext", "Mac": "mac",
             "RsaSig": "signature", "Ecdsa": "signature"}


def same_comment(vector: str, where: str = "hsm2", public: bool = True) -> str:
    name = type(TABLE[vector].params).__name__
    if name in ("Cipher", "RsaOaep"):
        return "the baseline ciphertext: decrypts to the message"
    if name == "Mac":
        return f"the baseline MAC: MAC verifies on {where}; a fresh MAC by {where} equals it"
    recorded = (f"software, with {where}'s public key: valid; on {where}: valid" if public
                else f"software, with {where}'s public key: valid" if name == "RsaSig"
                else f"no public key object on {where}; software, with the baseline's public "
                     "key: valid")
    fresh = "software, with the baseline's public key: valid"
    if name == "Ecdsa":
        fresh = "over a random challenge, " + fresh
    return f"the baseline signature: {recorded}; a fresh signature by {where}: {fresh}"


# ---- the same material: the baseline checks out ---------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_the_baseline_is_made_by_the_key_and_holds_where_the_same_material_is(sides, baseline,
                                                                              kind):
    records, public = baseline[kind]
    assert [r["vector"] for r in records] == list(VECTORS[kind])
    assert [r["tcId"] for r in records] == list(range(1, len(records) + 1))
    for rec in records:
        spec = TABLE[rec["vector"]].params
        name = type(spec).__name__
        assert set(rec) == ({"tcId", "keyLabel", "seed", "vector", "kind", "mechanism",
                             "producer", "result", "ok", "comment", "msg"} | OUTPUT[name]
                            | set(seeded(rec["vector"], kind))
                            | ({"tag"} if getattr(spec, "tag", 0) else set()))
        assert (rec["keyLabel"], rec["seed"], rec["kind"], rec["result"], rec["ok"]) == (
            label(kind), SEED, KIND_NAME[name], "valid", True)
        assert {f: rec[f] for f in ("msg", "iv", "aad") if f in rec} == seeded(rec["vector"],
                                                                                kind)
        assert rec["comment"].startswith("made by hsm1, which consumes it too: ")
        software(kind, rec)
    results = check(sides["same", kind], records, public_key=public)
    assert [(r["tcId"], r["vector"], r["cluster"], r["result"], r["ok"], r["comment"])
            for r in results] == [(r["tcId"], r["vector"], "hsm2", "valid", True,
                                   same_comment(r["vector"])) for r in records]


def test_the_public_key_recorded_is_the_keys_spki(sides):
    def spki(key: Any) -> str:
        return key.public_bytes(serialization.Encoding.DER,
                                serialization.PublicFormat.SubjectPublicKeyInfo).hex()
    assert public_key(sides["maker", "rsa"]) == spki(rsa_key(0).public_key())
    # without the public object: from CKA_MODULUS / CKA_PUBLIC_EXPONENT of the private key
    assert public_key(bare(sides["maker", "rsa"])) == spki(rsa_key(0).public_key())
    assert public_key(sides["other", "rsa"]) == spki(rsa_key(1).public_key())
    for kind, curve in CURVES.items():
        assert public_key(sides["maker", kind]) == spki(ec_key(0, curve).public_key())
        assert public_key(bare(sides["maker", kind])) is None  # no public point
    for kind in SECRETS:
        assert public_key(sides["maker", kind]) is None


RANDOMISED = {"rsa-pss-sha256", "rsa-oaep-sha1", "ecdsa-sha256", "ecdsa-sha384", "ecdsa-sha512"}


@pytest.mark.parametrize("kind", KINDS)
def test_records_are_seeded_and_deterministic_outputs_repeat(sides, baseline, kind):
    records = baseline[kind][0]
    again = make(sides["maker", kind], VECTORS[kind], label=label(kind), seed=SEED)
    for first, second in zip(records, again):
        assert first["msg"] == second["msg"]
        if first["vector"] in RANDOMISED:
            assert first != second
        else:
            assert first == second
    other = make(sides["maker", kind], VECTORS[kind], label=label(kind), seed=SEED + 1)
    assert all(a["msg"] != b["msg"] for a, b in zip(records, other))


# ---- other material, edited records, another public key: red --------------------------------

def other_comment(vector: str) -> str:
    name = type(TABLE[vector].params).__name__
    if vector == "aes-gcm":
        return "the baseline ciphertext: hsm2 refuses it (decrypt (CKM_AES_GCM) on hsm2 failed: "
    if name == "RsaOaep":
        return "the baseline ciphertext: hsm2 refuses it (OAEP decrypt (sha1) on hsm2 failed: "
    if name == "Cipher":
        return "the baseline ciphertext: decrypts to something else: different key material"
    if name == "Mac":
        return "the baseline MAC: MAC does not verify on hsm2; a fresh MAC by hsm2 DIFFERS"
    return ("the baseline signature: software, with hsm2's public key: INVALID; on hsm2: "
            "INVALID; a fresh signature by hsm2: "
            + ("over a random challenge, " if name == "Ecdsa" else "")
            + "software, with the baseline's public key: INVALID")


@pytest.mark.parametrize("kind", KINDS)
def test_other_material_under_the_same_label_goes_red(sides, baseline, kind):
    records, public = baseline[kind]
    results = check(sides["other", kind], records, public_key=public)
    assert len(results) == len(records)
    for rec, res in zip(records, results):
        assert (res["result"], res["ok"]) == ("valid", False)
        expected = other_comment(rec["vector"])
        if "refuses it" in expected:
            assert res["comment"].startswith(expected)
            assert res["comment"].endswith("): different key material")
        else:
            assert res["comment"] == expected


def flipped(rec: dict[str, Any], field: str) -> dict[str, Any]:
    value = bytearray(bytes.fromhex(rec[field]))
    value[0] ^= 0x01
    return rec | {field: value.hex()}


@pytest.mark.parametrize("kind", KINDS)
def test_a_record_edited_after_the_fact_goes_red(sides, baseline, kind):
    records, public = baseline[kind]
    for rec in records:
        field = "sig" if "sig" in rec else "tag" if rec["kind"] == "mac" else "ct"
        [res] = check(sides["same", kind], [flipped(rec, field)], public_key=public)
        assert res["ok"] is False, (rec["vector"], res["comment"])
        if rec["kind"] == "signature":  # the fresh signature is fine; the recorded one is not
            assert "INVALID" in res["comment"].split("; a fresh")[0]
            assert res["comment"].endswith("the baseline's public key: valid")
        [res] = check(sides["same", kind], [flipped(rec, "msg")], public_key=public)
        assert res["ok"] is False
        assert ("its msg is not the seeded input of seed 7041, label "
                    f"{label(kind)!r}: the record was edited") in res["comment"]


def test_an_edited_gcm_tag_iv_or_seed_goes_red(sides, baseline):
    records, _ = baseline["aes128"]
    gcm = next(r for r in records if r["vector"] == "aes-gcm")
    [res] = check(sides["same", "aes128"], [flipped(gcm, "tag")])
    assert res["ok"] is False and "hsm2 refuses it (decrypt (CKM_AES_GCM)" in res["comment"]
    [res] = check(sides["same", "aes128"], [flipped(gcm, "iv")])
    assert res["ok"] is False and "its iv is not the seeded input" in res["comment"]
    [res] = check(sides["same", "aes128"], [gcm | {"seed": SEED + 1}])
    assert res["ok"] is False and "its msg/iv/aad is not the seeded input of seed 7042" in \
        res["comment"]


@pytest.mark.parametrize("kind", ["rsa", "ec256", "ec384"])
def test_a_fresh_signature_must_verify_with_the_baselines_public_key(sides, baseline, kind):
    records, _ = baseline[kind]
    signatures = [r for r in records if r["kind"] == "signature"]
    wrong = public_key(sides["other", kind])  # the recorded signatures still verify on hsm2
    for res in check(sides["same", kind], signatures, public_key=wrong):
        assert res["ok"] is False
        assert "on hsm2: valid; a fresh signature by hsm2: " in res["comment"]
        assert res["comment"].endswith("software, with the baseline's public key: INVALID")
    name = "RSA" if kind == "rsa" else "EC"
    mismatched = public_key(sides["maker", "ec256" if kind == "rsa" else "rsa"])
    for given in (None, mismatched):
        for res in check(sides["same", kind], signatures, public_key=given):
            assert (res["ok"], res["comment"]) == (
                False, f"the baseline holds no {name} public key to check a fresh signature with")


def test_a_baseline_record_that_did_not_hold_is_not_ok(sides, baseline):
    rec = baseline["aes256"][0][0] | {"ok": False, "comment": "made by hsm1, ...: broken"}
    [res] = check(sides["same", "aes256"], [rec])
    assert (res["result"], res["ok"]) == ("valid", False)
    assert res["comment"] == ("the baseline record did not hold when it was made: made by "
                              "hsm1, ...: broken")


# ---- without public key objects ---------------------------------------------------------------

def test_rsa_without_public_objects_works_in_software(sides, baseline):
    maker = bare(sides["maker", "rsa"])
    records = make(maker, VECTORS["rsa"], label=label("rsa"), seed=SEED)
    assert all(r["ok"] is True for r in records)
    oaep = records[2]
    assert oaep["producer"] == ("software, with hsm1's public key (CKA_MODULUS of its "
                                "private key)")
    software("rsa", oaep)
    results = check(bare(sides["same", "rsa"]), records, public_key=public_key(maker))
    assert [r["comment"] for r in results] == [
        same_comment(v, public=False) for v in VECTORS["rsa"]]
    assert all(r["ok"] is True for r in results)
    results = check(bare(sides["other", "rsa"]), records, public_key=public_key(maker))
    assert [r["ok"] for r in results] == [False, False, False]
    assert results[0]["comment"] == (
        "the baseline signature: software, with hsm2's public key: INVALID; a fresh signature "
        "by hsm2: software, with the baseline's public key: INVALID")


@pytest.mark.parametrize("kind", list(CURVES))
def test_an_ec_private_key_alone(sides, baseline, kind):
    # baselined alone: nothing to verify its signatures with -> n/a, with the reason
    records = make(bare(sides["maker", kind]), VECTORS[kind], label=label(kind), seed=SEED)
    reason = ("hsm1 holds only the EC private key, which exposes no public point: no public key "
              "to record, nothing to verify its signatures with later")
    assert [(r["result"], r["ok"], r["comment"], r["mechanism"]) for r in records] == [
        ("n/a", None, reason, "CKM_ECDSA")] * 3
    assert all(not ({"msg", "sig"} & set(r)) for r in records)
    [res, *_] = check(sides["same", kind], records)
    assert (res["result"], res["ok"], res["comment"]) == ("n/a", None, reason)
    # checked where the public object is missing: with the baseline's public key, in software
    made, public = baseline[kind]
    results = check(bare(sides["same", kind]), made, public_key=public)
    assert [(r["ok"], r["comment"]) for r in results] == [
        (True, same_comment(v, public=False)) for v in VECTORS[kind]]
    results = check(bare(sides["same", kind]), [flipped(r, "sig") for r in made],
                    public_key=public)
    assert all(r["ok"] is False and "key: INVALID; a fresh" in r["comment"] for r in results)
    results = check(bare(sides["other", kind]), made, public_key=public)
    assert all(r["ok"] is False and r["comment"].endswith("public key: INVALID")
               for r in results)


# ---- not applicable ---------------------------------------------------------------------------

def test_a_key_that_may_not_encrypt_is_baselined_as_not_applicable(tokens, sides, baseline):
    no_encrypt = secret(tokens["hsm1"], "np-aes", KeyType.AES, SECRETS["aes128"][1],
                        extra={Attribute.ENCRYPT: False, Attribute.TOKEN: False})
    records = make(Side(no_encrypt, None, "hsm1"), VECTORS["aes128"], label="np-aes", seed=SEED)
    reason = f"the key on hsm1 may not encrypt (CKA_ENCRYPT is false there): {MAKE_PURPOSE}"
    assert [(r["vector"], r["result"], r["ok"], r["comment"]) for r in records] == [
        (v, "n/a", None, reason) for v in VECTORS["aes128"]]
    assert [r["mechanism"] for r in records] == ["CKM_AES_ECB", "CKM_AES_CBC", "CKM_AES_CTR",
                                                 "CKM_AES_GCM"]
    assert all(not ({"msg", "ct"} & set(r)) for r in records)
    results = check(sides["same", "aes128"], records)
    assert [(r["result"], r["ok"], r["comment"]) for r in results] == [("n/a", None, reason)] * 4
    # a key that may not decrypt could never check its own answer: n/a too
    no_decrypt = secret(tokens["hsm1"], "np-aes2", KeyType.AES, SECRETS["aes128"][1],
                        extra={Attribute.DECRYPT: False, Attribute.TOKEN: False})
    [rec] = make(Side(no_decrypt, None, "hsm1"), ["aes-cbc"], label="np-aes2", seed=SEED)
    assert (rec["result"], rec["comment"]) == (
        "n/a", f"the key on hsm1 may not decrypt (CKA_DECRYPT is false there): {MAKE_PURPOSE}")
    # ... and where a valid baseline record meets such a key, the check fails and says why
    results = check(Side(no_decrypt, None, "hsm2"), baseline["aes128"][0])
    assert [(r["ok"], r["comment"]) for r in results] == [
        (False, "the key on hsm2 may not decrypt (CKA_DECRYPT is false there): "
                f"{CHECK_PURPOSE}")] * 4
    # a decrypt-only key (CKA_ENCRYPT false: legacy data) still checks a baseline made before
    results = check(Side(no_encrypt, None, "hsm2"), baseline["aes128"][0])
    assert [(r["ok"], r["comment"]) for r in results] == [
        (True, "the baseline ciphertext: decrypts to the message")] * 4
    no_sign = secret(tokens["hsm1"], "np-mac", KeyType.GENERIC_SECRET, SECRETS["hmac"][1],
                     extra={Attribute.SIGN: False, Attribute.TOKEN: False})
    [rec] = make(Side(no_sign, None, "hsm1"), ["hmac-sha256"], label="np-mac", seed=SEED)
    assert (rec["result"], rec["ok"]) == ("n/a", None)
    assert rec["comment"].startswith("the key on hsm1 may not sign (CKA_SIGN is false there)")


@pytest.mark.parametrize("kind", ["des3", "des2"])
def test_a_fips_cluster_records_no_3des_answer_but_checks_one(sides, baseline, kind):
    fips = bare(sides["maker", kind], mode="FIPS")
    records = make(fips, VECTORS[kind], label=label(kind), seed=SEED)
    assert [(r["result"], r["ok"], r["comment"]) for r in records] == [
        ("n/a", None, policy.producer_restriction(v, "hsm1", "FIPS")) for v in VECTORS[kind]]
    assert records[0]["comment"].startswith("hsm1 is in FIPS mode: 3DES encryption is not "
                                            "approved")
    # made while NON_FIPS, checked after the cluster became FIPS: decryption stays allowed
    results = check(bare(sides["same", kind], mode="FIPS"), baseline[kind][0])
    assert [(r["ok"], r["comment"]) for r in results] == [
        (True, "the baseline ciphertext: decrypts to the message")] * 2
    # AES on a FIPS cluster is made as usual
    [rec] = make(bare(sides["maker", "aes128"], mode="FIPS"), ["aes-ecb"],
                 label=label("aes128"), seed=SEED)
    assert (rec["result"], rec["ok"]) == ("valid", True)


# ---- nothing secret ---------------------------------------------------------------------------

def _windows(material: bytes, size: int = 8) -> set[str]:
    return {material[i:i + size].hex() for i in range(max(1, len(material) - size + 1))}


def _private_material(kind: str) -> list[bytes]:
    if kind in SECRETS:
        return [SECRETS[kind][1], SECRETS[kind][2]]
    if kind == "rsa":
        out = []
        for n in (0, 1):
            p = rsa_key(n).private_numbers()
            out += [v.to_bytes((v.bit_length() + 7) // 8, "big")
                    for v in (p.d, p.p, p.q, p.dmp1, p.dmq1, p.iqmp)]
        return out
    key = [ec_key(n, CURVES[kind]) for n in (0, 1)]
    return [k.private_numbers().private_value.to_bytes((k.curve.key_size + 7) // 8, "big")
            for k in key]


@pytest.mark.parametrize("kind", KINDS)
def test_no_key_material_in_records_or_results(sides, baseline, kind):
    records, public = baseline[kind]
    results = (check(sides["same", kind], records, public_key=public)
               + check(sides["other", kind], records, public_key=public))
    blob = json.dumps([records, public, results]).lower()
    for material in _private_material(kind):
        assert material.hex() not in blob
        assert not any(w in blob for w in _windows(material))


# ---- exactly what is passed on and kept -------------------------------------------------------

def test_a_result_carries_the_records_identity_and_the_cluster(sides, baseline):
    records, _ = baseline["aes128"]
    results = check(sides["same", "aes128"], records)
    assert results == [{"tcId": r["tcId"], "keyLabel": "k-aes128", "vector": r["vector"],
                        "kind": "ciphertext", "mechanism": r["mechanism"], "cluster": "hsm2",
                        "result": "valid", "ok": True,
                        "comment": "the baseline ciphertext: decrypts to the message"}
                       for r in records]
    assert [r["mechanism"] for r in results] == ["CKM_AES_ECB", "CKM_AES_CBC", "CKM_AES_CTR",
                                                 "CKM_AES_GCM"]


def test_a_record_that_did_not_hold_does_not_stop_the_others(sides, baseline):
    first, second = baseline["aes256"][0][:2]
    results = check(sides["same", "aes256"], [first | {"ok": False}, second])
    assert [(r["vector"], r["ok"]) for r in results] == [("aes-ecb", False), ("aes-cbc", True)]


def test_a_not_applicable_record_names_its_producer(sides):
    [rec] = make(bare(sides["maker", "ec256"]), ["ecdsa-sha256"], label="k-ec256", seed=SEED)
    assert rec == {"tcId": 1, "keyLabel": "k-ec256", "seed": SEED, "vector": "ecdsa-sha256",
                   "kind": "signature", "mechanism": "CKM_ECDSA", "producer": "hsm1",
                   "result": "n/a", "ok": None,
                   "comment": "hsm1 holds only the EC private key, which exposes no public "
                              "point: no public key to record, nothing to verify its "
                              "signatures with later"}


def test_a_cross_cluster_direction_is_refused(sides):
    from keyparity.hsm.known_answers import _run
    side = sides["maker", "aes128"]
    with pytest.raises(ValueError) as info:
        _run("aes-ecb", "source->target", side, side, label="x", seed=1, tc_id=1)
    assert str(info.value) == "'source->target' is a cross-cluster direction"


@pytest.fixture
def spied(monkeypatch):
    """Every exchange (its direction, producer, consumer and arguments), each random seed
    drawn (fixed: 12345) and each EC challenge (where it runs)."""
    import types

    from keyparity.hsm import identity, known_answers
    calls: list[dict[str, Any]] = []
    real_exchange, real_signs = known_answers.exchange, identity.signs

    def exchange(vector, direction, source, target, **kwargs):
        calls.append({"vector": vector, "direction": direction, "producer": target.cluster,
                      "consumer": source.cluster, **kwargs})
        return real_exchange(vector, direction, source, target, **kwargs)

    def randbits(k):
        calls.append({"randbits": k})
        return 12345

    def signs(private, public, where):
        calls.append({"signs": where})
        return real_signs(private, public, where)

    monkeypatch.setattr(known_answers, "exchange", exchange)
    monkeypatch.setattr(known_answers, "secrets", types.SimpleNamespace(randbits=randbits))
    monkeypatch.setattr(known_answers.identity, "signs", signs)
    return calls


def test_make_passes_each_vectors_test_case_id(sides, spied):
    records = make(sides["maker", "aes128"], ["aes-ecb", "aes-cbc"], label="k-aes128", seed=SEED)
    assert [r["tcId"] for r in records] == [1, 2]
    assert [(c["vector"], c["direction"], c["producer"], c["consumer"], c["label"], c["seed"],
             c["tc_id"]) for c in spied] == [
        ("aes-ecb", "baseline", "hsm1", "hsm1", "k-aes128", SEED, 1),
        ("aes-cbc", "baseline", "hsm1", "hsm1", "k-aes128", SEED, 2)]


def test_check_replays_from_the_baseline_with_the_records_arguments(sides, baseline, spied):
    records, _ = baseline["hmac"]
    rec = records[1]
    [res] = check(sides["same", "hmac"], [rec])
    assert res["ok"] is True
    assert spied == [
        {"vector": rec["vector"], "direction": "baseline", "producer": "the baseline",
         "consumer": "hsm2", "label": "k-hmac", "seed": SEED, "tc_id": 2},
        {"vector": rec["vector"], "direction": "baseline", "producer": "hsm2",
         "consumer": "hsm2", "label": "k-hmac", "seed": SEED, "tc_id": 2}]


def test_a_fresh_rsa_signature_uses_a_random_64_bit_seed(sides, baseline, spied):
    records, public = baseline["rsa"]
    rec = records[0]
    [res] = check(sides["same", "rsa"], [rec], public_key=public)
    assert res["ok"] is True
    assert spied == [
        {"vector": rec["vector"], "direction": "baseline", "producer": "the baseline",
         "consumer": "hsm2", "label": "k-rsa", "seed": SEED, "tc_id": 1},
        {"randbits": 64},
        {"vector": rec["vector"], "direction": "re-verify", "producer": "hsm2",
         "consumer": "the baseline", "label": "k-rsa", "seed": 12345, "tc_id": 1}]


def test_a_fresh_ec_signature_is_made_on_the_keys_cluster(sides, baseline, spied):
    records, public = baseline["ec256"]
    [res] = check(sides["same", "ec256"], records[:1], public_key=public)
    assert res["ok"] is True
    assert spied[-1] == {"signs": "hsm2"}


@pytest.mark.parametrize("kind, vector", [("aes128", "aes-cmac"), ("des3", "des3-cmac")])
def test_a_mac_and_a_wrap_vector(sides, kind, vector):
    """A MAC key's CMAC is baselined and checked like an HMAC; a key-encrypting key's wrap is
    not applicable in a baseline (the record's stand-in producer makes no session key): such a
    key is baselined by its KCV and attributes."""
    (rec,) = make(sides["maker", kind], (vector,), label=label(kind), seed=SEED)
    assert (rec["kind"], rec["result"], rec["ok"]) == ("mac", "valid", True)
    (same,) = check(sides["same", kind], [rec])
    (other,) = check(sides["other", kind], [rec])
    assert (same["ok"], other["ok"]) == (True, False)
    (wrap,) = make(sides["maker", "aes128"], ("aes-key-wrap",), label=label("aes128"), seed=SEED)
    assert (wrap["kind"], wrap["result"], wrap["ok"]) == ("wrapped key", "n/a", None)
    assert wrap["comment"].startswith("a key-encrypting key's wrap is not replayed")
