"""Offline verification of a signed run directory (``keyparity verify``).

Checks, in order, and collects every problem rather than stopping at the first:

1. the envelope (evidence.dsse.json) parses, its payloadType is the in-toto one, and its
   payload is an in-toto Statement v1 with well-formed subjects;
2. the threshold: the one recorded in the signed predicate (0 or none: the bundle was made
   unsigned, a failure); the caller's threshold may raise it, never lower it;
3. the signatures: each against the key with its key id (securesystemslib), then the
   threshold with securesystemslib's ``Envelope.verify``;
4. the run directory's name (symlinks such as reports/latest resolved) is the signed run id,
   unless renames are allowed;
5. statement.json holds exactly the signed payload;
6. every subject's SHA-256;
7. no subject missing; 8. no file that is not a subject (symlinks and special files included).

Only the signed payload is trusted for the file checks and for the facts the report shows as
signed (run id, profile, verdict, headline, counts). When the envelope cannot be read at all,
statement.json is used to name what differs, and the result fails regardless.
"""
from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError
from securesystemslib.signer import Key, Signature

from .statement import ENVELOPE, PAYLOAD_TYPE, STATEMENT, STATEMENT_TYPE, sha256_file, walk

__all__ = ["VerifyResult", "verify_run"]

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class VerifyResult:
    """What ``verify_run`` found. ``ok`` when there is no problem."""

    run_dir: Path
    threshold: int  # signatures required: the signed threshold, or the caller's when higher
    requested: int | None = None  # the caller's threshold (--threshold), None when not given
    signed: dict | None = None  # the predicate of the signed payload; None when unreadable
    threshold_met: bool = False  # securesystemslib accepted the signatures
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # one line per check, for the report
    notes: list[str] = field(default_factory=list)  # worth saying, but not a failure
    verified: list[str] = field(default_factory=list)  # names of the keys whose signature verified
    not_verified: list[str] = field(default_factory=list)  # keys given without a valid signature
    signatures: int = 0  # signatures in the envelope
    files_checked: int = 0  # subjects whose digest was compared
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """A human report: what was signed, what was checked, then every problem, then the
        verdict."""
        out = [f"keyparity verify: {self.run_dir}"]
        if self.signed is None:
            out.append("  signed statement: none readable")
        else:
            out += [f"  {line}" for line in _signed_facts(self.signed)]
            if not self.threshold_met:
                out.append("  the signed values above are NOT trustworthy: the signature "
                           "threshold was not met")
        return out + self.outcome(f"{self.files_checked} files match the signed statement")

    def outcome(self, matched: str) -> list[str]:
        """The report's end: every check and note, then OK (``matched``: what matched the
        signed statement) or every problem."""
        out = [f"  {line}" for line in self.checked]
        out += [f"  note: {line}" for line in self.notes]
        if self.ok:
            out.append(f"OK: {len(self.verified)} of {self.threshold} required signatures "
                       f"verified; {matched}")
        else:
            out.append(f"FAILED: {len(self.problems)} problem(s):")
            out += [f"  - {p}" for p in self.problems]
        return out


def _keyname(key: Key, names: Mapping[str, str]) -> str:
    name = names.get(key.keyid)
    short = f"keyid {key.keyid[:16]}"
    return f"{name} ({short})" if name else short


def verify_run(run_dir: Path, keys: list[Key], threshold: int | None = None, *,
               key_names: Mapping[str, str] | None = None,
               allow_rename: bool = False) -> VerifyResult:
    """Verify a signed run directory offline.

    ``threshold``: at least this many signatures (``--threshold``); the threshold in the signed
    statement applies when it is higher, and when ``threshold`` is None. ``key_names`` (key id
    -> e.g. the file it came from) only makes the messages name keys the way the caller knows
    them. ``allow_rename``: a directory name other than the signed run id is a note, not a
    failure."""
    run_dir = Path(run_dir)
    names = dict(key_names or {})
    fallback = len(keys) if threshold is None else threshold
    result = VerifyResult(run_dir=run_dir, threshold=fallback, requested=threshold)
    problems = result.problems
    if not run_dir.is_dir():
        problems.append(f"run directory not found: {run_dir}")
        return result

    # 1. envelope
    envelope, payload = _read_envelope(run_dir, result)
    statement: Any = None
    if payload is not None:
        statement = _parse_statement(payload, f"signed payload of {ENVELOPE}", result)
        result.signed = _signed_predicate(payload, result)

    # 2. the threshold, 3. signatures
    result.threshold = _required(result.signed, threshold, fallback, result)
    if envelope is not None:
        _check_signatures(envelope, keys, result.threshold, names, result)
    else:
        result.checked.append("signatures: not checked (no readable envelope)")

    # 4. the directory's name against the signed run id
    _check_name(run_dir, result.signed, allow_rename, result)

    # 5. statement.json against the signed payload
    statement_path = run_dir / STATEMENT
    if statement_path.is_symlink() or (statement_path.exists() and not statement_path.is_file()):
        problems.append(f"{STATEMENT} is not a regular file")
    elif not statement_path.exists():
        problems.append(f"{STATEMENT} is missing")
    else:
        try:
            on_disk = statement_path.read_bytes()
        except OSError as exc:
            on_disk = None
            problems.append(f"{STATEMENT} is unreadable ({exc.strerror or exc})")
        if on_disk is None:
            pass
        elif payload is None:
            result.checked.append(f"{STATEMENT}: UNSIGNED, used only to name files that differ")
            statement = _parse_statement(on_disk, f"{STATEMENT} (unsigned)", result)
        elif on_disk == payload:
            result.checked.append(f"{STATEMENT}: identical to the signed payload")
        else:
            problems.append(f"{STATEMENT} differs from the signed payload in {ENVELOPE} "
                            "(edited after signing)")
            result.checked.append(f"{STATEMENT}: DIFFERS from the signed payload")

    # 6-8. files
    if isinstance(statement, dict) and isinstance(statement.get("subject"), list):
        _check_files(run_dir, statement["subject"], result)
    else:
        result.checked.append("files: not checked (no usable statement)")
    return result


def _read_envelope(run_dir: Path, result: VerifyResult, name: str = ENVELOPE,
                   what: str = "the run directory") -> tuple[Envelope | None, bytes | None]:
    """The DSSE envelope ``name`` of a directory and its payload; (None, None), the problem
    recorded, when it cannot be read. ``name``: evidence.dsse.json, or a plan's; ``what``:
    what the messages call the directory."""
    problems = result.problems
    path = run_dir / name
    if path.is_symlink() or (path.exists() and not path.is_file()):
        problems.append(f"{name} is not a regular file")
        return None, None
    if not path.exists():
        problems.append(f"{name} is missing: {what} is not signed")
        return None, None
    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        problems.append(f"{name} is unreadable ({exc.strerror or exc})")
        return None, None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{name} is not valid JSON ({exc})")
        return None, None
    if not isinstance(doc, dict):
        problems.append(f"{name} is not a DSSE envelope (not a JSON object)")
        return None, None
    shape = []
    if not isinstance(doc.get("payload"), str):
        shape.append("payload (base64 string)")
    if not isinstance(doc.get("payloadType"), str):
        shape.append("payloadType (string)")
    sigs = doc.get("signatures")
    if not isinstance(sigs, list) or not all(
            isinstance(s, dict) and isinstance(s.get("keyid"), str)
            and isinstance(s.get("sig"), str) for s in sigs):
        shape.append("signatures (list of {keyid, sig})")
    if shape:
        problems.append(f"{name} is not a DSSE envelope: missing or malformed "
                        + ", ".join(shape))
        return None, None
    keyids = [s["keyid"] for s in sigs]
    for keyid in sorted({k for k in keyids if keyids.count(k) > 1}):
        problems.append(f"{name}: {keyids.count(keyid)} signatures claim keyid "
                        f"{keyid[:16]}; each key may sign once")
    try:
        envelope = Envelope.from_dict(json.loads(json.dumps(doc)))  # from_dict mutates its input
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        problems.append(f"{name}: cannot decode ({type(exc).__name__}: {exc}); "
                        "payload and sig must be base64")
        return None, None
    if envelope.payload_type != PAYLOAD_TYPE:
        problems.append(f"{name}: payloadType is {envelope.payload_type!r}, expected "
                        f"{PAYLOAD_TYPE!r}")
        result.checked.append(f"envelope: {name}, WRONG payloadType "
                              f"{envelope.payload_type!r}")
    else:
        result.checked.append(f"envelope: {name}, payloadType {PAYLOAD_TYPE}")
    return envelope, envelope.payload


def _parse_statement(raw: bytes, what: str, result: VerifyResult) -> Any:
    problems = result.problems
    try:
        statement = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{what} is not valid JSON ({exc})")
        return None
    if not isinstance(statement, dict):
        problems.append(f"{what} is not an in-toto Statement (not a JSON object)")
        return None
    if statement.get("_type") != STATEMENT_TYPE:
        problems.append(f"{what}: _type is {statement.get('_type')!r}, expected "
                        f"{STATEMENT_TYPE!r}")
    subjects = statement.get("subject")
    if not isinstance(subjects, list):
        problems.append(f"{what}: subject is missing or not a list")
        return None
    good = []
    seen: set[str] = set()
    for i, subject in enumerate(subjects):
        name = subject.get("name") if isinstance(subject, dict) else None
        digest = subject.get("digest") if isinstance(subject, dict) else None
        sha = digest.get("sha256") if isinstance(digest, dict) else None
        if not isinstance(name, str) or not isinstance(sha, str) or not _HEX64.fullmatch(sha):
            problems.append(f"{what}: subject[{i}] needs a name and a sha256 digest (64 hex)")
            continue
        if not _safe_name(name):
            problems.append(f"{what}: subject {name!r} is not a relative path inside the run "
                            "directory; not opened")
            continue
        if name in seen:
            problems.append(f"{what}: subject {name!r} is listed twice")
            continue
        seen.add(name)
        good.append({"name": name, "digest": {"sha256": sha}})
    return {**statement, "subject": good}


def _signed_predicate(payload: bytes, result: VerifyResult) -> dict | None:
    """The predicate of the signed payload; None when the payload is not a JSON object (which
    _parse_statement reports) or has no predicate object (reported here)."""
    try:
        statement = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(statement, dict):
        return None
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        result.problems.append(f"the signed payload of {ENVELOPE} has no predicate object: "
                               "it is not a keyparity evidence statement")
        return None
    return predicate


def _required(signed: Mapping[str, Any] | None, requested: int | None, fallback: int,
              result: VerifyResult) -> int:
    """Signatures required: the signed threshold, raised (never lowered) by ``requested``.
    ``fallback`` (``requested``, else the number of keys given) when there is no usable signed
    threshold, in which case the result has already failed or fails here."""
    source = "the number of keys given" if requested is None else f"--threshold {requested}"
    if signed is None:
        result.checked.append(f"threshold: {_signatures(fallback)} required ({source}; no "
                              "readable signed threshold)")
        return fallback
    value = signed.get("threshold")
    if value is None or (value == 0 and type(value) is int):
        said = "no threshold" if value is None else "threshold 0"
        result.problems.append(f"the signed statement has {said}: the bundle was made unsigned "
                               "(its profile had no evidence.signers); only a bundle from a "
                               "profile with evidence.signers can be verified")
        result.checked.append(f"threshold: {_signatures(fallback)} required ({source}; the "
                              "statement is unsigned)")
        return fallback
    if type(value) is not int or value < 0:
        result.problems.append(f"the signed threshold {json.dumps(value)} is not a number of "
                               "signatures: the statement was not written by keyparity")
        result.checked.append(f"threshold: {_signatures(fallback)} required ({source}; no "
                              "usable signed threshold)")
        return fallback
    if requested is not None and requested < value:
        result.notes.append(f"--threshold {requested} is below the signed threshold {value}: "
                            f"{_signatures(value)} required")
    if requested is None or requested < value:
        result.checked.append(f"threshold: {_signatures(value)} required (signed threshold "
                              f"{value})")
        return value
    result.checked.append(f"threshold: {_signatures(requested)} required (--threshold "
                          f"{requested}; signed threshold {value})")
    return requested


def _signatures(n: int) -> str:
    return f"{n} signature" if n == 1 else f"{n} signatures"


def _check_name(run_dir: Path, signed: Mapping[str, Any] | None, allow_rename: bool,
                result: VerifyResult) -> None:
    """The directory's own name (reports/latest resolved) must be the signed run id: otherwise
    the bundle of one run can be passed off as another's."""
    if signed is None:
        result.checked.append("run directory: name not checked (no signed run id)")
        return
    name = run_dir.resolve().name
    run_id = signed.get("run_id")
    if run_id == name:
        result.checked.append(f"run directory: named {_show(name)}, as the signed run id")
        return
    if isinstance(run_id, str):
        what = (f"the directory is named {_show(name)} but the signed run id is "
                f"{_show(run_id)}")
        advice = (": a renamed or swapped run directory (pass --allow-rename if it was renamed "
                  "on purpose)")
    else:
        what = ("the signed statement has no run_id: a renamed or swapped run directory "
                "cannot be told apart")
        advice = " (pass --allow-rename to accept it)"
    if allow_rename:
        result.notes.append(f"{what}: accepted (--allow-rename)")
        result.checked.append(f"run directory: named {_show(name)}, renames allowed")
    else:
        result.problems.append(what + advice)
        result.checked.append(f"run directory: named {_show(name)}, NOT the signed run id")


def _signed_facts(signed: Mapping[str, Any]) -> list[str]:
    """What the custodians signed about the run, one line each, from the signed predicate."""
    lines = [f"signed run id: {_show(signed.get('run_id'))}",
             f"signed profile: {_show(signed.get('profile'))}",
             f"signed verdict: {_show(signed.get('verdict'))}"]
    if "headline" in signed:
        lines.append(f"signed headline: {_show(signed['headline'])}")
    lines.append(f"signed counts: {_counts(signed.get('summary'))}")
    plan = signed.get("plan")
    if isinstance(plan, dict):
        approvers = plan.get("approved_by")
        lines.append(f"signed plan: {_show(plan.get('plan_id'))}, approved by "
                     + (", ".join(_show(a) for a in approvers) if isinstance(approvers, list)
                        else _show(approvers))
                     + f" (plan.json sha256 {_show(plan.get('sha256'))})")
    return lines


def _counts(summary: Any) -> str:
    """``{"tests": {"passed": 97}, "keys": {"passed": 7}}`` as "tests 97 passed; keys 7 passed"."""
    if not (isinstance(summary, dict)
            and all(isinstance(summary.get(k), dict) for k in ("tests", "keys"))):
        return _show(summary)
    return "; ".join(
        f"{what} " + (", ".join(f"{_show(n)} {_show(outcome)}"
                                for outcome, n in summary[what].items()) or "none")
        for what in ("tests", "keys"))


def _show(value: Any) -> str:
    """A signed value for one report line: text as it is when printable, anything else (and
    text with control characters, which could forge report lines) as JSON."""
    if value is None:
        return "(not in the signed statement)"
    if isinstance(value, str) and value and value.isprintable():
        return value
    return json.dumps(value, ensure_ascii=True)


def _safe_name(name: str) -> bool:
    """A relative POSIX path inside the run directory (no '..', no absolute path)."""
    if not name or "\x00" in name or name.startswith("/"):
        return False
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return False
    return not (len(parts) == 1 and name in (STATEMENT, ENVELOPE))


def _check_signatures(envelope: Envelope, keys: list[Key], threshold: int,
                      names: Mapping[str, str], result: VerifyResult,
                      envelope_name: str = ENVELOPE, what: str = "the run directory",
                      every_key: bool = True) -> None:
    """The envelope's signatures by ``keys`` and the threshold; with ``every_key`` each key
    given must have signed (``keyparity verify``), without it a key that did not sign is a
    note as long as the threshold is met (a run's plan: any threshold of the custodians)."""
    problems = result.problems
    result.signatures = len(envelope.signatures)
    unique: dict[str, Key] = {}
    for key in keys:
        if key.keyid in unique:
            result.notes.append(f"the same key was given twice ({_keyname(key, names)}); it "
                                "counts once towards the threshold")
            continue
        unique[key.keyid] = key
    pae = envelope.pae()
    verified: list[str] = []
    for keyid, signature in envelope.signatures.items():
        key = unique.get(keyid)
        if key is None:
            result.notes.append(f"signature by keyid {keyid[:16]}: no such key was given, "
                                "so it is not counted")
            continue
        if _verifies(key, signature, pae):
            verified.append(keyid)
        else:
            problems.append(f"signature by {_keyname(key, names)} does NOT verify "
                            f"(the payload or the signature was changed, or it is not "
                            f"this key's signature)")
    for keyid, key in unique.items():
        if keyid not in envelope.signatures:
            (problems if every_key else result.notes).append(
                f"no signature by {_keyname(key, names)} in {envelope_name}")
    result.verified = [_keyname(unique[k], names) for k in verified]
    result.not_verified = [_keyname(k, names) for i, k in unique.items() if i not in verified]
    if not envelope.signatures:
        problems.append(f"{envelope_name} has no signatures: {what} is unsigned")

    # The threshold, decided by securesystemslib itself.
    if threshold < 1:
        problems.append(f"threshold must be at least 1 (got {threshold})")
    else:
        try:
            accepted = envelope.verify(list(unique.values()), threshold)
        except ValueError:  # fewer keys than the threshold
            problems.append(f"threshold not met: {threshold} signatures required but only "
                            f"{len(unique)} distinct key(s) given")
        except (VerificationError, UnverifiedSignatureError):
            problems.append(f"threshold not met: {len(verified)} of {threshold} required "
                            "signatures verified")
        else:
            if set(accepted) - set(verified):  # cannot happen; keep the two checks honest
                problems.append("internal: securesystemslib accepted a signature that the "
                                "per-signature check rejected")
            else:
                result.threshold_met = True
    shown = ", ".join(result.verified) or "none"
    result.checked.append(f"signatures: {len(verified)} of {threshold} required verified "
                          f"({result.signatures} in envelope): {shown}")


def _verifies(key: Key, signature: Signature, pae: bytes) -> bool:
    try:
        key.verify_signature(signature, pae)
    except (UnverifiedSignatureError, VerificationError):
        return False
    return True


def _check_files(run_dir: Path, subjects: list[dict], result: VerifyResult) -> None:
    problems = result.problems
    try:
        on_disk = dict(walk(run_dir))
    except OSError as exc:
        problems.append(f"cannot list the run directory: {exc.strerror or exc}: "
                        f"{exc.filename or run_dir}")
        result.checked.append("files: not checked (run directory unreadable)")
        return
    expected = {s["name"]: s["digest"]["sha256"] for s in subjects}
    for name, sha in sorted(expected.items()):
        kind = on_disk.get(name)
        if kind is None:
            result.missing.append(name)
            problems.append(f"missing: {name} (listed in the signed statement)")
            continue
        if kind != "file":
            result.changed.append(name)
            problems.append(f"changed: {name} is now a {kind}, not a regular file")
            continue
        try:
            found = sha256_file(run_dir / name)
        except OSError as exc:
            result.changed.append(name)
            problems.append(f"unreadable: {name} ({exc.strerror or exc})")
            continue
        result.files_checked += 1
        if found != sha:
            result.changed.append(name)
            problems.append(f"changed: {name} (sha256 signed {sha[:16]}..., found {found[:16]}...)")
    for name, kind in sorted(on_disk.items()):
        if name not in expected:
            result.extra.append(name)
            what = "file" if kind == "file" else kind
            problems.append(f"extra {what}: {name} (not in the signed statement)")
    result.checked.append(f"files: {result.files_checked} of {len(expected)} digests checked, "
                          f"{len(result.changed)} changed")
    result.checked.append("missing: " + (", ".join(result.missing) or "none")
                          + "; extra: " + (", ".join(result.extra) or "none"))
