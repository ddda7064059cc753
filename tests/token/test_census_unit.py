"""keyparity.hsm.census on real SoftHSM tokens, in process: the scan sees every token key object
(and no session object), ``account`` gives each object of the source the disposition the module
documents, ``material`` identifies key material the way software does, ``reconcile`` finds a
second copy of an inventory key's material on the target and nothing else, and ``changes``
names what appeared or disappeared between two censuses.

The profile and cluster are plain namespaces holding real KeySpec / Exclusion values: the
census reads nothing else of them."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pkcs11 import Attribute, KeyType, ObjectClass

from keyparity.hsm import census
from keyparity.hsm.census import (EXCLUDED, INVENTORY, KEYPARITY, OTHER, SECOND_COPY, UNACCOUNTED,
                              Entry, account, changes, material, reconcile)
from keyparity.errors import TokenError
from keyparity.hsm.keyinfo import KeyFacts
from keyparity.profile import Exclusion, KeySpec
from p11tokens import ec_key, ec_pair, rsa_key, rsa_pair, secret, tokens  # noqa: F401

RUN = "20261123T155223Z-9a571f"
AES_A = bytes(range(16))
AES_B = bytes(range(16, 32))
HMAC_A = bytes(range(32, 64))


def spec(label: str, type_: str = "aes", *, target_label: str | None = None,
         disposition: str = "migrate", size: int | None = None) -> KeySpec:
    return KeySpec(index=0, label=label, target_label=target_label or label, type=type_,
                   size=size, curve=None, attributes={}, vectors=(), disposition=disposition,
                   expected_differences={})


def profile(keys: list[KeySpec], exclude: list[Exclusion] = ()) -> Any:
    return SimpleNamespace(keys=tuple(keys), exclude=tuple(exclude))


def cluster(name: str = "hsm1", **cloudhsm: Any) -> Any:
    return SimpleNamespace(name=name, user=cloudhsm.get("user"),
                           cloudhsm_cli=cloudhsm.get("cloudhsm_cli"),
                           hsm_type=cloudhsm.get("hsm_type"),
                           mode=cloudhsm.get("mode", "NON_FIPS"))


def facts(label: str | None, cls: str = "secret", type_: str = "aes", **more: Any) -> KeyFacts:
    return KeyFacts(cls=cls, type=type_, label=label, id=more.pop("id", ""), **more)


def software_fp(public_key) -> str:
    return hashlib.sha256(public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def aes_block(value: bytes) -> bytes:
    enc = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    return enc.update(bytes(16)) + enc.finalize()


def by_label(entries: list[Entry]) -> dict[tuple[str | None, str], Entry]:
    return {(e.facts.label, e.facts.cls): e for e in entries}


# ---- view, now, Entry --------------------------------------------------------------------------

def test_whose_view():
    plain = census.view(cluster())
    assert plain == ("every key object of the token that its user sees after login (PKCS #11 "
                     "CKU_USER); session objects are not counted")
    cu = census.view(cluster(user="cu1"))
    assert cu == ("the view of crypto user cu1: CloudHSM shows a crypto user only the keys it "
                  "owns or that are shared with it, plus every public key; keys of other crypto "
                  "users are not in this census (take one per crypto user that owns keys)")
    cli = census.view(cluster(cloudhsm_cli=SimpleNamespace(user="cu2")))
    assert cli.startswith("the view of crypto user cu2: ")
    typed = census.view(cluster(hsm_type="hsm2m.medium"))
    assert typed.startswith("the view of crypto user ?: ")
    both = census.view(cluster(user="cu3", cloudhsm_cli=SimpleNamespace(user="cu4")))
    assert both.startswith("the view of crypto user cu3: ")


def test_now_is_utc_to_the_second():
    text = census.now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", text), text
    taken = dt.datetime.fromisoformat(text)
    assert abs((dt.datetime.now(dt.timezone.utc) - taken).total_seconds()) < 5


def test_an_entry_records_and_describes_itself():
    e = Entry(facts("k-aes", size=128, id="0a0b", extractable=True))
    assert e.disposition == UNACCOUNTED and e.detail == "" and e.check is None
    assert e.record() == {"label": "k-aes", "class": "secret", "key_type": "aes", "id": "0a0b",
                          "size": 128, "extractable": True, "disposition": "unaccounted"}
    assert e.describe() == "'k-aes', secret key, AES-128, CKA_ID 0a0b"
    e.disposition, e.detail, e.check = EXCLUDED, "kept for the HSM's own use", "KCV 123456"
    assert e.record() == {"label": "k-aes", "class": "secret", "key_type": "aes", "id": "0a0b",
                          "size": 128, "extractable": True, "disposition": "excluded",
                          "detail": "kept for the HSM's own use", "check": "KCV 123456"}
    assert e.describe() == "'k-aes', secret key, AES-128, CKA_ID 0a0b, KCV 123456"
    nameless = Entry(facts(None, "public", "rsa", size=2048))
    assert nameless.describe() == "(no label), public key, RSA-2048, CKA_ID (empty)"
    nameless.check = ""
    assert nameless.record() == {"label": None, "class": "public", "key_type": "rsa", "id": "",
                                 "size": 2048, "disposition": "unaccounted", "check": ""}


# ---- account --------------------------------------------------------------------------------

def test_every_disposition_of_account():
    entries = [Entry(f) for f in (
        facts("k-aes"),                                     # 0 inventory
        facts("k-aes"),                                     # 1 a second one: unaccounted
        facts("k-rot", type_="generic-secret"),             # 2 inventory, rotate
        facts("k-rsa", "private", "rsa"),                   # 3 inventory
        facts("k-rsa", "public", "rsa"),                    # 4 its public half
        facts("k-rsa", "public", "rsa"),                    # 5 a second public: unaccounted
        facts("k-aes", "public", "rsa"),                    # 6 k-aes is secret: unaccounted
        facts("old-hsm-key"),                               # 7 excluded, any class
        facts("kek", "secret"),                             # 8 excluded as secret
        facts("kek", "public", "rsa"),                      # 9 the exclusion is for secret
        facts(f"keyparity-wrap-{RUN}", "private", "rsa"),   # 10 this run's wrapping key
        facts("keyparity-wrap-20260101T000000Z-000000"),    # 11 another run's
        facts("stray"),                                     # 12 nobody's
        facts(None),                                        # 13 no label
        facts(f"keyparity-{RUN}", "public", "rsa"),         # 14 excluded though keyparity's
        facts("k-rot", "private", "rsa"),                   # 15 k-rot is a secret key
        facts("pw", "data", ""),                            # 16 not a key, not excluded
        facts("root-ca", "certificate", ""),                # 17 likewise
        facts("params", "domain-parameters", ""),           # 18 no reason of its own
        facts("legacy", "data", ""),                        # 19 excluded by class
    )]
    p = profile([spec("k-aes"), spec("k-rot", "generic-secret", disposition="rotate"),
                 spec("k-rsa", "rsa")],
                [Exclusion("old-hsm-key", "kept for the old application"),
                 Exclusion("kek", "the HSM's own key-encryption key", cls="secret"),
                 Exclusion(f"keyparity-{RUN}", "excluded by name"),
                 Exclusion("legacy", "the old vault's entry", cls="data")])
    out = account(entries, p, RUN)
    assert out == entries and out is not entries
    got = [(e.disposition, e.detail) for e in entries]
    not_listed = "not in the inventory (keys:) and not excluded (exclude:)"
    assert got == [
        (INVENTORY, "k-aes"),
        (UNACCOUNTED, "a second secret key labelled 'k-aes': the inventory names one; labels "
                      "must be unique"),
        (INVENTORY, "k-rot (disposition rotate)"),
        (INVENTORY, "k-rsa"),
        (INVENTORY, "public half of k-rsa"),
        (UNACCOUNTED, "a second public key labelled 'k-rsa': the inventory names one; labels "
                      "must be unique"),
        (UNACCOUNTED, not_listed),
        (EXCLUDED, "kept for the old application"),
        (EXCLUDED, "the HSM's own key-encryption key"),
        (UNACCOUNTED, not_listed),
        (KEYPARITY, f"a wrapping object of this run ({RUN})"),
        (UNACCOUNTED, not_listed + "; a wrapping object of another keyparity run: keyparity "
                                   "cleanup --run RUN_ID removes it"),
        (UNACCOUNTED, not_listed),
        (UNACCOUNTED, not_listed),
        (EXCLUDED, "excluded by name"),
        (UNACCOUNTED, not_listed),
        (UNACCOUNTED, "not a key: keyparity migrates keys, not data objects, and never reads "
                      "their value: move it by other means if the target needs it; then "
                      "exclude it (exclude: with class: data and the reason)"),
        (UNACCOUNTED, "not a key: keyparity migrates keys, not certificates (public data): "
                      "import it on the target from where it came, its PKI (a CloudHSM cluster "
                      "stores certificates only on hsm2m.medium, with certificate storage "
                      "enabled in the client); then exclude it (exclude: with class: "
                      "certificate and the reason)"),
        (UNACCOUNTED, "not a key: keyparity migrates keys, not domain-parameters objects: move "
                      "it by other means if the target needs it; then exclude it (exclude: with "
                      "class: domain-parameters and the reason)"),
        (EXCLUDED, "the old vault's entry"),
    ]


def test_the_public_half_before_the_private_key_is_still_the_public_half():
    entries = [Entry(facts("k-ec", "public", "ec")), Entry(facts("k-ec", "private", "ec")),
               Entry(facts("k-ec", "private", "ec"))]
    account(entries, profile([spec("k-ec", "ec")]), RUN)
    assert [(e.disposition, e.detail) for e in entries] == [
        (INVENTORY, "public half of k-ec"), (INVENTORY, "k-ec"),
        (UNACCOUNTED, "a second private key labelled 'k-ec': the inventory names one; labels "
                      "must be unique")]


def test_a_this_run_label_without_the_prefix_is_not_keyparitys():
    entries = [Entry(facts(f"wrap-{RUN}")), Entry(facts(f"keyparity-{RUN}-x")),
               Entry(facts("keyparity-"))]
    account(entries, profile([]), RUN)
    assert [e.disposition for e in entries] == [UNACCOUNTED, KEYPARITY, UNACCOUNTED]
    assert entries[2].detail.endswith("keyparity cleanup --run RUN_ID removes it")
    assert not entries[0].detail.endswith("removes it")


# ---- scan and material, on a token -------------------------------------------------------------

@pytest.fixture(scope="module")
def source(tokens) -> dict[str, Any]:
    """hsm1: an AES key, an HMAC key, an RSA pair, an EC pair, an EC private key alone, an
    EC pair on a curve keyparity has no fingerprint for, an RSA public key with exponent 1, a
    key type without a KCV method, an HMAC key too short for the token's HMAC, and session
    objects (an AES key forbidden to encrypt on the token, another)."""
    s = tokens["hsm1"]
    made = {
        "k-aes": secret(s, "k-aes", KeyType.AES, AES_A, id_=b"\x0a"),
        "k-hmac": secret(s, "k-hmac", KeyType.GENERIC_SECRET, HMAC_A),
        "k-rsa": rsa_pair(s, "k-rsa", rsa_key(0)),
        "k-ec": ec_pair(s, "k-ec", ec_key(0), "secp256r1"),
        "k-ec-alone": ec_pair(s, "k-ec-alone", ec_key(1), "secp256r1", public=False),
        "k-k1": ec_pair(s, "k-k1", ec.generate_private_key(ec.SECP256K1()), "secp256k1"),
        "k-sha256-hmac": secret(s, "k-sha256-hmac", KeyType.SHA256_HMAC, HMAC_A),
        # 16 bytes: SoftHSM refuses HMAC-SHA256 with it (CKR_KEY_SIZE_RANGE)
        "k-short-hmac": secret(s, "k-short-hmac", KeyType.GENERIC_SECRET, AES_B),
        # a session object (not in the census) made able to encrypt, then forbidden to: this
        # Python object still offers encrypt(), and the token refuses
        "k-refused": secret(s, "k-refused", KeyType.AES, AES_B, extra={Attribute.TOKEN: False}),
    }
    made["k-refused"][Attribute.ENCRYPT] = False
    made["e1"] = s.create_object({
        Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA,
        Attribute.TOKEN: True, Attribute.LABEL: "e1", Attribute.MODULUS: b"\xc1" * 256,
        Attribute.PUBLIC_EXPONENT: b"\x01"})
    secret(s, "session-only", KeyType.AES, AES_A, extra={Attribute.TOKEN: False})
    entries = census.scan(s, "hsm1")
    return {"made": made, "entries": entries, "by": by_label(entries)}


def test_scan_sees_every_token_key_object_by_class_and_no_session_object(source):
    entries = source["entries"]
    assert [e.facts.cls for e in entries] == sorted(
        (e.facts.cls for e in entries), key=["secret", "private", "public"].index)
    assert sorted((e.facts.label, e.facts.cls) for e in entries) == sorted([
        ("k-aes", "secret"), ("k-hmac", "secret"), ("k-sha256-hmac", "secret"),
        ("k-short-hmac", "secret"), ("k-rsa", "private"), ("k-rsa", "public"),
        ("k-ec", "private"), ("k-ec", "public"), ("k-ec-alone", "private"),
        ("k-k1", "private"), ("k-k1", "public"), ("e1", "public")])
    aes = source["by"]["k-aes", "secret"]
    assert aes.facts == KeyFacts(cls="secret", type="aes", label="k-aes", id="0a", size=128,
                                 extractable=True)
    assert aes.obj is not None and aes.disposition == UNACCOUNTED
    assert all(e.obj is not None for e in entries)


# python-pkcs11 then fails again finalising its search on the closed session, in __del__
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_failed_enumeration_names_the_step_and_the_cluster(tokens):
    session = tokens.lib.get_token(token_label="hsm1").open(rw=True)  # shares the login
    session.close()
    with pytest.raises(TokenError) as info:
        census.scan(session, "hsm1 (source)")
    assert str(info.value) == ("take the census (enumerate the token's objects) on hsm1 (source) "
                               "failed: CKR_SESSION_HANDLE_INVALID; the session was closed "
                               "under us")
    with pytest.raises(TokenError, match=r"^take the census \(enumerate the token's objects\) "
                                                r"on hsm1 failed"):
        census.take_source(session, cluster("hsm1"), profile([]), RUN)


def test_material_of_a_secret_key_is_the_whole_block_computed_by_the_token(source):
    e = source["by"]["k-aes", "secret"]
    value, text = material(e, source["entries"], "hsm1")
    assert value == aes_block(AES_A) and text == f"KCV {aes_block(AES_A)[:3].hex()}"


@pytest.mark.parametrize("label, cls", [("k-rsa", "private"), ("k-rsa", "public")])
def test_material_of_an_rsa_key_is_its_public_key_fingerprint(source, label, cls):
    value, text = material(source["by"][label, cls], source["entries"], "hsm1")
    fp = software_fp(rsa_key(0).public_key())
    assert (value, text) == (fp, f"public key SHA-256 {fp}")


@pytest.mark.parametrize("cls", ["private", "public"])
def test_material_of_an_ec_key_is_the_fingerprint_of_its_public_object(source, cls):
    value, text = material(source["by"]["k-ec", cls], source["entries"], "hsm1")
    fp = software_fp(ec_key(0).public_key())
    assert (value, text) == (fp, f"public key SHA-256 {fp}")


def test_material_of_an_ec_private_key_whose_public_is_elsewhere(source):
    entries = source["entries"]
    alone = source["by"]["k-ec-alone", "private"]
    assert material(alone, entries, "hsm1") == (
        None, "no fingerprint: an EC private key exposes no public point")
    # a public object of the label that was not read, or of another type, does not count
    unread = Entry(KeyFacts("public", "ec", "k-ec-alone", ""), None)
    rsa_named = Entry(KeyFacts("public", "rsa", "k-ec-alone", ""), source["by"]["k-rsa",
                                                                              "public"].obj)
    assert material(alone, [*entries, unread, rsa_named], "hsm1")[0] is None
    # the EC public object of another label neither
    other = Entry(KeyFacts("public", "ec", "k-other", ""), source["by"]["k-ec", "public"].obj)
    assert material(alone, [other], "hsm1")[0] is None
    # a secret key of that label neither
    sec = Entry(KeyFacts("secret", "ec", "k-ec-alone", ""), source["by"]["k-ec", "public"].obj)
    assert material(alone, [sec], "hsm1")[0] is None
    # but an EC public object of its label does, whichever comes first
    mine = Entry(KeyFacts("public", "ec", "k-ec-alone", ""), source["by"]["k-ec", "public"].obj)
    assert material(alone, [rsa_named, mine], "hsm1")[0] == software_fp(ec_key(0).public_key())


def test_an_ec_public_object_is_its_own_public_key(source):
    public = source["by"]["k-ec", "public"]
    fp = software_fp(ec_key(0).public_key())
    assert material(public, [], "hsm1") == (fp, f"public key SHA-256 {fp}")


def test_no_material_where_there_is_no_method(source, tokens):
    entries = source["entries"]
    k1_alone, _ = ec_pair(tokens["hsm1"], "k-k1-alone", ec.generate_private_key(ec.SECP256K1()),
                          "secp256k1", public=False, token=False)
    alone = Entry(census.keyinfo.read(k1_alone), k1_alone)
    assert material(alone, [alone], "hsm1") == (
        None, "no KCV method for EC EC parameters 06052b8104000a")
    k1 = source["by"]["k-k1", "private"]
    assert k1.facts.curve == "EC parameters 06052b8104000a"
    assert material(k1, entries, "hsm1") == (
        None, "no KCV method for EC EC parameters 06052b8104000a")
    assert material(source["by"]["k-k1", "public"], entries, "hsm1")[0] is None
    sha = source["by"]["k-sha256-hmac", "secret"]
    assert material(sha, entries, "hsm1") == (None, "no KCV method for SHA256_HMAC")
    assert material(Entry(facts("gone")), entries, "hsm1") == (None, "not read")


def test_no_material_when_the_token_or_the_key_refuses(source):
    refused = Entry(census.keyinfo.read(source["made"]["k-refused"]), source["made"]["k-refused"])
    value, text = material(refused, source["entries"], "hsm1")
    assert value is None
    assert text == "no KCV: compute KCV (AES_ECB) on hsm1 failed: Unmapped error code 0x68"
    e1 = source["by"]["e1", "public"]
    value, text = material(e1, source["entries"], "hsm1")
    assert value is None and text.startswith("no KCV: ")  # cryptography refuses e = 1
    short = source["by"]["k-short-hmac", "secret"]
    assert material(short, source["entries"], "hsm1 (source)") == (
        None, "no KCV: compute KCV (SHA256_HMAC) on hsm1 (source) failed: CKR_KEY_SIZE_RANGE; "
              "the token refuses a key of this size for the mechanism")


def test_a_wrap_only_key_has_no_kcv_but_does_not_stop_the_census(tokens):
    """A key-encryption key that may only wrap (CKA_ENCRYPT false) has no encrypt() in
    python-pkcs11: the census says why it has no KCV instead of crashing."""
    kek = secret(tokens["hsm2"], "wrap-only-kek", KeyType.AES, AES_B,
                 extra={Attribute.ENCRYPT: False, Attribute.DECRYPT: False,
                        Attribute.WRAP: True, Attribute.UNWRAP: True,
                        Attribute.TOKEN: False})  # a session object: out of the other tests
    entry = Entry(census.keyinfo.read(kek), kek)
    value, text = material(entry, [entry], "hsm2")
    assert (value, text) == (None, "no KCV: the key on hsm2 may not encrypt (CKA_ENCRYPT is "
                                   "false there): no KCV (AES_ECB) can be computed with it")


def test_record_of_a_census(source):
    entries = [Entry(facts("a"), disposition=INVENTORY), Entry(facts("b")),
               Entry(facts("c"), disposition=EXCLUDED), Entry(facts("d"))]
    doc = census.record(entries, cluster("hsm1"), "source")
    assert set(doc) == {"cluster", "role", "view", "taken", "counts", "objects"}
    assert (doc["cluster"], doc["role"], doc["view"]) == ("hsm1", "source",
                                                          census.view(cluster()))
    assert list(doc["counts"].items()) == [("excluded", 1), ("inventory", 1),
                                           ("unaccounted", 2)]
    assert doc["objects"] == [e.record() for e in entries]
    assert re.fullmatch(r"\d{4}-.*\+00:00", doc["taken"])


def test_take_source_checks_only_what_the_inventory_does_not_prove(tokens, source):
    p = profile([spec("k-aes"), spec("k-rsa", "rsa")],
                [Exclusion("k-hmac", "the old application's MAC key")])
    secret(tokens["hsm1"], f"keyparity-wrap-{RUN}", KeyType.AES, AES_B)  # this run's
    entries, doc = census.take_source(tokens["hsm1"], cluster("hsm1"), p, RUN)
    by = by_label(entries)
    assert by[f"keyparity-wrap-{RUN}", "secret"].disposition == KEYPARITY
    assert by[f"keyparity-wrap-{RUN}", "secret"].check is None
    assert by["k-short-hmac", "secret"].check == ("no KCV: compute KCV (SHA256_HMAC) on hsm1 "
                                                  "failed: CKR_KEY_SIZE_RANGE; the token "
                                                  "refuses a key of this size for the mechanism")
    assert by["k-aes", "secret"].check is None            # inventory: proven by its tests
    assert by["k-rsa", "public"].check is None
    assert by["k-hmac", "secret"].disposition == EXCLUDED
    import hmac as _hmac
    assert by["k-hmac", "secret"].check == \
        f"KCV {_hmac.new(HMAC_A, bytes(16), 'sha256').digest()[:3].hex()}"
    assert by["k-ec", "private"].check == \
        f"public key SHA-256 {software_fp(ec_key(0).public_key())}"
    assert by["k-ec-alone", "private"].check == ("no fingerprint: an EC private key exposes no "
                                                 "public point")
    assert doc["role"] == "source" and doc["cluster"] == "hsm1"
    assert doc["counts"] == {"inventory": 3, "excluded": 1, "keyparity": 1, "unaccounted": 8}
    assert [o["label"] for o in doc["objects"]] == [e.facts.label for e in entries]


# ---- changes -----------------------------------------------------------------------------------

def obj(label, cls="secret", key_type="aes", id_="", size=None, curve=None, **more) -> dict:
    out = {"label": label, "class": cls, "key_type": key_type, "id": id_, **more}
    if size is not None:
        out["size"] = size
    if curve is not None:
        out["curve"] = curve
    return out


def test_changes_name_every_appearance_and_disappearance_once_per_object():
    start = [obj("a", size=128, id_="01"), obj("b", "private", "ec", curve="P-256"),
             obj("dup"), obj("dup"), obj("gone", "public", "rsa", size=2048)]
    end = [obj("b", "private", "ec", curve="P-256", disposition="other"),
           obj("a", size=128, id_="01", check="KCV 1"), obj("dup"), obj("new"), obj("new"),
           obj("a", size=256, id_="01")]
    assert changes(start, end) == [
        "appeared: 'a' (secret aes, 256 bits, CKA_ID 01)",
        "appeared: 'new' (secret aes, CKA_ID (empty))",
        "appeared: 'new' (secret aes, CKA_ID (empty))",
        "disappeared: 'dup' (secret aes, CKA_ID (empty))",
        "disappeared: 'gone' (public rsa, 2048 bits, CKA_ID (empty))",
    ]
    assert changes(start, start) == [] and changes([], []) == []
    assert changes([], [obj("x", "private", "ec", curve="P-384", size=384)]) == [
        "appeared: 'x' (private ec, P-384, CKA_ID (empty))"]
    assert changes([obj(None)], []) == ["disappeared: None (secret aes, CKA_ID (empty))"]
    # objects that differ only where one has no value sort without comparing None to a value
    assert changes([], [obj("x", size=128), obj(None), obj("x")]) == [
        "appeared: 'x' (secret aes, 128 bits, CKA_ID (empty))",
        "appeared: 'x' (secret aes, CKA_ID (empty))",
        "appeared: None (secret aes, CKA_ID (empty))"]
    assert changes([obj("x", size=128), obj(None), obj("x")], []) == [
        "disappeared: 'x' (secret aes, 128 bits, CKA_ID (empty))",
        "disappeared: 'x' (secret aes, CKA_ID (empty))",
        "disappeared: None (secret aes, CKA_ID (empty))"]
    # every identifying field counts; other fields do not
    for field, value in (("label", "z"), ("class", "public"), ("key_type", "des3"),
                         ("id", "ff"), ("size", 64), ("curve", "P-521")):
        moved = {**obj("a"), field: value}
        assert len(changes([obj("a")], [moved])) == 2, field
    assert changes([obj("a")], [{**obj("a"), "extractable": False, "check": "x"}]) == []


# ---- reconcile ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def target(tokens) -> dict[str, Any]:
    """hsm2 after a run: the inventory keys under their target labels, this run's wrapping
    key, and other objects: a second copy of k-aes's material, a key of other material, a second
    copy of k-rsa and of k-ec, an HMAC key holding k-aes's bytes, an HMAC key the token
    cannot MAC with, and a wrapping pair of another run."""
    s = tokens["hsm2"]
    secret(s, "k-aes-new", KeyType.AES, AES_A)                   # k-aes migrated, renamed
    rsa_pair(s, "k-rsa", rsa_key(0))                             # k-rsa migrated
    rsa_pair(s, f"keyparity-wrap-{RUN}", rsa_key(2))             # this run's wrapping pair
    secret(s, "copy-of-k-aes", KeyType.AES, AES_A)               # a second copy
    secret(s, "unrelated-aes", KeyType.AES, AES_B)               # other material
    rsa_pair(s, "copy-of-k-rsa", rsa_key(0), public=False)       # a second copy (private)
    secret(s, "hmac-with-aes-bytes", KeyType.GENERIC_SECRET, AES_A)
    rsa_pair(s, "keyparity-wrap-20260101T000000Z-000000", rsa_key(3))
    ec_pair(s, "copy-of-k-ec", ec_key(0), "secp256r1")           # a second copy (EC)
    secret(s, "short-hmac", KeyType.GENERIC_SECRET, AES_B)       # no KCV: too short
    entries = census.scan(s, "hsm2")
    return {"entries": entries}


def test_reconcile_lists_other_objects_and_finds_second_copies(source, target):
    p = profile([spec("k-aes", target_label="k-aes-new"), spec("k-rsa", "rsa"),
                 spec("k-hmac", "generic-secret"), spec("k-ec", "ec")])
    src = [e for e in source["entries"]]
    result = reconcile(target["entries"], src, p, RUN, "hsm2", "hsm1 (source)")
    others = {(e.facts.label, e.facts.cls): e for e in result.others}
    assert set(others) == {
        ("copy-of-k-aes", "secret"), ("unrelated-aes", "secret"),
        ("copy-of-k-rsa", "private"), ("hmac-with-aes-bytes", "secret"),
        ("keyparity-wrap-20260101T000000Z-000000", "private"),
        ("keyparity-wrap-20260101T000000Z-000000", "public"),
        ("copy-of-k-ec", "private"), ("copy-of-k-ec", "public"), ("short-hmac", "secret")}
    copies = {}
    for key, owner in ((("copy-of-k-aes", "secret"), "k-aes"),
                       (("copy-of-k-rsa", "private"), "k-rsa"),
                       (("copy-of-k-ec", "private"), "k-ec"),  # via its public object
                       (("copy-of-k-ec", "public"), "k-ec")):
        e = others[key]
        assert (e.disposition, e.detail) == (SECOND_COPY, f"holds the key material of '{owner}'")
        copies[key] = (f"{e.describe()} on hsm2 holds the same key material as inventory key "
                       f"'{owner}' (a second copy: keys belong in the fewest places; destroy "
                       "it, or migrate it as an inventory key)")
    assert others["copy-of-k-aes", "secret"].check == f"KCV {aes_block(AES_A)[:3].hex()}"
    fp_ec = software_fp(ec_key(0).public_key())
    assert others["copy-of-k-ec", "private"].check == f"public key SHA-256 {fp_ec}"
    for key in (("unrelated-aes", "secret"), ("hmac-with-aes-bytes", "secret"),
                ("keyparity-wrap-20260101T000000Z-000000", "private"), ("short-hmac", "secret")):
        assert (others[key].disposition, others[key].detail) == (OTHER, "not of this inventory")
    assert others["unrelated-aes", "secret"].check == f"KCV {aes_block(AES_B)[:3].hex()}"
    assert others["short-hmac", "secret"].check == ("no KCV: compute KCV (SHA256_HMAC) on hsm2 "
                                                    "failed: CKR_KEY_SIZE_RANGE; the token "
                                                  "refuses a key of this size for the mechanism")
    # one line per second copy, in the target's order
    assert result.copies == [copies[(e.facts.label, e.facts.cls)] for e in result.others
                             if (e.facts.label, e.facts.cls) in copies]
    assert [e.facts.label for e in result.others] == [
        e.facts.label for e in target["entries"] if (e.facts.label, e.facts.cls) in others]

    doc = result.record(cluster("hsm2"))
    assert set(doc) == {"cluster", "role", "view", "taken", "counts", "other_objects",
                        "second_copies"}
    assert (doc["cluster"], doc["role"]) == ("hsm2", "target")
    assert doc["counts"] == {"other": 5, "second copy": 4}
    assert list(doc["counts"]) == ["other", "second copy"]
    assert doc["other_objects"] == [e.record() for e in result.others]
    assert doc["second_copies"] == result.copies and doc["second_copies"] is not result.copies


def test_an_inventory_key_missing_on_the_source_does_not_stop_the_search(source, target):
    p = profile([spec("k-missing"), spec("k-ec-alone", "ec"), spec("k-aes",
                                                                    target_label="k-aes-new")])
    result = reconcile(target["entries"], source["entries"], p, RUN, "hsm2", "hsm1")
    assert [e.facts.label for e in result.others if e.disposition == SECOND_COPY] == [
        "copy-of-k-aes"]


def test_one_material_held_by_two_inventory_keys_names_both(source, target, tokens):
    both = secret(tokens["hsm1"], "k-aes-twin", KeyType.AES, AES_A,
                  extra={Attribute.TOKEN: False})  # not in any later scan
    src = [*source["entries"], Entry(census.keyinfo.read(both), both)]
    p = profile([spec("k-aes", target_label="k-aes-new"), spec("k-aes-twin")])
    result = reconcile(target["entries"], src, p, RUN, "hsm2", "hsm1")
    copy_aes = next(e for e in result.others if e.facts.label == "copy-of-k-aes")
    assert copy_aes.detail == "holds the key material of 'k-aes', 'k-aes-twin'"


def test_source_material_is_computed_only_for_types_on_the_target(source, tokens):
    """A fresh target (only this inventory's objects) costs no KCV on the source; an inventory
    key not found on the source is skipped; an object whose material cannot be had is other."""
    p = profile([spec("k-aes"), spec("k-missing"), spec("k-ec", "ec")])
    fresh = [Entry(KeyFacts("secret", "aes", "k-aes", ""), None),
             Entry(KeyFacts("private", "ec", "k-ec", ""), None),
             Entry(KeyFacts("public", "ec", "k-ec", ""), None)]
    src = [Entry(e.facts, None) for e in source["entries"]]  # any material read would fail
    result = reconcile(fresh, src, p, RUN, "hsm2", "hsm1")
    assert result.others == [] and result.copies == []
    # an unreadable other object of the inventory's type: other, with why
    unreadable = Entry(KeyFacts("secret", "aes", "mystery", ""), None)
    result = reconcile([unreadable], source["entries"], p, RUN, "hsm2", "hsm1")
    assert [(e.disposition, e.check) for e in result.others] == [(OTHER, "not read")]
    # a source key whose material cannot be had matches nothing
    nothing = Entry(KeyFacts("secret", "aes", "k-aes", ""), None)
    result = reconcile([unreadable], [nothing], p, RUN, "hsm2", "hsm1")
    assert result.copies == []


def test_an_asymmetric_inventory_keys_public_object_on_the_target_is_its_own(source, target):
    p = profile([spec("k-rsa", "rsa", target_label="copy-of-k-rsa")])
    result = reconcile(target["entries"], source["entries"], p, RUN, "hsm2", "hsm1")
    labels = {(e.facts.label, e.facts.cls) for e in result.others}
    assert ("copy-of-k-rsa", "private") not in labels
    assert ("k-rsa", "private") in labels and ("k-rsa", "public") in labels
    k_rsa = [e for e in result.others if e.facts.label == "k-rsa"]
    assert {e.disposition for e in k_rsa} == {SECOND_COPY}
    p = profile([spec("k-aes", target_label="copy-of-k-rsa")])  # a secret key: no public half
    result = reconcile(target["entries"], source["entries"], p, RUN, "hsm2", "hsm1")
    labels = {(e.facts.label, e.facts.cls) for e in result.others}
    assert ("copy-of-k-rsa", "private") in labels


# ---- the material: commitments over one challenge ----------------------------------------------

CHALLENGE = bytes(range(100, 132))


def aes_decrypt_sha(value: bytes, data: bytes = CHALLENGE) -> str:
    d = Cipher(algorithms.AES(value), modes.ECB()).decryptor()
    return hashlib.sha256(d.update(data) + d.finalize()).hexdigest()


def test_commit_is_the_strong_proofs_commitment_over_the_census_challenge(source):
    by, entries = source["by"], source["entries"]
    publics = {e.facts.label: e.obj for e in entries if e.facts.cls == "public"
               and e.facts.type == "ec"}
    assert census.commit(by["k-aes", "secret"], publics, "hsm1", CHALLENGE) == {
        "method": "aes-ecb-decrypt", "sha256": aes_decrypt_sha(AES_A)}
    import hmac as _hmac
    assert census.commit(by["k-hmac", "secret"], publics, "hsm1", CHALLENGE) == {
        "method": "hmac-sha256",
        "sha256": hashlib.sha256(_hmac.new(HMAC_A, CHALLENGE, "sha256").digest()).hexdigest()}
    fp_ec = software_fp(ec_key(0).public_key())
    for cls in ("private", "public"):  # the pair: its public key (and the private's answer)
        assert census.commit(by["k-ec", cls], publics, "hsm1", CHALLENGE) == {
            "method": "spki-sha256+answer", "sha256": fp_ec}
    assert census.commit(by["k-rsa", "private"], {}, "hsm1", CHALLENGE)["sha256"] == \
        software_fp(rsa_key(0).public_key())
    alone = census.commit(by["k-ec-alone", "private"], publics, "hsm1", CHALLENGE)
    assert alone == {"none": "NotProvable: the EC private key on hsm1 exposes no public key and "
                             "none is given: its material cannot be fixed"}
    short = census.commit(by["k-short-hmac", "secret"], publics, "hsm1", CHALLENGE)
    assert short == {"none": "TokenError: prove the key material (hmac-sha256) on hsm1 failed: "
                             "CKR_KEY_SIZE_RANGE; the token refuses a key of this size for the "
                             "mechanism"}
    assert census.commit(Entry(facts("gone")), publics, "hsm1", CHALLENGE) == {"none": "not read"}
    assert census.commit(by["e1", "public"], publics, "hsm1", CHALLENGE)["none"].startswith(
        "ValueError: ")  # an RSA public key of exponent 1: cryptography refuses it


def test_an_ec_private_key_answers_only_for_an_ec_public_object_of_its_label(tokens):
    """The public objects a census looks an EC private key's public key up in are the EC
    public objects; an RSA pair's public object under the same label is not one, and an RSA
    private key never looks one up."""
    s = tokens["hsm2"]
    ec_alone = ec_pair(s, "mix", ec_key(0), "secp256r1", public=False, token=False)[0]
    rsa_private, rsa_public = rsa_pair(s, "mix", rsa_key(0), token=False)
    ec_public = ec_pair(s, "mix2", ec_key(0), "secp256r1", token=False)[1]
    entries = [Entry(census.keyinfo.read(o), o) for o in (ec_alone, rsa_private, rsa_public)]
    census.commit_all(entries, "hsm2", CHALLENGE)
    assert entries[0].material == {"none": "NotProvable: the EC private key on hsm2 exposes no "
                                           "public key and none is given: its material cannot "
                                           "be fixed"}
    fp = software_fp(rsa_key(0).public_key())
    assert entries[1].material == entries[2].material == {"method": "spki-sha256+answer",
                                                          "sha256": fp}
    # a public object under the label of an RSA private key: never looked up for it (its
    # public key is its own modulus)
    rsa_entry = Entry(census.keyinfo.read(rsa_private), rsa_private)
    other_public = rsa_pair(s, "mix3", rsa_key(1), token=False)[1]
    for looked_up in (ec_public, other_public):
        assert census.commit(rsa_entry, {"mix": looked_up}, "hsm2", CHALLENGE)["sha256"] == fp


def test_take_source_commits_every_object_over_one_challenge_kept_in_the_record(tokens, source):
    p = profile([spec("k-aes"), spec("k-rsa", "rsa")],
                [Exclusion("k-hmac", "the old application's MAC key")])
    entries, doc = census.take_source(tokens["hsm1"], cluster("hsm1"), p, RUN, CHALLENGE)
    assert doc["challenge"] == CHALLENGE.hex()
    assert all(e.material is not None for e in entries)
    aes = next(o for o in doc["objects"] if o["label"] == "k-aes")
    assert aes["material"] == {"method": "aes-ecb-decrypt", "sha256": aes_decrypt_sha(AES_A)}
    again, doc2 = census.take_source(tokens["hsm1"], cluster("hsm1"), p, RUN, CHALLENGE)
    assert [o["material"] for o in doc2["objects"]] == [o["material"] for o in doc["objects"]]
    assert changes(doc["objects"], doc2["objects"]) == []
    _, fresh = census.take_source(tokens["hsm1"], cluster("hsm1"), p, RUN)  # a new challenge
    assert fresh["challenge"] != doc["challenge"]
    assert next(o for o in fresh["objects"] if o["label"] == "k-aes")["material"] != \
        aes["material"]
    short = next(e for e in entries if e.facts.label == "k-short-hmac")
    assert short.material["none"].startswith("TokenError: prove the key material "
                                              "(hmac-sha256) on hsm1 failed")
    assert census.record([], cluster("hsm1"), "source")["objects"] == []
    assert "challenge" not in census.record([], cluster("hsm1"), "source")


def test_changes_name_other_key_material_under_the_same_metadata():
    m1 = {"method": "aes-ecb-decrypt", "sha256": "11" * 32}
    m2 = {"method": "aes-ecb-decrypt", "sha256": "22" * 32}
    start = [obj("a", size=256, material=m1), obj("b", material=m1)]
    end = [obj("b", material=m1), obj("a", size=256, material=m2)]
    assert changes(start, end) == [
        "changed: 'a' (secret aes, 256 bits, CKA_ID (empty)): other key material "
        f"(aes-ecb-decrypt SHA-256 {'11' * 8}... at first, aes-ecb-decrypt SHA-256 "
        f"{'22' * 8}... now)"]
    assert changes(start, list(reversed(start))) == []
    none = {"none": "the token refused"}
    assert changes([obj("a", material=None)], [obj("a", material=m1)]) == [
        "changed: 'a' (secret aes, CKA_ID (empty)): other key material (None at first, "
        f"aes-ecb-decrypt SHA-256 {'11' * 8}... now)"]
    # the same commitment, its fields in another order (as JSON gives it back): unchanged
    assert changes([obj("a", material={"sha256": "11" * 32, "method": "aes-ecb-decrypt"})],
                   [obj("a", material=m1)]) == []
    # each changed object said once, with its own values, a label of None among them
    m3 = {"method": "aes-ecb-decrypt", "sha256": "33" * 32}
    found = census.compare([obj("gone", material=m3), obj(None, material=m1),
                            obj("a", material=m1)],
                           [obj("new", material=m3), obj("a", material=m2),
                            obj(None, material=m2)])
    assert found["changed"] == [
        f"'a' (secret aes, CKA_ID (empty)): other key material (aes-ecb-decrypt SHA-256 "
        f"{'11' * 8}... at first, aes-ecb-decrypt SHA-256 {'22' * 8}... now)",
        f"None (secret aes, CKA_ID (empty)): other key material (aes-ecb-decrypt SHA-256 "
        f"{'11' * 8}... at first, aes-ecb-decrypt SHA-256 {'22' * 8}... now)"]
    assert found["appeared"] == ["'new' (secret aes, CKA_ID (empty))"]
    assert found["disappeared"] == ["'gone' (secret aes, CKA_ID (empty))"]
    assert changes([obj("a", material=m1)], [obj("a", material=none)]) == [
        "changed: 'a' (secret aes, CKA_ID (empty)): other key material (aes-ecb-decrypt "
        f"SHA-256 {'11' * 8}... at first, not provable: the token refused now)"]
    # one changed, one gone, one new, under the same label: each said once
    found = census.compare([obj("x", material=m1), obj("x", material=m1)],
                           [obj("x", material=m2), obj("y", material=m1)])
    assert found == {"appeared": ["'y' (secret aes, CKA_ID (empty))"],
                     "disappeared": ["'x' (secret aes, CKA_ID (empty))"],
                     "changed": [f"'x' (secret aes, CKA_ID (empty)): other key material "
                                 f"(aes-ecb-decrypt SHA-256 {'11' * 8}... at first, "
                                 f"aes-ecb-decrypt SHA-256 {'22' * 8}... now)"]}
    assert census.compare([obj("a", check="c1")], [obj("a", check="c2")], "check")["changed"] \
        == ["'a' (secret aes, CKA_ID (empty)): other key material (c1 at first, c2 now)"]


def test_a_key_with_the_same_kcv_on_the_target_is_not_a_second_copy(tokens, source):
    """A second copy is found by the strong proof: a KCV twin is other material."""
    from kcv_collision import colliding_pair
    value, twin = colliding_pair()
    s = secret(tokens["hsm1"], "k-kcv", KeyType.AES, value, extra={Attribute.TOKEN: False})
    t_twin = secret(tokens["hsm2"], "twin", KeyType.AES, twin, extra={Attribute.TOKEN: False})
    t_copy = secret(tokens["hsm2"], "copy", KeyType.AES, value, extra={Attribute.TOKEN: False})
    src = [Entry(census.keyinfo.read(s), s)]
    tgt = [Entry(census.keyinfo.read(o), o) for o in (t_twin, t_copy)]
    result = reconcile(tgt, src, profile([spec("k-kcv", size=256)]), RUN, "hsm2", "hsm1")
    assert [(e.facts.label, e.disposition) for e in result.others] == [
        ("twin", OTHER), ("copy", SECOND_COPY)]
    assert result.others[0].check == result.others[1].check  # the same 3-byte KCV shown
    # over the source census's challenge: the source's commitments as they were taken
    src[0].material = census.commit(src[0], {}, "hsm1", CHALLENGE)
    again = reconcile([Entry(census.keyinfo.read(t_copy), t_copy)], src,
                      profile([spec("k-kcv", size=256)]), RUN, "hsm2", "hsm1", CHALLENGE)
    assert [e.disposition for e in again.others] == [SECOND_COPY]
    assert again.others[0].material == src[0].material
    # the commitments a census took are what is compared (not made again over its challenge)
    src[0].material = {"method": "aes-ecb-decrypt", "sha256": "00" * 32}
    stale = reconcile([Entry(census.keyinfo.read(t_copy), t_copy)], src,
                      profile([spec("k-kcv", size=256)]), RUN, "hsm2", "hsm1", CHALLENGE)
    assert [e.disposition for e in stale.others] == [OTHER]
    # where no commitment can be made, each side says why, naming its cluster
    s_ref = secret(tokens["hsm1"], "k-ref", KeyType.GENERIC_SECRET, AES_B,
                   extra={Attribute.TOKEN: False})  # too short for HMAC-SHA256
    src = [Entry(census.keyinfo.read(s_ref), s_ref)]
    reconcile([], src, profile([spec("k-ref", "generic-secret")]), RUN, "hsm2", "hsm1")
    assert src[0].material is None  # no other object on the target: nothing computed
    t_hmac = secret(tokens["hsm2"], "t-hmac", KeyType.GENERIC_SECRET, HMAC_A,
                    extra={Attribute.TOKEN: False})
    reconcile([Entry(census.keyinfo.read(t_hmac), t_hmac)], src,
              profile([spec("k-ref", "generic-secret")]), RUN, "hsm2", "hsm1")
    assert src[0].material["none"].startswith("TokenError: prove the key material "
                                              "(hmac-sha256) on hsm1 failed")
    s_aes = secret(tokens["hsm1"], "k-aes-ok", KeyType.AES, value, extra={Attribute.TOKEN: False})
    t_ref = secret(tokens["hsm2"], "t-ref", KeyType.AES, value, extra={Attribute.TOKEN: False})
    t_ref[Attribute.DECRYPT] = False  # the object offers decrypt(); the token refuses
    result = reconcile([Entry(census.keyinfo.read(t_ref), t_ref)],
                       [Entry(census.keyinfo.read(s_aes), s_aes)],
                       profile([spec("k-aes-ok", size=256)]), RUN, "hsm2", "hsm1")
    assert result.others[0].material["none"].startswith("TokenError: prove the key material "
                                                        "(aes-ecb-decrypt) on hsm2 failed")
    assert result.copies == []
