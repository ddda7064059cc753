"""Each signer's own statement beside a signed bundle: who signed, when, under which
acknowledgement reference (a ticket, a signed form's id), and the certificate that names them.

A countersignature covers exactly the payload the operator signed (the bundle's statement), so
what is personal to one signer cannot be in it. It goes into a statement of its own, signed by
the same key, whose one subject is that payload (its SHA-256):

    DIR/acknowledgements/<signer>.dsse.json   DSSE envelope around an in-toto Statement v1,
                                              predicate type ACK_TYPE

The directory is not a subject of the bundle's statement (it is written after it); ``keyparity
verify`` checks each file in it: signed by the key it names, over this bundle's payload. Those
who sign in the process that makes the bundle write none: the statement they sign says who
they are and when (``signed_by``, ``signed_at``).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from securesystemslib.dsse import Envelope
from securesystemslib.signer import Signer

from .. import atomic
from .envelope import PAYLOAD_TYPE, STATEMENT_TYPE, add_signature, canonical_json, signer_name

__all__ = ["ACKS", "ACK_TYPE", "acknowledge", "ack_path"]

ACKS = "acknowledgements"
ACK_TYPE = "https://keyparity.dev/acknowledgement/v1"
SIGNED = "statement.json"  # the bundle's statement: what every signature covers
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def ack_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / ACKS / f"{_SAFE.sub('_', name)}.dsse.json"


def acknowledge(run_dir: Path, payload: bytes, signer: Signer, ack: str | None,
                certificate: dict[str, Any] | None, at: dt.datetime | None = None) -> Path:
    """Write ``signer``'s acknowledgement of the bundle whose signed payload is ``payload``."""
    at = at or dt.datetime.now(dt.timezone.utc)
    name = signer_name(signer)
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": SIGNED, "digest": {"sha256": hashlib.sha256(payload).hexdigest()}}],
        "predicateType": ACK_TYPE,
        "predicate": {"signer": name, "keyid": signer.public_key.keyid, "ack": ack,
                      "signed_at": at.isoformat(timespec="seconds"),
                      "certificate": certificate},
    }
    envelope = Envelope(canonical_json(statement), PAYLOAD_TYPE, {})
    add_signature(envelope, signer)
    path = ack_path(run_dir, name)
    path.parent.mkdir(exist_ok=True)
    atomic.write(path, (json.dumps(envelope.to_dict(), indent=2) + "\n").encode("utf-8"))
    return path
