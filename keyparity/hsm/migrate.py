"""Migration of inventory keys, one at a time, each ending migrated, found, rotate or failed.

A key's failure is its own: the error is kept in its result and the next key goes on.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pkcs11.exceptions as p11
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11.types import Key

from . import attributes, identity, keyinfo, preflight
from .channel import WrappingChannel
from .cluster import ClusterSession
from ..errors import (
    KeyMismatch, KeyNotExtractable, KeyNotFound, KeyparityError, LabelConflict, TokenError,
    pkcs11_step,
)
from .keytypes import KEY_TYPES, key_class
from ..profile import KeySpec, Profile

OK = ("migrated", "already-present", "found")
MAX_CHUNK = 50  # keys per chunk: one durable journal commit for up to this many unwraps
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
    found: str | None = None  # why nothing was written: the key was already on the target
    journal: list[int] = field(default_factory=list)  # seqs of this run's entries for the key
    error: KeyparityError | None = None

    @property
    def ok(self) -> bool:
        return self.status in OK

    def record(self) -> dict[str, Any]:
        out = {"status": self.status, "detail": self.detail, "identity": self.identity}
        if self.journal:  # where `keyparity journal verify` finds what this run did to the key
            out["journal_seqs"] = list(self.journal)
        return out


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
        try:
            t_kcv = identity.kcv(target.key, tgt.name)
        except TokenError as exc:  # explained by the keys' sizes, where they differ
            mismatch = _size_mismatch(spec, source, target, src, tgt)
            if mismatch is None:
                raise
            raise mismatch from exc
        out = {"method": s_kcv.method, "source": s_kcv.value, "target": t_kcv.value}
    out["match"] = out["source"] == out["target"]
    if not out["match"]:
        raise KeyMismatch(f"{spec.target_label!r} on {tgt.name} holds other key material than "
                          f"{spec.label!r} on {src.name} ({out['source']} != {out['target']})")
    return out


def _size_mismatch(spec: KeySpec, source: Side, target: Side, src: ClusterSession,
                   tgt: ClusterSession) -> KeyMismatch | None:
    """Another key size on the target (as the tokens report it) is other key material."""
    s = keyinfo.read(source.key)
    t = keyinfo.read(target.key)
    if s.size and t.size and s.size != t.size:
        return KeyMismatch(f"{spec.target_label!r} on {tgt.name} is {t.describe()}; "
                           f"{spec.label!r} on {src.name} is {s.describe()}: other key material")
    return None


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


def chunk_size(keys: int, workers: int = 1) -> int:
    """Keys per chunk (one xdist group, one batch of the journal): all of them up to MAX_CHUNK
    in a serial run; with several workers small enough that each worker gets about four
    chunks, so that a small inventory still spreads over the workers."""
    if workers <= 1:
        return max(1, min(MAX_CHUNK, keys))
    return max(1, min(MAX_CHUNK, -(-keys // (4 * workers))))


def chunks(specs: Sequence[KeySpec], size: int) -> list[tuple[KeySpec, ...]]:
    return [tuple(specs[i:i + size]) for i in range(0, len(specs), size)]


class Migrator:
    """Migrates (or, in verify-only mode, finds) inventory keys; memoises each key's outcome."""

    def __init__(self, profile: Profile, source: ClusterSession, target: ClusterSession,
                 run_id: str, journal: Any = None, gate: Any = None) -> None:
        self.profile, self.source, self.target = profile, source, target
        self.run_id = run_id
        self.gate = gate  # keyparity.hsm.login.LoginGate of the run: CloudHSM CLI logins
        # keyparity.journal.store.Journal: writes recorded before/after, one lock per target key
        self.journal = journal
        self.rec = journal.bind(run_id) if journal is not None else None
        if journal is not None:
            journal.reap_stale(run_id)  # locks left by a killed run
        self.writes = profile.migration_mode == "migrate"
        self._channel: WrappingChannel | KeyparityError | None = None
        self._cli_channel: Any = None  # cli_backend.CliChannel | KeyparityError, when chosen
        self._done: dict[str, Migration] = {}
        self._plan: dict[str, tuple[tuple[KeySpec, ...], int]] = {}  # label -> (chunk, next)
        # verified notes to commit, each with its key's Migration
        self._notes: list[tuple[Migration, tuple[str, str, dict[str, Any]]]] = []
        self._unwrapped: set[str] = set()  # target labels this process unwrapped
        self._unwrapping: str | None = None  # the target label of the unwrap last attempted
        # whether the target has CKA_UNIQUE_ID (None: not asked yet); SoftHSM 2.6 has not, and
        # its refusal costs ~0.3 ms a call (it logs each one)
        self._unique_ids: bool | None = None
        self._method = ""
        self._lost: str | None = None  # why the sessions could not be reopened after a fault
        self._conflicts: dict[str, str] | None = None  # label -> its CKA_ID conflict
        # cloudhsm-cli backend: wrapping objects (token objects) left by killed earlier runs
        self.reaped: list[str] = []
        self._reap_left: list[str] = []
        if journal is not None and self.writes and profile.migration_backend == "cloudhsm-cli":
            self._reap()

    def _reap(self) -> None:
        """Delete through the CLI the wrapping objects that earlier, dead runs left behind
        (keyparity.cloudhsm.backend.reap_wrapping); what cannot be deleted is reported by close."""
        from ..cloudhsm.backend import reap_wrapping
        from ..cloudhsm.cli import CloudHsmCli
        try:
            src = CloudHsmCli.for_cluster(self.profile.source, gate=self.gate)
            tgt = CloudHsmCli.for_cluster(self.profile.target, gate=self.gate)
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
        """``migration.backend: cloudhsm-cli``: the CloudHSM CLI channel (keyparity.cloudhsm.backend)."""
        if self._cli_channel is None:
            from ..cloudhsm.backend import CliChannel
            from ..cloudhsm.cli import CloudHsmCli
            try:
                self._cli_channel = CliChannel(
                    CloudHsmCli.for_cluster(self.profile.source, gate=self.gate),
                    CloudHsmCli.for_cluster(self.profile.target, gate=self.gate),
                    self.profile.wrapping,
                    f"keyparity-wrap-{self.run_id}", journal=self.rec)
            except KeyparityError as exc:
                self._cli_channel = exc
        if isinstance(self._cli_channel, KeyparityError):
            raise self._cli_channel
        return self._cli_channel

    def plan(self, chunks: Iterable[Sequence[KeySpec]]) -> None:
        """The keys this process will be asked for, in chunks (one xdist group each; see
        ``chunk_size``). When a key has to be unwrapped, the keys after it in its chunk that
        must be unwrapped too go with it: their locks are taken and their ``before`` entries
        committed together, one fsync for the batch (group commit), then each is unwrapped and
        its ``after`` recorded on its own. Only planned keys are ever batched: a key that was
        deselected, or belongs to another worker, is never written by this process."""
        for chunk in chunks:
            chunk = tuple(chunk)
            for i, spec in enumerate(chunk):
                self._plan[spec.label] = (chunk, i + 1)

    def ensure(self, spec: KeySpec) -> Migration:
        if spec.label not in self._done:
            m = self._done[spec.label] = Migration(spec)
            if self._guard(m, self._prepare) and m.status == "pending":
                self._write([m, *self._gather(spec)])
            self._flush_notes()
        return self._done[spec.label]

    def _guard(self, m: Migration, step: Callable[..., None], *args: Any) -> bool:
        """Run one step of a key's migration; a KeyparityError fails that key only (after a
        session fault the sessions are reopened once for the keys after it)."""
        try:
            if self._lost is not None:  # the reopen after a session fault failed: no loop
                raise TokenError(self._lost)
            step(m, *args)
            return True
        except KeyparityError as exc:
            m.status, m.detail, m.error = "failed", str(exc), exc
            if self._lost is None and session_fault(exc):
                self._recover(exc)
            return False

    def recover_after(self, fault: BaseException) -> bool:
        """A test of a migrated key hit a session fault (an encrypt, a KCV, an attribute read):
        reopen the sessions once, as after a fault during a migration, so that the next key's
        tests run on live sessions. Returns whether it reopened them."""
        if self._lost is not None or not session_fault(fault):
            return False
        self._recover(fault)
        return self._lost is None

    def _recover(self, fault: BaseException) -> None:
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

    def _prepare(self, m: Migration) -> None:
        """Everything before a write: find the key on both sides. One that needs unwrapping is
        left ``pending``, and so is one found on the target when this run may write (it is
        proven under its lock: another run may be creating it right now); otherwise a key found
        on the target is proven here."""
        spec, src, tgt = m.spec, self.source, self.target
        m.source = locate(src, spec, spec.label)
        if m.source is None:
            raise KeyNotFound(f"{spec.label!r} ({spec.type}) not found on {src.name}")
        m.source_attributes = attributes.read_standard(m.source.key)
        keyinfo.check(spec, keyinfo.from_attributes(m.source_attributes), src.name)
        extractable = m.source_attributes.get("extractable") is True
        if spec.disposition == "rotate":
            m.status = "rotate"
            m.detail = (f"marked rotate in the inventory ({'extractable' if extractable else 'not extractable'}"
                        f" on {src.name}): not migrated; {ROTATE_ADVICE}")
            return
        conflict = self._id_conflicts().get(spec.label)
        if conflict is not None:
            raise LabelConflict(conflict)
        m.target = locate(tgt, spec, spec.target_label)
        if m.target is not None:
            m.found = self._found(spec)
            if self.journal is not None and self.writes:
                return  # pending: proven under its lock (another run may be creating it now)
            self._finish(m)
            if not self.writes:
                m.status = "found"
            return
        if not self.writes:
            raise KeyNotFound(f"{spec.target_label!r} ({spec.type}) not found on {tgt.name} "
                              "(verify-only: nothing was written)")
        if not extractable:
            raise KeyNotExtractable(f"{spec.label!r} on {src.name} is not extractable "
                                    f"(CKA_EXTRACTABLE=false) and cannot be wrapped; {ROTATE_ADVICE}"
                                    "; or mark it disposition: rotate in the inventory")

    def _id_conflicts(self) -> dict[str, str]:
        """The inventory's CKA_ID conflicts on the target (keyparity.hsm.preflight), found once per
        process from both tokens' indexes: a key with one is not written."""
        if self._conflicts is None:
            self._conflicts = preflight.id_conflicts(self.profile, self.source.index,
                                                     self.target.index)
        return self._conflicts

    def _found(self, spec: KeySpec) -> str:
        return (f"found on {self.target.name} under {spec.target_label!r} with the same key "
                "material" + ("; not migrated again" if self.writes else ""))

    def _gather(self, spec: KeySpec) -> list[Migration]:
        """The planned keys after ``spec`` in its chunk that need unwrapping, or proving under
        their locks, too (with the journal and the PKCS #11 backend only). Each is prepared
        here; one that turns out rotate or failed is done, as its own ``ensure`` would have
        left it."""
        if self.journal is None or self.profile.migration_backend == "cloudhsm-cli":
            return []
        chunk, i = self._plan.get(spec.label, ((), 0))
        out = []
        for nxt in chunk[i:]:
            if nxt.label in self._done:
                continue
            m = self._done[nxt.label] = Migration(nxt)
            if self._guard(m, self._prepare) and m.status == "pending":
                out.append(m)
        return out

    def _finish(self, m: Migration) -> None:
        """Prove the key material on the target equals the source's, then say what happened."""
        spec, src, tgt = m.spec, self.source, self.target
        assert m.source is not None and m.target is not None
        try:
            m.identity = prove_identity(spec, m.source, m.target, src, tgt, m.source_kcv)
        except KeyMismatch as exc:
            if m.found is None:
                raise
            raise LabelConflict(f"{exc}; nothing was written") from exc
        resumed = self._resumed(m)
        if m.found is not None:
            m.status, m.detail = "already-present", m.found + resumed
            return
        m.status = "migrated"
        m.detail = f"wrapped on {src.name}, unwrapped on {tgt.name} ({self._method})"

    def _resumed(self, m: Migration) -> str:
        """After the identity is proven: journal it (a ``verified`` note, committed with the
        others of the batch), and say when an earlier run (killed, or concurrent) unwrapped
        the key without verifying it."""
        if self.journal is None or not self.writes:
            return ""
        spec, tgt = m.spec, self.target
        self._notes.append((m, ("note", "verified", {
            "key_label": spec.label, "cluster": tgt.name, "label": spec.target_label,
            "check_value": m.identity.get("target")})))
        if spec.target_label in self._unwrapped:
            return ""
        prior = self.journal.last_unwrap(tgt.name, spec.target_label)
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

    def _flush_notes(self) -> None:
        notes, self._notes = self._notes, []
        if notes and self.rec is not None:
            entries = self.rec.record_many([note for _, note in notes])
            for (m, _), entry in zip(notes, entries):
                m.journal.append(entry["seq"])

    def _move(self, m: Migration) -> None:
        spec, tgt = m.spec, self.target
        assert m.source is not None
        self._unwrapping = None
        if self.profile.migration_backend == "cloudhsm-cli":
            cli = self.cli_channel
            self._unwrapping = spec.target_label  # its commands write to the target
            m.target = cli.move(spec, m.source_attributes, tgt)
            self._method = cli.method
        else:
            cls = key_class(spec.type)
            template = attributes.unwrap_template(m.source_attributes, cls, spec.target_label,
                                                  spec.attributes)
            channel = self.channel
            blob = channel.wrap(m.source.key)
            self._unwrapping = spec.target_label  # from here on the target may hold the key
            key = channel.unwrap(blob, cls, KEY_TYPES[spec.type], template)
            tgt.index.add(key, spec.target_label, bytes(template.get(Attribute.ID, b"")).hex())
            m.target = Side(key)
            self._method = channel.method

    def _write(self, batch: list[Migration]) -> None:
        """Unwrap a batch of pending keys (the first is the one asked for), then prove each.
        With a journal: under each key's lock, after looking at the token again where another
        process may have unwrapped it meanwhile; a planned key whose lock another process
        holds is left for its own turn, the key asked for waits for its lock."""
        if self.journal is None:
            for m in batch:
                if self._guard(m, self._move):
                    self._guard(m, self._finish)
                elif self._lost is None:
                    self._look_after_failure(m)
            return
        tgt = self.target
        target_id = f"{tgt.info.get('label')}/{tgt.info.get('serial')}"
        first = batch[0]
        claims = self.journal.claim(target_id, [m.spec.target_label for m in batch], self.run_id)
        held = [m for m in batch if claims[m.spec.target_label] is not None]
        for m in batch[1:]:
            if claims[m.spec.target_label] is None:
                del self._done[m.spec.label]  # another process has it now: its own turn
        if claims[first.spec.target_label] is None:  # wait for the lock of the key asked for
            self.journal.release(target_id, [m.spec.target_label for m in held])
            self._guard(first, self._write_waiting, target_id)
            return
        try:
            self._unwrap(held, claims)
        finally:
            self.journal.release(target_id, [m.spec.target_label for m in held])

    def _write_waiting(self, m: Migration, target_id: str) -> None:
        with self.journal.lock(target_id, m.spec.target_label, self.run_id) as info:
            self._unwrap([m], {m.spec.target_label: info})

    def _unwrap(self, batch: list[Migration], claims: dict[str, Any]) -> None:
        """Under the batch's locks: look again where needed, record every ``before`` in one
        durable commit, then unwrap each key, record its ``after`` (or ``failed``) and prove
        it before the next one."""
        todo: list[tuple[Migration, dict[str, Any]]] = []
        for m in batch:
            if not self._guard(m, self._recheck, claims[m.spec.target_label]):
                continue
            if m.target is not None:  # found after all: proven, nothing written
                self._guard(m, self._finish)
                continue
            assert m.source is not None
            check = source_check(m.spec, m.source, self.source)
            if isinstance(check, identity.Kcv):
                m.source_kcv, check = check, check.value
            todo.append((m, {"key_label": m.spec.label, "cluster": self.target.name,
                             "label": m.spec.target_label, "check_value": check}))
        befores = self.rec.record_many([("before", "unwrap", fields) for _, fields in todo])
        for (m, _), entry in zip(todo, befores):
            m.journal.append(entry["seq"])
        for m, fields in todo:
            if self._lost is not None:
                m.journal.append(self.rec.record("failed", "unwrap", **fields,
                                                 detail=f"not attempted: {self._lost}")["seq"])
            if self._guard(m, self._move_journaled, fields):
                self._guard(m, self._finish)
            elif self._lost is None:
                self._look_after_failure(m)

    def _look_after_failure(self, m: Migration) -> None:
        """An unwrap that failed may still have created the key (the reply lost on the way
        back, a timeout): look once on the (reopened) session and say what is there."""
        spec, tgt = m.spec, self.target
        if self._unwrapping != spec.target_label:  # failed before the target was asked
            return
        try:
            there = locate_on_token(tgt, spec, "look for the key after the failed unwrap")
        except KeyparityError as exc:
            m.detail += f"; whether {spec.target_label!r} is on {tgt.name} now is unknown: {exc}"
            return
        if there is None:
            m.detail += f"; nothing labelled {spec.target_label!r} was written to {tgt.name}"
            return
        m.detail += (f"; an object labelled {spec.target_label!r} IS on {tgt.name} now (the "
                     "token may have completed the unwrap): not verified in this run; the next "
                     "run proves it by KCV/fingerprint instead of unwrapping it again")
        if self.rec is not None:
            m.journal.append(self.rec.record(
                "note", "unwrap-outcome", key_label=spec.label, cluster=tgt.name,
                label=spec.target_label, handle=there.key.handle,
                detail="an object is under the label after a failed unwrap")["seq"])

    def _recheck(self, m: Migration, lock: dict[str, Any]) -> None:
        """Ask the token again only when another process may have unwrapped the key since the
        index was built (it journals before unwrapping, under the lock we now hold); otherwise
        the index is current, and a search by label per key would make the cost quadratic."""
        spec, tgt = m.spec, self.target
        other = lock["contended"] or lock["took_over"]
        if m.target is None:
            prior = self.journal.last_unwrap(tgt.name, spec.target_label)
            other = other or (prior is not None and spec.target_label not in self._unwrapped)
        if other:  # (a key found in the index: only when another process held its lock)
            m.target = locate_on_token(tgt, spec)
        if m.target is not None:
            m.found = self._found(spec)
            if lock["waited"] > 0.2:
                m.found += f"; waited {lock['waited']}s for its lock"

    def _move_journaled(self, m: Migration, fields: dict[str, Any]) -> None:
        try:
            self._move(m)
        except Exception as exc:
            m.journal.append(self.rec.record("failed", "unwrap", **{
                **fields, "detail": f"{type(exc).__name__}: {exc}"})["seq"])
            raise
        assert m.target is not None
        self._unwrapped.add(m.spec.target_label)
        uid = None
        if self._unique_ids is not False:  # asked once: a token without it says so each time
            uid = unique_id(m.target.key)
            self._unique_ids = uid is not None
        m.journal.append(self.rec.record("after", "unwrap", **{
            **fields, "handle": m.target.key.handle, "unique_id": uid})["seq"])

    def close(self) -> list[str]:
        """Destroy the wrapping objects this process created; returns what was left behind."""
        left = self._channel.close() if isinstance(self._channel, WrappingChannel) else []
        left += self._reap_left
        if self._cli_channel is not None and not isinstance(self._cli_channel, KeyparityError):
            left += self._cli_channel.close()
        return left
