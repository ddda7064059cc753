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

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from securesystemslib.signer import Key

from . import contents
from .envelope import (Verification, check_signatures, parse_statement, read_envelope,
                       required_signatures, show)
from .signatories import examine
from .statement import ENVELOPE, PREDICATE_TYPE, SIGNED_NAMES, STATEMENT, sha256_file, walk
from .timestamp import check_tokens

__all__ = ["VerifyResult", "check_files", "verify_run"]


@dataclass
class VerifyResult(Verification):
    """What ``verify_run`` found. ``ok`` when there is no problem."""

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
        if self.who:
            out.append("  signed by:")
            out += [f"    {line}" for line in self.who]
        out += self.outcome(f"{self.files_checked} files match the signed statement")
        return out + [self.verdict_line()]

    @property
    def verdict(self) -> str | None:
        """The signed verdict, as the signed predicate states it (None when there is none)."""
        value = (self.signed or {}).get("verdict")
        return value if isinstance(value, str) else None

    def verdict_line(self) -> str:
        """The last line: whether the bundle is authentic, then what its signers concluded. A
        signed FAIL is authentic evidence of a failed run, not a failed verification."""
        if self.ok:
            return f"keyparity verify: authentic; signed verdict {show(self.verdict)}"
        return (f"keyparity verify: NOT authentic ({len(self.problems)} problem(s) above); "
                "the verdict it claims is not evidence of anything")

    def record(self, required: str | None = None) -> dict[str, Any]:
        """The result as data (``keyparity verify --output json``)."""
        return {
            "run_dir": str(self.run_dir), "authentic": self.ok,
            "verdict": self.verdict if self.ok else None,
            "claimed_verdict": self.verdict,
            "required_verdict": required,
            "verdict_as_required": None if required is None else (
                self.ok and self.verdict == required),
            "signed": self.signed if self.ok else None,
            "signatures": {"required": self.threshold, "in_envelope": self.signatures,
                           "verified": list(self.verified), "signed_by": list(self.who),
                           "not_verified": list(self.not_verified)},
            "files_checked": self.files_checked, "changed": list(self.changed),
            "missing": list(self.missing), "extra": list(self.extra),
            "problems": list(self.problems), "notes": list(self.notes),
            "checked": list(self.checked),
            "time_stamps": list(self.time_stamps),
        }


def verify_run(run_dir: Path, keys: list[Key], threshold: int | None = None, *,
               key_names: Mapping[str, str] | None = None,
               allow_rename: bool = False,
               certificates: Mapping[str, x509.Certificate] | None = None,
               cas: list[x509.Certificate] | None = None,
               tsa_roots: list[Path] | None = None) -> VerifyResult:
    """Verify a signed run directory offline.

    ``threshold``: at least this many signatures (``--threshold``); the threshold in the signed
    statement applies when it is higher, and when ``threshold`` is None. ``key_names`` (key id
    -> e.g. the file it came from) only makes the messages name keys the way the caller knows
    them. ``allow_rename``: a directory name other than the signed run id is a note, not a
    failure. ``certificates`` (key id -> the certificate given for it) and ``cas`` (the CAs
    the verifier trusts; the bundle's certificates they issued become keys) name the people
    behind the keys (keyparity.attest.signatories); the threshold counts people. ``tsa_roots``: PEM files of the roots the signatures' RFC 3161 time-stamps must
    chain to (``--tsa-root``; without them the tokens are not checked and the times are the
    host's own)."""
    run_dir = Path(run_dir)
    names = dict(key_names or {})
    fallback = len(keys) if threshold is None else threshold
    result = VerifyResult(run_dir=run_dir, threshold=fallback, requested=threshold)
    problems = result.problems
    if not run_dir.is_dir():
        problems.append(f"run directory not found: {run_dir}")
        return result

    # 1. envelope
    envelope, payload = read_envelope(run_dir, result, ENVELOPE, "the run directory")
    statement: Any = None
    if payload is not None:
        statement = parse_statement(payload, f"signed payload of {ENVELOPE}", result,
                                    SIGNED_NAMES)
        result.signed = _signed_predicate(payload, result)
        _self_contained(statement, result)

    # 2. the threshold, 3. signatures (of people: certificates and acknowledgements first)
    given = bool(keys)  # keys the caller gave must each have signed; the bundle's need not
    found = None if payload is None else examine(
        run_dir, payload, result.signed, keys, names, certificates or {}, cas, result)
    if found is not None:
        keys, names = found.keys, found.names
    result.threshold = required_signatures(result.signed, threshold, fallback, result)
    if envelope is not None:
        verified = check_signatures(envelope, keys, result.threshold, names, result, ENVELOPE,
                                    "the run directory", every_key=given,
                                    persons=found.persons if found is not None else None)
        result.who = found.who(verified) if found is not None else []
        check_tokens(run_dir, ENVELOPE, envelope, result.signed, list(tsa_roots or []), names,
                     result)
    else:
        result.checked.append("signatures: not checked (no readable envelope)")

    # 4. the directory's name against the signed run id
    _check_name(run_dir, result.signed, allow_rename, result)

    # 5. statement.json against the signed payload
    statement = _check_statement(run_dir, payload, statement, result)

    # 6-8. files
    if isinstance(statement, dict) and isinstance(statement.get("subject"), list):
        check_files(run_dir, statement["subject"], result)
    else:
        result.checked.append("files: not checked (no usable statement)")
    return result


def _check_statement(run_dir: Path, payload: bytes | None, statement: Any,
                     result: VerifyResult) -> Any:
    """statement.json is exactly the signed payload; without a readable envelope it is only
    used to name the files that differ (the statement returned then is its own)."""
    statement_path = run_dir / STATEMENT
    if statement_path.is_symlink() or (statement_path.exists() and not statement_path.is_file()):
        result.problems.append(f"{STATEMENT} is not a regular file")
    elif not statement_path.exists():
        result.problems.append(f"{STATEMENT} is missing")
    else:
        try:
            on_disk = statement_path.read_bytes()
        except OSError as exc:
            on_disk = None
            result.problems.append(f"{STATEMENT} is unreadable ({exc.strerror or exc})")
        if on_disk is None:
            pass
        elif payload is None:
            result.checked.append(f"{STATEMENT}: UNSIGNED, used only to name files that differ")
            statement = parse_statement(on_disk, f"{STATEMENT} (unsigned)", result,
                                        SIGNED_NAMES)
        elif on_disk == payload:
            result.checked.append(f"{STATEMENT}: identical to the signed payload")
        else:
            result.problems.append(f"{STATEMENT} differs from the signed payload in {ENVELOPE} "
                            "(edited after signing)")
            result.checked.append(f"{STATEMENT}: DIFFERS from the signed payload")
    return statement


def _self_contained(statement: Any, result: VerifyResult) -> None:
    """A run's signed statement (one that signs its evidence.json) names the profile, the plan,
    the journal's rows and the signers' keys inside the bundle (keyparity.attest.contents)."""
    if result.signed is not None and isinstance(statement, dict) and statement.get(
            "predicateType") == PREDICATE_TYPE and "evidence_sha256" in result.signed:
        subjects = {s["name"] for s in statement.get("subject") or []}
        result.problems += [f"the bundle is not self-contained: the signed statement lacks "
                            f"{what}" for what in contents.missing(result.signed, subjects)]


def _signed_predicate(payload: bytes, result: VerifyResult) -> dict | None:
    """The predicate of the signed payload; None when the payload is not a JSON object (which
    parse_statement reports) or has no predicate object (reported here)."""
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
        result.checked.append(f"run directory: named {show(name)}, as the signed run id")
        return
    if isinstance(run_id, str):
        what = (f"the directory is named {show(name)} but the signed run id is "
                f"{show(run_id)}")
        advice = (": a renamed or swapped run directory (pass --allow-rename if it was renamed "
                  "on purpose)")
    else:
        what = ("the signed statement has no run_id: a renamed or swapped run directory "
                "cannot be told apart")
        advice = " (pass --allow-rename to accept it)"
    if allow_rename:
        result.notes.append(f"{what}: accepted (--allow-rename)")
        result.checked.append(f"run directory: named {show(name)}, renames allowed")
    else:
        result.problems.append(what + advice)
        result.checked.append(f"run directory: named {show(name)}, NOT the signed run id")


def _signed_facts(signed: Mapping[str, Any]) -> list[str]:
    """What the custodians signed about the run, one line each, from the signed predicate."""
    lines = [f"signed run id: {show(signed.get('run_id'))}",
             f"signed profile: {show(signed.get('profile'))}",
             f"signed verdict: {show(signed.get('verdict'))}"]
    if "headline" in signed:
        lines.append(f"signed headline: {show(signed['headline'])}")
    lines.append(f"signed counts: {_counts(signed.get('summary'))}")
    plan = signed.get("plan")
    if isinstance(plan, dict):
        approvers = plan.get("approved_by")
        lines.append(f"signed plan: {show(plan.get('plan_id'))}, approved by "
                     + (", ".join(show(a) for a in approvers) if isinstance(approvers, list)
                        else show(approvers))
                     + f" (plan.json sha256 {show(plan.get('sha256'))})")
    return lines


def _counts(summary: Any) -> str:
    """``{"tests": {"passed": 97}, "keys": {"passed": 7}}`` as "tests 97 passed; keys 7 passed"."""
    if not (isinstance(summary, dict)
            and all(isinstance(summary.get(k), dict) for k in ("tests", "keys"))):
        return show(summary)
    return "; ".join(
        f"{what} " + (", ".join(f"{show(n)} {show(outcome)}"
                                for outcome, n in summary[what].items()) or "none")
        for what in ("tests", "keys"))


def check_files(run_dir: Path, subjects: list[dict], result: Verification) -> None:
    """Every subject's SHA-256, none missing, no file that is not a subject."""
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
