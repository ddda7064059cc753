"""``keyparity cleanup PROFILE --run RUN_ID``: remove from the target exactly what a run
created, by its journal, and never the last copy of a key.

A key the run unwrapped is removed only when (keyparity.hsm.destruction: the rule every
destroying command follows)

* the journal shows the run created it (an ``after`` entry) and it was not destroyed since,
  and no other run unwrapped a key under the label later;
* it is the one object the journal entry recorded: its CKA_UNIQUE_ID where the token has one,
  else the one object under the label that holds the material the entry committed to
  (keyparity.hsm.proof: the SHA-256 of the output over the entry's challenge, a pair's public
  key) - when several objects match (another run's copy of the same key), nothing is removed;
* its source key was not retired (the journal's ``destroy`` entries of ``keyparity retire``),
  is still on the source, and is proven AT THAT MOMENT to hold the same material, with a fresh
  challenge on both clusters: a second copy. Otherwise the target object may be the last copy:
  it is left, and said.

The run's wrapping objects (its own, holding no one's key material) are removed when their
public key is the one journaled. Source objects are never touched. What cannot be proven is
left and reported (exit 1), and so is an object under the label of a write that was
interrupted or recorded a failure (a lost reply); such a write with nothing under its label is
said, not an error. A key left because its source key was retired is said, and is not an
error. Each destroy is journaled. Each cluster is logged in to once, through the caller's
gate; a failed login stops the clean-up (nothing more is tried).
"""
from __future__ import annotations

from typing import Any

from pkcs11 import Attribute, ObjectClass
from pkcs11.types import Object, Session

from ..errors import KeyparityError, LoginError, SecretError
from ..journal.store import CREATES, Journal
from ..keytypes import key_class
from ..profile import KeySpec, Profile
from . import destruction, identity, proof
from .cluster import ClusterSession, ClusterUnavailable, open_cluster
from .locate import Side, locate, unique_id
from .login import LoginGate

_KEY_CLASSES = (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY)
_STOP = (LoginError, SecretError, ClusterUnavailable)  # never a second login: stop


def cleanup(journal: Journal, run_id: str, profile: Profile,
            gate: LoginGate | None = None) -> tuple[list[str], bool]:
    """Returns (lines, ok): ok is False when something was left that the run may have
    created. An unknown run raises KeyparityError."""
    return Cleanup(journal, run_id, profile, gate or LoginGate(None)).run()


class Cleanup:
    def __init__(self, journal: Journal, run_id: str, profile: Profile,
                 gate: LoginGate) -> None:
        self.journal, self.run_id, self.profile, self.gate = journal, run_id, profile, gate
        self.entries = journal.entries(run_id)
        if not self.entries:
            raise KeyparityError(f"the journal {journal.path} has no entries of run {run_id}: "
                                 "check the run id (the run directory's name under reports/, "
                                 "printed in the run's header)")
        self.target = profile.target.name
        self.recorder = journal.bind(run_id)
        self.lines: list[str] = []
        self.ok = True
        self._destroyed: dict[str, list[dict[str, Any]]] | None = None  # see _retired

    def run(self) -> tuple[list[str], bool]:
        session = open_cluster(self.profile.target, self.profile.module_env, self.gate).session
        for label, (entry, what) in self._doubtful().items():
            self._report_doubtful(session, label, entry, what)
        destroyed = {(e["cluster"], e["label"], e["handle"]) for e in self.entries
                     if e["action"] == "destroy" and e["phase"] == "after"}
        removed = {(e["cluster"], e["label"]): e["seq"] for e in self.entries
                   if e["action"] == "destroy" and e["phase"] == "after"}
        for e in self._created():
            if self._still_ours(e, destroyed, removed):
                self._remove(session, e)
        if not self.lines:
            self.lines.append(f"keyparity cleanup: nothing of run {self.run_id} is left on "
                              f"{self.target}")
        return self.lines, self.ok

    def _created(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["action"] in CREATES and e["phase"] == "after"]

    def _doubtful(self) -> dict[str, tuple[dict[str, Any], str]]:
        """Writes on the target whose outcome the journal does not know: interrupted (a
        ``before`` and nothing after it), or an unwrap that recorded a failure yet may have
        created its object (a lost reply); label -> (entry, what happened)."""
        open_ops: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for e in self.entries:
            k = (e["action"], e["cluster"] or "", e["label"] or "")
            if e["phase"] == "before":
                open_ops.setdefault(k, []).append(e)
            elif e["phase"] in ("after", "failed") and open_ops.get(k):
                open_ops[k].pop()
        doubtful: dict[str, tuple[dict[str, Any], str]] = {}
        for (action, cluster, label), entries in open_ops.items():
            if entries and action in CREATES and cluster == self.target:
                doubtful[label] = (entries[-1], f"the {action} of run {self.run_id} was "
                                   "interrupted (no 'after' entry)")
        for e in self.entries:
            if e["action"] == "unwrap" and e["phase"] == "failed" and e["cluster"] == self.target:
                doubtful.setdefault(e["label"], (e, f"the unwrap of run {self.run_id} recorded "
                                                    "a failure"))
        for e in self._created():
            if e["cluster"] == self.target:
                doubtful.pop(e["label"], None)
        return doubtful

    def _report_doubtful(self, session: Session, label: str, e: dict[str, Any],
                         what: str) -> None:
        where = f"{label!r} on {self.target}: {what} (journal seq {e['seq']})"
        if not any(True for _ in session.get_objects({Attribute.LABEL: label})):
            self.lines.append(f"nothing to remove: {where}, and nothing is under that label")
            return
        later = self.journal.later_unwrap(self.target, label, e["seq"], self.run_id)
        if later is not None:
            self.lines.append(f"left alone: {where}; the key under that label is run "
                              f"{later['run_id']}'s (journal seq {later['seq']})")
            return
        self.ok = False
        self.lines.append(f"not removed: {where}, yet an object is under that label: it cannot "
                          "be proven to be this run's; a run of the profile proves it by "
                          "KCV/fingerprint, or inspect it by hand")

    def _still_ours(self, e: dict[str, Any], destroyed: set[tuple[Any, ...]],
                    removed: dict[tuple[str, str], int]) -> bool:
        """Whether a created object may still be this run's (else says why it is not)."""
        label, target = e["label"], self.target
        if e["cluster"] != target:
            self.lines.append(f"left alone: {label!r} on {e['cluster']} ({e['action']}) is not "
                              f"on the target {target}; cleanup never touches the source")
            return False
        if e["action"] == "generate-wrapping-pair":
            handles = set((e["handle"] or "").split(","))
            if all((target, label, h) in destroyed for h in handles):
                self.lines.append(f"already destroyed: wrapping pair {label!r} on {target}")
                return False
            return True
        if removed.get((target, label), 0) > e["seq"]:
            # destroyed since (compared by seq: handles differ between processes)
            self.lines.append(f"already destroyed: {label!r} on {target} (journal seq "
                              f"{removed[(target, label)]})")
            return False
        later = self.journal.later_unwrap(target, label, e["seq"], self.run_id)
        if later is not None:  # same key material, another run's object: never ours
            self.lines.append(f"left alone: {label!r} on {target}: the key under that label is "
                              f"run {later['run_id']}'s (journal seq {later['seq']}), not run "
                              f"{self.run_id}'s")
            return False
        return True

    def _remove(self, session: Session, e: dict[str, Any]) -> None:
        label = e["label"]
        objs = [o for o in session.get_objects({Attribute.LABEL: label})
                if o.object_class in _KEY_CLASSES]
        if not objs:
            self.lines.append(f"already gone: {label!r} on {self.target} ({e['action']})")
            return
        if e["action"] == "unwrap":
            self._remove_key(e, objs)
            return
        for obj in objs:  # the run's wrapping objects: its own, by the journaled public key
            name = f"{label!r} ({obj.object_class.name.lower()}) on {self.target}"
            if self._fingerprint(obj) != e["check_value"]:
                self.ok = False
                self.lines.append(f"not removed: {name}: its public key is not the one run "
                                  f"{self.run_id} journaled (journal seq {e['seq']})")
                continue
            self._destroy(obj, destruction.own(obj, f"a wrapping object of run {self.run_id}"),
                          e, name, "its public key")

    def _remove_key(self, e: dict[str, Any], objs: list[Object]) -> None:
        """An unwrapped key: the one object the entry recorded, and only as a second copy."""
        label = e["label"]
        where = f"{label!r} on {self.target} (journal seq {e['seq']})"
        spec = next((k for k in self.profile.keys if k.label == e["key_label"]), None)
        try:
            committed = proof.Commitment.parse(e["check_value"])
        except ValueError:
            committed = None
        if spec is None or committed is None:
            self._left(f"not removed: {where}: " + (
                f"{e['key_label']!r} is not a key of the profile {self.profile.name}"
                if spec is None else "the journal entry holds no commitment to the key "
                "material (an entry of an earlier keyparity: a 3-byte KCV proves nothing)"))
            return
        retired = self._retired(spec, e["seq"])
        if retired is not None:
            self.lines.append(f"left alone: {where}: its source key {spec.label!r} was "
                              f"destroyed by {retired['run_id']} (journal seq {retired['seq']})"
                              f": this is its only copy, never removed")
            return
        source = self._source_side(spec)
        if source is None:
            self._left(f"left: {where}: {spec.label!r} is not on {self.profile.source.name} "
                       "and no retirement of it is journaled: this may be the last copy of the "
                       "key; nothing removed")
            return
        mine = self._recorded(e, objs, spec, committed, source)
        if len(mine) != 1:
            self._left(f"not removed: {where}: " + (
                f"{len(mine)} objects under the label hold the key material run {self.run_id} "
                "unwrapped (another run's copy of the same key, or more): which one is its "
                "own cannot be told, nothing removed" if mine else
                f"no object under the label is proven to be the one run {self.run_id} "
                "created (by CKA_UNIQUE_ID or the committed key material)"))
            return
        doomed = Side(mine[0], None, self.target, spec.curve)
        try:
            permit = destruction.second_copy(doomed, source, spec)
        except destruction.Refused as exc:
            self._left(f"left: {where}: {exc}")
            return
        self._destroy(mine[0], permit, e, f"{label!r} ({mine[0].object_class.name.lower()}) "
                      f"on {self.target}", "its commitment and a fresh proof of the source copy")

    def _recorded(self, e: dict[str, Any], objs: list[Object], spec: KeySpec,
                  committed: proof.Commitment, source: Side) -> list[Object]:
        """The objects that are the one the entry recorded: by CKA_UNIQUE_ID where the entry
        and the token have one, else by the committed key material (an EC private key answers
        for the source's public key)."""
        cls = key_class(spec.type)
        objs = [o for o in objs if o.object_class == cls]
        if e["unique_id"]:
            uids = {o.handle: unique_id(o) for o in objs}
            if any(u is not None for u in uids.values()):
                return [o for o in objs if uids[o.handle] == e["unique_id"]]
        out = []
        for obj in objs:
            try:
                proof.check(committed, Side(obj, source.public if spec.type == "ec" else None,
                                            self.target, spec.curve))
            except _STOP:
                raise
            except Exception:  # noqa: BLE001 - not this entry's material, or unprovable: not it
                continue
            out.append(obj)
        return out

    def _retired(self, spec: KeySpec, since: int) -> dict[str, Any] | None:
        """The journal's record of a destroy of the source key (``keyparity retire``) after
        the unwrap of journal seq ``since`` (an earlier one destroyed an earlier key of the
        label)."""
        if self._destroyed is None:  # read once: every destroy on the source, by key
            source = self.profile.source.name
            self._destroyed = {}
            for d in self.journal.actions("destroy"):
                if d["phase"] == "after" and d["cluster"] == source and d["key_label"]:
                    self._destroyed.setdefault(d["key_label"], []).append(d)
        return next((d for d in reversed(self._destroyed.get(spec.label, []))
                     if d["seq"] > since), None)

    def _source_side(self, spec: KeySpec) -> Side | None:
        """The inventory key on the source now (the process's one session to it)."""
        return locate(self._source(), spec, spec.label)

    def _source(self) -> ClusterSession:
        return open_cluster(self.profile.source, self.profile.module_env, self.gate)

    def _left(self, line: str) -> None:
        self.ok = False
        self.lines.append(line)

    def _destroy(self, obj: Object, permit: destruction.Permit, e: dict[str, Any], name: str,
                 how: str) -> None:
        uid = unique_id(obj) if e["unique_id"] else None
        destruction.destroy(obj, permit, self.target, self.recorder, key_label=e["key_label"],
                            cluster=self.target, handle=obj.handle, label=e["label"],
                            unique_id=uid, check_value=e["check_value"],
                            detail=f"keyparity cleanup of journal seq {e['seq']}: "
                                   f"{permit.reason}")
        self.lines.append(f"removed: {name} (created by run {self.run_id}, journal seq "
                          f"{e['seq']}; proven by {how})")

    @staticmethod
    def _fingerprint(obj: Object) -> str | None:
        try:
            return identity.fingerprint(identity.rsa_public(obj))
        except Exception:  # noqa: BLE001 - not an RSA object: not a wrapping object
            return None
