"""keyparity.attest.verify.verify_run in detail, beyond tests/tools/test_verify.py: the exact
problems, notes and report lines (``checked``, ``lines()``) an auditor reads for each way a bundle can be
wrong - unreadable files, malformed envelopes and statements, subject names that escape the
run directory, thresholds at their edges, keys given twice or unknown - and the fields of the
result. Custodians sign with software keys (securesystemslib CryptoSigner, P-256)."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner

from keyparity.attest import envelope
from keyparity.attest import verify as verify_module
from keyparity.attest.envelope import STATEMENT_TYPE, Verification, parse_statement
from keyparity.attest.statement import ENVELOPE, SIGNED_NAMES, STATEMENT, sha256_file, sign_run
from keyparity.attest.verify import VerifyResult, verify_run

RUN_ID = "20261123T155223Z-9a571f"
FILES = {"evidence.json": b'{"verdict": "PASS"}\n', "report.html": b"<p>PASS</p>\n",
         "sub/junit.xml": b"<testsuites/>\n"}
HEADLINE = "All 2 keys to migrate were proven intact and usable on hsm2."
PREDICATE = {"run_id": RUN_ID, "profile": "softhsm", "verdict": "PASS", "headline": HEADLINE,
             "summary": {"tests": {"passed": 9, "skipped": 1}, "keys": {"passed": 2}},
             "threshold": 2, "contents": {"profile": {"file": "sub/junit.xml"}}}


@pytest.fixture(scope="module")
def custodians() -> list[CryptoSigner]:
    out = []
    for i in (1, 2, 3):
        s = CryptoSigner.generate_ecdsa()
        s.name = f"custodian-{i}"
        out.append(s)
    return out


class Bundle:
    def __init__(self, run: Path, signers: list[CryptoSigner]) -> None:
        self.run, self.signers = run, signers
        self.keys = [s.public_key for s in signers[:2]]
        self.names = {s.public_key.keyid: f"{s.name}.pub.pem" for s in signers}

    def short(self, i: int) -> str:
        return f"keyid {self.signers[i].public_key.keyid[:16]}"

    def named(self, i: int) -> str:
        return f"custodian-{i + 1}.pub.pem ({self.short(i)})"

    def verify(self, keys: list | None = None, threshold: int | None = None,
               **kw: Any) -> VerifyResult:
        kw.setdefault("key_names", self.names)
        return verify_run(self.run, self.keys if keys is None else keys, threshold, **kw)

    def envelope(self) -> dict:
        return json.loads((self.run / ENVELOPE).read_text())

    def write_envelope(self, doc: Any) -> None:
        (self.run / ENVELOPE).write_text(json.dumps(doc))

    def resign(self, predicate: dict, signers: int = 2) -> None:
        (self.run / STATEMENT).unlink()
        (self.run / ENVELOPE).unlink()
        sign_run(self.run, self.signers[:signers], predicate)

    def payload(self, raw: bytes) -> None:
        """Replace the envelope's payload (the signatures then no longer verify)."""
        doc = self.envelope()
        doc["payload"] = base64.b64encode(raw).decode()
        self.write_envelope(doc)


def make_bundle(root: Path, signers: list[CryptoSigner], predicate: dict | None = None,
                name: str = RUN_ID) -> Bundle:
    run = root / "reports" / name
    for rel, data in FILES.items():
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(data)
    sign_run(run, signers[:2], PREDICATE if predicate is None else predicate)
    return Bundle(run, signers)


@pytest.fixture
def bundle(tmp_path, custodians) -> Bundle:
    return make_bundle(tmp_path, custodians)


def only(result: VerifyResult) -> str:
    assert len(result.problems) == 1, result.problems
    return result.problems[0]


# ---- the good case, whole ------------------------------------------------------------------

def test_an_intact_bundle_whole_result_and_report(bundle):
    r = bundle.verify()
    assert r.ok and r.problems == [] and r.notes == []
    assert (r.run_dir, r.threshold, r.requested, r.threshold_met) == (bundle.run, 2, None, True)
    assert r.signed == PREDICATE
    assert r.signatures == 2 and r.files_checked == 3
    assert r.verified == [bundle.named(0), bundle.named(1)] and r.not_verified == []
    assert (r.changed, r.missing, r.extra) == ([], [], [])
    assert r.checked == [
        "envelope: evidence.dsse.json, payloadType application/vnd.in-toto+json",
        "threshold: 2 signatures required (signed threshold 2)",
        f"signatures: 2 of 2 required verified (2 in envelope): {bundle.named(0)}, "
        f"{bundle.named(1)}",
        "time: not time-stamped: every time in it is the signing host's own clock",
        f"run directory: named {RUN_ID}, as the signed run id",
        "statement.json: identical to the signed payload",
        "files: 3 of 3 digests checked, 0 changed",
        "missing: none; extra: none",
    ]
    assert r.lines() == [
        f"keyparity verify: {bundle.run}",
        f"  signed run id: {RUN_ID}",
        "  signed profile: softhsm",
        "  signed verdict: PASS",
        f"  signed headline: {HEADLINE}",
        "  signed counts: tests 9 passed, 1 skipped; keys 2 passed",
        "  signed by:",  # no certificate: each key by its name and key id, with its time
        *[f"    {bundle.named(i).split(' (')[0]}: no certificate checked: a key, not a person "
          f"(keyid {bundle.signers[i].public_key.keyid[:16]}; ack none; signed at "
          f"{who.split('signed at ')[1]}" for i, who in enumerate(r.who)],
        *[f"  {line}" for line in r.checked],
        "OK: 2 of 2 required signatures verified; 3 files match the signed statement",
        "keyparity verify: authentic; signed verdict PASS",
    ]


def test_the_report_of_a_failure_and_of_an_untrusted_statement(bundle):
    doc = bundle.envelope()
    doc["signatures"] = doc["signatures"][:1]
    bundle.write_envelope(doc)
    (bundle.run / "report.html").write_bytes(b"tampered")
    r = bundle.verify(threshold=2)
    assert not r.threshold_met
    lines = r.lines()
    assert lines[:6] == [
        f"keyparity verify: {bundle.run}", f"  signed run id: {RUN_ID}",
        "  signed profile: softhsm", "  signed verdict: PASS", f"  signed headline: {HEADLINE}",
        "  signed counts: tests 9 passed, 1 skipped; keys 2 passed"]
    assert lines[6] == ("  the signed values above are NOT trustworthy: the signature threshold "
                        "was not met")
    assert lines[7:9] == ["  signed by:", f"    {r.who[0]}"] and len(r.who) == 1
    assert lines[9:9 + len(r.checked)] == [f"  {c}" for c in r.checked]
    rest = lines[9 + len(r.checked):]
    assert rest == [f"FAILED: {len(r.problems)} problem(s):", *[f"  - {p}" for p in r.problems],
                    f"keyparity verify: NOT authentic ({len(r.problems)} problem(s) above); the "
                    "verdict it claims is not evidence of anything"]
    assert r.problems == [
        f"no signature by {bundle.named(1)} in evidence.dsse.json",
        "threshold not met: 1 of 2 required signatures verified",
        f"changed: report.html (sha256 signed {sha256_of(FILES['report.html'])[:16]}..., found "
        f"{sha256_of(b'tampered')[:16]}...)",
    ]
    assert r.verified == [bundle.named(0)] and r.not_verified == [bundle.named(1)]
    assert r.changed == ["report.html"]


def sha256_of(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


def test_notes_are_reported_but_do_not_fail(bundle, custodians):
    r = bundle.verify(keys=[bundle.keys[0], bundle.keys[0], bundle.keys[1]],
                      key_names={})  # no names known: keys are shown by key id
    assert r.ok
    assert r.notes == [f"the same key was given twice ({bundle.short(0)}); it counts once "
                       "towards the threshold"]
    assert r.verified == [bundle.short(0), bundle.short(1)]
    assert r.lines()[-3] == f"  note: {r.notes[0]}"


# ---- the run directory --------------------------------------------------------------------

def test_no_run_directory(tmp_path):
    r = verify_run(tmp_path / "none", [], 2)
    assert (r.problems, r.checked, r.threshold, r.requested) == (
        [f"run directory not found: {tmp_path / 'none'}"], [], 2, 2)
    assert r.lines() == [f"keyparity verify: {tmp_path / 'none'}",
                         "  signed statement: none readable", "FAILED: 1 problem(s):",
                         f"  - run directory not found: {tmp_path / 'none'}",
                         "keyparity verify: NOT authentic (1 problem(s) above); the verdict "
                         "it claims is not evidence of anything"]
    r = verify_run(str(tmp_path / "none"), [object()], None)
    assert r.threshold == 1 and r.requested is None and r.run_dir == tmp_path / "none"


# ---- the envelope ----------------------------------------------------------------------------

def test_an_envelope_that_is_a_symlink_or_a_directory(bundle, tmp_path):
    copy = tmp_path / "copy.json"
    shutil.copy(bundle.run / ENVELOPE, copy)
    (bundle.run / ENVELOPE).unlink()
    os.symlink(copy, bundle.run / ENVELOPE)  # to identical content: still refused
    r = bundle.verify()
    assert r.problems[0] == "evidence.dsse.json is not a regular file"
    assert "signatures: not checked (no readable envelope)" in r.checked
    (bundle.run / ENVELOPE).unlink()
    (bundle.run / ENVELOPE).mkdir()
    assert bundle.verify().problems[0] == "evidence.dsse.json is not a regular file"


def test_a_missing_envelope_falls_back_to_the_unsigned_statement(bundle):
    (bundle.run / ENVELOPE).unlink()
    (bundle.run / "report.html").write_bytes(b"x")
    r = bundle.verify(threshold=3)
    assert r.threshold == 3 and r.signed is None and r.signatures == 0
    assert r.problems == [
        "evidence.dsse.json is missing: the run directory is not signed",
        f"changed: report.html (sha256 signed {sha256_of(FILES['report.html'])[:16]}..., "
        f"found {sha256_of(b'x')[:16]}...)"]
    assert r.checked == [
        "threshold: 3 signatures required (--threshold 3; no readable signed threshold)",
        "signatures: not checked (no readable envelope)",
        "run directory: name not checked (no signed run id)",
        "statement.json: UNSIGNED, used only to name files that differ",
        "files: 3 of 3 digests checked, 1 changed",
        "missing: none; extra: none"]
    r = bundle.verify()
    assert r.checked[0] == ("threshold: 2 signatures required (the number of keys given; no "
                            "readable signed threshold)")


def test_an_unsigned_statement_is_checked_for_its_shape_too(bundle):
    (bundle.run / ENVELOPE).unlink()
    (bundle.run / STATEMENT).write_text(json.dumps({"_type": "x", "subject": [{"name": 1}]}))
    r = bundle.verify()
    assert r.problems == [
        "evidence.dsse.json is missing: the run directory is not signed",
        "statement.json (unsigned): _type is 'x', expected 'https://in-toto.io/Statement/v1'",
        "statement.json (unsigned): subject[0] needs a name and a sha256 digest (64 hex)",
        "extra file: evidence.json (not in the signed statement)",
        "extra file: report.html (not in the signed statement)",
        "extra file: sub/junit.xml (not in the signed statement)"]
    (bundle.run / STATEMENT).write_text("[]")
    r = bundle.verify()
    assert r.problems[1:] == ["statement.json (unsigned) is not an in-toto Statement (not a "
                              "JSON object)"]
    assert r.checked[-1] == "files: not checked (no usable statement)"


@pytest.mark.parametrize("content, problem", [
    (b"\xff\xfe", "evidence.dsse.json is not valid JSON ("),
    (b"{", "evidence.dsse.json is not valid JSON (Expecting property name enclosed in double "
           "quotes: line 1 column 2 (char 1))"),
    (b"[1]", "evidence.dsse.json is not a DSSE envelope (not a JSON object)"),
    (b"{}", "evidence.dsse.json is not a DSSE envelope: missing or malformed payload (base64 "
            "string), payloadType (string), signatures (list of {keyid, sig})"),
    (b'{"payload": "", "signatures": []}', "evidence.dsse.json is not a DSSE envelope: missing "
                                           "or malformed payloadType (string)"),
    (b'{"payload": "", "payloadType": "t", "signatures": {}}',
     "evidence.dsse.json is not a DSSE envelope: missing or malformed signatures (list of "
     "{keyid, sig})"),
    (b'{"payload": "", "payloadType": "t", "signatures": ["x"]}',
     "evidence.dsse.json is not a DSSE envelope: missing or malformed signatures (list of "
     "{keyid, sig})"),
    (b'{"payload": "", "payloadType": "t", "signatures": [{"keyid": 5, "sig": "AA=="}]}',
     "evidence.dsse.json is not a DSSE envelope: missing or malformed signatures (list of "
     "{keyid, sig})"),
    (b'{"payload": "", "payloadType": "t", "signatures": [{"keyid": "a", "sig": 5}]}',
     "evidence.dsse.json is not a DSSE envelope: missing or malformed signatures (list of "
     "{keyid, sig})"),
    (b'{"payload": 1, "payloadType": "t", "signatures": []}',
     "evidence.dsse.json is not a DSSE envelope: missing or malformed payload (base64 string)"),
    (b'{"payload": "***", "payloadType": "t", "signatures": []}',
     "evidence.dsse.json: cannot decode (Error: Only base64 data is allowed); payload and sig "
     "must be base64"),
])
def test_a_malformed_envelope(bundle, content, problem):
    (bundle.run / ENVELOPE).write_bytes(content)
    r = bundle.verify()
    assert r.problems[0].startswith(problem) if problem.endswith("(") else \
        r.problems[0] == problem
    assert r.signed is None
    assert "signatures: not checked (no readable envelope)" in r.checked


def test_signatures_claiming_one_keyid_twice(bundle):
    doc = bundle.envelope()
    doc["signatures"] = [doc["signatures"][0]] * 3 + [doc["signatures"][1]] * 2
    bundle.write_envelope(doc)
    r = bundle.verify()
    k0, k1 = (bundle.signers[i].public_key.keyid for i in (0, 1))
    first = sorted([k0, k1])
    counts = {k0: 3, k1: 2}
    assert r.problems[:2] == [f"evidence.dsse.json: {counts[k]} signatures claim keyid {k[:16]}; "
                              "each key may sign once" for k in first]


def test_a_wrong_payload_type_is_named_and_checked(bundle):
    doc = bundle.envelope()
    doc["payloadType"] = "text/plain"
    bundle.write_envelope(doc)
    r = bundle.verify()
    assert r.problems[0] == ("evidence.dsse.json: payloadType is 'text/plain', expected "
                             "'application/vnd.in-toto+json'")
    assert r.checked[0] == "envelope: evidence.dsse.json, WRONG payloadType 'text/plain'"


# ---- the signed payload --------------------------------------------------------------------

@pytest.mark.parametrize("raw, problems", [
    (b"not json", ["signed payload of evidence.dsse.json is not valid JSON (Expecting value: "
                   "line 1 column 1 (char 0))"]),
    (b"[]", ["signed payload of evidence.dsse.json is not an in-toto Statement (not a JSON "
             "object)"]),
    (b'{"_type": "https://in-toto.io/Statement/v1", "subject": {}, "predicate": {}}',
     ["signed payload of evidence.dsse.json: subject is missing or not a list"]),
    (b'{"subject": [], "predicate": {}}',
     ["signed payload of evidence.dsse.json: _type is None, expected "
      "'https://in-toto.io/Statement/v1'"]),
])
def test_a_signed_payload_that_is_not_a_statement(bundle, raw, problems):
    bundle.payload(raw)
    r = bundle.verify()
    assert r.problems[:len(problems)] == problems
    assert r.checked[-1] == "files: not checked (no usable statement)" or \
        r.checked[-1].startswith("missing: ")


def test_subjects_that_are_malformed_unsafe_or_twice(bundle, tmp_path, custodians):
    good = sha256_file(bundle.run / "evidence.json")
    outside = tmp_path / "reports" / "outside.txt"
    outside.write_bytes(b"outside")
    subjects = [
        "just a string",
        {"name": "x", "digest": "not a dict"},
        {"name": "y", "digest": {"sha256": "ABC"}},
        {"name": 5, "digest": {"sha256": good}},
        {"name": "../outside.txt", "digest": {"sha256": sha256_of(b"outside")}},
        {"name": "/etc/hostname", "digest": {"sha256": good}},
        {"name": "a\x00b", "digest": {"sha256": good}},
        {"name": "a//b", "digest": {"sha256": good}},
        {"name": "./evidence.json", "digest": {"sha256": good}},
        {"name": "sub/", "digest": {"sha256": good}},
        {"name": STATEMENT, "digest": {"sha256": good}},
        {"name": "evidence.json", "digest": {"sha256": good}},
        {"name": "evidence.json", "digest": {"sha256": good}},
        {"name": "report.html", "digest": {"sha256": sha256_file(bundle.run / "report.html")}},
        {"name": "sub/junit.xml", "digest": {"sha256": sha256_file(bundle.run / "sub/junit.xml")}},
        {"name": f"sub/{STATEMENT}", "digest": {"sha256": good}},
    ]
    statement = {"_type": "https://in-toto.io/Statement/v1", "subject": subjects,
                 "predicateType": "p", "predicate": PREDICATE}
    raw = json.dumps(statement).encode()
    (bundle.run / STATEMENT).write_bytes(raw)
    bundle.payload(raw)
    r = bundle.verify()
    what = "signed payload of evidence.dsse.json"
    assert r.problems[:14] == [
        f"{what}: subject[0] needs a name and a sha256 digest (64 hex)",
        f"{what}: subject[1] needs a name and a sha256 digest (64 hex)",
        f"{what}: subject[2] needs a name and a sha256 digest (64 hex)",
        f"{what}: subject[3] needs a name and a sha256 digest (64 hex)",
        f"{what}: subject '../outside.txt' is not a relative path inside the run directory; "
        "not opened",
        f"{what}: subject '/etc/hostname' is not a relative path inside the run directory; "
        "not opened",
        f"{what}: subject 'a\\x00b' is not a relative path inside the run directory; not opened",
        f"{what}: subject 'a//b' is not a relative path inside the run directory; not opened",
        f"{what}: subject './evidence.json' is not a relative path inside the run directory; "
        "not opened",
        f"{what}: subject 'sub/' is not a relative path inside the run directory; not opened",
        f"{what}: subject 'statement.json' is not a relative path inside the run directory; "
        "not opened",
        f"{what}: subject 'evidence.json' is listed twice",
        # the envelope's signatures no longer verify (the payload was replaced)
        f"signature by {bundle.named(0)} does NOT verify (the payload or the signature was "
        "changed, or it is not this key's signature)",
        f"signature by {bundle.named(1)} does NOT verify (the payload or the signature was "
        "changed, or it is not this key's signature)",
    ]
    # only the good subjects were opened: three on disk, one (sub/statement.json) missing
    assert r.files_checked == 3
    assert r.missing == [f"sub/{STATEMENT}"] and r.changed == [] and r.extra == []


@pytest.mark.parametrize("name, safe", [
    ("a", True), ("a/b/c.txt", True), (".hidden", True), ("a/statement.json", True),
    ("a..b", True), ("", False), ("/a", False), ("a\x00", False), ("a/../b", False),
    ("..", False), (".", False), ("a/./b", False), ("a//b", False), ("a/", False),
    (STATEMENT, False), (ENVELOPE, False),
])
def test_safe_names(name, safe):
    """A subject is opened only when its name is a relative path inside the run directory
    and not the statement's or the envelope's own file."""
    raw = json.dumps({"_type": STATEMENT_TYPE, "subject": [
        {"name": name, "digest": {"sha256": "0" * 64}}]}).encode()
    result = Verification(run_dir=Path("."), threshold=1)
    kept = parse_statement(raw, "statement", result, SIGNED_NAMES)["subject"]
    assert (kept != []) is safe and (result.problems == []) is safe


def test_a_statement_json_that_is_a_symlink_a_directory_or_missing(bundle, tmp_path):
    copy = tmp_path / "statement-copy.json"
    shutil.copy(bundle.run / STATEMENT, copy)
    (bundle.run / STATEMENT).unlink()
    os.symlink(copy, bundle.run / STATEMENT)  # identical content, still refused
    r = bundle.verify()
    assert r.problems == ["statement.json is not a regular file"]
    (bundle.run / STATEMENT).unlink()
    r = bundle.verify()
    assert r.problems == ["statement.json is missing"]
    (bundle.run / STATEMENT).mkdir()
    r = bundle.verify()
    assert r.problems == ["statement.json is not a regular file"]


def test_an_edited_statement_json(bundle):
    (bundle.run / STATEMENT).write_bytes((bundle.run / STATEMENT).read_bytes() + b" ")
    r = bundle.verify()
    assert r.problems == ["statement.json differs from the signed payload in evidence.dsse.json "
                          "(edited after signing)"]
    assert "statement.json: DIFFERS from the signed payload" in r.checked


def test_no_statement_at_all(bundle):
    (bundle.run / ENVELOPE).unlink()
    (bundle.run / STATEMENT).unlink()
    r = bundle.verify()
    assert r.problems == ["evidence.dsse.json is missing: the run directory is not signed",
                          "statement.json is missing"]
    assert r.checked[-1] == "files: not checked (no usable statement)"


def test_a_payload_that_is_not_json_and_no_statement_json(bundle):
    bundle.payload(b"\xff")
    (bundle.run / STATEMENT).unlink()
    r = bundle.verify()
    assert r.problems[0].startswith("signed payload of evidence.dsse.json is not valid JSON (")
    assert r.checked[-1] == "files: not checked (no usable statement)"


# ---- unreadable files ------------------------------------------------------------------------

@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Read as an ordinary user (root reads any file whatever its mode)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def open_bundle(custodians) -> Iterator[Bundle]:
    """A bundle in a directory an ordinary user can reach."""
    root = Path(tempfile.mkdtemp(prefix="keyparity-verify-"))
    try:
        b = make_bundle(root, custodians)
        for d in (root, root / "reports", b.run, b.run / "sub"):
            d.chmod(0o755)
        for p in b.run.rglob("*"):
            if p.is_file():
                p.chmod(0o644)
        yield b
    finally:
        for d in (root / "reports" / RUN_ID / "sub",):
            if d.exists():
                d.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


def test_unreadable_files_are_named(open_bundle):
    b = open_bundle
    (b.run / "report.html").chmod(0)
    with unprivileged():
        r = b.verify()
    assert r.problems == ["unreadable: report.html (Permission denied)"]
    assert r.changed == ["report.html"] and r.files_checked == 2
    (b.run / "report.html").chmod(0o644)
    (b.run / STATEMENT).chmod(0)
    with unprivileged():
        r = b.verify()
    assert r.problems == ["statement.json is unreadable (Permission denied)"]
    assert "statement.json: identical to the signed payload" not in r.checked
    assert r.files_checked == 3  # the signed payload still names the files
    (b.run / ENVELOPE).chmod(0)
    with unprivileged():
        r = b.verify()
    assert r.problems == ["evidence.dsse.json is unreadable (Permission denied)",
                          "statement.json is unreadable (Permission denied)"]
    assert r.checked[-1] == "files: not checked (no usable statement)"


def test_an_unlistable_run_directory(open_bundle):
    b = open_bundle
    (b.run / "sub").chmod(0)
    with unprivileged():
        r = b.verify()
    assert r.problems == [f"cannot list the run directory: Permission denied: {b.run / 'sub'}"]
    assert r.checked[-1] == "files: not checked (run directory unreadable)"


# ---- thresholds ----------------------------------------------------------------------------

def test_threshold_at_the_signed_value(bundle):
    r = bundle.verify(threshold=2)
    assert r.ok and r.notes == [] and r.threshold == 2 and r.requested == 2
    assert r.checked[1] == ("threshold: 2 signatures required (--threshold 2; signed "
                            "threshold 2)")


def test_threshold_below_and_above_the_signed_value(bundle):
    r = bundle.verify(threshold=1)
    assert r.notes == ["--threshold 1 is below the signed threshold 2: 2 signatures required"]
    assert r.checked[1] == "threshold: 2 signatures required (signed threshold 2)"
    r = bundle.verify(keys=bundle.keys + [bundle.signers[2].public_key], threshold=3)
    assert r.threshold == 3
    assert r.checked[1] == "threshold: 3 signatures required (--threshold 3; signed threshold 2)"


def test_a_signed_threshold_of_one(tmp_path, custodians):
    b = make_bundle(tmp_path, custodians, {**PREDICATE, "threshold": 1})
    r = b.verify(keys=b.keys[:1])
    assert r.ok and r.checked[1] == "threshold: 1 signature required (signed threshold 1)"
    assert r.checked[2].startswith("signatures: 1 of 1 required verified (2 in envelope): ")


@pytest.mark.parametrize("value, said", [(None, "no threshold"), (0, "threshold 0")])
def test_an_unsigned_statement_fails_with_the_reason(tmp_path, custodians, value, said):
    pred = {k: v for k, v in PREDICATE.items() if k != "threshold"}
    if value is not None:
        pred["threshold"] = value
    b = make_bundle(tmp_path, custodians, pred)
    r = b.verify(threshold=2)
    assert r.problems[0] == (f"the signed statement has {said}: the bundle was made unsigned "
                             "(its profile had no evidence.signers); only a bundle from a "
                             "profile with evidence.signers can be verified")
    assert r.checked[1] == ("threshold: 2 signatures required (--threshold 2; the statement is "
                            "unsigned)")


@pytest.mark.parametrize("value", [-1, "2", 2.0, True, [2]])
def test_a_signed_threshold_that_is_not_a_count(tmp_path, custodians, value):
    b = make_bundle(tmp_path, custodians, {**PREDICATE, "threshold": value})
    r = b.verify()
    assert r.problems[0] == (f"the signed threshold {json.dumps(value)} is not a number of "
                             "signatures: the statement was not written by keyparity")
    assert r.checked[1] == ("threshold: 2 signatures required (the number of keys given; no "
                            "usable signed threshold)")


def test_a_threshold_below_one_fails(bundle):
    # no signed threshold to raise it (the payload has no predicate): the caller's 0 stands
    raw = json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": []}).encode()
    bundle.payload(raw)
    r = bundle.verify(keys=[], threshold=0)
    assert r.threshold == 0 and "threshold must be at least 1 (got 0)" in r.problems
    assert r.problems[0] == ("the signed payload of evidence.dsse.json has no predicate object: "
                             "it is not a keyparity evidence statement")
    assert not r.threshold_met


def test_too_few_distinct_keys_for_the_threshold(bundle):
    r = bundle.verify(keys=bundle.keys[:1] * 2, threshold=2)
    assert ("threshold not met: 2 signatures required but only 1 distinct key(s) given"
            in r.problems)


# ---- signatures -----------------------------------------------------------------------------

def test_a_signature_by_a_key_not_given_is_a_note_and_the_rest_still_counts(bundle):
    doc = bundle.envelope()
    stranger = bundle.signers[2]
    from securesystemslib.dsse import Envelope
    env = Envelope.from_dict(json.loads(json.dumps(doc)))
    sig = stranger.sign(env.pae())
    doc["signatures"].insert(0, {"keyid": sig.keyid, "sig": base64.b64encode(
        bytes.fromhex(sig.signature)).decode()})
    bundle.write_envelope(doc)
    r = bundle.verify()
    assert r.ok and r.signatures == 3
    assert r.notes == [f"signature by keyid {stranger.public_key.keyid[:16]}: no such key was "
                       "given, so it is not counted"]
    assert r.verified == [bundle.named(0), bundle.named(1)]


def test_no_signatures_at_all(bundle):
    doc = bundle.envelope()
    doc["signatures"] = []
    bundle.write_envelope(doc)
    r = bundle.verify()
    assert r.signatures == 0
    assert r.problems == [f"no signature by {bundle.named(0)} in evidence.dsse.json",
                          f"no signature by {bundle.named(1)} in evidence.dsse.json",
                          "evidence.dsse.json has no signatures: the run directory is unsigned",
                          "threshold not met: 0 of 2 required signatures verified"]
    assert r.checked[2] == "signatures: 0 of 2 required verified (0 in envelope): none"


def test_the_same_key_given_twice_and_another_after_it(bundle):
    r = bundle.verify(keys=[bundle.keys[0], bundle.keys[0], bundle.keys[1]])
    assert r.ok and r.verified == [bundle.named(0), bundle.named(1)]
    assert len(r.notes) == 1


# ---- the run directory's name ------------------------------------------------------------------

def test_the_name_check_lines(tmp_path, custodians):
    b = make_bundle(tmp_path, custodians, name="renamed")
    r = b.verify()
    assert only(r) == (f"the directory is named renamed but the signed run id is {RUN_ID}: a "
                       "renamed or swapped run directory (pass --allow-rename if it was renamed "
                       "on purpose)")
    assert r.checked[4] == "run directory: named renamed, NOT the signed run id"
    r = b.verify(allow_rename=True)
    assert r.ok and r.notes == [f"the directory is named renamed but the signed run id is "
                                f"{RUN_ID}: accepted (--allow-rename)"]
    assert r.checked[4] == "run directory: named renamed, renames allowed"


# ---- what is shown as signed ---------------------------------------------------------------

def test_signed_facts_and_counts():
    facts = verify_module._signed_facts
    assert facts({}) == ["signed run id: (not in the signed statement)",
                         "signed profile: (not in the signed statement)",
                         "signed verdict: (not in the signed statement)",
                         "signed counts: (not in the signed statement)"]
    assert facts({"run_id": "r", "verdict": "PASS", "headline": None,
                  "summary": {"tests": {}, "keys": {"passed": 1}}}) == [
        "signed run id: r", "signed profile: (not in the signed statement)",
        "signed verdict: PASS", "signed headline: (not in the signed statement)",
        "signed counts: tests none; keys 1 passed"]
    counts = verify_module._counts
    assert counts({"tests": {"passed": 2, "failed": 1}, "keys": {}}) == \
        "tests 2 passed, 1 failed; keys none"
    assert counts({"tests": {"passed": 2}}) == '{"tests": {"passed": 2}}'
    assert counts({"tests": [], "keys": {}}) == '{"tests": [], "keys": {}}'
    assert counts([1]) == "[1]" and counts(None) == "(not in the signed statement)"
    assert counts({"tests": {"a\nb": "x"}, "keys": {}}) == 'tests x "a\\nb"; keys none'


def test_show():
    show = envelope.show
    assert show("PASS") == "PASS" and show("é") == "é"
    assert show("") == '""' and show(3) == "3" and show(None) == "(not in the signed statement)"
    assert show("line\nFAKE: forged") == '"line\\nFAKE: forged"'
    assert show("é\n") == '"\\u00e9\\n"'
    assert show({"k": "é"}) == '{"k": "\\u00e9"}'


def test_keyname():
    from securesystemslib.signer import SSlibKey
    key = CryptoSigner.generate_ecdsa().public_key
    assert isinstance(key, SSlibKey)
    assert envelope._keyname(key, {}) == f"keyid {key.keyid[:16]}"
    assert envelope._keyname(key, {key.keyid: "c1.pem"}) == f"c1.pem (keyid {key.keyid[:16]})"
    assert envelope._keyname(key, {key.keyid: ""}) == f"keyid {key.keyid[:16]}"
    assert envelope._signatures(1) == "1 signature"
    assert envelope._signatures(0) == "0 signatures"
    assert envelope._signatures(2) == "2 signatures"


# ---- files -----------------------------------------------------------------------------------

def test_missing_changed_and_extra_files_are_each_named(bundle, tmp_path):
    (bundle.run / "evidence.json").unlink()
    (bundle.run / "report.html").unlink()
    os.symlink(tmp_path, bundle.run / "report.html")  # now a symlink
    (bundle.run / "sub" / "junit.xml").unlink()
    os.mkfifo(bundle.run / "sub" / "junit.xml")        # now a FIFO
    (bundle.run / "new.txt").write_text("x")
    os.symlink(tmp_path, bundle.run / "sub" / "link")
    os.mkfifo(bundle.run / "pipe")
    r = bundle.verify()
    assert r.problems == [
        "missing: evidence.json (listed in the signed statement)",
        "changed: report.html is now a symlink, not a regular file",
        "changed: sub/junit.xml is now a special, not a regular file",
        "extra file: new.txt (not in the signed statement)",
        "extra special: pipe (not in the signed statement)",
        "extra symlink: sub/link (not in the signed statement)",
    ]
    assert r.missing == ["evidence.json"]
    assert r.changed == ["report.html", "sub/junit.xml"]
    assert r.extra == ["new.txt", "pipe", "sub/link"]
    assert r.files_checked == 0
    assert r.checked[-2:] == ["files: 0 of 3 digests checked, 2 changed",
                              "missing: evidence.json; extra: new.txt, pipe, sub/link"]


def test_two_missing_files_are_listed_with_a_comma(bundle):
    (bundle.run / "evidence.json").unlink()
    (bundle.run / "report.html").unlink()
    r = bundle.verify()
    assert r.checked[-1] == "missing: evidence.json, report.html; extra: none"
