"""The migration of inventory keys: locate -> lock -> move -> prove, one key (or one chunk of
keys) at a time; each key ends migrated, already-present, found, rotate or failed.

    ensure(spec)     the key's outcome, computed on first use and remembered
      _locate        both sides by label; what the inventory says checked against the token
                     (type, size, curve, CKA_ID); a key found on the target is proven under its
                     lock, a key to rotate is not moved, a verify-only run writes nothing
      _lock          the target keys' locks (keyparity.journal.locks: a file per key that
                     every run on the target sees, whatever its journal), the token looked at
                     again where another process may have moved a key
      _move          every "before" of the chunk in one durable journal commit, then each key
                     moved by the Backend (keyparity.hsm.backend) and its "after" recorded
      _prove         source and target hold the same key material (keyparity.hsm.proof: the
                     source's output over a fresh challenge is committed and journaled before
                     the write, the target computes over the same challenge after it)

A run that follows a signed plan (``approval``: keyparity.attest.approval) asks it before
each key's ``before`` entry; a key it refuses (not in the plan, other key material than the
plan's commitment, another template) fails and is not written.

A key's failure is its own: the error is kept in its Migration and the next key goes on. After
a session fault the sessions are reopened once; when that fails, every later key fails with
that reason. The journal is always there (keyparity.journal.recorder.NullJournal for a
benchmark's baseline), and so is the backend.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pkcs11.exceptions as p11

from ..errors import (KeyMismatch, KeyNotExtractable, KeyNotFound, KeyparityError,
                      LabelConflict, PolicyError, TokenError)
from ..journal.locks import Claim, KeyLocks
from ..journal.recorder import NullJournal, Recorder
from ..profile import KeySpec, Profile
from . import attributes, keyinfo, preflight, proof
from .backend import Backend, Pkcs11Backend, wrapping_label
from .cluster import ClusterSession
from .locate import Side, locate, locate_on_token, unique_id
from .lockdir import key_locks

OK = ("migrated", "already-present", "found")
MAX_CHUNK = 50  # keys per chunk: one durable journal commit for up to this many moves
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


def chunk_size(keys: int, workers: int = 1) -> int:
    """Keys per chunk (one xdist group, one journal batch: keyparity.chunks): all of them up to
    MAX_CHUNK in a serial run; with several workers small enough that each worker gets about
    four chunks, so that a small inventory still spreads over the workers."""
    if workers <= 1:
        return max(1, min(MAX_CHUNK, keys))
    return max(1, min(MAX_CHUNK, -(-keys // (4 * workers))))


def chunks(specs: Sequence[KeySpec], size: int) -> list[tuple[KeySpec, ...]]:
    return [tuple(specs[i:i + size]) for i in range(0, len(specs), size)]


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
    started: proof.Commitment | None = None  # journaled before the write, reused by the proof
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

    def journaled(self, *entries: dict[str, Any]) -> None:
        """Keep the seqs of this run's journal entries for the key (a NullJournal has none)."""
        self.journal += [e["seq"] for e in entries if e.get("seq") is not None]


class Migrator:
    """Migrates (or, in verify-only mode, finds) inventory keys; memoises each key's outcome.

    ``journal``: the write journal (a Recorder: a Journal, or a NullJournal); ``backend``: how
    keys move (default: PKCS #11); ``approval``: the signed plan the run follows (``refusal(spec,
    source, source_attributes)`` says why a key may not be written), None without one;
    ``wrap_refusal``: why a key may not be wrapped by the profile's chain (weaker than the key
    and no signed exception: keyparity.attest.signoff), asked before its write;
    ``locks``: the target's key locks (default: its lock directory, keyparity.hsm.lockdir)."""

    def __init__(self, profile: Profile, source: ClusterSession, target: ClusterSession,
                 run_id: str, journal: Recorder | None = None, backend: Backend | None = None,
                 approval: Any = None, locks: KeyLocks | None = None,
                 wrap_refusal: Callable[[KeySpec], str | None] | None = None) -> None:
        self.profile, self.source, self.target, self.run_id = profile, source, target, run_id
        self.journal = journal if journal is not None else NullJournal()
        self.recorder = self.journal.bind(run_id)
        self.backend = backend or Pkcs11Backend(source, target, profile.wrapping,
                                                wrapping_label(run_id), self.recorder)
        self.writes = profile.migration_mode == "migrate"
        self.approval = approval
        self.wrap_refusal = wrap_refusal
        self.locks = locks if locks is not None or not self.writes else key_locks(target, run_id)
        self._done: dict[str, Migration] = {}
        self._batches: dict[str, tuple[tuple[KeySpec, ...], int]] = {}  # label -> (chunk, next)
        # verified notes to commit, each with its key's Migration
        self._notes: list[tuple[Migration, tuple[str, str, dict[str, Any]]]] = []
        self._unwrapped: set[str] = set()  # target labels this process unwrapped
        # whether the target has CKA_UNIQUE_ID (None: not asked yet); SoftHSM 2.6 has not, and
        # its refusal costs ~0.3 ms a call (it logs each one)
        self._unique_ids: bool | None = None
        self._lost: str | None = None  # why the sessions could not be reopened after a fault
        self._conflicts: dict[str, str] | None = None  # label -> its CKA_ID conflict

    def set_batches(self, chunks: Iterable[Sequence[KeySpec]]) -> None:
        """The keys this process will be asked for, in chunks (one xdist group each; see
        keyparity.chunks). When a key has to be moved, the keys after it in its chunk that must
        be moved too go with it: their locks are taken and their ``before`` entries committed
        together, one fsync for the batch (group commit), then each is moved and its ``after``
        recorded on its own. Only these keys are ever batched: a key that was deselected, or
        belongs to another worker, is never written by this process."""
        for chunk in chunks:
            chunk = tuple(chunk)
            for i, spec in enumerate(chunk):
                self._batches[spec.label] = (chunk, i + 1)

    def ensure(self, spec: KeySpec) -> Migration:
        """The key's migration, performed on first use (with the rest of its chunk). The
        source attributes read for the move are let go once it is done (the evidence's
        attribute table is read by its own test), not kept to the end of the run: about 2 KiB
        a key."""
        if spec.label not in self._done:
            m = self._done[spec.label] = Migration(spec)
            batch = [m]
            if self._guard(m, self._locate) and m.status == "pending":
                batch += self._chunk_after(spec)
                self._lock_and_move(batch)
            self._flush_notes()
            for done in batch:
                if done.status != "pending":
                    done.source_attributes = {}
        m = self._done[spec.label]
        if m.status == "pending":  # never handed out: a test would report it without a reason
            m.status, m.detail = "failed", ("its migration did not finish in this process "
                                            "(keyparity left it pending: report this)")
        return m

    # ---- locate ------------------------------------------------------------------------------

    def _locate(self, m: Migration) -> None:
        """Find the key on both sides and check it against the inventory. One that needs moving
        is left ``pending``, and so is one found on the target when this run may write (it is
        proven under its lock: another run may be creating it right now)."""
        spec, src, tgt = m.spec, self.source, self.target
        m.source = locate(src, spec, spec.label)
        if m.source is None:
            raise KeyNotFound(f"{spec.label!r} ({spec.type}) not found on {src.name}")
        m.source_attributes = attributes.standard(m.source.key)
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
            if not self.writes:
                self._prove(m)
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
        """The inventory's CKA_ID conflicts on the target (keyparity.hsm.preflight), found once
        per process from both tokens' indexes: a key with one is not written."""
        if self._conflicts is None:
            self._conflicts = preflight.id_conflicts(self.profile, self.source.index,
                                                     self.target.index)
        return self._conflicts

    def _found(self, spec: KeySpec) -> str:
        return (f"found on {self.target.name} under {spec.target_label!r} with the same key "
                "material" + ("; not migrated again" if self.writes else ""))

    def _chunk_after(self, spec: KeySpec) -> list[Migration]:
        """The planned keys after ``spec`` in its chunk that need moving, or proving under
        their locks, too (when the backend batches). Each is located here; one that turns out
        rotate or failed is done, as its own ``ensure`` would have left it."""
        if not self.backend.batches:
            return []
        chunk, i = self._batches.get(spec.label, ((), 0))
        out = []
        for nxt in chunk[i:]:
            if nxt.label in self._done:
                continue
            m = self._done[nxt.label] = Migration(nxt)
            if self._guard(m, self._locate) and m.status == "pending":
                out.append(m)
        return out

    # ---- lock --------------------------------------------------------------------------------

    def _lock_and_move(self, batch: list[Migration]) -> None:
        """Take the batch's locks; a planned key whose lock another process holds is left for
        its own turn, the key asked for (the first) waits for its lock, alone."""
        assert self.locks is not None
        first = batch[0]
        claims = self.locks.claim(m.spec.target_label for m in batch)
        self._took_over(claims.values())
        held = [m for m in batch if claims[m.spec.target_label] is not None]
        if claims[first.spec.target_label] is None:  # wait for the lock of the key asked for
            self.locks.release(claims.values())
            for m in batch[1:]:  # every other key of the batch: its own turn
                del self._done[m.spec.label]
            self._guard(first, self._wait_then_move)
            return
        for m in batch[1:]:
            if claims[m.spec.target_label] is None:
                del self._done[m.spec.label]  # another process has it now: its own turn
        moved: set[str] = {m.spec.target_label for m in held}  # until _move says otherwise
        try:
            moved = self._move(held, claims)
        finally:
            self.locks.release(claims.values(), moved)

    def _wait_then_move(self, m: Migration) -> None:
        assert self.locks is not None
        claim = self.locks.wait_for(m.spec.target_label)
        self._took_over([claim])
        moved = {m.spec.target_label}
        try:
            moved = self._move([m], {m.spec.target_label: claim})
        finally:
            self.locks.release([claim], moved)

    def _took_over(self, claims: Iterable[Claim | None]) -> None:
        """A journal note for each lock whose holder ended holding it (killed, crashed)."""
        self.recorder.record_many([
            ("note", "lock-takeover", {
                "label": c.label, "cluster": self.target.name,
                "detail": f"lock held by run {c.took_over} (pid {c.prior.get('pid')} on "
                          f"{c.prior.get('host')}, ended) taken over"})
            for c in claims if c is not None and c.took_over is not None and c.prior])

    def _look_again(self, m: Migration, lock: Claim) -> None:
        """Under the lock, ask the token again (refreshed) only when another process may have
        moved the key since this one read the token: it waited for the lock, or the lock's
        last holder ended holding it or moved the key since, or the journal shows another
        process's unwrap. Otherwise the index is current, and a search by label per key would
        make the cost quadratic."""
        spec, tgt = m.spec, self.target
        other = lock.contended or lock.took_over is not None
        if m.target is None:
            prior = self.journal.last_unwrap(tgt.name, spec.target_label)
            other = (other or lock.moved_since(tgt.index_read_at)
                     or (prior is not None and spec.target_label not in self._unwrapped))
        if other:  # (a key found in the index: only when another process held its lock)
            m.target = locate_on_token(tgt, spec)
        if m.target is not None:
            m.found = self._found(spec)
            if lock.waited > 0.2:
                m.found += f"; waited {lock.waited}s for its lock"

    # ---- move --------------------------------------------------------------------------------

    def _move(self, batch: list[Migration], claims: dict[str, Any]) -> set[str]:
        """Under the batch's locks: look again where needed, record every ``before`` in one
        durable commit, then move each key, record its ``after`` (or ``failed``) and prove it
        before the next one. Returns the target labels of the keys it tried to move."""
        todo: list[tuple[Migration, dict[str, Any]]] = []
        for m in batch:
            if not self._guard(m, self._look_again, claims[m.spec.target_label]):
                continue
            if m.target is not None:  # found after all: proven, nothing written
                self._guard(m, self._prove)
                continue
            if not self._guard(m, self._approved):
                continue
            m.started = self._commitment(m)
            todo.append((m, {"key_label": m.spec.label, "cluster": self.target.name,
                             "label": m.spec.target_label,
                             "check_value": m.started.token() if m.started else None}))
        befores = self.recorder.record_many([("before", "unwrap", fields) for _, fields in todo])
        for (m, _), entry in zip(todo, befores):
            m.journaled(entry)
        for m, fields in todo:
            if self._lost is not None:
                m.journaled(self.recorder.record("failed", "unwrap", **fields,
                                                 detail=f"not attempted: {self._lost}"))
            if self._guard(m, self._move_one, fields):
                self._guard(m, self._prove)
            elif self._lost is None:
                self._look_after_failure(m)
        return {m.spec.target_label for m, _ in todo}

    def _approved(self, m: Migration) -> None:
        """PolicyError when the run follows a plan that does not approve this write, or when
        the key may not be wrapped by the profile's chain."""
        assert m.source is not None
        why = None if self.approval is None else self.approval.refusal(
            m.spec, m.source, m.source_attributes)
        if why is None and self.wrap_refusal is not None:
            why = self.wrap_refusal(m.spec)
        if why is not None:
            raise PolicyError(why)

    def _commitment(self, m: Migration) -> proof.Commitment | None:
        """The source key's output over a fresh challenge, committed and journaled before the
        write (None: it cannot be made here; the proof after the move says why)."""
        assert m.source is not None
        try:
            return proof.commit(m.source)
        except KeyparityError:
            return None

    def _move_one(self, m: Migration, fields: dict[str, Any]) -> None:
        assert m.source is not None and self.locks is not None
        try:
            with self.locks.token_write():
                if self.locks.serialize_writes:  # see every other process's objects first
                    self.target.refresh()
                m.target = self.backend.move(m.spec, m.source, m.source_attributes)
        except Exception as exc:
            m.journaled(self.recorder.record("failed", "unwrap", **{
                **fields, "detail": f"{type(exc).__name__}: {exc}"}))
            raise
        self._unwrapped.add(m.spec.target_label)
        uid = None
        if self._unique_ids is not False:  # asked once: a token without it says so each time
            uid = unique_id(m.target.key)
            self._unique_ids = uid is not None
        m.journaled(self.recorder.record("after", "unwrap", **{
            **fields, "handle": m.target.key.handle, "unique_id": uid}))

    def _look_after_failure(self, m: Migration) -> None:
        """A move that failed may still have created the key (the reply lost on the way back,
        a timeout): look once on the (reopened) session and say what is there."""
        spec, tgt = m.spec, self.target
        if not self.backend.asked_target:  # failed before the target was asked
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
        m.journaled(self.recorder.record(
            "note", "unwrap-outcome", key_label=spec.label, cluster=tgt.name,
            label=spec.target_label, handle=there.key.handle,
            detail="an object is under the label after a failed unwrap"))

    # ---- prove -------------------------------------------------------------------------------

    def _prove(self, m: Migration) -> None:
        """Prove the key material on the target equals the source's, then say what happened."""
        spec, src, tgt = m.spec, self.source, self.target
        assert m.source is not None and m.target is not None
        try:
            proven = proof.prove_key(spec, m.source, m.target, m.started)
            m.identity = proven.record()
        except KeyMismatch as exc:
            m.identity = exc.identity or {}  # what differs, for the record: never acted on
            if m.found is None:
                raise
            raise LabelConflict(f"{exc}; nothing was written") from exc
        resumed = self._resumed(m, proven.commitment().token())
        if m.found is not None:
            m.status, m.detail = "already-present", m.found + resumed
            return
        m.status = "migrated"
        m.detail = f"wrapped on {src.name}, unwrapped on {tgt.name} ({self.backend.method})"

    def _resumed(self, m: Migration, commitment: str) -> str:
        """After the identity is proven: journal it (a ``verified`` note, committed with the
        others of the batch), and say when an earlier run (killed, or concurrent) unwrapped
        the key without verifying it."""
        if not self.writes:
            return ""
        spec, tgt = m.spec, self.target
        self._notes.append((m, ("note", "verified", {
            "key_label": spec.label, "cluster": tgt.name, "label": spec.target_label,
            "check_value": commitment})))
        if spec.target_label in self._unwrapped:
            return ""
        prior = self.journal.last_unwrap(tgt.name, spec.target_label)
        if prior is None or prior["run_id"] == self.run_id:
            return ""
        if self.journal.verified(prior["run_id"], tgt.name, spec.target_label):
            return ""
        state = {"before": "was interrupted before recording the result",
                 "after": "did not record its verification",
                 "failed": "recorded a failure"}.get(prior["phase"], prior["phase"])
        return (f" (resumed: run {prior['run_id']} unwrapped it, journal seq {prior['seq']}, "
                f"and {state}: verified now, not unwrapped twice)")

    def _flush_notes(self) -> None:
        notes, self._notes = self._notes, []
        if notes:
            entries = self.recorder.record_many([note for _, note in notes])
            for (m, _), entry in zip(notes, entries):
                m.journaled(entry)

    # ---- failures and faults -----------------------------------------------------------------

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
        """After a session fault: let the backend forget what lived in the lost session,
        reopen both clusters' sessions once, and re-find the objects of the keys already done
        on the new sessions. When a reopen fails, every later key fails with that reason
        (``_lost``); nothing is retried."""
        self.backend.recover()
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

    def close(self) -> list[str]:
        """Remove the backend's wrapping objects; returns what was left behind."""
        return self.backend.close()
