"""keyparity.attest.statement in detail: what ``walk`` and ``subjects`` see of a run directory (every
file, recursively, nothing followed, only the two top-level signature files left out), the
exact statement and envelope ``sign_run`` writes, who it names, and that a failing signer
leaves nothing behind. Software keys (securesystemslib CryptoSigner) sign."""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner

from signer_doubles import Failing, Mismatched
from keyparity.errors import KeyparityError
from keyparity.attest.statement import (ENVELOPE, PAYLOAD_TYPE, PREDICATE_TYPE, SIGNED_NAMES, STATEMENT,
                                 STATEMENT_TYPE, TOKENS, EvidenceError, build_statement, canonical_json,
                                 sha256_file, sign_run, signer_info, subjects, walk)


def make_run(root: Path) -> Path:
    files = {"evidence.json": b'{"verdict": "PASS"}\n', "report.html": b"<p>PASS</p>\n",
             ".login-state.json": b"{}\n", "a/b/c.txt": b"deep\n",
             "a/statement.json": b"not the top-level one\n",
             "a/evidence.dsse.json": b"nor this\n", "empty": b""}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "empty-dir").mkdir()
    return root


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signer(name: str | None = None) -> CryptoSigner:
    s = CryptoSigner.generate_ecdsa()
    if name is not None:
        s.name = name
    return s


# ---- constants and canonical JSON ---------------------------------------------------------------

def test_the_names_and_types():
    assert (STATEMENT, ENVELOPE) == ("statement.json", "evidence.dsse.json")
    assert PAYLOAD_TYPE == "application/vnd.in-toto+json"
    assert STATEMENT_TYPE == "https://in-toto.io/Statement/v1"
    assert PREDICATE_TYPE == "https://keyparity.dev/evidence/v1"
    assert SIGNED_NAMES == {STATEMENT, ENVELOPE, "acknowledgements", TOKENS}
    assert TOKENS == "evidence.tsr.json"


def test_canonical_json():
    assert canonical_json({"b": [1, "é", None, True], "a": {"d": 1, "c": 2}}) == \
        '{"a":{"c":2,"d":1},"b":[1,"é",null,true]}'.encode("utf-8")
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
    with pytest.raises(ValueError):
        canonical_json({"x": float("inf")})


# ---- walk, sha256_file, subjects ---------------------------------------------------------------

def test_walk_lists_every_file_below_but_the_two_top_level_signature_files(tmp_path):
    run = make_run(tmp_path / "run")
    (run / STATEMENT).write_text("{}")
    (run / ENVELOPE).write_text("{}")
    got = sorted(walk(run))
    assert got == [(".login-state.json", "file"), ("a/b/c.txt", "file"),
                   ("a/evidence.dsse.json", "file"), ("a/statement.json", "file"),
                   ("empty", "file"), ("evidence.json", "file"), ("report.html", "file")]


def test_walk_names_symlinks_and_special_files_without_following_them(tmp_path):
    run = make_run(tmp_path / "run")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    os.symlink(outside, run / "link-to-dir")
    os.symlink(outside / "secret.txt", run / "a" / "link-to-file")
    os.symlink(tmp_path / "nowhere", run / "dangling")
    os.mkfifo(run / "a" / "b" / "fifo")
    os.symlink(outside, run / STATEMENT)  # a top-level signature name is left out, whatever
    kinds = dict(walk(run))
    assert kinds["link-to-dir"] == "symlink" and kinds["a/link-to-file"] == "symlink"
    assert kinds["dangling"] == "symlink" and kinds["a/b/fifo"] == "special"
    assert STATEMENT not in kinds
    assert not any(name.startswith("link-to-dir/") for name in kinds)


def test_walk_of_no_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"^run directory not found: {tmp_path / 'x'}$"):
        list(walk(tmp_path / "x"))
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError, match=f"^not a directory: {tmp_path / 'f'}$"):
        list(walk(tmp_path / "f"))
    os.symlink(tmp_path / "f", tmp_path / "l")
    with pytest.raises(NotADirectoryError):
        list(walk(tmp_path / "l"))


def test_sha256_file(tmp_path):
    big = os.urandom((1 << 20) * 2 + 123)  # more than one read
    (tmp_path / "big").write_bytes(big)
    assert sha256_file(tmp_path / "big") == sha(big)
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == sha(b"")
    os.symlink(tmp_path / "big", tmp_path / "link")
    with pytest.raises(OSError):
        sha256_file(tmp_path / "link")  # never follows a symlink


def test_subjects_are_every_file_sorted_by_name_with_its_digest(tmp_path):
    run = make_run(tmp_path / "run")
    got = subjects(run)
    assert got == [{"name": n, "digest": {"sha256": sha((run / n).read_bytes())}} for n in
                   sorted([".login-state.json", "a/b/c.txt", "a/evidence.dsse.json",
                           "a/statement.json", "empty", "evidence.json", "report.html"])]
    assert subjects(str(run)) == got
    assert subjects(tmp_path / "run" / ".." / "run") == got


@pytest.mark.parametrize("kind, what", [("symlink", "a symlink"), ("fifo", "not a regular file")])
def test_a_symlink_or_a_special_file_cannot_be_signed(tmp_path, kind, what):
    run = make_run(tmp_path / "run")
    if kind == "symlink":
        os.symlink(run / "evidence.json", run / "a" / "odd")
    else:
        os.mkfifo(run / "a" / "odd")
    with pytest.raises(EvidenceError) as info:
        subjects(run)
    assert str(info.value) == (f"cannot sign {run}: a/odd is {what}; the evidence bundle may "
                               "hold regular files and directories only")


def test_a_file_name_that_is_not_utf8_cannot_be_signed(tmp_path):
    run = make_run(tmp_path / "run")
    fd = os.open(os.fsencode(str(run)) + b"/bad-\xff", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    with pytest.raises(EvidenceError) as info:
        subjects(run)
    assert str(info.value) == (f"cannot sign {run}: file name 'bad-\\udcff' is not valid "
                               "UTF-8")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_build_statement(tmp_path):
    run = make_run(tmp_path / "run")
    predicate = {"run_id": "r", "threshold": 2}
    assert build_statement(run, predicate) == {
        "_type": STATEMENT_TYPE, "subject": subjects(run), "predicateType": PREDICATE_TYPE,
        "predicate": predicate}


# ---- signer_info ------------------------------------------------------------------------------------

def test_signer_info_names_each_signer_or_its_key_id():
    named, anonymous = signer("custodian-1"), signer()
    info = signer_info([named, anonymous])
    assert info == [
        {"name": "custodian-1", "keyid": named.public_key.keyid, "scheme": "ecdsa-sha2-nistp256"},
        {"name": f"keyid {anonymous.public_key.keyid[:16]}", "keyid": anonymous.public_key.keyid,
         "scheme": "ecdsa-sha2-nistp256"}]
    empty = signer("")
    assert signer_info([empty])[0]["name"] == f"keyid {empty.public_key.keyid[:16]}"
    assert signer_info([]) == []


# ---- sign_run ----------------------------------------------------------------------------------

def test_sign_run_writes_the_payload_and_an_envelope_signed_by_each(tmp_path):
    run = make_run(tmp_path / "run")
    signers = [signer("custodian-1"), signer("custodian-2")]
    predicate = {"run_id": "run", "threshold": 2, "note": "é"}
    path = sign_run(run, signers, predicate)
    assert path == run / ENVELOPE
    payload = (run / STATEMENT).read_bytes()
    assert payload == canonical_json(build_statement(run, predicate))
    text = path.read_text()
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=2) + "\n"
    assert set(doc) == {"payload", "payloadType", "signatures"}
    assert doc["payloadType"] == PAYLOAD_TYPE
    assert base64.b64decode(doc["payload"]) == payload
    assert [s["keyid"] for s in doc["signatures"]] == [s.public_key.keyid for s in signers]
    envelope = Envelope.from_dict(json.loads(text))
    keys = [s.public_key for s in signers]
    assert set(envelope.verify(keys, 2)) == {k.keyid for k in keys}
    # the statement covers the files as they were: signing again sees the same subjects
    assert json.loads(payload)["subject"] == subjects(run)
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [
        ".login-state.json"]  # no temporary file left


def test_sign_run_with_no_signer_writes_an_unsigned_envelope(tmp_path):
    run = make_run(tmp_path / "run")
    sign_run(run, [], {})
    doc = json.loads((run / ENVELOPE).read_text())
    assert doc["signatures"] == []
    assert json.loads((run / STATEMENT).read_bytes())["predicate"] == {}


def test_sign_run_replaces_an_earlier_signature(tmp_path):
    run = make_run(tmp_path / "run")
    sign_run(run, [signer("one")], {"n": 1})
    sign_run(str(run), [signer("two")], {"n": 2})
    statement = json.loads((run / STATEMENT).read_bytes())
    assert statement["predicate"] == {"n": 2}
    assert STATEMENT not in [s["name"] for s in statement["subject"]]
    assert ENVELOPE not in [s["name"] for s in statement["subject"]]


def test_one_key_twice_is_refused_naming_both_signers(tmp_path):
    run = make_run(tmp_path / "run")
    first = signer("custodian-1")
    second = CryptoSigner(first._private_key, first.public_key)
    second.name = "custodian-2"
    with pytest.raises(EvidenceError) as info:
        sign_run(run, [signer("other"), first, second], {})
    keyid = first.public_key.keyid
    assert str(info.value) == (f"evidence signers custodian-1 and custodian-2 use the same key "
                               f"(keyid {keyid[:16]}); dual control needs distinct keys")
    assert not (run / STATEMENT).exists() and not (run / ENVELOPE).exists()


def test_a_failing_signer_writes_nothing(tmp_path):
    run = make_run(tmp_path / "run")
    original = RuntimeError("token removed")
    with pytest.raises(EvidenceError) as info:
        sign_run(run, [signer("ok"), Failing(original)], {})
    assert str(info.value) == ("evidence signer custodian-x failed to sign: RuntimeError: "
                               "token removed")
    assert info.value.__cause__ is original
    assert not (run / STATEMENT).exists() and not (run / ENVELOPE).exists()
    ours = KeyparityError("login failed on the custodian token")
    with pytest.raises(KeyparityError) as info:
        sign_run(run, [Failing(ours)], {})
    assert info.value is ours  # already explained: passed on as it is
    assert not (run / STATEMENT).exists()


@pytest.mark.parametrize("name", ["custodian-9", None])
def test_a_signature_its_own_public_key_does_not_verify_writes_nothing(tmp_path, name):
    run = make_run(tmp_path / "run")
    bad = Mismatched(name)
    keyid = bad.public_key.keyid
    shown = name or f"keyid {keyid[:16]}"
    with pytest.raises(EvidenceError) as info:
        sign_run(run, [bad], {})
    assert str(info.value) == (f"evidence signer {shown} made a signature that its own public "
                               f"key (keyid {keyid[:16]}) does not verify: the private key does "
                               "not belong to the public key")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert not (run / STATEMENT).exists() and not (run / ENVELOPE).exists()


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    run = make_run(tmp_path / "run")
    (run / ENVELOPE).mkdir()  # the envelope cannot replace a directory
    (run / ENVELOPE / "x").write_text("")
    with pytest.raises(OSError):
        sign_run(run, [signer("one")], {})
    assert not (run / f".{ENVELOPE}.tmp").exists()
    assert not (run / f".{STATEMENT}.tmp").exists()
    assert (run / STATEMENT).exists()  # written first, atomically
