"""Who signed a bundle, as ``keyparity verify`` reports it: each signer's acknowledgement
(keyparity.attest.acknowledgement) checked, each certificate checked to bind its key to a
person (keyparity.attest.identities), and the person behind each key, so that the threshold
counts people: two keys of one person count once.

Trust comes from the verifier: the keys it gives (``--key``, a public key or a certificate),
and the CAs it gives (``--ca``), which make the certificates inside the bundle
(``signers/<name>.pem``, signed subjects) usable as keys. A certificate names a person only
when it chains to a CA given; without ``--ca`` a key is named by its signer's name and key id.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from securesystemslib.signer import Key

from . import identities
from .acknowledgement import ACK_TYPE, ACKS
from .envelope import Verification, parse_statement, read_envelope, show, verifies

__all__ = ["Signatories", "examine", "load_trust"]


@dataclass
class Signatories:
    """Keys to check the envelope with (the caller's and the bundle's certified ones), their
    names, the person behind each (key id -> subject) and each signer's acknowledgement."""

    keys: list[Key]
    names: dict[str, str]
    persons: dict[str, str] = field(default_factory=dict)
    shown: dict[str, str] = field(default_factory=dict)  # key id -> the person as printed
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)  # key id -> predicate
    signed_at: Any = None  # when the bundle's own process signed it (its signed predicate)

    def who(self, verified: Sequence[str]) -> list[str]:
        """One line per key whose signature verified: the signer, the person, the ack."""
        out = []
        for keyid in verified:
            ack = self.acks.get(keyid, {})
            person = self.shown.get(keyid, "no certificate checked: a key, not a person")
            at = ack.get("signed_at") or self.signed_at
            out.append(f"{self.names.get(keyid, 'unnamed')}: {person} (keyid {keyid[:16]}; "
                       f"ack {show(ack.get('ack')) if ack.get('ack') else 'none'}; signed at "
                       f"{show(at) if at else 'not stated'})")
        return out


def examine(run_dir: Path, payload: bytes, signed: Mapping[str, Any] | None, keys: list[Key],
            names: Mapping[str, str], certificates: Mapping[str, x509.Certificate],
            cas: list[x509.Certificate] | None, result: Verification) -> Signatories:
    """The signatories of a bundle whose signed payload is ``payload``; problems recorded in
    ``result`` (a certificate that does not bind its key, an acknowledgement that is not the
    signer's or not of this payload)."""
    found = Signatories(list(keys), dict(names), signed_at=(signed or {}).get("signed_at"))
    certs = dict(certificates)
    _bundle_certificates(run_dir, signed, cas, found, certs, result)
    _acknowledgements(run_dir, payload, found, result)
    for key in found.keys:
        cert = certs.get(key.keyid)
        if cert is None:
            continue
        who = found.names.get(key.keyid, f"keyid {key.keyid[:16]}")
        if cas is None:
            result.notes.append(f"the certificate of {who} was not checked against a CA (give "
                                "--ca): it names no person")
            continue
        at = _signed_at(found.acks.get(key.keyid) or {"signed_at": found.signed_at})
        wrong = identities.binding_problems(cert, key, at, cas)  # type: ignore[arg-type]
        if wrong:
            result.problems += [f"{who}: {p}" for p in wrong]
            continue
        identity = identities.identity_of(cert)
        found.persons[key.keyid] = identity.subject
        found.shown[key.keyid] = f"{identity.shown()} (certificate by {identity.issuer})"
    return found


def _bundle_certificates(run_dir: Path, signed: Mapping[str, Any] | None,
                         cas: list[x509.Certificate] | None, found: Signatories,
                         certs: dict[str, x509.Certificate], result: Verification) -> None:
    """The signers' certificates inside the bundle, named by the signed contents: each one
    issued by a CA given becomes a key to check with."""
    contents = (signed or {}).get("contents")
    entries = contents.get("signers") if isinstance(contents, dict) else None
    known = {k.keyid for k in found.keys}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("kind") != "certificate":
            continue
        name, file = str(entry.get("name")), str(entry.get("file"))
        try:
            cert = identities.load_certificates((run_dir / file).read_bytes(), file)[0]
            key = identities.key_of(cert)
        except (OSError, identities.CertificateError):
            continue  # a missing or changed subject: the file checks say so
        found.names.setdefault(key.keyid, name)
        certs.setdefault(key.keyid, cert)
        if key.keyid not in known and cas and identities.issued_by(cert, cas) is not None:
            found.keys.append(key)
            known.add(key.keyid)
            result.checked.append(f"signer {name}: certificate {file} issued by a CA given")


def _acknowledgements(run_dir: Path, payload: bytes, found: Signatories,
                      result: Verification) -> None:
    folder = run_dir / ACKS
    if not folder.is_dir():
        return
    digest = hashlib.sha256(payload).hexdigest()
    by_id = {k.keyid: k for k in found.keys}
    for path in sorted(folder.iterdir()):
        name = f"{ACKS}/{path.name}"
        probe = Verification(run_dir=run_dir, threshold=0)
        envelope, raw = read_envelope(folder, probe, path.name, name)
        statement = None if raw is None else parse_statement(raw, name, probe)
        if probe.problems or envelope is None or not isinstance(statement, dict):
            result.problems.append(f"{name}: not a signer's acknowledgement: "
                                   + "; ".join(probe.problems))
            continue
        predicate = statement.get("predicate") if isinstance(statement.get("predicate"),
                                                               dict) else {}
        keyid = predicate.get("keyid")
        key = by_id.get(keyid)  # type: ignore[arg-type]
        if statement.get("predicateType") != ACK_TYPE or key is None:
            result.notes.append(f"{name}: by a key not given (keyid {show(keyid)[:16]}); "
                                "not read")
            continue
        signature = envelope.signatures.get(key.keyid)
        if signature is None or not verifies(key, signature, envelope.pae()):
            result.problems.append(f"{name}: NOT signed by the key it names (keyid "
                                   f"{key.keyid[:16]})")
            continue
        if [s["digest"]["sha256"] for s in statement["subject"]] != [digest]:
            result.problems.append(f"{name}: acknowledges another statement, not this "
                                   "bundle's signed payload")
            continue
        found.acks[key.keyid] = predicate


def _signed_at(ack: Mapping[str, Any] | None) -> dt.datetime:
    """When the key signed, as its own acknowledgement (or the signed statement of the process
    that signed it) says; now when neither says."""
    try:
        return dt.datetime.fromisoformat(str((ack or {})["signed_at"]))
    except (KeyError, ValueError):
        return dt.datetime.now(dt.timezone.utc)


def load_trust(paths: Sequence[str]) -> list[x509.Certificate]:
    """The CA certificates of ``--ca`` files (a file may hold several)."""
    out: list[x509.Certificate] = []
    for path in paths:
        out += identities.load_certificates(Path(path).read_bytes(), path)
    return out

