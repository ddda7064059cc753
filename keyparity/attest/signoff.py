"""Signed approvals of what the profile alone may not decide: a wrap exception (keys carried
by a wrapping chain weaker than they are, keyparity.strength) and the non-FIPS approval (keys
moving from a FIPS to a NON_FIPS cluster). ``keyparity approve`` makes one, signed by the
approver's own key; the profile lists the approvers' public keys (``compliance.approvers``)
and the approvals (``compliance.approvals``); each is verified before the run starts.

An approval is a DSSE envelope (payload type PAYLOAD_TYPE) over one JSON document:

    kind          wrap-exception | non-fips
    profile       the profile's name
    approver      the name of the approver whose key signed it (compliance.approvers)
    date          YYYY-MM-DD, the day it was approved
    reason, ticket
    wrap-exception:  wrapping (rsa_bits, oaep_hash, aes_bits, strength) and keys (label, type,
                     size, curve, strength): what was approved, compared with the profile
    non-fips:        risk_assessment, compensating_controls, scope (source, target, target
                     mode, every key moving), tdea_end_date, target_certification

It binds to the keys and the wrapping it names, not to the profile's digest (the profile names
the approval, so its digest changes when the approval is added): an approval no longer matching
the profile (another key type or size, another chain) covers nothing.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import atomic, strength
from ..errors import KeyparityError
from ..policy import is_fips_to_non_fips
from ..profile import KeySpec, Profile

if TYPE_CHECKING:
    from securesystemslib.signer import Key, Signer

# securesystemslib (~0.65 s to import) is imported where an approval is signed or read: a
# profile without approvals does not pay for it when the run starts

__all__ = ["KINDS", "PAYLOAD_TYPE", "Signoffs", "SignoffError", "draft", "is_fips_to_non_fips",
           "load", "moving", "non_fips_errors", "write"]

PAYLOAD_TYPE = "application/vnd.keyparity.approval+json"
TYPE = "https://keyparity.dev/approval/v1"
WRAP, NON_FIPS = "wrap-exception", "non-fips"
KINDS = (WRAP, NON_FIPS)
_REQUIRED = {WRAP: ("reason", "ticket", "wrapping", "keys"),
             NON_FIPS: ("reason", "ticket", "risk_assessment", "compensating_controls", "scope",
                        "tdea_end_date", "target_certification")}
FIELD = "compliance.approvals"


class SignoffError(KeyparityError):
    """An approval cannot be made, or does not verify."""


def moving(profile: Profile) -> list[KeySpec]:
    """The keys the run moves to the target (a rotate key is made anew there)."""
    return [k for k in profile.keys if k.disposition != "rotate"]


def _date(value: str, what: str) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise SignoffError(f"{what}: {value!r} is not a date (YYYY-MM-DD)") from None


def draft(profile: Profile, kind: str, approver: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The approval document of ``kind`` for ``profile``, from the approver's ``fields``
    (reason, ticket, date; non-fips: risk_assessment, compensating_controls,
    target_certification, tdea_end_date; wrap-exception: keys, the labels it covers - by
    default every key the chain is weaker than)."""
    if approver not in profile.approvers:
        raise SignoffError(f"{profile.path}: compliance.approvers: no approver {approver!r} "
                           "(add its name and public key)")
    doc: dict[str, Any] = {"_type": TYPE, "kind": kind, "profile": profile.name,
                           "approver": approver, "reason": fields.get("reason"),
                           "ticket": fields.get("ticket"),
                           "date": _date(fields.get("date") or dt.date.today().isoformat(),
                                         "--date")}
    if kind == WRAP:
        labels = fields.get("keys") or [k.label for k in moving(profile)
                                       if strength.weaker(k, profile.wrapping)]
        unknown = sorted(set(labels) - {k.label for k in profile.keys})
        if unknown or not labels:
            raise SignoffError(f"{profile.name}: no key to except: " + (
                f"not in the profile: {', '.join(unknown)}" if unknown else
                "the wrapping chain is at least as strong as every key"))
        doc["wrapping"] = _wrapping(profile)
        doc["keys"] = [strength.key_record(profile.key(label)) for label in labels]
    elif kind == NON_FIPS:
        if profile.target is None or profile.source is None:
            raise SignoffError(f"{profile.name}: a non-FIPS approval is for a migration")
        doc.update(risk_assessment=fields.get("risk_assessment"),
                   compensating_controls=list(fields.get("compensating_controls") or []),
                   target_certification=fields.get("target_certification"),
                   tdea_end_date=_date(fields.get("tdea_end_date") or strength.TDEA_END,
                                       "--tdea-end-date"),
                   scope={"source": profile.source.name, "target": profile.target.name,
                          "target_mode": profile.target.mode,
                          "keys": [k.label for k in moving(profile)]})
    else:
        raise SignoffError(f"--kind {kind}: one of {', '.join(KINDS)}")
    missing = [f for f in _REQUIRED[kind] if doc.get(f) in (None, "", [])]
    if missing:
        raise SignoffError(f"a {kind} approval needs: {', '.join(missing)}")
    return doc


def _wrapping(profile: Profile) -> dict[str, Any]:
    chain = strength.chain_of(profile.wrapping)
    return {k: v for k, v in chain.record().items() if k != "parts"}


def write(doc: Mapping[str, Any], signer: Signer, public_key: Key, out: Path) -> Path:
    """The approval signed by ``signer``, whose key must be the approver's (``public_key``),
    written to ``out`` (refused when it exists)."""
    if signer.public_key.keyid != public_key.keyid:
        raise SignoffError(f"the signing key (keyid {signer.public_key.keyid[:16]}) is not "
                           f"approver {doc['approver']}'s (keyid {public_key.keyid[:16]}, "
                           "compliance.approvers)")
    if out.exists():
        raise SignoffError(f"{out} exists; give another --out")
    from securesystemslib.dsse import Envelope

    from .envelope import add_signature, canonical_json
    envelope = Envelope(canonical_json(doc), PAYLOAD_TYPE, {})
    add_signature(envelope, signer)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write(out, (json.dumps(envelope.to_dict(), indent=2) + "\n").encode("utf-8"))
    return out


@dataclass(frozen=True)
class Verified:
    """One approval whose signature verified with its approver's key."""

    path: Path
    sha256: str  # of the envelope file
    keyid: str
    doc: Mapping[str, Any] = field(repr=False)

    def record(self) -> dict[str, Any]:
        return {"file": self.path.name, "sha256": self.sha256, "keyid": self.keyid,
                "signed": True, **{k: v for k, v in self.doc.items() if k != "_type"}}

    def reference(self) -> dict[str, Any]:
        """Which approval, by whom, why: a key's evidence points at the whole record."""
        return {"file": self.path.name, "sha256": self.sha256, "keyid": self.keyid,
                **{k: self.doc.get(k) for k in ("approver", "date", "ticket", "reason")}}


def read(path: Path, profile: Profile, where: str) -> Verified:
    """The approval at ``path``, its signature verified with the key of the approver it
    names (SignoffError naming ``where`` otherwise)."""
    from securesystemslib.dsse import Envelope

    from .envelope import verifies
    from .signing import public_key_from_pem
    try:
        raw = path.read_bytes()
        envelope = Envelope.from_dict(json.loads(raw))
        doc = json.loads(envelope.payload)
    except OSError as exc:
        raise SignoffError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SignoffError(f"{where}: {path} is not a signed approval ({exc})") from None
    if envelope.payload_type != PAYLOAD_TYPE or not isinstance(doc, dict) \
            or doc.get("_type") != TYPE or doc.get("kind") not in KINDS:
        raise SignoffError(f"{where}: {path} is not a keyparity approval")
    approver = doc.get("approver")
    key_path = profile.approvers.get(approver) if isinstance(approver, str) else None
    if key_path is None:
        raise SignoffError(f"{where}: {path} names approver {approver!r}, who is not in "
                           "compliance.approvers")
    try:
        key = public_key_from_pem(key_path.read_bytes())
    except (OSError, KeyparityError) as exc:
        raise SignoffError(f"{where}: approver {approver}'s public key {key_path}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    signature = envelope.signatures.get(key.keyid)
    if signature is None or not verifies(key, signature, envelope.pae()):
        raise SignoffError(f"{where}: {path} is not signed by approver {approver} (keyid "
                           f"{key.keyid[:16]}): " + ("no signature of that key" if signature
                                                      is None else "the signature does not "
                                                      "verify (changed after signing?)"))
    if doc.get("profile") != profile.name:
        raise SignoffError(f"{where}: {path} approves profile {doc.get('profile')!r}, not "
                           f"{profile.name!r}")
    return Verified(path, hashlib.sha256(raw).hexdigest(), key.keyid, doc)


@dataclass(frozen=True)
class Signoffs:
    """The profile's verified approvals."""

    items: tuple[Verified, ...] = ()

    def of(self, kind: str) -> list[Verified]:
        return [v for v in self.items if v.doc["kind"] == kind]

    @cached_property
    def _excepted(self) -> dict[str, list[tuple[Verified, Any]]]:
        """label -> (the wrap exception, its entry for that label), each exception's first
        entry per label: asked once per key, so a look-up, not a scan of every exception."""
        out: dict[str, list[tuple[Verified, Any]]] = {}
        for v in self.of(WRAP):
            seen: set[str] = set()
            for entry in v.doc.get("keys", []):
                label = entry.get("label") if isinstance(entry, dict) else None
                if isinstance(label, str) and label not in seen:
                    seen.add(label)
                    out.setdefault(label, []).append((v, entry))
        return out

    def exception(self, spec: KeySpec, profile: Profile) -> tuple[Verified | None, str | None]:
        """The wrap exception covering ``spec`` under the profile's chain, or why none does."""
        why = None
        for v, entry in self._excepted.get(spec.label, []):
            if entry != strength.key_record(spec):
                why = (f"{v.path.name} excepts {spec.label!r} as {_shown(entry)}; the profile "
                       f"says {_shown(strength.key_record(spec))}")
            elif v.doc.get("wrapping") != _wrapping(profile):
                why = (f"{v.path.name} excepts the chain {_shown(v.doc.get('wrapping'))}; the "
                       f"profile's is {_shown(_wrapping(profile))}")
            else:
                return v, None
        return None, why


    def wrap_check(self, spec: KeySpec, profile: Profile, *, refused: str = ""
                   ) -> tuple[bool, Verified | None, str | None]:
        """Whether the profile's chain is weaker than ``spec``, the signed exception covering
        it (None: none needed, or none does), and the failure message when the key may not be
        wrapped (None: it may), ``refused`` said after the shortfall. The one rule the
        preflight test and the migration ask."""
        if not strength.weaker(spec, profile.wrapping):
            return False, None, None
        found, why = self.exception(spec, profile)
        if found is not None:
            return True, found, None
        return True, None, (f"{strength.shortfall(spec, profile.wrapping)}; {refused}"
                            + (why or "no signed wrap exception covers it (keyparity approve "
                                      "PROFILE --kind wrap-exception)"))

    def refusal(self, spec: KeySpec, profile: Profile) -> str | None:
        """Why ``spec`` may not be wrapped under the profile's chain, or None: asked by the
        migration before the key's write, so that a key its preflight fails for this is never
        wrapped by the weaker chain."""
        return self.wrap_check(spec, profile, refused="not wrapped: ")[2]


def _shown(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def load(profile: Profile) -> Signoffs:
    """Every approval of the profile, verified (SignoffError for the first that is not)."""
    return Signoffs(tuple(read(path, profile, f"{profile.path}: {FIELD}[{i}]")
                          for i, path in enumerate(profile.approvals)))


def non_fips_errors(profile: Profile, signoffs: Signoffs) -> list[str]:
    """What the non-FIPS rule refuses: a FIPS -> NON_FIPS move needs an approval - signed in
    production (a plain compliance.acknowledge_non_fips is accepted in test, and the evidence
    says it is unsigned) - whose scope is the run's target and every key moving to it."""
    if not is_fips_to_non_fips(profile):
        return []
    assert profile.source is not None and profile.target is not None
    signed = signoffs.of(NON_FIPS)
    where = f"{profile.path}: {FIELD}"
    if not signed:
        if profile.environment == "production":
            return [f"{where}: a production move from {profile.source.name} (FIPS) to "
                    f"{profile.target.name} (NON_FIPS) needs a non-FIPS approval signed by its "
                    "approver (keyparity approve PROFILE --kind non-fips); a plain "
                    "compliance.acknowledge_non_fips is accepted in test only"]
        if profile.acknowledge_non_fips is None:
            return [f"{profile.path}: compliance.acknowledge_non_fips: required: keys move from "
                    f"{profile.source.name} (FIPS) to {profile.target.name} (NON_FIPS), which "
                    "changes the compliance posture; add compliance.acknowledge_non_fips with "
                    "reason and approver (ticket and date optional), or a signed approval"]
        return []
    errors = []
    for v in signed:
        scope = v.doc.get("scope") or {}
        if scope.get("target") != profile.target.name:
            errors.append(f"{where}: {v.path.name} approves a move to {scope.get('target')!r}, "
                          f"not to {profile.target.name!r}")
        left = [k.label for k in moving(profile) if k.label not in scope.get("keys", [])]
        if left:
            errors.append(f"{where}: {v.path.name}'s scope leaves out {len(left)} key(s) moving "
                          f"to {profile.target.name} (NON_FIPS): {', '.join(left)}; every key "
                          "of the run moves to the non-FIPS cluster, not only the 3DES ones: "
                          "have the approval made again for the whole scope")
    return errors


def compliance_record(profile: Profile, signoffs: Signoffs) -> dict[str, Any]:
    """The approvals in the evidence's ``compliance``: the non-FIPS approval (signed, or the
    plain acknowledgement marked unsigned), the wrap exceptions, and the two-key TDEA keys,
    flagged."""
    out: dict[str, Any] = {}
    signed = signoffs.of(NON_FIPS)
    if signed:
        out["non_fips_approval"] = signed[0].record()
    elif is_fips_to_non_fips(profile) and profile.acknowledge_non_fips is not None:
        out["non_fips_approval"] = {"signed": False, **dict(profile.acknowledge_non_fips),
                                    "note": "unsigned: a plain acknowledgement, accepted in "
                                            f"{profile.environment} only"}
    out["wrap_exceptions"] = [v.record() for v in signoffs.of(WRAP)]
    out["tdea_2key"] = [{"label": k.label, "flag": strength.TDEA_2KEY}
                        for k in moving(profile) if k.type == "des2"]
    return out
