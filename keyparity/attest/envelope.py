"""The DSSE envelope of an in-toto statement, as both verifications read it: a run's
(keyparity.attest.verify) and a plan's (keyparity.attest.plan). Reading the envelope and the
statement, the signature threshold, each signature and the threshold checked by
securesystemslib, canonical JSON and adding a signature: one place for both."""
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
from securesystemslib.signer import Key, Signature, Signer

from ..errors import KeyparityError

__all__ = ["PAYLOAD_TYPE", "STATEMENT_TYPE", "EvidenceError", "Verification", "add_signature",
           "canonical_json", "check_signatures", "parse_statement", "read_envelope",
           "required_signatures", "show", "signer_name", "verifies"]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class EvidenceError(KeyparityError):
    """The run directory cannot be signed as it is (a symlink, a special file, an odd name)."""


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8, no NaN/Infinity.

    The verifier never re-serialises: it compares these bytes, so any deterministic encoding
    would do; this one is byte-identical to RFC 8785 (JCS) for strings, integers, booleans
    and null, which is all a statement's envelope of subjects holds.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def signer_name(signer: Signer) -> str:
    return getattr(signer, "name", None) or f"keyid {signer.public_key.keyid[:16]}"


def add_signature(envelope: Envelope, signer: Signer) -> Signature:
    """Sign a DSSE envelope with one signer (added to ``envelope.signatures``), checked against
    the signer's own public key first: EvidenceError when the signer fails, or when its
    signature does not verify (a private key that does not belong to the public key)."""
    name = signer_name(signer)
    keyid = signer.public_key.keyid
    try:
        signature = signer.sign(envelope.pae())
    except KeyparityError:
        raise
    except Exception as exc:  # noqa: BLE001 - a signer library's own error
        raise EvidenceError(f"evidence signer {name} failed to sign: "
                            f"{type(exc).__name__}: {exc}") from exc
    try:
        signer.public_key.verify_signature(signature, envelope.pae())
    except (UnverifiedSignatureError, VerificationError):
        raise EvidenceError(f"evidence signer {name} made a signature that its own public "
                            f"key (keyid {keyid[:16]}) does not verify: the private key "
                            "does not belong to the public key") from None
    envelope.signatures[signature.keyid] = signature
    return signature


@dataclass
class Verification:
    """What a verification of a signed directory found (a run's: keyparity.attest.verify; a
    plan's: keyparity.attest.plan). ``ok`` when there is no problem."""

    run_dir: Path
    threshold: int  # signatures required: the signed threshold, or the caller's when higher
    requested: int | None = None  # the caller's threshold (--threshold), None when not given
    signed: dict | None = None  # the predicate of the signed payload; None when unreadable
    threshold_met: bool = False  # securesystemslib accepted the signatures
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # one line per check, for the report
    notes: list[str] = field(default_factory=list)  # worth saying, but not a failure
    verified: list[str] = field(default_factory=list)  # names of the keys whose signature verified
    who: list[str] = field(default_factory=list)  # who signed: one line per verified key
    not_verified: list[str] = field(default_factory=list)  # keys given without a valid signature
    signatures: int = 0  # signatures in the envelope
    files_checked: int = 0  # subjects whose digest was compared
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    time_stamps: list[dict] = field(default_factory=list)  # each verified RFC 3161 token

    @property
    def ok(self) -> bool:
        return not self.problems

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


def read_envelope(run_dir: Path, result: Verification, name: str,
                  what: str) -> tuple[Envelope | None, bytes | None]:
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


def parse_statement(raw: bytes, what: str, result: Verification,
                    reserved: frozenset[str] = frozenset()) -> Any:
    """The in-toto statement in ``raw``, its well-formed subjects kept (each problem recorded);
    None when it is no statement. ``reserved``: names a subject may not have at the top of
    the directory (the statement's and the envelope's own files)."""
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
        if not _safe_name(name, reserved):
            problems.append(f"{what}: subject {name!r} is not a relative path inside the run "
                            "directory; not opened")
            continue
        if name in seen:
            problems.append(f"{what}: subject {name!r} is listed twice")
            continue
        seen.add(name)
        good.append({"name": name, "digest": {"sha256": sha}})
    return {**statement, "subject": good}


def required_signatures(signed: Mapping[str, Any] | None, requested: int | None, fallback: int,
                        result: Verification) -> int:
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


def check_signatures(envelope: Envelope, keys: list[Key], threshold: int,
                     names: Mapping[str, str], result: Verification, envelope_name: str,
                     what: str, every_key: bool = True,
                     persons: Mapping[str, str] | None = None) -> list[str]:
    """The envelope's signatures by ``keys`` and the threshold; with ``every_key`` each key
    given must have signed (``keyparity verify``), without it a key that did not sign is a
    note as long as the threshold is met (a run's plan: any threshold of the custodians).
    The threshold counts distinct keys and distinct ``persons`` (key id -> the subject a
    checked certificate names): two keys of one person count once. Returns the key ids whose
    signature verified."""
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
        if verifies(key, signature, pae):
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
    people = {(persons or {}).get(k, k) for k in verified}
    if result.threshold_met and len(people) < threshold:
        result.threshold_met = False
        problems.append(f"threshold not met: {len(verified)} signatures verified, but they are "
                        f"of {len(people)} distinct person(s) ({threshold} required): keys "
                        "whose certificates name one subject count once")
    shown = ", ".join(result.verified) or "none"
    distinct = f", {len(people)} distinct person(s)" if persons else ""
    result.checked.append(f"signatures: {len(verified)} of {threshold} required verified "
                          f"({result.signatures} in envelope{distinct}): {shown}")
    return verified


def verifies(key: Key, signature: Signature, pae: bytes) -> bool:
    try:
        key.verify_signature(signature, pae)
    except (UnverifiedSignatureError, VerificationError):
        return False
    return True


def show(value: Any) -> str:
    """A signed value for one report line: text as it is when printable, anything else (and
    text with control characters, which could forge report lines) as JSON."""
    if value is None:
        return "(not in the signed statement)"
    if isinstance(value, str) and value and value.isprintable():
        return value
    return json.dumps(value, ensure_ascii=True)


def _keyname(key: Key, names: Mapping[str, str]) -> str:
    name = names.get(key.keyid)
    short = f"keyid {key.keyid[:16]}"
    return f"{name} ({short})" if name else short


def _signatures(n: int) -> str:
    return f"{n} signature" if n == 1 else f"{n} signatures"


def _safe_name(name: str, reserved: frozenset[str]) -> bool:
    """A relative POSIX path inside the run directory (no '..', no absolute path)."""
    if not name or "\x00" in name or name.startswith("/"):
        return False
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return False
    return not (len(parts) == 1 and name in reserved)
