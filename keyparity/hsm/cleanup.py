"""``keyparity cleanup PROFILE --run RUN_ID``: remove from the target exactly what a run
created, by its journal.

An object is destroyed when the journal shows the run created it (an ``after`` entry), it was
not destroyed since, and it is still provably the same object: its CKA_UNIQUE_ID, else what
identifies its key material (keyparity.hsm.identity: KCV, public-key fingerprint, or for an
EC private key a signature that the source's public key verifies) equals the journal's.
Source objects are never touched, nor a key that another run unwrapped later under the label
(the same key material, not this run's object). What cannot be proven is left and reported,
and so is an object under the label of a write that was interrupted or recorded a failure (a
lost reply); such a write with nothing under its label is said, not an error. Each destroy is
journaled. Each cluster is logged in to once, through the caller's gate; a failed login stops
the clean-up (nothing more is tried).
"""
from __future__ import annotations

from typing import Any

from pkcs11 import Attribute, ObjectClass
from pkcs11.types import Object, Session

from ..errors import KeyparityError, LoginError, SecretError
from ..journal.store import CREATES, Journal
from ..profile import Profile
from . import identity
from .cluster import ClusterUnavailable, open_cluster
from .locate import unique_id
from .login import LoginGate

_KEY_CLASSES = (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY)


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
        self.rec = journal.bind(run_id)
        self.lines: list[str] = []
        self.ok = True

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
        for obj in objs:
            uid = unique_id(obj) if e["unique_id"] else None
            if e["unique_id"] and uid is not None:
                proven, how = uid == e["unique_id"], "CKA_UNIQUE_ID"
            else:
                check = self._identity(obj, e["key_label"])
                proven, how = check is not None and check == e["check_value"], "KCV/fingerprint"
            name = f"{label!r} ({obj.object_class.name.lower()}) on {self.target}"
            if not proven:
                self.ok = False
                self.lines.append(f"not removed: {name}: its {how} does not prove it is the "
                                  f"object run {self.run_id} created (journal seq {e['seq']})")
                continue
            with self.rec.step("destroy", key_label=e["key_label"], cluster=self.target,
                               handle=obj.handle, label=label, unique_id=uid,
                               check_value=e["check_value"],
                               detail=f"keyparity cleanup of journal seq {e['seq']}"):
                obj.destroy()
            self.lines.append(f"removed: {name} (created by run {self.run_id}, journal seq "
                              f"{e['seq']}; proven by {how})")

    def _identity(self, obj: Object, key_label: str | None) -> str | None:
        """What identifies the object's key material (None: it cannot be proven here). An EC
        private key is proven with its inventory key's public key from the source (read
        through the process's one session to it: one login, whatever the number of keys)."""
        spec = next((k for k in self.profile.keys if k.label == key_label), None)
        try:
            ec_key = self._source_ec_key(key_label) if spec and spec.type == "ec" else None
            return identity.of(obj, self.target, curve=spec.curve if spec else None,
                               ec_key=ec_key).value
        except (LoginError, SecretError, ClusterUnavailable):  # stop: never a second login
            raise
        except Exception:  # noqa: BLE001 - this object is unprovable: left and reported
            return None

    def _source_ec_key(self, key_label: str | None) -> Any:
        spec = next((k for k in self.profile.keys if k.label == key_label and k.type == "ec"),
                    None)
        if spec is None:
            return None
        session = open_cluster(self.profile.source, self.profile.module_env, self.gate).session
        pubs = list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                                         Attribute.LABEL: spec.label}))
        return identity.ec_public(pubs[0], spec.curve) if len(pubs) == 1 else None
