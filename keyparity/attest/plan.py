"""The signed migration plan (dual control before the writes): what a run is about to do,
written from the source before anything is written, and approved by the custodians.

    DIR/plan.json        the plan: target cluster, wrapping parameters, per key its source
                         label, type, size or curve, a commitment to its key material made by
                         the source token (keyparity.hsm.proof: the SHA-256 of >= 128 bits of
                         output over a random challenge stored with it, or a pair's public
                         key), its 3-byte KCV for people to read, target label, the exact
                         template C_UnwrapKey will be given, its disposition; and the census
                         of the source
    DIR/plan.dsse.json   a DSSE envelope around an in-toto Statement v1 whose one subject is
                         plan.json (SHA-256), predicate type PREDICATE_TYPE; one signature per
                         custodian who approved it

``write_plan`` makes both (``keyparity plan``; one login to the source, nothing written to any
token), ``sign_plan`` adds one custodian's signature (``keyparity plan sign``), and
``verify_plan`` checks the signatures against a threshold and every digest (``keyparity plan
verify``). The DSSE and statement pieces are keyparity.attest.statement's and verify's.

The unwrap template is built by the migration backend's own code (keyparity.backends:
``hsm.backend.unwrap_record`` for PKCS #11, ``cloudhsm.backend.unwrap_record`` for the CLI), from
the source key's attributes as the migration reads them; python-pkcs11's DEFAULT entries are
left out, as they are of what is sent. On a CloudHSM target it shows what CloudHSM takes at
unwrap and what is set right after it (C_SetAttributeValue, or ``key set-attribute``); with the
CLI also the user who unwraps (and so owns) the key, its ``--share-crypto-users``, and the key
quorum values ``key unwrap`` will carry, read from the source through the CLI
(``plan_reads``). Nothing secret is in the plan: no PIN (only the
profile's references), no key value.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pkcs11 import ObjectClass
from securesystemslib.dsse import Envelope
from securesystemslib.signer import Key, Signer

from .. import atomic
from ..backends import backend_for
from ..errors import KeyparityError, listed
from ..hsm import attributes, census, identity, keyinfo, proof
from ..hsm.cluster import ClusterSession, open_cluster
from ..hsm.locate import locate
from ..hsm.login import LoginGate
from ..keytypes import curve_name
from ..profile import Cluster, EvidenceSpec, KeySpec, Profile, TimestampSpec
from .envelope import (PAYLOAD_TYPE, STATEMENT_TYPE, Verification, add_signature, canonical_json,
                       check_signatures, parse_statement, read_envelope, required_signatures,
                       show, verifies)
from .statement import sha256_file
from .timestamp import add_tokens, check_tokens, time_source, tokens_name, write_tokens

__all__ = ["PLAN", "PLAN_ENVELOPE", "PREDICATE_TYPE", "PlanError", "PlanResult", "cluster_record",
           "draft", "planned_key", "sign_plan", "unwrap_record", "verify_plan", "wrapping_record",
           "write_plan"]

PLAN = "plan.json"
PLAN_ENVELOPE = "plan.dsse.json"
PREDICATE_TYPE = "https://keyparity.dev/plan/v2"
FORMAT = "keyparity-plan/2"
# v1 plans bound a 3-byte KCV: refused with this advice
OLD_PREDICATE_TYPES = ("https://keyparity.dev/plan/v1",)
_OLD = ("{where}: a plan of an earlier keyparity (plan/v1), which bound each key by a 3-byte "
        "KCV: make a new plan (keyparity plan) and have it signed again")


class PlanError(KeyparityError):
    """A plan cannot be made, signed or read as it is; the message says why."""


# ---- the plan ---------------------------------------------------------------------------------

def cluster_record(cluster: Cluster | None) -> dict[str, Any] | None:
    """A cluster as the plan names it: its name, mode, token, and its AWS cluster id."""
    if cluster is None:
        return None
    out: dict[str, Any] = {"name": cluster.name, "mode": cluster.mode,
                           "token_label": cluster.token_label, "slot": cluster.slot}
    if cluster.aws is not None:
        out["aws"] = {"cluster_id": cluster.aws.cluster_id, "region": cluster.aws.region}
    if cluster.hsm_type:
        out["hsm_type"] = cluster.hsm_type
    return out


def unwrap_record(profile: Profile, spec: KeySpec,
                  source_attributes: dict[str, Any]) -> dict[str, Any]:
    """What the migration's backend will give the target at unwrap, built by its own code."""
    return backend_for(profile).unwrap_record(profile, spec, source_attributes)


def planned_key(profile: Profile, src: ClusterSession, spec: KeySpec,
                planned: dict[str, Any] | None = None) -> dict[str, Any]:
    """One inventory key of the plan, read from the source as the migration reads it. Its
    ``identity`` is a fresh commitment (keyparity.hsm.proof), or, given the ``planned``
    commitment of a plan, that one once the key is proven to hold it (KeyMismatch or
    NotProvable otherwise)."""
    side = locate(src, spec, spec.label)
    if side is None:
        raise PlanError(f"{spec.label!r} ({spec.type}) not found on {src.name}")
    source_attributes = attributes.read_standard(side.key)
    facts = keyinfo.from_attributes(source_attributes)
    keyinfo.check(spec, facts, src.name)
    if planned is not None:
        proof.check(proof.Commitment.parse(planned), side)
        ident: dict[str, Any] | None = planned
    elif spec.disposition == "rotate":  # not moved, never destroyed: fixed where it can be
        try:
            ident = proof.commit(side).record()
        except proof.NotProvable:
            ident = None
    else:
        ident = proof.commit(side).record()
    out: dict[str, Any] = {
        "label": spec.label, "target_label": spec.target_label, "type": spec.type,
        "size": facts.size or spec.size, "curve": curve_name(spec.curve),
        "id": facts.id, "identity": ident, "kcv": _kcv(side, src.spec.mode == "FIPS"),
        "disposition": spec.disposition, "extractable": facts.extractable,
    }
    if spec.disposition == "rotate":
        out["action"] = "not migrated: marked rotate in the inventory"
        return out
    if facts.extractable is not True:
        raise PlanError(f"{spec.label!r} on {src.name} is not extractable "
                        "(CKA_EXTRACTABLE=false) and cannot be wrapped; mark it disposition: "
                        "rotate in the inventory")
    out["action"] = "wrap on the source, unwrap on the target"
    out.update(unwrap_record(profile, spec, source_attributes))
    return out


def _kcv(side: Any, fips: bool) -> str | None:
    """A secret key's 3-byte KCV, for the custodians to read (never checked: the commitment
    is); None where it cannot be computed (a 3DES key on a FIPS source: not asked)."""
    if side.key.object_class != ObjectClass.SECRET_KEY:
        return None
    try:
        return identity.kcv(side.key, side.cluster, fips).value
    except (KeyError, KeyparityError):
        return None


def wrapping_record(profile: Profile) -> dict[str, Any]:
    """The wrapping parameters as the plan names them."""
    w = profile.wrapping
    return {"mechanism": w.mechanism, "rsa_bits": w.rsa_bits, "oaep_hash": w.oaep_hash,
            "mgf": w.mgf, "aes_bits": w.aes_bits, "trusted": w.trusted}


def draft(profile: Profile, gate: LoginGate, tick: Callable[[], None] | None = None
          ) -> dict[str, Any]:
    """The plan of a migrate profile, read from its source (one login through ``gate``; nothing
    is written). PlanError naming every key that cannot be planned, and the census's
    unaccounted objects: a plan the run could not follow is not made."""
    if profile.single or profile.source is None or profile.target is None:
        raise PlanError(f"{profile.name} is a {profile.migration_mode} profile: a plan is for a "
                        "migration between two clusters")
    created = census.now()
    plan_id = f"plan-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    src = open_cluster(profile.source, profile.module_env, gate)
    keys, problems = [], []
    read = backend_for(profile).plan_reads(profile, gate)  # what only the backend reads
    for spec in profile.keys:
        try:
            keys.append(planned_key(profile, src, spec))
        except KeyparityError as exc:
            problems.append(str(exc))
        else:
            extra = read.get(spec.label, {})
            if isinstance(extra, str):
                problems.append(f"{spec.label!r}: {extra}")
            else:
                keys[-1].update(extra)
        if tick is not None:
            tick()
    entries, record = census.take_source(src.session, profile.source, profile, plan_id)
    problems += [f"unaccounted on {src.name}: {e.describe()} ({e.detail})"
                 for e in entries if e.disposition == census.UNACCOUNTED]
    if problems:
        raise listed(PlanError, f"no plan written: {len(problems)} problem(s)", problems)
    return {
        "format": FORMAT, "plan_id": plan_id, "created": created,
        "profile": {"name": profile.name, "path": str(profile.path), "sha256": profile.sha256,
                    "environment": profile.environment},
        "source": cluster_record(profile.source), "target": cluster_record(profile.target),
        "migration_backend": profile.migration_backend,
        "wrapping": wrapping_record(profile),
        "keys": keys, "census": record,
    }


def _predicate(plan: dict[str, Any], evidence: EvidenceSpec) -> dict[str, Any]:
    """What the custodians sign about the plan besides its digest: facts of no run."""
    return {"plan_id": plan["plan_id"], "profile": plan["profile"]["name"],
            "profile_sha256": plan["profile"]["sha256"], "source": plan["source"]["name"],
            "target": plan["target"], "created": plan["created"], "keys": len(plan["keys"]),
            "threshold": evidence.threshold, "time_source": time_source(evidence.timestamp)}


def write_plan(profile: Profile, out: Path, signers: list[Signer], gate: LoginGate,
               tick: Callable[[], None] | None = None) -> Path:
    """Draft the plan and write DIR/plan.json and DIR/plan.dsse.json, signed by ``signers``
    (none: an envelope without signatures, for the custodians to sign one by one). ``out``
    must not hold a plan already. Returns plan.json's path."""
    out = Path(out)
    if (out / PLAN).exists() or (out / PLAN_ENVELOPE).exists():
        raise PlanError(f"{out} holds a plan already; give another --out")
    plan = draft(profile, gate, tick)
    data = (json.dumps(plan, indent=2, sort_keys=True) + "\n").encode("utf-8")
    payload = canonical_json({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": PLAN, "digest": {"sha256": _sha256(data)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": _predicate(plan, profile.evidence),
    })
    envelope = Envelope(payload, PAYLOAD_TYPE, {})
    for signer in signers:
        if signer.public_key.keyid in envelope.signatures:
            raise PlanError(f"two evidence signers use the same key (keyid "
                            f"{signer.public_key.keyid[:16]}); dual control needs distinct keys")
        add_signature(envelope, signer)
    tokens = add_tokens(out, PLAN_ENVELOPE, envelope, profile.evidence.timestamp)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write(out / PLAN, data)
    _write_envelope(out, envelope, tokens)
    return out / PLAN


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_envelope(out: Path, envelope: Envelope, tokens: list[dict] | None) -> None:
    """The envelope, and the time-stamps of its signatures (None: no TSA)."""
    atomic.write(out / PLAN_ENVELOPE,
                 (json.dumps(envelope.to_dict(), indent=2) + "\n").encode("utf-8"))
    if tokens:
        write_tokens(out, PLAN_ENVELOPE, tokens)


# ---- one more signature -----------------------------------------------------------------------

def _signed_plan(plan_dir: Path) -> tuple[Envelope, dict[str, Any]]:
    """The plan's envelope and its signed predicate; PlanError unless plan.json is exactly
    the plan the statement names."""
    probe = Verification(run_dir=plan_dir, threshold=0)
    envelope, payload = read_envelope(plan_dir, probe, PLAN_ENVELOPE, "the plan")
    statement = None if payload is None else parse_statement(
        payload, f"signed payload of {PLAN_ENVELOPE}", probe)
    if probe.problems or envelope is None or not isinstance(statement, dict):
        raise PlanError(f"{plan_dir} is not a plan: " + "; ".join(probe.problems))
    if statement.get("predicateType") in OLD_PREDICATE_TYPES:
        raise PlanError(_OLD.format(where=plan_dir / PLAN_ENVELOPE))
    if statement.get("predicateType") != PREDICATE_TYPE or not isinstance(
            statement.get("predicate"), dict):
        raise PlanError(f"{plan_dir / PLAN_ENVELOPE} is not a plan's statement (predicateType "
                        f"{show(statement.get('predicateType'))})")
    signed = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    if set(signed) != {PLAN}:
        raise PlanError(f"{plan_dir / PLAN_ENVELOPE} names {sorted(signed)}, not {PLAN} alone")
    try:
        found = sha256_file(plan_dir / PLAN)
    except OSError as exc:
        raise PlanError(f"{plan_dir / PLAN} is unreadable ({exc.strerror or exc})") from None
    if found != signed[PLAN]:
        raise PlanError(f"{PLAN} no longer matches the statement in {PLAN_ENVELOPE} (sha256 "
                        f"signed {signed[PLAN][:16]}..., found {found[:16]}...): it changed "
                        "after the plan was made; not signed")
    return envelope, statement["predicate"]


def sign_plan(plan_dir: Path, signer: Signer, timestamp: TimestampSpec | None = None) -> str:
    """Add ``signer``'s signature to DIR/plan.dsse.json; returns what was done, one line.
    Refused (PlanError) when plan.json no longer has the digest the statement names. A
    signature of the same key that verifies is kept (nothing to do); one that does not is
    replaced. ``timestamp``: the TSA that stamps the new signature (attest.timestamp)."""
    plan_dir = Path(plan_dir)
    envelope, predicate = _signed_plan(plan_dir)
    keyid = signer.public_key.keyid
    name = getattr(signer, "name", None) or f"keyid {keyid[:16]}"
    old = envelope.signatures.get(keyid)
    if old is not None and verifies(signer.public_key, old, envelope.pae()):
        return f"{plan_dir / PLAN_ENVELOPE} holds a signature by {name} already; unchanged"
    add_signature(envelope, signer)
    tokens = add_tokens(plan_dir, PLAN_ENVELOPE, envelope, timestamp, fresh=(keyid,))
    _write_envelope(plan_dir, envelope, tokens)
    return (f"signed the plan {show(predicate.get('plan_id'))} ({show(predicate.get('keys'))} "
            f"keys of {show(predicate.get('profile'))} to "
            f"{show((predicate.get('target') or {}).get('name'))}) as {name}: "
            f"{len(envelope.signatures)} signature(s) now")


# ---- verification -----------------------------------------------------------------------------

@dataclass
class PlanResult(Verification):
    """What ``verify_plan`` found; ``ok`` when there is no problem."""

    plan_sha256: str | None = None  # plan.json's digest, as signed and found

    def lines(self) -> list[str]:
        out = [f"keyparity plan verify: {self.run_dir}"]
        if self.signed is None:
            out.append("  signed plan: none readable")
        else:
            s = self.signed
            out += [f"  signed plan id: {show(s.get('plan_id'))}",
                    f"  signed profile: {show(s.get('profile'))} (sha256 "
                    f"{show(s.get('profile_sha256'))})",
                    f"  signed target: {show((s.get('target') or {}).get('name'))}",
                    f"  signed keys: {show(s.get('keys'))}; created {show(s.get('created'))}"]
        return out + self.outcome(f"{PLAN} matches the signed statement")


def verify_plan(plan_dir: Path, keys: list[Key], threshold: int | None = None, *,
                key_names: dict[str, str] | None = None, every_key: bool = True,
                tsa_roots: list[Path] | None = None) -> PlanResult:
    """Check a plan offline: the envelope, the signatures of ``keys`` against the threshold
    (the signed one, raised by ``threshold``, never lowered; with ``every_key`` off, a key
    that did not sign is only a note once the threshold is met), plan.json's digest, and that
    plan.json says what the signed predicate says, and the signatures' time-stamps against
    ``tsa_roots`` (attest.timestamp.check_tokens). Every problem is collected."""
    plan_dir = Path(plan_dir)
    fallback = len(keys) if threshold is None else threshold
    result = PlanResult(run_dir=plan_dir, threshold=fallback, requested=threshold)
    if not plan_dir.is_dir():
        result.problems.append(f"plan directory not found: {plan_dir}")
        return result
    envelope, payload = read_envelope(plan_dir, result, PLAN_ENVELOPE, "the plan")
    statement = None
    if payload is not None:
        statement = parse_statement(payload, f"signed payload of {PLAN_ENVELOPE}", result)
    if isinstance(statement, dict):
        if statement.get("predicateType") in OLD_PREDICATE_TYPES:
            result.problems.append(_OLD.format(where=PLAN_ENVELOPE))
        elif statement.get("predicateType") != PREDICATE_TYPE:
            result.problems.append(f"{PLAN_ENVELOPE}: predicateType is "
                                   f"{show(statement.get('predicateType'))}, expected "
                                   f"{PREDICATE_TYPE}: not a keyparity plan")
        if isinstance(statement.get("predicate"), dict):
            result.signed = statement["predicate"]
    result.threshold = required_signatures(result.signed, threshold, fallback, result)
    if envelope is not None:
        check_signatures(envelope, keys, result.threshold, dict(key_names or {}), result,
                          PLAN_ENVELOPE, "the plan", every_key)
        check_tokens(plan_dir, PLAN_ENVELOPE, envelope, result.signed, list(tsa_roots or []),
                     dict(key_names or {}), result)
    if isinstance(statement, dict):
        _check_plan_file(plan_dir, statement["subject"], result)
    else:
        result.checked.append(f"{PLAN}: not checked (no usable signed statement)")
    return result


def _check_plan_file(plan_dir: Path, subjects: list[dict], result: PlanResult) -> None:
    """plan.json's digest, no other file in the directory, and its facts as signed."""
    problems = result.problems
    signed = {s["name"]: s["digest"]["sha256"] for s in subjects}
    if set(signed) != {PLAN}:
        problems.append(f"the signed statement names {sorted(signed)}, not {PLAN} alone")
    for name, sha in sorted(signed.items()):
        path = plan_dir / name
        if path.is_symlink() or not path.is_file():
            result.missing.append(name)
            problems.append(f"missing: {name} (listed in the signed statement)")
            continue
        found = sha256_file(path)
        result.files_checked += 1
        if found == sha and name == PLAN:
            result.plan_sha256 = found
        if found != sha:
            result.changed.append(name)
            problems.append(f"changed: {name} (sha256 signed {sha[:16]}..., found "
                            f"{found[:16]}...): the plan was edited after it was made")
    for extra in sorted(set(os.listdir(plan_dir)) - set(signed)
                        - {PLAN_ENVELOPE, tokens_name(PLAN_ENVELOPE)}):
        result.extra.append(extra)
        problems.append(f"extra file: {extra} (not in the signed plan)")
    result.checked.append(f"{PLAN}: {result.files_checked} digest(s) checked, "
                          f"{len(result.changed)} changed")
    if PLAN in signed and not result.changed and not result.missing and result.signed:
        _check_facts(plan_dir / PLAN, result)


def _check_facts(path: Path, result: PlanResult) -> None:
    """plan.json, whose digest was signed, says what the predicate says (a plan made by
    keyparity always does: a difference means the statement was not made from it)."""
    try:
        plan = json.loads(path.read_bytes())
        facts = {"plan_id": plan["plan_id"], "profile_sha256": plan["profile"]["sha256"],
                 "keys": len(plan["keys"]), "target": plan["target"]}
    except (ValueError, KeyError, TypeError) as exc:
        result.problems.append(f"{PLAN} is not a keyparity plan ({type(exc).__name__}: {exc})")
        return
    for field, value in facts.items():
        if result.signed.get(field) != value:  # type: ignore[union-attr]
            result.problems.append(f"{PLAN} says {field} {show(value)}; the signed statement "
                                   f"says {show(result.signed.get(field))}")  # type: ignore
