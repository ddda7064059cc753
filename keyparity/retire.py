"""``keyparity retire PROFILE --run RUN_ID``: the retirement record of the source keys a run
proved on the target, and with ``--destroy`` their destruction on the source.

In NIST SP 800-57 Part 1 terms (keyparity.key_states) each key moves from *active* to
*deactivated* - no longer used to apply protection on the source, kept only to process what it
protected - at a time of its own, and with ``--destroy``, once the profile's deactivation
period has passed, to *destroyed*. The operator and the witnesses (``--operator``,
``--witness``) are named in the record. One key's way through:

    1. the run's bundle verified with the profile's evidence signers to the threshold, its
       signed verdict PASS and its profile this profile (SHA-256): otherwise refused, nothing
       written anywhere
    2. the keys: each the run proved (migrated or already present); a rotate key stays active
    3. the source read once (one login): the key under the label is still the material the
       run proved (keyparity.hsm.proof: recomputed over the run's challenge, or a pair's fresh
       answer checked with the proven public key); otherwise it is not retired
    4. the backups that still hold it: the source cluster's backups (DescribeBackups) where
       the profile has an ``aws`` block
    4b. deactivated on the source (keyparity.hsm.deactivation: the usages that apply
       protection cleared and read back, but the one its strong proof needs), journaled
       (``deactivate``); a key an earlier ``retire`` of the run deactivated keeps that time
    5. ``--destroy`` (with ``--plan``, the plan the run followed, signed to the threshold; in a
       production profile ``--hsm-confirm=<source cluster id>``): only the plan's keys, each
       only once ``retirement.deactivation_days`` have passed since its deactivation; the
       target read once (one login); immediately before each destroy the target copy is
       proven to hold the same material with a fresh challenge on both clusters
       (keyparity.hsm.destruction: no command destroys the last copy), any doubt leaves the
       key; each destroy journaled (before/after), then proven: nothing is under the label any
       more, nor under its CKA_ID
    6. DIR/retirement.json signed like a run's bundle (statement.dsse.json, predicate type
       RETIREMENT_TYPE): ``keyparity verify DIR`` checks it
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pkcs11 import Attribute, ObjectClass

from . import atomic, policy, rootdir
from . import runinfo
from .cloudhsm import lineage
from .errors import KeyMismatch, KeyparityError, PolicyError
from .progress import Progress
from .attest import approval
from . import key_states
from .evidence import hsm_records
from .evidence.anchor import require_run_head
from .attest.contents import write_contents
from .attest.signing import close_signers, load_signers, public_key_of, public_keys
from .attest.statement import sign_run
from .attest.timestamp import reachable, time_source
from .attest.verify import verify_run
from .hsm import deactivation, destruction, proof
from .hsm.cluster import ClusterSession, open_cluster
from .hsm.locate import Side, locate, locate_on_token
from .hsm.login import LoginGate
from .journal.recorder import RunRecorder
from .journal.store import Journal, default_path
from .profile import KeySpec, Profile, load_profile, resolve_profile_arg

RETIREMENT = "retirement.json"
RETIREMENT_TYPE = "https://keyparity.dev/retirement/v1"
PROVEN = ("migrated", "already-present")
NO_ID = "no CKA_ID: proven by label only"
_KEY_CLASSES = (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY)
DEACTIVATE = "deactivate"  # the journal's action


class RetireError(KeyparityError):
    """Retirement refused as a whole: the message says why; nothing was written."""


@dataclass
class Retirement:
    """What ``retire`` does: the settled inputs, then one record per key."""

    profile: Profile
    run_id: str
    run_dir: Path
    evidence: dict[str, Any]
    signers: list[Any]  # who signs the record here: the operator, or every signer
    destroy: bool = False
    plan: approval.Approval | None = None
    retirement_id: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    people: dict[str, Any] = field(default_factory=dict)  # operator, witnesses
    period_days: int = 0  # retirement.deactivation_days: deactivated -> destroyed
    journal: Journal | None = None

    @property
    def ok(self) -> bool:
        wanted = key_states.DESTROYED if self.destroy else key_states.DEACTIVATED
        return all(k["state"] == wanted or k["state"] == "active (rotate)" for k in self.keys)


# ---- 1. the run's bundle ----------------------------------------------------------------------

def _proven_run(profile: Profile, run_dir: Path, gate: LoginGate) -> dict[str, Any]:
    """The evidence of a run whose bundle verifies (every signer's signature: the custodians
    countersigned it), whose signed verdict is PASS and whose profile is this one;
    RetireError otherwise."""
    keys, names = public_keys(profile.evidence, profile.module_env, gate)
    tsa = profile.evidence.timestamp
    result = verify_run(run_dir, keys, profile.evidence.threshold or None, key_names=names,
                        tsa_roots=[tsa.ca] if tsa is not None else None)
    if not result.ok:
        raise RetireError(f"the bundle {run_dir} does not verify, nothing retired: "
                          + "; ".join(result.problems[:3]))
    signed = result.signed or {}
    if signed.get("verdict") != "PASS":
        raise RetireError(f"run {signed.get('run_id')} ended {signed.get('verdict')}, not PASS "
                          f"({signed.get('headline')}): a source key is retired only after a "
                          "run proved every key; nothing retired")
    if signed.get("profile_sha256") != profile.sha256:
        raise RetireError(f"run {signed.get('run_id')} proved profile {signed.get('profile')} "
                          f"(sha256 {str(signed.get('profile_sha256'))[:16]}...), not "
                          f"{profile.path} (sha256 {profile.sha256[:16]}...): retire with the "
                          "profile that was proven; nothing retired")
    return json.loads((run_dir / "evidence.json").read_bytes())


# ---- 2-3. each key on the source ------------------------------------------------------------

def _source_key(r: Retirement, src: ClusterSession, spec: KeySpec
                ) -> tuple[dict, Side | None]:
    """The key's record so far, and its source objects when it may be retired: proven now to
    be the material the run proved."""
    proven = r.evidence["keys"].get(spec.label, {})
    status = proven.get("migration", {}).get("status")
    out: dict[str, Any] = {"label": spec.label, "type": spec.type,
                           "target_label": spec.target_label, "run_status": status}
    if status == "rotate" or spec.disposition == "rotate":
        out.update(state="active (rotate)", detail="not migrated (rotate): it stays active "
                   "on the source until it is rotated")
        return out, None
    if status not in PROVEN or proven.get("verdict") != "passed":
        out.update(state="active", detail=f"not proven by run {r.run_id} ({status})")
        return out, None
    ident = proven["migration"].get("identity") or {}
    try:
        committed = proof.Commitment.parse({**ident, "sha256": ident.get("source")})
    except ValueError:
        out.update(state="active", detail=f"run {r.run_id} recorded no commitment to the key "
                   "material (a run of an earlier keyparity, proven by a 3-byte KCV): prove "
                   "the keys with a new run, then retire that run")
        return out, None
    out["identity"] = committed.record()
    side = locate(src, spec, spec.label)
    if side is None:
        out.update(state="active", detail=f"not on {src.name} any more")
        return out, None
    try:
        proof.check(committed, side)
    except (KeyMismatch, proof.NotProvable) as exc:
        out.update(state="active", detail=f"{spec.label!r} on {src.name} is not proven to be "
                   f"the key material run {r.run_id} proved ({exc}): not retired")
        return out, None
    out["id"] = bytes(side.key[Attribute.ID] or b"").hex() or None
    out.update(state=key_states.ACTIVE)
    return out, side


# ---- 4b. deactivation -------------------------------------------------------------------------

def _deactivated_before(r: Retirement, src: ClusterSession, label: str) -> str | None:
    """When an earlier ``retire`` of this run deactivated the key (its journal entry), or None."""
    assert r.journal is not None
    for e in r.journal.actions(DEACTIVATE):
        if (e["phase"] in ("after", "note") and e["key_label"] == label
                and e["cluster"] == src.name
                and f"run {r.run_id} " in str(e["detail"])):
            return dt.datetime.fromisoformat(e["ts"]).isoformat(timespec="seconds")
    return None


def _clear(r: Retirement, src: ClusterSession, spec: KeySpec, side: Side,
           recorder: RunRecorder, earlier: str | None) -> deactivation.Deactivation:
    """The usages cleared on the token, journaled; when nothing is left to clear (it may only
    apply protection with what its proof needs) no write, only a ``note`` of the time."""
    fields = {"key_label": spec.label, "cluster": src.name, "handle": str(side.key.handle),
              "label": spec.label}
    said = f"keyparity retire of run {r.run_id} ({r.retirement_id}): "
    if not deactivation.pending(side):
        done = deactivation.deactivate(side)
        if earlier is None:
            recorder.record("note", DEACTIVATE, **fields, detail=said + "nothing to clear; "
                            f"kept: {', '.join(done.kept) or 'none'}")
        return done
    with recorder.step(DEACTIVATE, **fields,
                       detail=said + "the usages that apply protection cleared") as after:
        done = deactivation.deactivate(side)
        after["detail"] = f"{after['detail']}: {', '.join(done.cleared)}"
    return done


def _deactivate(r: Retirement, src: ClusterSession, spec: KeySpec, side: Side,
                record: dict[str, Any], recorder: RunRecorder) -> None:
    """active -> deactivated on the source, journaled, at a time of its own (or the time an
    earlier retire of the run deactivated it, when the token still shows it deactivated)."""
    earlier = _deactivated_before(r, src, spec.label)
    try:
        done = _clear(r, src, spec, side, recorder, earlier)
    except KeyparityError as exc:
        record.update(state=key_states.ACTIVE, permits=deactivation.permitted(side),
                      detail=f"not deactivated: {exc}")
        return
    at = earlier if earlier is not None and not done.cleared else _now()
    record.update(state=key_states.DEACTIVATED, deactivated_at=at, deactivation=done.record(),
                  permits=deactivation.permitted(side),
                  state_change=key_states.change(key_states.ACTIVE, key_states.DEACTIVATED, at))


# ---- 4. the backups ---------------------------------------------------------------------------

def backups(profile: Profile, client: Any = None) -> dict[str, Any]:
    """The source cluster's backups (and the backup it was restored from), which hold its keys
    as they were when each was taken; one taken after a key was destroyed does not hold it, so
    the list is of every backup not deleted. ``client``: a cloudhsmv2 client (tests)."""
    aws = profile.source.aws if profile.source else None
    if aws is None:
        return {"read": False, "note": "the profile's source has no aws block: its backups "
                "(if any) were not read; any backup taken while a key existed still holds it"}
    state = lineage.read(aws, client=client)
    held = [{"backup_id": b.get("BackupId"), "created": b.get("CreateTimestamp"),
             "state": b.get("BackupState"), "never_expires": bool(b.get("NeverExpires"))}
            for b in state.backups if not lineage.pending_deletion(b)]
    return {"read": True, "cluster_id": aws.cluster_id, "backups": held,
            "retention": state.backup_retention,
            "note": "each backup taken while a key existed still holds it: delete those "
                    "backups (or let them age out) to retire the key everywhere"}


# ---- 5. destruction ---------------------------------------------------------------------------

def _destroy(r: Retirement, src: ClusterSession, tgt: ClusterSession, spec: KeySpec,
             side: Side, record: dict[str, Any], recorder: RunRecorder | None) -> None:
    """Destroy one planned source key once its target copy is proven, at that moment, to hold
    the same material (keyparity.hsm.destruction); each destroy journaled; then proven gone
    by label and by CKA_ID. Any doubt: one line in the record, nothing destroyed."""
    assert r.plan is not None
    if spec.label not in r.plan.keys:
        record["detail"] = f"not in the plan {r.plan.plan['plan_id']}: not destroyed"
        return
    early = key_states.too_early(record["deactivated_at"], r.period_days,
                                 dt.datetime.now(dt.timezone.utc))
    if early is not None:
        record["detail"] = early
        return
    there = locate_on_token(tgt, spec)
    if there is None:
        record["detail"] = (f"{spec.target_label!r} is not on {tgt.name}: the source key is "
                            "the only copy; not destroyed")
        return
    try:
        permit = destruction.second_copy(side, there, spec)
    except destruction.Refused as exc:
        record["detail"] = f"the target copy is not proven now: {exc}"
        return
    record["proof"] = permit.proof
    for obj in permit.objects:
        destruction.destroy(obj, permit, src.name, recorder, key_label=spec.label,
                            cluster=src.name, handle=obj.handle, label=spec.label,
                            check_value=permit.commitment,
                            detail=f"keyparity retire of run {r.run_id} (plan "
                                   f"{r.plan.plan['plan_id']}), "
                                   f"{obj.object_class.name.lower()}: {permit.reason}")
    record["destroyed"] = _gone(src, spec.label, record.get("id"))
    gone = record["destroyed"]
    record.pop("permits", None)
    if gone["by_label"] == 0 and gone["by_id"] in (0, NO_ID):
        record.update(state=key_states.DESTROYED, states=[record["state_change"],
                      key_states.change(key_states.DEACTIVATED, key_states.DESTROYED,
                                        gone["at"])])
        record["state_change"] = record["states"][-1]
    else:
        record["detail"] = f"destroyed, yet objects remain: {gone}"


def _gone(src: ClusterSession, label: str, key_id: str | None) -> dict[str, Any]:
    """What the token holds under the label and the CKA_ID now (asked of the token, not of an
    index): both must be 0."""
    session = src.session
    out: dict[str, Any] = {"by_label": sum(
        1 for o in session.get_objects({Attribute.LABEL: label})
        if o.object_class in _KEY_CLASSES), "at": _now()}
    if key_id:
        out["by_id"] = sum(1 for o in session.get_objects({Attribute.ID: bytes.fromhex(key_id)})
                           if o.object_class in _KEY_CLASSES)
    else:
        out["by_id"] = NO_ID
    return out


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ---- the command ------------------------------------------------------------------------------

def settle(args: argparse.Namespace, gate: LoginGate) -> Retirement:
    """Everything checked before a token is asked: the profile, the bundle, the plan, the
    production confirmation. RetireError / PolicyError otherwise."""
    profile = load_profile(resolve_profile_arg(args.profile, Path.cwd()))
    if profile.single or profile.source is None or profile.target is None:
        raise PolicyError(f"{profile.name} is a {profile.migration_mode} profile: retire is for "
                          "the source keys of a migration")
    if not profile.evidence.signers:
        raise PolicyError(f"{profile.path}: evidence.signers: retire verifies the run's bundle "
                          "and signs its record with the profile's signers; there are none")
    people = key_states.people(getattr(args, "operator", None), getattr(args, "witness", None))
    if args.destroy:
        policy.confirmed(profile, profile.source, args.hsm_confirm, "to destroy source keys",
                         "destroyed")
        if not args.plan:
            raise PolicyError("--destroy needs --plan DIR: the plan the run followed, signed to "
                              "the threshold; nothing was destroyed")
    period = (key_states.period_days(profile.environment, profile.deactivation_days,
                                     profile.path) if args.destroy else 0)
    run_dir = Path(args.reports_dir or "reports") / args.run
    evidence = _proven_run(profile, run_dir, gate)
    reachable(profile.evidence.timestamp)  # the record will be stamped: before any destruction
    signers = load_signers(dataclasses.replace(
        profile.evidence, signers=profile.evidence.run_signers()), profile.module_env, gate)
    r = Retirement(profile, args.run, run_dir, evidence, signers, destroy=bool(args.destroy),
                   retirement_id=f"retire-{runinfo.new_run_id()}", people=people,
                   period_days=period)
    if args.destroy:
        r.plan = _followed_plan(r, Path(args.plan), gate)
    return r


def _followed_plan(r: Retirement, plan_dir: Path, gate: LoginGate) -> approval.Approval:
    """The plan, verified, and the one the run followed (its SHA-256 in the run's evidence)."""
    plan = approval.verified(r.profile, plan_dir, gate)
    followed = (r.evidence.get("plan") or {}).get("sha256")
    if followed != plan.sha256:
        raise RetireError(f"run {r.run_id} did not follow the plan {plan.plan['plan_id']} "
                          f"({'it followed ' + followed[:16] + '...' if followed else 'it followed no plan'}"
                          "): the keys destroyed are the ones a signed plan listed and a run "
                          "proved; nothing was destroyed")
    return plan


def perform(r: Retirement, gate: LoginGate, journal_path: Path) -> Path:
    """Steps 2-6: each key's record (and its destruction), then the signed record."""
    src = open_cluster(r.profile.source, r.profile.module_env, gate)
    tgt = open_cluster(r.profile.target, r.profile.module_env, gate) if r.destroy else None
    journal = r.journal = Journal(journal_path)  # every deactivation and destroy journaled
    recorder = journal.bind(r.retirement_id)
    progress = Progress(f"read keys on {r.profile.source.name}", len(r.profile.keys))
    try:
        for spec in r.profile.keys:
            progress.tick()
            try:
                record, side = _source_key(r, src, spec)
                if side is not None:
                    _deactivate(r, src, spec, side, record, recorder)
                if (side is not None and tgt is not None
                        and record["state"] == key_states.DEACTIVATED):
                    _destroy(r, src, tgt, spec, side, record, recorder)
            except KeyparityError as exc:
                record = {"label": spec.label, "state": "active",
                          "detail": f"{type(exc).__name__}: {exc}"}
            r.keys.append(record)
        rows = journal.entries(r.retirement_id)
    finally:
        progress.done()
        journal.close()
    return _write(r, backups(r.profile), journal_path, gate,
                  hsm_records.collect(r.profile, rows))


def _write(r: Retirement, backups: dict[str, Any], journal: Path, gate: LoginGate,
           hsm: dict[str, Any] | None = None) -> Path:
    out = r.run_dir.parent / r.retirement_id
    out.mkdir(parents=True)
    loaded = {s.name: s for s in r.signers}
    keys = {s.name: ((loaded[s.name].public_key, getattr(loaded[s.name], "certificate", None))
                     if s.name in loaded else public_key_of(s, r.profile.module_env, gate))
            for s in r.profile.evidence.signers}
    # inside the record: the profile, the plan, the journal's rows of the retirement and its
    # head after them, each signer's key or certificate
    contents = write_contents(out, r.profile, r.retirement_id,
                              plan_dir=r.plan.path if r.plan else None, journal=journal,
                              signer_keys=keys)
    counts: dict[str, int] = {}
    for k in r.keys:
        counts[k["state"]] = counts.get(k["state"], 0) + 1
    doc = {"format": "keyparity-retirement/1", "retirement_id": r.retirement_id,
           "created": _now(), "retires_run": r.run_id, "profile": r.profile.name,
           "profile_sha256": r.profile.sha256, "source": r.profile.source.name,
           "target": r.profile.target.name, "destroy": r.destroy,
           "plan": r.profile.shown_paths(r.plan.record()) if r.plan else None, "backups": backups,
           "counts": counts, "keys": r.keys, "journal": contents["journal"], "people": r.people,
           "states": {"reference": key_states.REFERENCE, "states": list(key_states.STATES),
                      "deactivation_days": r.period_days}}
    held = key_states.held_by_backups(backups) if r.destroy else None
    unshown = hsm_records.problems(hsm)  # a deactivation or destroy its HSM did not log
    verdict = key_states.conclusion(r.ok and not unshown, r.destroy, r.profile.environment,
                                    backups)
    doc.update(verdict=verdict, held_by_backups=held)
    if hsm is not None:
        doc.update(hsm_records=hsm, hsm_records_unshown=unshown)
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")
    atomic.write(out / RETIREMENT, data)
    headline = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    if held is not None:
        headline += f"; {held['text']}"
    sign_run(out, r.signers, {
        "run_id": r.retirement_id, "retires_run": r.run_id, "profile": r.profile.name,
        "profile_sha256": r.profile.sha256, "verdict": verdict,
        "headline": f"retirement of run {r.run_id}'s source keys on {r.profile.source.name}: "
                    f"{headline}", "people": r.people,
        "summary": {"tests": {}, "keys": counts},
        "signers": [s.name for s in r.profile.evidence.signers],
        "threshold": r.profile.evidence.threshold, "operator": r.profile.evidence.operator,
        "signed_by": [s.name for s in r.signers], "signed_at": _now(), "contents": contents,
        "journal": contents["journal"],
        "time_source": time_source(r.profile.evidence.timestamp)},
        predicate_type=RETIREMENT_TYPE, timestamp=r.profile.evidence.timestamp)
    return out


def command(args: argparse.Namespace) -> int:
    """0: every key retired (destroyed with --destroy); 1: refused, or a key was not."""
    gate = LoginGate(None)
    r = settle(args, gate)
    journal = Path(args.journal) if args.journal else default_path(rootdir.find())
    try:
        # it appends to the run's journal (each deactivation, each destroy): intact, and the
        # run's signed head in it
        require_run_head(journal, r.run_dir, *public_keys(
            r.profile.evidence, r.profile.module_env, gate), r.profile.evidence.threshold)
        out = perform(r, gate, journal)
    finally:
        close_signers(r.signers)
    for k in r.keys:
        print(f"  {k['label']}: {k['state']}" + (f" ({k['detail']})" if k.get("detail") else ""))
    print(f"keyparity retire: {'done' if r.ok else 'INCOMPLETE'}: record {out} (verify with "
          f"keyparity verify); operator {r.people['operator']}, witnessed by "
          f"{', '.join(r.people['witnesses'])}")
    return 0 if r.ok else 1
