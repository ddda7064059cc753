"""keyparity.attest.verify and `keyparity verify`: a realistic run directory signed by two custodians
(file keys made here), then every kind of tampering, each of which must fail with a message
that names the problem. Plus an independent check of our signatures: DSSE PAE built by hand
and verified with plain `cryptography` and with the `openssl` command line."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import SSlibKey

from conftest import REPO
from keyparity.attest.custodians import file_custodian
from keyparity.profile import SignerSpec
from keyparity.attest.signing import load_signer, public_key_from_pem
from keyparity.attest.statement import (
    ENVELOPE, PAYLOAD_TYPE, STATEMENT, EvidenceError, canonical_json, sign_run, subjects,
)
from keyparity.attest.verify import VerifyResult, verify_run


# What a run directory holds once the other report writers are in: every file of it.
FILES = {
    "evidence.json": json.dumps({"schema_version": "1", "summary": {"verdict": "PASS"},
                                 "keys": {"k-aes": {"verdict": "passed"}}}, indent=2) + "\n",
    "report.html": "<!doctype html><title>keyparity</title><p>PASS</p>\n",
    "junit.xml": '<?xml version="1.0"?><testsuites><testsuite name="keyparity" tests="1"/>'
                 "</testsuites>\n",
    "assessment-results.json": json.dumps({"assessment-results": {"uuid": "0e5e"}}) + "\n",
    "allure-results/4f1c-result.json": json.dumps({"name": "test_equivalence",
                                                   "status": "passed"}) + "\n",
    "allure-results/4f1c-attachment.txt": "vector aes-gcm ok\n",
    "allure-results/nested/environment.properties": "hsm=softhsm\n",
    ".login-state.json": "{}\n",
    # what makes the bundle self-contained (keyparity.attest.contents)
    "profile/softhsm.yaml": "name: softhsm\n",
    "signers/custodian-1.pem": "custodian-1's public key\n",
    "signers/custodian-2.pem": "custodian-2's public key\n",
}
SIGNED = sorted(FILES) + [STATEMENT, ENVELOPE]  # every file in the signed directory
RUN_ID = "20261123T155223Z-9a571f"
HEADLINE = ("All 2 keys to migrate were proven intact and usable on hsm2. 1 key is not "
            "migrated by design and must be rotated.")

DROP = object()  # predicate(field=DROP): a predicate without that field


def predicate(run_id: str = RUN_ID, **changes) -> dict:
    """What keyparity.evidence.bundle._predicate signs, for a run of two custodians (threshold 2)."""
    doc = {
        "run_id": run_id,
        "profile": "softhsm",
        "profile_sha256": "c8" * 32,
        "verdict": "PASS",
        "headline": HEADLINE,
        "summary": {"tests": {"passed": 97, "skipped": 26}, "keys": {"passed": 2, "rotate": 1}},
        "scope": {"keys_total": 3, "keys_to_migrate": 2, "keys_proven": 2,
                  "keys_not_proven": {}, "proofs_not_run": {}, "deselected": 0,
                  "suites": {"migration": "passed", "equivalence": "passed"}},
        "evidence_sha256": hashlib.sha256(FILES["evidence.json"].encode()).hexdigest(),
        "signers": ["custodian-1", "custodian-2"],
        "threshold": 2,
        "contents": {"profile": {"file": "profile/softhsm.yaml"}, "plan": None, "journal": None,
                     "signers": [{"name": f"custodian-{i}", "file": f"signers/custodian-{i}.pem",
                                  "kind": "public key"} for i in (1, 2)]},
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not DROP}


@dataclass
class Signed:
    run: Path
    pubs: list[Path]  # custodian-1, custodian-2 public PEMs (outside the run directory)
    keys: list[SSlibKey]
    other_pub: Path  # a third key that signed nothing
    predicate: dict  # what the custodians signed besides the subjects

    def verify(self, keys: list[SSlibKey] | None = None, threshold: int | None = None,
               **options) -> VerifyResult:
        return verify_run(self.run, self.keys if keys is None else keys, threshold, **options)

    def privates(self) -> list[Path]:
        return [p.with_name(p.name.replace(".pub.", ".key.")) for p in self.pubs]

    def resign(self, predicate: dict, signers: int = 2) -> None:
        """Sign the run directory again, by the first ``signers`` custodians."""
        (self.run / STATEMENT).unlink()
        (self.run / ENVELOPE).unlink()
        sign_run(self.run, file_signers(self.privates()[:signers]), predicate)
        self.predicate = predicate

    def strip_signature(self, key: SSlibKey) -> None:
        doc = self.envelope()
        doc["signatures"] = [s for s in doc["signatures"] if s["keyid"] != key.keyid]
        self.write_envelope(doc)

    def envelope(self) -> dict:
        return json.loads((self.run / ENVELOPE).read_text())

    def write_envelope(self, doc: dict) -> None:
        (self.run / ENVELOPE).write_text(json.dumps(doc, indent=2))


def new_key(directory: Path, name: str) -> tuple[Path, Path]:
    """A fresh ECDSA P-384 custodian key, as ``keyparity demo custodians`` makes one:
    (private PEM, public PEM)."""
    public = file_custodian(directory, name)
    return directory / f"{name}.key.pem", public


def file_signers(privates: list[Path]) -> list:
    return [load_signer(SignerSpec(name=p.name.split(".")[0], type="file", path=p), {}, None)
            for p in privates]


@pytest.fixture
def signed(tmp_path: Path) -> Signed:
    run = tmp_path / "reports" / RUN_ID
    for name, text in FILES.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    pairs = [new_key(keys_dir, f"custodian-{i}") for i in (1, 2)]
    _, other = new_key(keys_dir, "stranger")
    sign_run(run, file_signers([p for p, _ in pairs]), predicate())
    pubs = [pub for _, pub in pairs]
    return Signed(run, pubs, [public_key_from_pem(p.read_bytes()) for p in pubs], other,
                  predicate())


def problems_text(result: VerifyResult) -> str:
    return "\n".join(result.problems)


def files_in(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- the good case


def test_verifies_with_both_keys(signed):
    result = signed.verify()
    assert result.ok, result.problems
    assert result.files_checked == len(FILES)
    assert len(result.verified) == 2 and result.not_verified == []
    assert result.missing == result.extra == result.changed == []


def test_statement_is_the_signed_payload_and_covers_every_file(signed):
    statement = (signed.run / STATEMENT).read_bytes()
    envelope = signed.envelope()
    assert base64.b64decode(envelope["payload"]) == statement
    assert envelope["payloadType"] == PAYLOAD_TYPE
    doc = json.loads(statement)
    assert canonical_json(doc) == statement
    assert doc["_type"] == "https://in-toto.io/Statement/v1"
    assert doc["predicateType"] == "https://keyparity.dev/evidence/v1"
    assert doc["predicate"] == signed.predicate
    assert [s["name"] for s in doc["subject"]] == sorted(FILES)  # dotfile and subdirs too
    for s in doc["subject"]:
        assert s["digest"] == {"sha256": hashlib.sha256(
            (signed.run / s["name"]).read_bytes()).hexdigest()}
    # the parametrisation below is complete (each signer's acknowledgement, beside the
    # statement, is tampered with in tests/unit/test_signatories.py)
    assert [f for f in files_in(signed.run) if not f.startswith("acknowledgements/")] == sorted(
        SIGNED)


def test_subjects_exclude_only_the_top_level_signature_files(tmp_path):
    run = tmp_path / "run"
    (run / "allure-results").mkdir(parents=True)
    for name in (STATEMENT, ENVELOPE, f"allure-results/{STATEMENT}", ".x", "b", "a/../a2"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(name)
    assert [s["name"] for s in subjects(run)] == [
        ".x", "a2", f"allure-results/{STATEMENT}", "b"]


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_symlinks_are_refused_at_signing(tmp_path, kind):
    run = tmp_path / "run"
    run.mkdir()
    target = tmp_path / "outside"
    if kind == "file":
        target.write_text("not part of the run")
    else:
        target.mkdir()
        (target / "f").write_text("x")
    (run / "link").symlink_to(target)
    with pytest.raises(EvidenceError, match="link is a symlink"):
        subjects(run)
    with pytest.raises(EvidenceError):
        sign_run(run, [], {})
    assert not (run / ENVELOPE).exists()


# --------------------------------------------------------------------------- tampering


@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("name", SIGNED)
def test_flipping_one_byte_anywhere_fails(signed, name, where):
    path = signed.run / name
    data = bytearray(path.read_bytes())
    i = {"first": 0, "middle": len(data) // 2, "last": len(data) - 1}[where]
    data[i] ^= 0x01
    path.write_bytes(bytes(data))
    result = signed.verify()
    assert not result.ok
    text = problems_text(result)
    if name == STATEMENT:
        assert f"{STATEMENT} differs from the signed payload" in text
    elif name == ENVELOPE:
        assert ENVELOPE in text or "does NOT verify" in text
    else:
        assert f"changed: {name} (sha256 signed" in text
        assert result.changed == [name]


@pytest.mark.parametrize("name", sorted(FILES))
def test_deleting_a_file_fails(signed, name):
    (signed.run / name).unlink()
    result = signed.verify()
    assert result.missing == [name]
    assert f"missing: {name} (listed in the signed statement)" in result.problems


@pytest.mark.parametrize("name", ["notes.txt", "allure-results/5a2b-result.json",
                                  ".hidden", "allure-results/.hidden", "new/dir/file.txt",
                                  f"allure-results/{STATEMENT}"])
def test_adding_a_file_fails(signed, name):
    (signed.run / name).parent.mkdir(parents=True, exist_ok=True)
    (signed.run / name).write_text("added after signing\n")
    result = signed.verify()
    assert result.extra == [name]
    assert result.problems == [f"extra file: {name} (not in the signed statement)"]


def test_adding_a_symlink_fails(signed):
    (signed.run / "allure-results" / "link.json").symlink_to(signed.run / "evidence.json")
    result = signed.verify()
    assert result.problems == ["extra symlink: allure-results/link.json (not in the signed "
                               "statement)"]


def test_replacing_a_file_by_a_symlink_to_identical_content_fails(signed, tmp_path):
    copy = tmp_path / "copy.json"
    shutil.copy(signed.run / "evidence.json", copy)
    (signed.run / "evidence.json").unlink()
    (signed.run / "evidence.json").symlink_to(copy)
    assert signed.verify().problems == ["changed: evidence.json is now a symlink, not a "
                                        "regular file"]


def test_editing_statement_to_match_a_tampered_file_fails(signed):
    """The attacker changes evidence.json and updates its digest in statement.json."""
    evidence = signed.run / "evidence.json"
    evidence.write_text(FILES["evidence.json"].replace("PASS", "FAIL"))
    doc = json.loads((signed.run / STATEMENT).read_bytes())
    for s in doc["subject"]:
        if s["name"] == "evidence.json":
            s["digest"]["sha256"] = hashlib.sha256(evidence.read_bytes()).hexdigest()
    (signed.run / STATEMENT).write_bytes(canonical_json(doc))
    text = problems_text(signed.verify())
    assert f"{STATEMENT} differs from the signed payload in {ENVELOPE}" in text
    assert "changed: evidence.json (sha256 signed" in text  # judged by the signed payload


def test_rewriting_the_payload_breaks_both_signatures(signed):
    """The same attack carried into the envelope's payload."""
    doc = signed.envelope()
    statement = json.loads(base64.b64decode(doc["payload"]))
    statement["predicate"]["run_id"] = "another run"
    payload = canonical_json(statement)
    doc["payload"] = base64.b64encode(payload).decode()
    signed.write_envelope(doc)
    (signed.run / STATEMENT).write_bytes(payload)
    result = signed.verify()
    assert [p for p in result.problems if "does NOT verify" in p] == [
        f"signature by keyid {k.keyid[:16]} does NOT verify (the payload or the signature was "
        "changed, or it is not this key's signature)" for k in signed.keys]
    assert "threshold not met: 0 of 2 required signatures verified" in result.problems
    assert (f"the directory is named {RUN_ID} but the signed run id is another run: a renamed "
            "or swapped run directory (pass --allow-rename if it was renamed on purpose)"
            in result.problems)
    assert ("  the signed values above are NOT trustworthy: the signature threshold was not met"
            in result.lines())


def test_swapped_signature_fails(signed):
    """custodian-1's signature replaced by custodian-2's (valid, but not custodian-1's)."""
    doc = signed.envelope()
    sigs = {s["keyid"]: s["sig"] for s in doc["signatures"]}
    one, two = (k.keyid for k in signed.keys)
    for s in doc["signatures"]:
        if s["keyid"] == one:
            s["sig"] = sigs[two]
    signed.write_envelope(doc)
    result = signed.verify()
    assert f"signature by keyid {one[:16]} does NOT verify" in problems_text(result)
    assert "threshold not met: 1 of 2 required signatures verified" in result.problems
    assert len(result.verified) == 1


def test_signature_from_another_run_fails(signed, tmp_path):
    """A genuine custodian-1 signature, but over another run's statement."""
    other = tmp_path / "other-run"
    other.mkdir()
    (other / "evidence.json").write_text("{}")
    sign_run(other, file_signers(signed.privates()), {})
    replayed = {s["keyid"]: s["sig"] for s in json.loads((other / ENVELOPE).read_text())[
        "signatures"]}
    doc = signed.envelope()
    doc["signatures"][0]["sig"] = replayed[doc["signatures"][0]["keyid"]]
    signed.write_envelope(doc)
    assert "threshold not met: 1 of 2" in problems_text(signed.verify())


def test_wrong_key_fails(signed):
    stranger = public_key_from_pem(signed.other_pub.read_bytes())
    result = signed.verify([signed.keys[0], stranger], 2)
    text = problems_text(result)
    assert f"no signature by keyid {stranger.keyid[:16]} in {ENVELOPE}" in text
    assert "threshold not met: 1 of 2 required signatures verified" in text
    assert any("no such key was given" in n for n in result.notes)


def test_wrong_key_under_the_right_keyid_fails(signed):
    """A key object that claims custodian-1's keyid but holds another public key."""
    stranger = public_key_from_pem(signed.other_pub.read_bytes())
    impostor = SSlibKey(signed.keys[0].keyid, stranger.keytype, stranger.scheme,
                        dict(stranger.keyval))
    result = signed.verify([impostor, signed.keys[1]], 2)
    assert f"signature by keyid {signed.keys[0].keyid[:16]} does NOT verify" in (
        problems_text(result))
    assert not result.ok


def test_below_threshold_one_key_given(signed):
    result = signed.verify(signed.keys[:1], 2)
    assert result.problems == ["threshold not met: 2 signatures required but only 1 distinct "
                               "key(s) given"]


def test_one_custodian_alone_when_the_signed_policy_allows_it(signed):
    signed.resign(predicate(signers=["custodian-1"], threshold=1), signers=1)
    result = signed.verify(signed.keys[:1])
    assert result.ok, result.problems
    assert (result.threshold, len(result.verified)) == (1, 1)


def test_the_same_key_twice_counts_once(signed):
    result = signed.verify([signed.keys[0], signed.keys[0]], 2)
    assert "threshold not met: 2 signatures required but only 1 distinct key(s) given" in (
        result.problems)
    assert any("the same key was given twice" in n for n in result.notes)


def test_below_threshold_one_signature_present(signed):
    doc = signed.envelope()
    dropped = doc["signatures"].pop()["keyid"]
    signed.write_envelope(doc)
    result = signed.verify()
    assert result.problems == [
        f"no signature by keyid {dropped[:16]} in {ENVELOPE}",
        "threshold not met: 1 of 2 required signatures verified"]


def test_duplicated_signature_entry_fails(signed):
    doc = signed.envelope()
    doc["signatures"].append(dict(doc["signatures"][0]))
    signed.write_envelope(doc)
    assert "2 signatures claim keyid" in problems_text(signed.verify())


def test_wrong_payload_type_fails(signed):
    doc = signed.envelope()
    doc["payloadType"] = "application/json"
    signed.write_envelope(doc)
    result = signed.verify()
    assert (f"{ENVELOPE}: payloadType is 'application/json', expected '{PAYLOAD_TYPE}'"
            in result.problems)
    # the payload type is part of what DSSE signs: the signatures fail as well
    assert "threshold not met: 0 of 2 required signatures verified" in result.problems


def test_wrong_payload_type_even_when_signed_fails(signed, monkeypatch):
    """Custodians who signed the payload under another type: signatures verify, type does not."""
    import keyparity.attest.statement as statement
    monkeypatch.setattr(statement, "PAYLOAD_TYPE", "application/json")
    signed.resign(signed.predicate)
    result = signed.verify()
    assert result.problems == [f"{ENVELOPE}: payloadType is 'application/json', expected "
                               f"'{PAYLOAD_TYPE}'"]
    assert len(result.verified) == 2


def test_unsigned_envelope_fails(signed):
    """What keyparity.evidence.bundle writes for a profile without evidence.signers."""
    signed.resign(predicate(signers=[], threshold=0), signers=0)
    assert signed.envelope()["signatures"] == []
    result = signed.verify()
    assert result.problems == [
        "the signed statement has threshold 0: the bundle was made unsigned (its profile had "
        "no evidence.signers); only a bundle from a profile with evidence.signers can be "
        "verified",
        f"no signature by keyid {signed.keys[0].keyid[:16]} in {ENVELOPE}",
        f"no signature by keyid {signed.keys[1].keyid[:16]} in {ENVELOPE}",
        f"{ENVELOPE} has no signatures: the run directory is unsigned",
        "threshold not met: 0 of 2 required signatures verified"]


def test_missing_envelope_fails_and_still_names_changed_files(signed):
    (signed.run / ENVELOPE).unlink()
    (signed.run / "junit.xml").write_text("<testsuites/>")
    result = signed.verify()
    assert result.problems[0] == f"{ENVELOPE} is missing: the run directory is not signed"
    assert "changed: junit.xml (sha256 signed" in problems_text(result)


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ("[]", "not a JSON object"),
    ('{"payloadType": "x"}', "missing or malformed payload (base64 string)"),
])
def test_broken_envelope_fails(signed, content, message):
    (signed.run / ENVELOPE).write_text(content)
    assert message in problems_text(signed.verify())


def test_all_problems_are_collected(signed):
    (signed.run / "report.html").write_text("<p>FAIL</p>")
    (signed.run / "junit.xml").unlink()
    (signed.run / "allure-results" / "extra.json").write_text("{}")
    (signed.run / STATEMENT).write_text("{}")
    doc = signed.envelope()
    doc["signatures"].pop()
    signed.write_envelope(doc)
    result = signed.verify()
    text = problems_text(result)
    for expected in ("threshold not met: 1 of 2", f"{STATEMENT} differs from the signed",
                     "changed: report.html", "missing: junit.xml",
                     "extra file: allure-results/extra.json"):
        assert expected in text
    assert len(result.problems) == 6  # + "no signature by ..."


def test_subject_names_escaping_the_run_directory_are_not_opened(signed, tmp_path):
    """Even an unsigned statement.json cannot make verify read outside the run directory."""
    (tmp_path / "secret.txt").write_text("outside")
    (signed.run / ENVELOPE).unlink()
    doc = json.loads((signed.run / STATEMENT).read_bytes())
    doc["subject"].append({"name": "../../secret.txt", "digest": {"sha256": "0" * 64}})
    (signed.run / STATEMENT).write_bytes(canonical_json(doc))
    assert "subject '../../secret.txt' is not a relative path inside the run directory" in (
        problems_text(signed.verify()))


# --------------------------------------------------------------------------- independently


def pae_by_hand(envelope: dict) -> bytes:
    payload_type = envelope["payloadType"].encode()
    payload = base64.b64decode(envelope["payload"])
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(payload), payload)


def test_signature_verifies_with_plain_cryptography(signed):
    envelope = signed.envelope()
    pae = pae_by_hand(envelope)
    assert pae.startswith(b"DSSEv1 28 application/vnd.in-toto+json ")
    by_keyid = {s["keyid"]: base64.b64decode(s["sig"]) for s in envelope["signatures"]}
    for pub, key in zip(signed.pubs, signed.keys):
        public = serialization.load_pem_public_key(pub.read_bytes())
        public.verify(by_keyid[key.keyid], pae, ec.ECDSA(hashes.SHA384()))
        with pytest.raises(InvalidSignature):
            public.verify(by_keyid[key.keyid], pae + b"x", ec.ECDSA(hashes.SHA384()))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_signature_verifies_with_openssl(signed, tmp_path):
    envelope = signed.envelope()
    sig = next(s for s in envelope["signatures"] if s["keyid"] == signed.keys[0].keyid)
    (tmp_path / "pae.bin").write_bytes(pae_by_hand(envelope))
    (tmp_path / "sig.der").write_bytes(base64.b64decode(sig["sig"]))
    cmd = ["openssl", "dgst", "-sha384", "-verify", str(signed.pubs[0]),
           "-signature", str(tmp_path / "sig.der"), str(tmp_path / "pae.bin")]
    ok = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and ok.stdout.strip() == "Verified OK", ok.stdout + ok.stderr
    (tmp_path / "pae.bin").write_bytes(pae_by_hand(envelope) + b" ")
    bad = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and "Verification failure" in bad.stdout + bad.stderr
    # and the other custodian's key does not verify custodian-1's signature
    cmd[4] = str(signed.pubs[1])
    (tmp_path / "pae.bin").write_bytes(pae_by_hand(envelope))
    assert subprocess.run(cmd, capture_output=True, check=False).returncode == 1


# --------------------------------------------------------------------------- the command


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyparity.cli", "verify", *map(str, args)],
                          capture_output=True, text=True, check=False, cwd=REPO,
                          env={**os.environ, "PYTHONWARNINGS": "error"}, timeout=60)


def keys_args(signed: Signed) -> list[str]:
    return [arg for pub in signed.pubs for arg in ("--key", str(pub))]


def test_cli_ok(signed):
    out = cli(signed.run, *keys_args(signed))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"envelope: {ENVELOPE}, payloadType {PAYLOAD_TYPE}" in out.stdout
    assert "signatures: 2 of 2 required verified (2 in envelope): " in out.stdout
    for pub, key in zip(signed.pubs, signed.keys):
        assert f"{pub} (keyid {key.keyid[:16]})" in out.stdout
    assert f"files: {len(FILES)} of {len(FILES)} digests checked, 0 changed" in out.stdout
    assert "missing: none; extra: none" in out.stdout
    assert out.stdout.splitlines()[1:6] == [  # what was signed, first
        f"  signed run id: {RUN_ID}",
        "  signed profile: softhsm",
        "  signed verdict: PASS",
        f"  signed headline: {HEADLINE}",
        "  signed counts: tests 97 passed, 26 skipped; keys 2 passed, 1 rotate"]
    assert "  threshold: 2 signatures required (signed threshold 2)" in out.stdout
    assert f"  run directory: named {RUN_ID}, as the signed run id" in out.stdout
    assert "note:" not in out.stdout
    assert out.stdout.splitlines()[-2:] == [
        f"OK: 2 of 2 required signatures verified; {len(FILES)} files match the signed "
        "statement", "keyparity verify: authentic; signed verdict PASS"]
    assert out.stderr == ""


def test_cli_names_what_differs(signed):
    (signed.run / "allure-results" / "4f1c-result.json").write_text('{"status": "failed"}')
    (signed.run / ".injected").write_text("x")
    out = cli(signed.run, *keys_args(signed))
    assert out.returncode == 1
    assert "FAILED: 2 problem(s):" in out.stdout
    assert "  - changed: allure-results/4f1c-result.json (sha256 signed" in out.stdout
    assert "  - extra file: .injected (not in the signed statement)" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_cli_below_threshold(signed):
    out = cli(signed.run, "--key", signed.pubs[0], "--threshold", "2")
    assert out.returncode == 1
    assert "threshold not met: 2 signatures required but only 1 distinct key(s) given" in (
        out.stdout)
    out = cli(signed.run, "--key", signed.pubs[0], "--key", signed.other_pub)
    assert out.returncode == 1
    assert f"no signature by {signed.other_pub} (keyid" in out.stdout


@pytest.mark.parametrize("case", ["no run dir", "no key file", "not a key", "private key",
                                  "threshold 0", "no keys", "kms without region"])
def test_cli_usage_errors_exit_2(signed, tmp_path, case):
    private = signed.pubs[0].with_name("custodian-1.key.pem")
    (tmp_path / "junk.pem").write_text("junk")
    args = {
        "no run dir": [tmp_path / "nope", "--key", signed.pubs[0]],
        "no key file": [signed.run, "--key", tmp_path / "missing.pem"],
        "not a key": [signed.run, "--key", tmp_path / "junk.pem"],
        "private key": [signed.run, "--key", private],
        "threshold 0": [signed.run, *keys_args(signed), "--threshold", "0"],
        "no keys": [signed.run],
        "kms without region": [signed.run, "--kms-key-id", "alias/custodian"],
    }[case]
    out = cli(*args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("keyparity verify: error: ")
    assert len(out.stderr.strip().splitlines()) == 1  # one clear line, no traceback
    assert out.stdout == ""


# --------------------------------------------------------------------------- the signed statement


def test_signed_threshold_applies_when_no_threshold_is_given(signed):
    """One signature stripped and one key given: the signed threshold 2 is not met."""
    signed.strip_signature(signed.keys[1])
    out = cli(signed.run, "--key", signed.pubs[0])
    assert out.returncode == 1, out.stdout
    assert "  threshold: 2 signatures required (signed threshold 2)" in out.stdout
    assert ("  - threshold not met: 2 signatures required but only 1 distinct key(s) given"
            in out.stdout)


def test_a_lower_threshold_option_does_not_lower_the_signed_threshold(signed):
    signed.strip_signature(signed.keys[1])
    out = cli(signed.run, "--key", signed.pubs[0], "--threshold", "1")
    assert out.returncode == 1, out.stdout
    assert "  note: --threshold 1 is below the signed threshold 2: 2 signatures required" in (
        out.stdout)
    assert "FAILED: 1 problem(s):" in out.stdout
    assert ("  - threshold not met: 2 signatures required but only 1 distinct key(s) given"
            in out.stdout)
    result = signed.verify(signed.keys[:1], 1)
    assert (result.threshold, result.verified) == (2, [f"keyid {signed.keys[0].keyid[:16]}"])
    assert not result.ok


def test_a_higher_threshold_option_raises_the_signed_threshold(signed):
    stranger = ["--key", signed.other_pub]
    out = cli(signed.run, *keys_args(signed), *stranger, "--threshold", "3")
    assert out.returncode == 1, out.stdout
    assert "  threshold: 3 signatures required (--threshold 3; signed threshold 2)" in out.stdout
    assert "  - threshold not met: 2 of 3 required signatures verified" in out.stdout
    out = cli(signed.run, *keys_args(signed), "--threshold", "3")
    assert out.returncode == 1, out.stdout
    assert ("  - threshold not met: 3 signatures required but only 2 distinct key(s) given"
            in out.stdout)
    assert cli(signed.run, *keys_args(signed), "--threshold", "2").returncode == 0


def test_a_signed_payload_without_threshold_fails_as_unsigned(signed):
    """Genuine signatures over a statement that records no threshold: not a signed bundle."""
    signed.resign(predicate(threshold=DROP))
    result = signed.verify()
    assert result.problems == [
        "the signed statement has no threshold: the bundle was made unsigned (its profile had "
        "no evidence.signers); only a bundle from a profile with evidence.signers can be "
        "verified"]
    assert len(result.verified) == 2  # the signatures themselves are fine


@pytest.mark.parametrize("threshold", ["2", -1, True, 1.5])
def test_a_signed_threshold_that_is_not_a_count_fails(signed, threshold):
    signed.resign(predicate(threshold=threshold))
    assert signed.verify().problems == [
        f"the signed threshold {json.dumps(threshold)} is not a number of signatures: the "
        "statement was not written by keyparity"]


def test_a_signed_payload_without_a_predicate_object_fails(signed):
    signed.resign(["not", "a", "predicate"])
    result = signed.verify()
    assert result.problems == [f"the signed payload of {ENVELOPE} has no predicate object: it "
                               "is not a keyparity evidence statement"]
    assert "  signed statement: none readable" in result.lines()


def test_unsigned_bundle_fails_on_the_command_line(signed):
    signed.resign(predicate(signers=[], threshold=0), signers=0)
    out = cli(signed.run, *keys_args(signed))
    assert out.returncode == 1
    assert "  - the signed statement has threshold 0: the bundle was made unsigned" in out.stdout
    assert f"  - {ENVELOPE} has no signatures: the run directory is unsigned" in out.stdout


def test_only_the_signed_payload_is_printed_as_signed(signed):
    """statement.json edited to say PASS where the custodians signed FAIL."""
    signed.resign(predicate(verdict="FAIL", headline="2 of 3 keys failed.",
                            summary={"tests": {"failed": 2, "passed": 95}, "keys": {}}))
    doc = json.loads((signed.run / STATEMENT).read_bytes())
    doc["predicate"].update(verdict="PASS", headline=HEADLINE)
    (signed.run / STATEMENT).write_bytes(canonical_json(doc))
    out = cli(signed.run, *keys_args(signed))
    assert out.returncode == 1
    assert "  signed verdict: FAIL" in out.stdout
    assert "  signed headline: 2 of 3 keys failed." in out.stdout
    assert "  signed counts: tests 2 failed, 95 passed; keys none" in out.stdout
    assert "PASS" not in out.stdout and HEADLINE not in out.stdout
    assert f"  - {STATEMENT} differs from the signed payload" in out.stdout


def test_older_statement_without_headline_or_counts(signed):
    signed.resign(predicate(headline=DROP, summary=DROP, scope=DROP))
    result = signed.verify()
    assert result.ok, result.problems
    lines = result.lines()
    assert "  signed counts: (not in the signed statement)" in lines
    assert not any("headline" in line for line in lines)


def test_signed_values_are_printed_on_one_line_each(signed):
    """A signed value cannot forge report lines: control characters are escaped."""
    signed.resign(predicate(profile="softhsm\nOK: 9 of 9 required signatures verified"))
    lines = signed.verify().lines()
    assert '  signed profile: "softhsm\\nOK: 9 of 9 required signatures verified"' in lines
    assert [line for line in lines if line.startswith("OK")] == [
        f"OK: 2 of 2 required signatures verified; {len(FILES)} files match the signed "
        "statement"]


def test_renamed_run_directory_fails(signed):
    renamed = signed.run.rename(signed.run.with_name("20261124T090000Z-000000"))
    out = cli(renamed, *keys_args(signed))
    assert out.returncode == 1, out.stdout
    assert out.stdout.splitlines()[-3:] == [
        "FAILED: 1 problem(s):",
        f"  - the directory is named 20261124T090000Z-000000 but the signed run id is {RUN_ID}: "
        "a renamed or swapped run directory (pass --allow-rename if it was renamed on purpose)",
        "keyparity verify: NOT authentic (1 problem(s) above); the verdict it claims is not "
        "evidence of anything"]
    assert f"  signed run id: {RUN_ID}" in out.stdout


def test_allow_rename_turns_the_name_check_into_a_note(signed):
    renamed = signed.run.rename(signed.run.with_name("bundle-for-audit"))
    out = cli(renamed, *keys_args(signed), "--allow-rename")
    assert out.returncode == 0, out.stdout
    assert (f"  note: the directory is named bundle-for-audit but the signed run id is {RUN_ID}: "
            "accepted (--allow-rename)") in out.stdout
    assert "OK: 2 of 2 required signatures verified" in out.stdout


def test_swapped_run_directory_fails(signed, tmp_path):
    """The bundle of one run put in the directory of another: every digest matches, the name
    does not."""
    other = tmp_path / "reports" / "20261125T080000Z-b1c2d3"
    shutil.copytree(signed.run, other)
    shutil.rmtree(signed.run)
    result = verify_run(other, signed.keys)
    assert result.problems == [
        f"the directory is named {other.name} but the signed run id is {RUN_ID}: a renamed or "
        "swapped run directory (pass --allow-rename if it was renamed on purpose)"]
    assert result.files_checked == len(FILES)


def test_a_signed_payload_without_run_id_fails_unless_renames_are_allowed(signed):
    signed.resign(predicate(run_id=DROP))
    message = ("the signed statement has no run_id: a renamed or swapped run directory cannot "
               "be told apart")
    assert signed.verify().problems == [f"{message} (pass --allow-rename to accept it)"]
    allowed = signed.verify(allow_rename=True)
    assert allowed.ok and allowed.notes == [f"{message}: accepted (--allow-rename)"]
    assert "  signed run id: (not in the signed statement)" in allowed.lines()


def test_reports_latest_symlink_verifies(signed, monkeypatch):
    latest = signed.run.parent / "latest"
    latest.symlink_to(signed.run.name)  # as keyparity.evidence.bundle links it
    out = cli(latest, *keys_args(signed))
    assert out.returncode == 0, out.stdout
    assert f"  run directory: named {RUN_ID}, as the signed run id" in out.stdout
    monkeypatch.chdir(signed.run.parent.parent)
    assert verify_run(Path("reports/latest"), signed.keys).ok


def test_no_readable_payload_falls_back_to_the_number_of_keys(signed):
    (signed.run / ENVELOPE).write_text("{not json")
    result = signed.verify(signed.keys[:1])
    assert result.threshold == 1 and not result.ok
    assert ("  threshold: 1 signature required (the number of keys given; no readable signed "
            "threshold)") in result.lines()
    assert "  signed statement: none readable" in result.lines()
    assert result.signed is None


# --------------------------------------------------------------------------- the signed verdict


def test_the_last_line_states_the_signed_verdict_of_a_fail_bundle(signed):
    """A FAIL bundle is authentic evidence of a failed run: verify exits 0, and says FAIL last."""
    signed.resign(predicate(verdict="FAIL"))
    out = cli(signed.run, *keys_args(signed))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[-1] == "keyparity verify: authentic; signed verdict FAIL"


@pytest.mark.parametrize("verdict, required, code", [
    ("PASS", "PASS", 0), ("FAIL", "PASS", 3), ("PARTIAL", "PASS", 3), ("FAIL", "FAIL", 0)])
def test_require_verdict(signed, verdict, required, code):
    signed.resign(predicate(verdict=verdict))
    out = cli(signed.run, *keys_args(signed), "--require-verdict", required)
    assert out.returncode == code, out.stdout + out.stderr
    if code:
        assert (f"keyparity verify: the signed verdict is {verdict}, not {required} "
                f"(--require-verdict): exit 3") in out.stderr
    else:
        assert out.stderr == ""


def test_require_verdict_on_a_tampered_bundle_is_a_verification_failure(signed):
    """Exit 1, not 3: what a bundle that is not authentic claims is not its verdict."""
    (signed.run / "evidence.json").write_text('{"summary": {"verdict": "PASS"}}')
    out = cli(signed.run, *keys_args(signed), "--require-verdict", "PASS")
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.splitlines()[-1].startswith("keyparity verify: NOT authentic")


def test_output_json(signed):
    signed.resign(predicate(verdict="FAIL"))
    out = cli(signed.run, *keys_args(signed), "--output", "json", "--require-verdict", "PASS")
    assert out.returncode == 3
    doc = json.loads(out.stdout)  # stdout holds the JSON object alone
    assert doc["authentic"] is True and doc["verdict"] == "FAIL"
    assert doc["required_verdict"] == "PASS" and doc["verdict_as_required"] is False
    assert doc["exit_code"] == 3
    assert doc["signatures"]["required"] == 2 and len(doc["signatures"]["verified"]) == 2
    assert doc["files_checked"] == len(FILES) and doc["problems"] == []
    assert doc["signed"]["run_id"] == RUN_ID
    assert "--require-verdict" in out.stderr  # diagnostics on stderr


def test_output_json_of_a_tampered_bundle(signed):
    (signed.run / "report.html").write_text("<p>PASS</p>")
    out = cli(signed.run, *keys_args(signed), "--output", "json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert doc["authentic"] is False and doc["verdict"] is None and doc["signed"] is None
    assert doc["claimed_verdict"] == "PASS" and doc["changed"] == ["report.html"]
    assert "keyparity verify: changed: report.html" in out.stderr
