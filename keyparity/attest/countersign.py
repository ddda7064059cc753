"""``keyparity sign RUN_DIR --signer NAME``: one custodian's countersignature, made apart on
their own machine, of a bundle the operator signed (a run's, or a retirement record's).

The countersignature covers exactly the payload already in the envelope (the statement over
every file): it is added to evidence.dsse.json as ``keyparity plan sign`` adds one to a plan's.
It is refused unless every file of the directory is what the statement names (a bundle changed
since it was signed is never countersigned), and unless the signer is one the statement names
(its key id among the signed contents' keys, when the bundle lists them). The signer's
acknowledgement reference (``--ack``) and certificate go into their own acknowledgement,
signed by the same key (keyparity.attest.acknowledgement).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer

from .. import atomic
from ..profile import TimestampSpec
from .acknowledgement import acknowledge
from .envelope import (EvidenceError, Verification, add_signature, parse_statement,
                       read_envelope, show, signer_name, verifies)
from .statement import ENVELOPE, SIGNED_NAMES, STATEMENT, certificate_record
from .timestamp import add_tokens, write_tokens
from .verify import check_files

__all__ = ["countersign"]


def countersign(run_dir: Path, signer: Signer, ack: str | None,
                timestamp: TimestampSpec | None = None) -> str:
    """Add ``signer``'s signature to RUN_DIR's envelope and its acknowledgement; returns what
    was done, one line. EvidenceError when the bundle is not as signed. ``timestamp``: the
    TSA that stamps the new signature (attest.timestamp), the earlier tokens kept."""
    run_dir = Path(run_dir)
    probe = Verification(run_dir=run_dir, threshold=0)
    envelope, payload = read_envelope(run_dir, probe, ENVELOPE, "the bundle")
    statement = None if payload is None else parse_statement(
        payload, f"signed payload of {ENVELOPE}", probe, SIGNED_NAMES)
    if envelope is None or payload is None or not isinstance(statement, dict):
        raise EvidenceError(f"{run_dir} is not a signed bundle: " + "; ".join(probe.problems))
    try:
        on_disk = (run_dir / STATEMENT).read_bytes()
    except OSError:
        on_disk = None
    if on_disk != payload:
        probe.problems.append(f"{STATEMENT} differs from the signed payload")
    check_files(run_dir, statement["subject"], probe)
    if probe.problems:
        raise EvidenceError(f"{run_dir} is not what was signed, not countersigned: "
                            + "; ".join(probe.problems[:5]))
    predicate: dict[str, Any] = statement.get("predicate") or {}
    _require_named(predicate, signer)
    name = signer_name(signer)
    keyid = signer.public_key.keyid
    old = envelope.signatures.get(keyid)
    if old is not None and verifies(signer.public_key, old, envelope.pae()):
        return f"{run_dir / ENVELOPE} holds a signature by {name} already; unchanged"
    add_signature(envelope, signer)
    tokens = add_tokens(run_dir, ENVELOPE, envelope, timestamp, fresh=(keyid,))
    acknowledge(run_dir, payload, signer, ack, certificate_record(signer))
    atomic.write(run_dir / ENVELOPE,
                 (json.dumps(envelope.to_dict(), indent=2) + "\n").encode("utf-8"))
    if tokens is not None:
        write_tokens(run_dir, ENVELOPE, tokens)
    return (f"countersigned {show(predicate.get('run_id'))} (signed verdict "
            f"{show(predicate.get('verdict'))}) as {name}"
            + (f", acknowledgement {ack}" if ack else ", no acknowledgement reference")
            + f": {len(envelope.signatures)} signature(s) now")


def _require_named(predicate: dict[str, Any], signer: Signer) -> None:
    """A bundle that lists its signers' keys is countersigned only by one of them."""
    contents = predicate.get("contents")
    listed = contents.get("signers") if isinstance(contents, dict) else None
    if not isinstance(listed, list):
        return
    keyids = {s.get("keyid") for s in listed if isinstance(s, dict)}
    if signer.public_key.keyid not in keyids:
        raise EvidenceError(f"{signer_name(signer)}'s key (keyid "
                            f"{signer.public_key.keyid[:16]}) is not one of the signers the "
                            "bundle names; not countersigned")
