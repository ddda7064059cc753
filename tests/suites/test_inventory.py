"""`keyparity inventory`: a profile's keys: drafted from its source token (and exclude: for
what cannot be an inventory key), the same inventory as a CycloneDX 1.6 CBOM, and the run
bundle's cbom.json.

The command runs in a child process (SoftHSM reads its configuration once per process, and
every lab has tokens of its own), against fresh SoftHSM tokens.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DEMO_KEYS, REPO, evidence, run_suites
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from test_bad_input import SPY, edit_profile, spy_logins

from keyparity.formats import cbom
from keyparity import inventory
from keyparity.hsm import keyinfo
from keyparity.hsm.census import Entry
from keyparity.attest.custodians import file_custodian
from keyparity.profile import load_profile
from keyparity.hsm.seed import key_id

DEMO = yaml.safe_load((REPO / "hsm_profiles" / "softhsm.yaml").read_text())["keys"]
SECRET_TYPES = ("des2", "des3", "aes", "generic-secret")


# ---- helpers --------------------------------------------------------------------------------

def keyparity(lab: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m keyparity.cli ARGS`` in a child process with the lab's SOFTHSM2_CONF."""
    return subprocess.run([sys.executable, "-m", "keyparity.cli", *args], env=lab.env,
                          capture_output=True, text=True, check=False, cwd=lab.root,
                          timeout=300)


def drafted(lab: Any, profile: Path) -> dict[str, Any]:
    out = keyparity(lab, "inventory", str(profile))
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert_no_pins(lab, out.stdout)
    return yaml.safe_load(out.stdout)


def assert_no_pins(lab: Any, text: str) -> None:
    for token, pin in lab.pins.items():
        assert pin not in text, f"{token}'s PIN in the output"


# the role keyparity inventory drafts from the usage keyparity.hsm.seed gives a key: of its
# role, the first role of the table with those operations; without one, SoftHSM's and the
# seed's defaults (a secret key that may encrypt and sign, an RSA key that may sign and decrypt
# fit no single role)
DRAFTED = {"pin": "data-encryption", "tokenisation": "data-encryption", "ca": "signing"}
NO_ROLE = {"des2": "unspecified", "des3": "unspecified", "aes": "unspecified",
           "generic-secret": "mac", "rsa": "unspecified", "ec": "signing"}


def expected(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the draft should say of seeded keys (tests/helpers/tokentool.py: keyparity.hsm.seed)."""
    out = []
    for k in sorted(keys, key=lambda k: k["label"]):
        role = DRAFTED.get(k["role"], k["role"]) if "role" in k else NO_ROLE[k["type"]]
        entry = {**k, "id": key_id(k["label"]).hex(), "role": role}
        if entry.get("disposition") == "migrate":
            del entry["disposition"]
        out.append(entry)
    return out


def validates(text: str) -> None:
    """The library's own JSON validator for CycloneDX 1.6 (strict)."""
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, error


def keys_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The CBOM's key components by name (related crypto material)."""
    return {c["name"]: c for c in doc["components"]
            if c["cryptoProperties"]["assetType"] == "related-crypto-material"}


def props(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


def algorithm_of(doc: dict[str, Any], component: dict[str, Any]) -> dict[str, Any]:
    ref = component["cryptoProperties"]["relatedCryptoMaterialProperties"]["algorithmRef"]
    (found,) = [c for c in doc["components"] if c.get("bom-ref") == ref]
    assert found["cryptoProperties"]["assetType"] == "algorithm"
    return found


# ---- the draft ------------------------------------------------------------------------------

def test_draft_of_the_demo_source_reproduces_the_demo_inventory(lab):
    lab.seed(DEMO)

    out = keyparity(lab, "inventory", str(lab.profile(DEMO)))

    assert out.returncode == 0, out.stderr
    draft = yaml.safe_load(out.stdout)
    assert draft == {"keys": expected(DEMO), "exclude": []}
    rotate = [k["label"] for k in draft["keys"] if k.get("disposition") == "rotate"]
    assert rotate == ["hsm-bound-aes256"]
    # ids are quoted hex strings, ready to paste (a CKA_ID of digits only stays a string)
    for k in draft["keys"]:
        assert f'    id: "{k["id"]}"' in out.stdout.splitlines()
    assert out.stdout.startswith("# keyparity inventory of the source cluster hsm1 (token hsm1")
    assert_no_pins(lab, out.stdout + out.stderr)


def test_roles_are_drafted_from_the_attributes_and_marked_as_drafts(lab):
    """A role is a person's decision: the draft names the one the key's usage attributes show,
    says so in a comment, and names none where they fit no single role."""
    keys = [{"label": "k-kek", "type": "aes", "size": 256, "role": "key-encryption"},
            {"label": "k-mac", "type": "des3", "role": "mac"},
            {"label": "k-any", "type": "aes", "size": 128}]  # encrypt, decrypt, sign, verify
    lab.seed(keys)
    out = keyparity(lab, "inventory", str(lab.profile(keys)))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert ("    role: key-encryption  # draft, from its attributes (wrap, unwrap): confirm "
            "what the key is for") in lines
    assert ("    role: mac  # draft, from its attributes (sign, verify): confirm what the key "
            "is for") in lines
    assert ("    role: unspecified  # draft: its attributes allow encrypt, decrypt, sign, "
            "verify, which fit no single role: name what the key is for (and correct its "
            "attributes)") in lines
    assert {k["label"]: k["role"] for k in yaml.safe_load(out.stdout)["keys"]} == {
        "k-kek": "key-encryption", "k-mac": "mac", "k-any": "unspecified"}


def test_drafted_profile_loads_and_the_suites_pass_with_a_signed_cbom_in_the_bundle(lab, all_suites):
    suites = all_suites  # every suite keyparity ships: a PASS needs them all
    lab.seed(DEMO)
    draft = drafted(lab, lab.profile(DEMO))
    private = lab.root / "auditor.key.pem"
    public = file_custodian(lab.root, "auditor")
    profile = lab.profile(draft["keys"], name="drafted", exclude=draft["exclude"],
                          evidence={"signers": [{"name": "auditor", "type": "file",
                                                 "path": str(private)}]})
    loaded = load_profile(profile)
    assert [k.label for k in loaded.keys] == [k["label"] for k in expected(DEMO)]
    assert {k.label: k.id for k in loaded.keys} == {
        k["label"]: key_id(k["label"]).hex() for k in DEMO}
    command_cbom = lab.root / "source-cbom.json"
    out = keyparity(lab, "inventory", str(profile), "--format", "cyclonedx",
                    "--out", str(command_cbom))
    assert out.returncode == 0, out.stderr

    result = run_suites(suites, profile)

    assert result.ret == 0, result.stdout.str()
    doc = evidence(suites)
    # the suites fixture copies every suite but tls, cluster and ownership: verdict.py counts
    # only the suites of the checkout, so a complete green run is a PASS
    assert doc["summary"]["verdict"] == "PASS"
    verdicts = {label: k["verdict"] for label, k in doc["keys"].items()}
    assert verdicts == {k["label"]: "rotate" if k.get("disposition") == "rotate" else "passed"
                        for k in DEMO}
    assert doc["census"]["source"]["start"]["counts"] == {"inventory": 10}  # 8 keys, 2 pairs

    run_dir = (suites.path / "reports" / "latest").resolve()
    text = (run_dir / "cbom.json").read_text()
    validates(text)
    bom = json.loads(text)
    assert bom["specVersion"] == "1.6"
    found = keys_of(bom)
    assert set(found) == {k["label"] for k in DEMO}
    for label, component in found.items():
        material = component["cryptoProperties"]["relatedCryptoMaterialProperties"]
        p = props(component)
        spec = doc["keys"][label]
        assert material["state"] == ("pre-activation" if spec["verdict"] == "rotate"
                                     else "active"), label
        assert material["type"] == ("secret-key" if spec["type"] in SECRET_TYPES
                                    else "private-key")
        assert (p["keyparity:verdict"], p["keyparity:target-label"], p["keyparity:cluster"]) == (
            spec["verdict"], spec["target_label"], "hsm2")
        if spec["verdict"] == "passed":  # identity proven: the KCV or fingerprint, both sides
            assert p["keyparity:identity-source"] == p["keyparity:identity-target"]
            assert p["keyparity:identity-match"] == "true"
    # the run's fingerprints are the ones `keyparity inventory` computed on the source
    source = keys_of(json.loads(command_cbom.read_text()))
    for label, component in found.items():
        p, q = props(component), props(source[label])
        for name in ("keyparity:kcv", "keyparity:fingerprint"):
            if name in p:
                assert p[name] == q[name], (label, name)
    # a run proves secret keys by the strong proof, not by a KCV: none in the run's CBOM
    assert sum("keyparity:kcv" in props(c) for c in found.values()) == 0
    assert sum(props(c).get("keyparity:identity-bits") == "256" for c in found.values()) == 5
    assert sum("keyparity:fingerprint" in props(c) for c in found.values()) == 2

    # cbom.json is a subject of the signed statement, and verify accepts the bundle
    statement = json.loads((run_dir / "statement.json").read_text())
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects["cbom.json"] == hashlib.sha256((run_dir / "cbom.json").read_bytes()
                                                   ).hexdigest()
    checked = subprocess.run([sys.executable, "-m", "keyparity.cli", "verify", str(run_dir),
                              "--key", str(public)], capture_output=True, text=True,
                             check=False, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert_no_pins(lab, text)


def test_unpaired_public_key_and_a_second_key_under_one_label_are_excluded(lab, all_suites):
    suites = all_suites  # every suite keyparity ships: a PASS needs them all
    lab.seed(DEMO_KEYS)
    lab.tokens(
        {"op": "create", "token": "hsm1", "key": {"label": "orphan", "type": "rsa",
                                                  "size": 2048}},
        {"op": "destroy", "token": "hsm1", "label": "orphan", "classes": ["private"]},
        {"op": "create", "token": "hsm1", "key": {"label": "k-aes128", "type": "aes",
                                                  "size": 128}, "label": "k-aes128"})

    draft = drafted(lab, lab.profile(DEMO_KEYS))

    kept = [k for k in DEMO_KEYS if k["label"] != "k-aes128"]
    assert draft["keys"] == expected(kept)
    by_label = {x["label"]: x for x in draft["exclude"]}
    assert set(by_label) == {"k-aes128", "orphan"}
    assert by_label["orphan"]["class"] == "public"
    assert "public key (RSA-2048) with no private key under its label" in \
        by_label["orphan"]["reason"]
    assert "class" not in by_label["k-aes128"]  # both objects of the label
    assert by_label["k-aes128"]["reason"].startswith(
        "2 key objects under one label (secret AES-128, CKA_ID ")

    # the draft as a profile passes the census: every source object is accounted for
    profile = lab.profile(draft["keys"], name="drafted", exclude=draft["exclude"])
    result = run_suites(suites, profile, "-m", "preflight")

    assert result.ret == 0, result.stdout.str()
    doc = evidence(suites)
    assert doc["summary"]["verdict"] == "PREFLIGHT-PASS"
    start = doc["census"]["source"]["start"]
    assert start["counts"] == {"excluded": 3, "inventory": 7}  # 5 keys, 2 of them pairs
    excluded = {(o["label"], o["class"]): o["detail"] for o in start["objects"]
                if o["disposition"] == "excluded"}
    assert excluded == {("orphan", "public"): by_label["orphan"]["reason"],
                        ("k-aes128", "secret"): by_label["k-aes128"]["reason"]}


# ---- the CBOM -------------------------------------------------------------------------------

def test_cbom_of_the_demo_source_validates_and_holds_one_asset_per_key(lab):
    lab.seed(DEMO)

    out = keyparity(lab, "inventory", str(lab.profile(DEMO)), "--format", "cyclonedx")

    assert out.returncode == 0, out.stderr
    validates(out.stdout)
    assert_no_pins(lab, out.stdout)
    bom = json.loads(out.stdout)
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    assert all(c["type"] == "cryptographic-asset" for c in bom["components"])
    found = keys_of(bom)
    assert set(found) == {k["label"] for k in DEMO}
    want = {"payments-3des-3key": ("3DES", 192), "legacy-3des-2key": ("3DES (two-key)", 128),
            "tokenization-aes128": ("AES-128", 128), "data-aes256": ("AES-256", 256),
            "api-hmac": ("HMAC", 256), "signing-rsa2048": ("RSA-2048", 2048),
            "ca-ec-p384": ("EC P-384", 384), "hsm-bound-aes256": ("AES-256", 256)}
    for spec in DEMO:
        label = spec["label"]
        component = found[label]
        material = component["cryptoProperties"]["relatedCryptoMaterialProperties"]
        algorithm = algorithm_of(bom, component)
        assert (algorithm["name"], material["size"]) == want[label]
        assert material["id"] == key_id(label).hex()
        assert material["state"] == "active"
        assert "value" not in material  # never the key
        p = props(component)
        assert p["keyparity:key-type"] == spec["type"]
        assert p["keyparity:disposition"] == spec.get("disposition", "migrate")
        if spec["type"] in ("des2", "des3"):  # the demo source is declared FIPS
            assert material["type"] == "secret-key" and "keyparity:kcv" not in p
            assert "cluster in FIPS mode refuses" in p["keyparity:check-unavailable"], p
        elif spec["type"] in SECRET_TYPES:
            assert material["type"] == "secret-key"
            assert re.fullmatch(r"[0-9a-f]{6}", p["keyparity:kcv"]), p
            assert "keyparity:fingerprint" not in p
        else:
            assert material["type"] == "private-key"
            assert re.fullmatch(r"[0-9a-f]{64}", p["keyparity:fingerprint"]), p
            assert "keyparity:kcv" not in p
    ec = algorithm_of(bom, found["ca-ec-p384"])["cryptoProperties"]["algorithmProperties"]
    assert ec["curve"] == "nist/P-384"
    # no 3DES KCV asked of the FIPS source: AES-128, AES-256, HMAC and the rotate key's
    assert len({props(c).get("keyparity:kcv") for c in found.values()} - {None}) == 4


# ---- errors ---------------------------------------------------------------------------------

def test_wrong_pin_is_tried_once_and_is_one_line_naming_cluster_and_pin_reference(lab):
    wrong = "wrong-" + hashlib.sha256(str(lab.root).encode()).hexdigest()[:8]
    (lab.root / "wrong.pin").write_text(wrong + "\n")
    log = lab.root / "spy.log"  # holds every PIN in clear

    def through_spy(d: dict[str, Any]) -> None:
        d["module_env"].update(PKCS11SPY=lab.module, PKCS11SPY_OUTPUT=str(log))
        d["clusters"]["source"]["module"] = SPY
        d["clusters"]["source"]["pin"] = f"file:{lab.root / 'wrong.pin'}"

    profile = edit_profile(lab.profile(DEMO_KEYS[:1]), through_spy)

    for fmt in ("yaml", "cyclonedx"):
        log.unlink(missing_ok=True)
        out = keyparity(lab, "inventory", str(profile), "--format", fmt)

        assert out.returncode == 1, out.stderr
        assert out.stdout == ""
        lines = out.stderr.splitlines()
        assert len(lines) == 1, lines
        assert lines[0] == (
            "keyparity inventory: error: source (hsm1) is unavailable: login failed: "
            f"CKR_PIN_INCORRECT; check clusters.source.pin (file:{lab.root / 'wrong.pin'}); "
            "not retried, so that the user is not locked out")
        assert wrong not in out.stderr
        assert spy_logins(log) == [(wrong.encode(), "CKR_PIN_INCORRECT")]


def test_unset_pin_variable_is_exit_1_one_line_naming_cluster_and_variable(lab, monkeypatch):
    monkeypatch.delenv("KEYPARITY_TEST_UNSET_PIN", raising=False)
    profile = edit_profile(lab.profile(DEMO_KEYS[:1]), lambda d: d["clusters"]["source"].update(
        pin="env:KEYPARITY_TEST_UNSET_PIN"))

    out = keyparity(lab, "inventory", str(profile))

    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr.splitlines() == [
        "keyparity inventory: error: source (hsm1) is unavailable: clusters.source.pin: "
        "environment variable KEYPARITY_TEST_UNSET_PIN is not set"]


def test_usage_errors_exit_2(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "keyparity.cli", *args],
                              capture_output=True, text=True, check=False, cwd=tmp_path,
                              timeout=60)

    missing = run("inventory", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        f"keyparity inventory: error: {tmp_path / 'nope.yaml'}: profile file not found"]
    for args in (("inventory",), ("inventory", "softhsm", "--format", "spdx")):
        bad = run(*args)
        assert bad.returncode == 2 and "usage: keyparity inventory" in bad.stderr


# ---- without a token: the sorting rules, the YAML, the run's CBOM ---------------------------

def entry(label: str | None, cls: str, key_type: str, *, size: int | None = None,
          curve: str | None = None, cka_id: str = "", extractable: bool | None = True
          ) -> Entry:
    return Entry(keyinfo.KeyFacts(cls=cls, type=key_type, label=label, id=cka_id, size=size,
                                  curve=curve, extractable=None if cls == "public"
                                  else extractable))


def test_objects_that_cannot_be_inventory_keys_are_excluded_with_the_reason():
    found = inventory.draft([
        entry("b-aes", "secret", "aes", size=128, cka_id="0102", extractable=False),
        entry("a-ec", "private", "ec", curve="secp256r1"),
        entry("a-ec", "public", "ec", curve="secp256r1"),
        entry("dsa", "private", "DSA"),
        entry("ec-k1", "private", "ec", curve="EC parameters 06052b8104000a"),
        entry("ec-k1", "public", "ec", curve="EC parameters 06052b8104000a"),
        entry("lonely-rsa", "private", "rsa", size=2048, cka_id="aa"),
        entry("lonely-ec", "private", "ec", curve="secp384r1"),
        entry("unwrapped-aes", "secret", "aes"),
        entry("odd-aes", "secret", "aes", size=64),
        entry("keyparity-wrap-20250101T000000Z-abcdef", "private", "rsa", size=2048),
        entry("keyparity-wrap-20250101T000000Z-abcdef", "public", "rsa", size=2048),
        entry("mixed", "secret", "aes", size=128),
        entry("mixed", "private", "rsa", size=2048),
        entry("", "secret", "aes", size=256, cka_id="ff"),
    ])

    assert [k.record() for k in found.keys] == [  # an RSA key is proven by its modulus
        {"label": "a-ec", "type": "ec", "curve": "P-256", "id": ""},
        {"label": "b-aes", "type": "aes", "size": 128, "id": "0102", "disposition": "rotate"},
        {"label": "lonely-rsa", "type": "rsa", "size": 2048, "id": "aa"}]
    reasons = {(x["label"], x.get("class")): x["reason"] for x in found.exclude}
    assert list(reasons) == sorted(reasons, key=lambda k: k[0])  # sorted by label
    assert reasons == {
        ("dsa", "private"): "private key of type DSA: not a key type keyparity migrates "
                            "(des2, des3, aes, generic-secret, rsa, ec)",
        ("ec-k1", None): "EC curve EC parameters 06052b8104000a is not one keyparity "
                         "migrates (P-256, P-384, P-521)",
        ("keyparity-wrap-20250101T000000Z-abcdef", None):
            "a wrapping object of a keyparity run, not an inventory key: keyparity cleanup "
            "--run 20250101T000000Z-abcdef removes it",
        ("lonely-ec", "private"): "an EC private key (EC P-384) with no public key under "
                                  "its label: keyparity proves an EC key with its public key "
                                  "(a private key object exposes no public point)",
        ("mixed", None): "2 key objects under one label (secret AES-128, CKA_ID (empty); "
                         "private RSA-2048, CKA_ID (empty)): the inventory names a key by its "
                         "label, so none of them can be migrated as they are; give each its "
                         "own label on the token and draft again",
        ("odd-aes", None): "AES-64: a profile does not accept this size (64 is not one of: "
                           "128, 192, 256 (type aes))",
        ("unwrapped-aes", None): "the token does not report the key's size (CKA_VALUE_LEN): "
                                 "add it to keys: with its size to migrate it",
    }
    assert [e.facts.id for e in found.unlabelled] == ["ff"]


def test_rendered_draft_quotes_ids_and_comments_what_cannot_be_excluded(tmp_path):
    found = inventory.draft([entry("k", "secret", "aes", size=128, cka_id="0123"),
                             entry(None, "secret", "des3")])
    cluster = load_profile(_minimal_profile(tmp_path)).source

    text = inventory.render(found, cluster, {"label": "hsm1", "serial": "42"})

    assert yaml.safe_load(text) == {"keys": [{"label": "k", "type": "aes", "size": 128,
                                              "id": "0123"}], "exclude": []}
    assert '    id: "0123"' in text.splitlines()
    assert text.splitlines()[-1] == (
        "# not drafted: an unlabelled secret key (3DES (three-key), CKA_ID (empty)): exclude: "
        "names objects by label, so the census counts it as unaccounted; label it on the token "
        "(or destroy it) and draft again")


def _minimal_profile(tmp_path: Path) -> Path:
    (tmp_path / "pin").write_text("1234\n")
    module = tmp_path / "module.so"
    module.write_bytes(b"")
    cluster = {"module": str(module), "pin": f"file:{tmp_path / 'pin'}"}
    doc = {"name": "t", "description": "t", "environment": "test",
           "clusters": {"source": {"name": "hsm1", "token_label": "hsm1", "mode": "FIPS",
                                   **cluster},
                        "target": {"name": "hsm2", "token_label": "hsm2", "mode": "FIPS",
                                   **cluster}},
           "keys": [{"label": "k", "type": "aes", "size": 128}]}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(("verdict", "state"), [
    ("passed", "active"), ("failed", "suspended"), ("rotate", "pre-activation"),
    ("partial", "pre-activation"), ("skipped", "pre-activation"), ("not run", "pre-activation"),
    (None, "pre-activation")])
def test_run_cbom_key_state_follows_the_key_verdict(verdict, state):
    entry_ = {"label": "k", "type": "rsa", "size": 3072, "target_label": "k-new",
              "disposition": "migrate"}
    if verdict:
        entry_["verdict"] = verdict
    doc = {"run": {"run_id": "r", "finished": "2025-01-01T00:00:00+00:00"},
           "clusters": {"target": {"name": "hsm2"}}, "keys": {"k": entry_, "junk": "?"}}

    text = cbom.from_evidence(doc)

    validates(text)
    (component,) = keys_of(json.loads(text)).values()
    material = component["cryptoProperties"]["relatedCryptoMaterialProperties"]
    assert (material["state"], material["size"], material["type"]) == (state, 3072,
                                                                       "private-key")
    assert props(component)["keyparity:target-label"] == "k-new"


def test_a_cbom_that_does_not_validate_is_an_error():
    with pytest.raises(cbom.CbomError, match=r"does not validate against CycloneDX 1\.6 at "
                                             r"\$: Additional properties"):
        cbom.validate(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "x": 1}))


def test_objects_that_are_not_keys_are_drafted_as_exclusions_of_their_class(tmp_path):
    """A certificate under a key pair's label and a data object: keyparity migrates keys only,
    so each is drafted as an exclusion naming its class (the profile accepts a certificate
    excluded under an inventory key's label); an unlabelled one is a comment."""
    def other(label, cls, **facts):
        return Entry(keyinfo.KeyFacts(cls=cls, type="", label=label, **facts))

    found = inventory.draft([
        entry("ca", "private", "rsa", size=2048), entry("ca", "public", "rsa", size=2048),
        other("ca", "certificate", id="01", certificate_type="X_509"),
        other("pw", "data", id="", application="vault"),
        other("pw", "data", id="", application="backup"),
        other(None, "data", id="", application="stray"),
    ])
    assert [k.record() for k in found.keys] == [
        {"label": "ca", "type": "rsa", "size": 2048, "id": ""}]
    assert found.exclude == [
        {"label": "ca", "class": "certificate",
         "reason": "certificate (X_509), CKA_ID 01: keyparity migrates keys, not certificates "
                   "(public data): import it on the target from where it came, its PKI (a "
                   "CloudHSM cluster stores certificates only on hsm2m.medium, with "
                   "certificate storage enabled in the client)"},
        {"label": "pw", "class": "data",
         "reason": "data object (application 'vault'), no CKA_ID; data object (application "
                   "'backup'), no CKA_ID: keyparity migrates keys, not data objects, and never "
                   "reads their value: move it by other means if the target needs it"}]
    assert [e.facts.application for e in found.unlabelled] == ["stray"]
    path = _minimal_profile(tmp_path)
    text = inventory.render(found, load_profile(path).source, {"label": "hsm1", "serial": "42"})
    # the draft, pasted into a profile, loads
    doc = yaml.safe_load(path.read_text()) | yaml.safe_load(text)
    path.write_text(yaml.safe_dump(doc))
    assert [x.cls for x in load_profile(path).exclude] == ["certificate", "data"]
    assert text.splitlines()[-1] == (
        "# not drafted: an unlabelled data object (application 'stray') (CKA_ID (empty)): "
        "exclude: names objects by label, so the census counts it as unaccounted; label it on "
        "the token (or destroy it) and draft again")
