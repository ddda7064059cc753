"""A usable backup of the source cluster before keys are moved: read-only, from the backups
``lineage.read`` lists (``ClusterState.backups``: dicts with ISO-8601 times).

The migration guide says to keep the source backups until every key is proven migrated; this
checks there is one worth keeping. The backup that counts is the newest READY one of the source
cluster (``ClusterId``, or ``SourceCluster`` for a copy). It must hold every inventory key: when
the newest key's creation time is known, the backup must be taken after it (its age then does
not matter); when it is not known, the backup must be at most ``max_age_days`` old. As in
``lineage``, a backup with a ``DeleteTimestamp`` (or PENDING_DELETION) never counts, whatever
``NeverExpires`` says: NeverExpires exempts a backup from the retention policy, it does not undo
a DeleteBackup.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from ..checks import Check
from .lineage import EPOCH, NO_BACKUP_TODO, READY, iso, no_backup, pending_deletion, utc

REMINDER = ("keep the source cluster's backups until every key is proven migrated (migration "
            "guide); a backup under the retention policy is deleted when it ages out: aws "
            "cloudhsmv2 modify-backup-attributes --backup-id {bid} --never-expires keeps it")
WAIT_TODO = NO_BACKUP_TODO  # the same words as a re-verify (keyparity.cloudhsm.lineage)


def _created(b: Mapping[str, Any]) -> dt.datetime:
    return utc(b.get("CreateTimestamp") or EPOCH)


def check_source_backup(backups: Iterable[Mapping[str, Any]],
                        newest_key_created: dt.datetime | None, max_age_days: int = 7,
                        now: dt.datetime | None = None, *, cluster_id: str,
                        retention: str | None = None) -> Check:
    """The source cluster ``cluster_id`` has a READY backup, not pending deletion, that holds
    every inventory key. ``retention``: the cluster's policy (``ClusterState.backup_retention``)."""
    now = utc(now or dt.datetime.now(dt.timezone.utc))
    mine = sorted((b for b in backups if cluster_id in (b.get("ClusterId"),
                                                        b.get("SourceCluster"))),
                  key=_created, reverse=True)
    ready = [b for b in mine if b.get("BackupState") == READY and not pending_deletion(b)]
    if not ready:
        found = no_backup(f"the source {cluster_id}", mine)
        return Check(False, found.message, found.facts, name="source_backup")
    b, bid = ready[0], ready[0]["BackupId"]
    created, when = _created(b), iso(b.get("CreateTimestamp"))
    age_days = (now - created).total_seconds() / 86400
    keep = ("never expires" if b.get("NeverExpires")
            else f"retention policy of {cluster_id} ({retention or 'not read'})")
    facts: dict[str, Any] = {
        "backup_id": bid, "created": when, "state": READY, "retention": keep,
        "age_days": round(age_days, 1), "max_age_days": max_age_days,
        "newest_key_created": iso(newest_key_created), "reminder": REMINDER.format(bid=bid)}
    said = f"the newest READY backup of the source {cluster_id} is {bid}, taken {when} ({keep})"
    if newest_key_created is not None:
        facts["rule"] = "taken after the newest inventory key was created"
        if created <= utc(newest_key_created):
            return Check(False, f"{said}, not after the newest inventory key was created "
                                f"({iso(newest_key_created)}): that key is in no backup; "
                                + WAIT_TODO, facts, name="source_backup")
        return Check(True, f"{said}, after the newest inventory key was created "
                           f"({iso(newest_key_created)}); {facts['reminder']}", facts,
                     name="source_backup")
    facts["rule"] = f"at most {max_age_days} days old (the newest key's creation time is unknown)"
    if age_days > max_age_days:
        return Check(False, f"{said}: {age_days:.1f} days old, more than {max_age_days} "
                            "(aws.backup_max_age_days), and when the newest inventory key was "
                            "created is not known, so it may not hold every key; " + WAIT_TODO,
                     facts, name="source_backup")
    return Check(True, f"{said}: {age_days:.1f} days old, within {max_age_days}; "
                       f"{facts['reminder']}", facts, name="source_backup")
