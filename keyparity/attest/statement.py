"""The signed statement of a run directory: an in-toto Statement v1 whose subjects are every
file of the run, each with its SHA-256, wrapped in a DSSE envelope signed by the custodians.

    reports/<run-id>/statement.json      the statement, exactly the bytes that were signed
    reports/<run-id>/evidence.dsse.json  the DSSE envelope: payload (the same bytes), one
                                         signature per custodian (dual control)

``keyparity verify`` (keyparity.attest.verify) checks both offline with the custodians' public keys.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from securesystemslib.dsse import Envelope
from securesystemslib.signer import Signer

from .. import atomic
from ..profile import TimestampSpec
from .acknowledgement import ACKS
from .digest import sha256_file
from .envelope import (PAYLOAD_TYPE, STATEMENT_TYPE, EvidenceError, add_signature, canonical_json,
                       signer_name)
from .timestamp import stamp_envelope, tokens_name, write_tokens

__all__ = [
    "ENVELOPE", "PAYLOAD_TYPE", "PREDICATE_TYPE", "STATEMENT", "STATEMENT_TYPE", "TOKENS",
    "EvidenceError", "add_signature", "build_statement", "canonical_json", "sign_run", "signer_info",
    "sha256_file", "subjects", "walk",
]

STATEMENT = "statement.json"
ENVELOPE = "evidence.dsse.json"
PREDICATE_TYPE = "https://keyparity.dev/evidence/v1"
TOKENS = tokens_name(ENVELOPE)  # the RFC 3161 tokens over the signatures (attest.timestamp)
# at the top of the run directory only: what signs the statement cannot be a subject of it
SIGNED_NAMES = frozenset({STATEMENT, ENVELOPE, ACKS, TOKENS})


def walk(run_dir: Path) -> Iterator[tuple[str, str]]:
    """Every entry below ``run_dir`` that is not a directory, as (POSIX relative name, kind).

    kind is "file", "symlink" (to anything, directories included: never followed) or
    "special" (FIFO, socket, device). The top-level STATEMENT, ENVELOPE and ACKS are left out.
    Raises FileNotFoundError / NotADirectoryError for a missing run directory.
    """
    root = Path(run_dir)
    if not root.is_dir():
        if root.exists():
            raise NotADirectoryError(f"not a directory: {root}")
        raise FileNotFoundError(f"run directory not found: {root}")
    stack = [""]
    while stack:
        prefix = stack.pop()
        with os.scandir(root / prefix if prefix else root) as entries:
            for entry in entries:
                name = f"{prefix}/{entry.name}" if prefix else entry.name
                if not prefix and entry.name in SIGNED_NAMES:
                    continue
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISLNK(mode):
                    yield name, "symlink"
                elif stat.S_ISDIR(mode):
                    stack.append(name)
                elif stat.S_ISREG(mode):
                    yield name, "file"
                else:
                    yield name, "special"


def subjects(run_dir: Path) -> list[dict]:
    """The in-toto subjects of a run directory: every file, recursively, dotfiles included,
    except the top-level STATEMENT and ENVELOPE; sorted by name.

    A symlink or a special file is refused (EvidenceError): what it points to is not part of
    the run directory, and signing it would let the evidence change after signing.
    """
    root = Path(run_dir)
    out = []
    for name, kind in walk(root):
        if kind != "file":
            what = "a symlink" if kind == "symlink" else "not a regular file"
            raise EvidenceError(f"cannot sign {root}: {name} is {what}; the evidence bundle "
                                "may hold regular files and directories only")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise EvidenceError(f"cannot sign {root}: file name {name!r} is not valid UTF-8"
                                ) from None
        out.append({"name": name, "digest": {"sha256": sha256_file(root / name)}})
    out.sort(key=lambda s: s["name"])
    return out


def build_statement(run_dir: Path, predicate: dict,
                    predicate_type: str = PREDICATE_TYPE) -> dict:
    """An in-toto Statement v1 over every file of the run directory."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects(run_dir),
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def signer_info(signers: list[Signer]) -> list[dict[str, str]]:
    """Who signs (name, key id, scheme): for the caller to put into the predicate if wanted."""
    return [{"name": signer_name(s), "keyid": s.public_key.keyid, "scheme": s.public_key.scheme}
            for s in signers]


def sign_run(run_dir: Path, signers: list[Signer], predicate: dict,
             predicate_type: str = PREDICATE_TYPE,
             timestamp: TimestampSpec | None = None) -> Path:
    """Sign a run directory: write STATEMENT (the payload bytes) and ENVELOPE (DSSE, one
    signature per signer); returns the envelope's path.

    Every signature is checked against its signer's public key before anything is written, so
    a signer whose public and private key do not belong together fails here, not at an
    auditor's desk. With no signers the envelope has no signatures (and verify fails:
    unsigned). ``timestamp``: the TSA that stamps each signature (TOKENS), before anything is
    written. When a signer or the TSA fails, nothing is written.
    """
    run_dir = Path(run_dir)
    payload = canonical_json(build_statement(run_dir, predicate, predicate_type))
    envelope = Envelope(payload, PAYLOAD_TYPE, {})
    seen: dict[str, str] = {}
    for signer in signers:
        name = signer_name(signer)
        keyid = signer.public_key.keyid
        if keyid in seen:
            raise EvidenceError(f"evidence signers {seen[keyid]} and {name} use the same key "
                                f"(keyid {keyid[:16]}); dual control needs distinct keys")
        seen[keyid] = name
        add_signature(envelope, signer)
    tokens = stamp_envelope(envelope, timestamp) if timestamp and envelope.signatures else None
    atomic.write(run_dir / STATEMENT, payload)
    shutil.rmtree(run_dir / ACKS, ignore_errors=True)  # a new statement: none acknowledged yet
    if tokens is not None:
        write_tokens(run_dir, ENVELOPE, tokens)
    else:
        (run_dir / TOKENS).unlink(missing_ok=True)  # a token over an earlier signature
    path = run_dir / ENVELOPE
    atomic.write(path, (json.dumps(envelope.to_dict(), indent=2) + "\n").encode("utf-8"))
    return path


def certificate_record(signer: Signer) -> dict | None:
    """Who the signer's certificate (``certificate:`` in the profile) names, or None."""
    cert = getattr(signer, "certificate", None)
    if cert is None:
        return None
    from .identities import identity_of
    return identity_of(cert).record()

