"""Migration of inventory keys, one at a time, each ending migrated, found, rotate or failed.

A key's failure is its own: the error is kept in its result and the next key goes on.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import pkcs11.exceptions as p11
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11.types import Key

from . import attributes, identity
from .channel import WrappingChannel
from .cluster import ClusterSession
from .errors import (KeyMismatch, KeyNotExtractable, KeyNotFound, KeyparityError, LabelConflict,
                     TokenError, pkcs11_step)
from .keytypes import KEY_TYPES, key_class
from .profile import KeySpec, Profile

OK = ("migrated", "already-present", "found")
ROTATE_ADVICE = ("rotate it instead: generate a new key on the target, decrypt with the old key "
                 "and re-encrypt with the new one")
# PKCS #11 errors after which a session cannot be trusted any more: reopen it (once) for the
# next key.
SESSION_FAULTS = (p11.SessionClosed, p11.SessionHandleInvalid, p11.DeviceError,
                  p11.DeviceRemoved, p11.TokenNotPresent)


def session_fault(exc: BaseException) -> bool:
    """Whether a keyparity error was caused by the loss of a session (see SESSION_FAULTS)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, SESSION_FAULTS):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


@dataclass
class Side:
    """The objects of one inventory key on one cluster."""

    key: Key
    public: Key | None = None


@dataclass
class Migration:
    """What happened to one inventory key."""

    spec: KeySpec
    status: str = "pending"  # migrated | already-present | found | rotate | failed
    detail: str = ""
    source: Side | None = field(default=None, repr=False)  # repr would read the token
    target: Side | None = field(default=None, repr=False)
    identity: dict[str, Any] = field(default_factory=dict)
    source_attributes: dict[str, Any] = field(default_factory=dict)
    source_kcv: identity.Kcv | None = None  # computed for the journal, reused by the proof
    error: KeyparityError | None = None

    @property
    def ok(self) -> bool:
        return self.status in OK

    def record(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail, "identity": self.identity}


def _one(objs: list[Key], what: str, label: str, where: str) -> Key | None:
    if len(objs) > 1:
        raise LabelConflict(f"{len(objs)} {what} objects labelled {label!r} on {where}; "
                            "labels must be unique for the harness to know which key is meant")
    return objs[0] if objs else None


def locate(cluster: ClusterSession, spec: KeySpec, label: str) -> Side | None:
    """Find an inventory key by label in the cluster's index; check its type."""
    cls = key_class(spec.type)
    key = _one(cluster.index.find(cls, label), cls.name.lower(), label, cluster.name)
    if key is None:
        return None
    if key.key_type != KEY_TYPES[spec.type]:
        raise KeyMismatch(f"{label!r} on {cluster.name} is a {key.key_type.name} key; the "
                          f"inventory says {spec.type}")
    public = None
    if spec.is_asymmetric:
        public = _one(cluster.index.find(ObjectClass.PUBLIC_KEY, label), "public key", label,
                      cluster.name)
    return Side(key, public)


def prove_identity(spec: KeySpec, source: Side, target: Side, src: ClusterSession,
                   tgt: ClusterSession, source_kcv: identity.Kcv | None = None) -> dict[str, Any]:
    """Compare key material without revealing it; raise KeyMismatch when it differs.

    ``source_kcv``: the source key's KCV when this migration has just computed it (for the
    journal), so that the token is not asked twice.
    """
    if spec.type == "rsa":
        s = identity.fingerprint(identity.rsa_public(source.public or source.key))
        t = identity.fingerprint(identity.rsa_public(target.key))
        out = {"method": "SHA-256 of the SubjectPublicKeyInfo built from CKA_MODULUS and "
                         "CKA_PUBLIC_EXPONENT", "source": s, "target": t}
    elif spec.type == "ec":
        if source.public is None:
            raise KeyNotFound(f"no public key labelled {spec.label!r} on {src.name}: the EC key "
                              "cannot be identified without it")
        public = identity.ec_public(source.public, spec.curve)
        challenge = os.urandom(32)
        digest = hashlib.sha256(challenge).digest()
        with pkcs11_step("ECDSA signature for identity", tgt.name):
            raw = target.key.sign(digest, mechanism=Mechanism.ECDSA)
        match = (identity.fingerprint(public)
                 if identity.ecdsa_verifies(public, raw, digest, "sha256")
                 else "signature from the target does not verify with the source public key")
        out = {"method": "ECDSA signature by the target over a fresh challenge, verified with the "
                         "source public key (an EC private key object exposes no public point)",
               "source": identity.fingerprint(public), "target": match}
    else:
        s_kcv = source_kcv or identity.kcv(source.key, src.name)
        t_kcv = identity.kcv(target.key, tgt.name)
        out = {"method": s_kcv.method, "source": s_kcv.value, "target": t_kcv.value}
    out["match"] = out["source"] == out["target"]
    if not out["match"]:
        raise KeyMismatch(f"{spec.target_label!r} on {tgt.name} holds other key material than "
                          f"{spec.label!r} on {src.name} ({out['source']} != {out['target']})")
    return out


def source_check(spec: KeySpec, source: Side, src: ClusterSession) -> str | identity.Kcv | None:
    """The source key's KCV (symmetric keys) or public-key fingerprint, recorded before a write."""
    try:
        if spec.type == "rsa":
            return identity.fingerprint(identity.rsa_public(source.public or source.key))
        if spec.type == "ec":
            return (identity.fingerprint(identity.ec_public(source.public, spec.curve))
                    if source.public is not None else None)
        return identity.kcv(source.key, src.name)
    except Exception:  # noqa: BLE001 - recorded as unknown; the identity proof comes later
        return None


def unique_id(obj: Key) -> str | None:
    """CKA_UNIQUE_ID (PKCS #11 3.0) when the token has one."""
    try:
        value = obj[Attribute.UNIQUE_ID]
    except Exception:  # noqa: BLE001 - not every token knows the attribute
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def locate_on_token(cluster: ClusterSession, spec: KeySpec,
                    step: str = "find the target key") -> Side | None:
    """Look for the target key on the token itself (the index may predate it), add what is
    new to the index, then locate it as usual."""
    cls = key_class(spec.type)
    with pkcs11_step(step, cluster.name):
        found = list(cluster.session.get_objects({Attribute.CLASS: cls,
                                                  Attribute.LABEL: spec.target_label}))
    known = {o.handle for o in cluster.index.find(cls, spec.target_label)}
    for obj in found:
        if obj.handle not in known:
            cluster.index.add(obj, spec.target_label)
    return locate(cluster, spec, spec.target_label)


class Migrator:
    """Migrates (or, in verify-only mode, finds) inventory keys; memoises each key's outcome."""

    def __init__(self, profile: Profile, source: ClusterSession, target: ClusterSession,
                 run_id: str, journal: Any = None) -> None:
        self.profile, self.source, self.target = profile, source, target
        self.run_id = run_id
        # keyparity.journal.Journal: writes recorded before/after, one lock per target key
        self.journal = journal
        self.rec = journal.bind(run_id) if journal is not None else None
        if journal is not None:
            journal.reap_stale(run_id)  # locks left by a killed run
        self.writes = profile.migration_mode == "migrate"
        self._channel: WrappingChannel | KeyparityError | None = None
        self._cli_channel: Any = None  # cli_backend.CliChannel | KeyparityError, when chosen
        self._done: dict[str, Migration] = {}
        self._method = ""
        self._lost: str | None = None  # why the sessions could not be reopened after a fault
        # cloudhsm-cli backend: wrapping objects (token objects) left by killed earlier runs
        self.reaped: list[str] = []
        self._reap_left: list[str] = []
        if journal is not None and self.writes and profile.migration_backend == "cloudhsm-cli":
            self._reap()

    def _reap(self) -> None:
        """Delete through the CLI the wrapping objects that earlier, dead runs left behind
        (keyparity.cli_backend.reap_wrapping); what cannot be deleted is reported by close."""
        from .cli_backend import reap_wrapping
        from .cloudhsm_cli import CloudHsmCli
        try:
            src = CloudHsmCli.for_cluster(self.profile.source)
            tgt = CloudHsmCli.for_cluster(self.profile.target)
        except KeyparityError as exc:  # the CLI channel reports the same error for each key
            self.reaped = [f"wrapping objects of earlier runs not checked: {exc}"]
            return
        protect = {k.label for k in self.profile.keys} | {k.target_label
                                                          for k in self.profile.keys}
        self.reaped, self._reap_left = reap_wrapping(self.rec, src, tgt, protect=protect)

    @property
    def channel(self) -> WrappingChannel:
        if self._channel is None:
            try:
                self._channel = WrappingChannel(self.source, self.target, self.profile.wrapping,
                                                f"keyparity-wrap-{self.run_id}",
                                                journal=self.rec)
            except KeyparityError as exc:
                self._channel = exc
        if isinstance(self._channel, KeyparityError):
            raise self._channel
        return self._channel

    @property
    def cli_channel(self) -> Any:
        """``migration.backend: cloudhsm-cli``: the CloudHSM CLI channel (keyparity.cli_backend)."""
        if self._cli_channel is None:
            from .cli_backend import CliChannel
            from .cloudhsm_cli import CloudHsmCli
            try:
                self._cli_channel = CliChannel(
                    CloudHsmCli.for_cluster(self.profile.source),
                    CloudHsmCli.for_cluster(self.profile.target), self.profile.wrapping,
                    f"keyparity-wrap-{self.run_id}", journal=self.rec)
            except KeyparityError as exc:
                self._cli_channel = exc
        if isinstance(self._cli_channel, KeyparityError):
            raise self._cli_channel
        return self._cli_channel

    def ensure(self, spec: KeySpec) -> Migration:
        if spec.label not in self._done:
            result = Migration(spec)
            try:
                if self._lost is not None:  # the reopen after a session fault failed: no loop
                    raise TokenError(self._lost)
                self._migrate(result)
            except KeyparityError as exc:
                result.status, result.detail, result.error = "failed", str(exc), exc
                if self._lost is None and session_fault(exc):
                    self._recover(exc)
            self._done[spec.label] = result
        return self._done[spec.label]

    def _recover(self, fault: KeyparityError) -> None:
        """After a session fault: drop the wrapping channel (its session objects went with the
        session), reopen both clusters' sessions once, and re-find the objects of the keys
        already done on the new sessions. When a reopen fails, every later key fails with that
        reason (``_lost``); nothing is retried."""
        if isinstance(self._channel, WrappingChannel):
            self._channel.close()  # best effort: the objects are session objects anyway
        self._channel = None
        for cluster in (self.source, self.target):
            try:
                cluster.reopen()
            except KeyparityError as exc:
                self._lost = (f"not attempted: the session to {cluster.name} was lost ({fault}) "
                              f"and could not be reopened: {exc}")
                return
        for m in self._done.values():
            try:
                if m.source is not None:
                    m.source = locate(self.source, m.spec, m.spec.label) or m.source
                if m.target is not None:
                    m.target = locate(self.target, m.spec, m.spec.target_label) or m.target
            except KeyparityError:
                pass  # that key's later tests report the problem themselves

    def _migrate(self, m: Migration) -> None:
        spec, src, tgt = m.spec, self.source, self.target
        m.source = locate(src, spec, spec.label)
        if m.source is None:
            raise KeyNotFound(f"{spec.label!r} ({spec.type}) not found on {src.name}")
        m.source_attributes = attributes.read_standard(m.source.key)
        extractable = m.source_attributes.get("extractable") is True
        if spec.disposition == "rotate":
            m.status = "rotate"
            m.detail = (f"marked rotate in the inventory ({'extractable' if extractable else 'not extractable'}"
                        f" on {src.name}): not migrated; {ROTATE_ADVICE}")
            return
        m.target = locate(tgt, spec, spec.target_label)
        if m.target is not None:
            try:
                m.identity = prove_identity(spec, m.source, m.target, src, tgt)
            except KeyMismatch as exc:
                raise LabelConflict(f"{exc}; nothing was written") from exc
            m.status = "found" if not self.writes else "already-present"
            m.detail = (f"found on {tgt.name} under {spec.target_label!r} with the same key material"
                        + ("" if not self.writes else "; not migrated again")
                        + self._resumed(m))
            return
        if not self.writes:
            raise KeyNotFound(f"{spec.target_label!r} ({spec.type}) not found on {tgt.name} "
                              "(verify-only: nothing was written)")
        if not extractable:
            raise KeyNotExtractable(f"{spec.label!r} on {src.name} is not extractable "
                                    f"(CKA_EXTRACTABLE=false) and cannot be wrapped; {ROTATE_ADVICE}"
                                    "; or mark it disposition: rotate in the inventory")
        found = self._write(m)
        try:
            m.identity = prove_identity(spec, m.source, m.target, src, tgt, m.source_kcv)
        except KeyMismatch as exc:
            if found is None:
                raise
            raise LabelConflict(f"{exc}; nothing was written") from exc
        if found is not None:
            m.status, m.detail = "already-present", found + self._resumed(m)
            return
        self._resumed(m)
        m.status = "migrated"
        m.detail = f"wrapped on {src.name}, unwrapped on {tgt.name} ({self._method})"

    def _resumed(self, m: Migration) -> str:
        """After the identity is proven: journal it, and say when an earlier run (killed, or
        concurrent) unwrapped the key without verifying it."""
        if self.journal is None or not self.writes:
            return ""
        spec, tgt = m.spec, self.target
        prior = self.journal.last_unwrap(tgt.name, spec.target_label)
        self.rec.record("note", "verified", key_label=spec.label, cluster=tgt.name,
                        label=spec.target_label, check_value=m.identity.get("target"))
        if prior is None or prior["run_id"] == self.run_id:
            return ""
        state = {"before": "was interrupted before recording the result",
                 "after": "did not record its verification",
                 "failed": "recorded a failure"}.get(prior["phase"], prior["phase"])
        verified = self.journal.db.execute(
            "SELECT 1 FROM entries WHERE action = 'verified' AND run_id = ? AND label = ? "
            "AND cluster = ?", (prior["run_id"], spec.target_label, tgt.name)).fetchone()
        if verified:
            return ""
        return (f" (resumed: run {prior['run_id']} unwrapped it, journal seq {prior['seq']}, "
                f"and {state}: verified now, not unwrapped twice)")

    def _move(self, m: Migration) -> None:
        spec, tgt = m.spec, self.target
        assert m.source is not None
        if self.profile.migration_backend == "cloudhsm-cli":
            m.target = self.cli_channel.move(spec, m.source_attributes, tgt)
            self._method = self.cli_channel.method
        else:
            cls = key_class(spec.type)
            template = attributes.unwrap_template(m.source_attributes, cls, spec.target_label,
                                                  spec.attributes)
            key = self.channel.move(m.source.key, cls, KEY_TYPES[spec.type], template)
            tgt.index.add(key, spec.target_label)
            m.target = Side(key)
            self._method = self.channel.method

    def _write(self, m: Migration) -> str | None:
        """Unwrap the key on the target; with a journal, under the key's lock, after looking
        at the token again (another worker or run, or an interrupted earlier run, may have
        unwrapped it meanwhile). Returns None when unwrapped now, else why it was not."""
        if self.journal is None:
            self._move(m)
            return None
        spec, src, tgt = m.spec, self.source, self.target
        target_id = f"{tgt.info.get('label')}/{tgt.info.get('serial')}"
        with self.journal.lock(target_id, spec.target_label, self.run_id) as lock:
            # Ask the token again only when another run may have unwrapped the key since the
            # index was built (it journals before unwrapping, under this lock); otherwise the
            # index is current, and a search by label per key would make the cost quadratic.
            prior = self.journal.last_unwrap(tgt.name, spec.target_label)
            if lock["contended"] or lock["took_over"] or (
                    prior is not None and prior["run_id"] != self.run_id):
                m.target = locate_on_token(tgt, spec)
            if m.target is not None:
                why = (f"found on {tgt.name} under {spec.target_label!r} with the same key "
                       "material; not migrated again")
                if lock["waited"] > 0.2:
                    why += f"; waited {lock['waited']}s for its lock"
                return why
            assert m.source is not None
            check = source_check(spec, m.source, src)
            if isinstance(check, identity.Kcv):
                m.source_kcv, check = check, check.value
            with self.rec.step("unwrap", key_label=spec.label, cluster=tgt.name,
                               label=spec.target_label, check_value=check) as after:
                self._move(m)
                assert m.target is not None
                after.update(handle=m.target.key.handle, unique_id=unique_id(m.target.key))
        return None

    def close(self) -> list[str]:
        """Destroy the wrapping objects this process created; returns what was left behind."""
        left = self._channel.close() if isinstance(self._channel, WrappingChannel) else []
        left += self._reap_left
        if self._cli_channel is not None and not isinstance(self._cli_channel, KeyparityError):
            left += self._cli_channel.close()
        return left
