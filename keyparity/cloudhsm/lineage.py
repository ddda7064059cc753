"""What AWS says of a cluster before and after a change, for baseline and re-verify runs.

A baseline records a :class:`ClusterState` (``describe_clusters`` + ``describe_backups``). After
the HSM type was changed in place (``modify-cluster --hsm-type``: same cluster id) or a backup
was restored into a new cluster (its ``SourceBackupId`` names the backup), the re-verify reads
it again and checks one lineage (:func:`check_lineage`), a READY backup of the baselined cluster
(:func:`check_backup`) and the rollback window (:func:`check_rollback`); keys are compared
elsewhere. Decisions: the backup that counts is the newest READY one of the baselined cluster
(``ClusterId``, or ``SourceCluster`` when copied) as listed now (for a restore: the baseline's
listing updated by what was read now); one with a ``DeleteTimestamp`` never counts, whatever
``NeverExpires`` says (it exempts from the retention policy, it does not undo a DeleteBackup).
A passed rollback deadline does not fail (the keys are proven on their own): it goes in
``facts["headline"]``. Read-only; no certificate or pre-CO password is kept.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from ..checks import Check
from ..errors import KeyparityError
from ..profile import AwsSpec
from . import aws

SOURCE = "cloudhsmv2.describe_clusters + describe_backups"
READY, PENDING = "READY", "PENDING_DELETION"
_HSM_KEYS = ("HsmId", "HsmType", "State", "AvailabilityZone")
_BACKUP_KEYS = ("BackupId", "BackupState", "ClusterId", "CreateTimestamp", "HsmType", "Mode",
                "SourceCluster", "SourceBackup", "SourceRegion", "CopyTimestamp",
                "DeleteTimestamp", "NeverExpires")
_TIMES = ("CreateTimestamp", "CopyTimestamp", "DeleteTimestamp")
NO_BACKUP_TODO = ("no API takes a backup on demand: CloudHSM backs a cluster up at least once "
                  "every 24 hours, and when an HSM is added to or removed from an active cluster "
                  "(aws cloudhsmv2 create-hsm forces one); wait for a new READY backup, then run again")
EPOCH = "0001-01-01T00:00:00+00:00"


def utc(value: dt.datetime | str) -> dt.datetime:
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return (when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None
            else when.astimezone(dt.timezone.utc))


def iso(value: dt.datetime | str | None) -> str | None:
    return None if value is None else utc(value).isoformat(timespec="seconds")


def _backup(b: dict[str, Any]) -> dict[str, Any]:
    return {k: (iso(b[k]) if k in _TIMES else b[k]) for k in _BACKUP_KEYS
            if b.get(k) is not None}


@dataclass(frozen=True)
class ClusterState:
    """What AWS says of one cluster at one moment (``read_at``); times are UTC ISO-8601."""

    cluster_id: str
    region: str
    state: str
    hsm_type: str | None
    mode: str | None
    rollback_expiration: str | None
    source_backup_id: str | None
    hsms: tuple[dict[str, Any], ...]
    backups: tuple[dict[str, Any], ...]
    read_at: str = field(default_factory=lambda: iso(dt.datetime.now(dt.timezone.utc)) or "")
    backup_retention: str | None = None  # the cluster's policy, e.g. "90 DAYS"

    def record(self) -> dict[str, Any]:
        """For the evidence (the baseline stores it; :meth:`from_record` reads it back)."""
        return {**asdict(self), "hsms": [dict(h) for h in self.hsms],
                "backups": [dict(b) for b in self.backups], "source": SOURCE}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> ClusterState:
        """The state a baseline recorded; KeyparityError if the record is not one."""
        try:
            return cls(**{k: rec[k] for k in ("cluster_id", "region", "state", "hsm_type",
                                              "mode", "rollback_expiration",
                                              "source_backup_id", "read_at")},
                       hsms=tuple(dict(h) for h in rec["hsms"]),
                       backups=tuple(dict(b) for b in rec["backups"]),
                       backup_retention=rec.get("backup_retention"))
        except (KeyError, TypeError) as exc:
            raise KeyparityError(f"the baseline's cluster record lacks {exc}: it was not "
                                 "written by this keyparity; take a new baseline") from None


def _error(exc: BaseException, spec: AwsSpec, action: str) -> aws.AwsError:
    """aws.error_for, with the permission to grant named after the call that was refused."""
    err = aws.error_for(exc, spec, action)
    return type(err)(str(err).replace("cloudhsmv2:DescribeClusters", f"cloudhsmv2:{action}"))


def _backups(client: Any, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    token = None
    while True:
        page = client.describe_backups(Filters=filters, SortAscending=False,
                                       **({"NextToken": token} if token else {}))
        out += page.get("Backups", [])
        token = page.get("NextToken")
        if not token:
            return out


def read(spec: AwsSpec, client: Any = None) -> ClusterState:
    """The cluster, its backups and the backup it was restored from (if any); AwsError if
    AWS cannot be read or has no such cluster."""
    import botocore.exceptions as bx  # deferred for speed, as in aws.client_for

    client = client if client is not None else aws.client_for(spec)
    action = "DescribeClusters"
    try:
        found = [c for c in client.describe_clusters(Filters={"clusterIds": [spec.cluster_id]})
                 .get("Clusters", []) if c.get("ClusterId") == spec.cluster_id]
        if not found:
            kind, todo = aws._ERRORS["CloudHsmResourceNotFoundException"]
            raise kind(f"DescribeClusters found no cluster {spec.cluster_id} in "
                       f"{spec.region}: {todo}")
        c, action = found[0], "DescribeBackups"
        backups = _backups(client, {"clusterIds": [spec.cluster_id]})
        if c.get("SourceBackupId"):
            backups += _backups(client, {"backupIds": [c["SourceBackupId"]]})
    except (bx.BotoCoreError, bx.ClientError) as exc:
        raise _error(exc, spec, action) from None
    policy = c.get("BackupRetentionPolicy") or {}
    return ClusterState(
        cluster_id=c["ClusterId"], region=spec.region, state=c.get("State", "?"),
        hsm_type=c.get("HsmType"), mode=c.get("Mode"),
        rollback_expiration=iso(c.get("HsmTypeRollbackExpiration")),
        source_backup_id=c.get("SourceBackupId"),
        hsms=tuple({k: h[k] for k in _HSM_KEYS if h.get(k) is not None}
                   for h in c.get("Hsms", [])),
        backups=tuple({b["BackupId"]: _backup(b) for b in backups}.values()),
        backup_retention=(f"{policy['Value']} {policy['Type']}" if policy else None))


def _origin(b: dict[str, Any]) -> str | None:
    return b.get("SourceCluster") or b.get("ClusterId")


def check_lineage(before: ClusterState, after: ClusterState) -> Check:
    """``after`` is ``before`` changed in place, or a cluster restored from a backup of it."""
    b, a = before.cluster_id, after.cluster_id
    facts: dict[str, Any] = {"before_cluster_id": b, "after_cluster_id": a,
                             "mode": {"before": before.mode, "after": after.mode}}
    wrong, what = [], None
    if b == a:
        facts.update(kind="in place", hsm_type={"before": before.hsm_type,
                                                "after": after.hsm_type},
                     hsm_types_now=[h.get("HsmType") for h in after.hsms])
        change = (f"HsmType {before.hsm_type} -> {after.hsm_type}"
                  if before.hsm_type != after.hsm_type else f"HsmType {after.hsm_type} unchanged")
        now = ", ".join(f"{h.get('HsmId')} {h.get('HsmType', '?')} {h.get('State', '?')}"
                        for h in after.hsms) or "no HSMs"
        what = f"{a} changed in place: {change}; HSMs now: {now}"
    else:
        sid = after.source_backup_id
        known = {x["BackupId"]: x for x in before.backups + after.backups}  # now wins
        src = known.get(sid) if sid else None
        facts.update(kind="restore", source_backup_id=sid,
                     source_backup_cluster_id=_origin(src) if src else None)
        if not sid:
            wrong.append(f"{a} is not the baselined {b} and has no SourceBackupId: it was not "
                         f"restored from a backup; re-verify {b} itself, or a cluster restored "
                         f"from a backup of {b}")
        elif src is None:
            wrong.append(f"{a} was restored from backup {sid}, which DescribeBackups does not "
                         f"list (deleted?): whether it was taken from {b} cannot be told")
        elif b not in (src.get("ClusterId"), src.get("SourceCluster")):
            wrong.append(f"{a} was restored from backup {sid} of {_origin(src)}, not of the "
                         f"baselined {b}: point the re-verify at a cluster restored from a "
                         f"backup of {b}, or take a new baseline")
        else:
            what = f"{a} was restored from backup {sid} of the baselined {b}"
    if before.mode and after.mode and before.mode != after.mode:
        wrong.append(f"Mode changed from {before.mode} to {after.mode}: a backup restores only "
                     "into a cluster of its own mode and CloudHSM does not change a cluster's "
                     "mode, so this is not the baselined cluster; keys move between modes "
                     "by wrap/unwrap (a migration run, not a re-verify)")
    if after.state != aws.ACTIVE:
        wrong.append(f"{a} is {after.state}, not ACTIVE: wait until the change is done (or "
                     "rolled back), then re-verify")
    if wrong:
        return Check(False, "; ".join(([what] if what else []) + wrong), facts)
    return Check(True, what or "", facts)


_Listed = tuple[dict[str, Any], ClusterState]  # a backup and the reading that listed it


def _pool(before: ClusterState, after: ClusterState) -> list[_Listed]:
    """The baselined cluster's backups, each with the reading that listed it: the listing of
    now for the same cluster; the baseline's, updated by what was read now, for a restore."""
    pool = {} if before.cluster_id == after.cluster_id else {
        x["BackupId"]: (x, before) for x in before.backups}
    pool.update({x["BackupId"]: (x, after) for x in after.backups})
    return [(x, at) for x, at in pool.values()
            if before.cluster_id in (x.get("ClusterId"), x.get("SourceCluster"))]


def pending_deletion(x: dict[str, Any]) -> bool:
    """Pending deletion (a DeleteTimestamp: NeverExpires does not undo a DeleteBackup)."""
    return x.get("BackupState") == PENDING or "DeleteTimestamp" in x


def no_backup(c: str, listed: list[dict[str, Any]]) -> Check:
    going = [x for x in listed if pending_deletion(x)]
    if going:
        x, bid = going[0], going[0]["BackupId"]
        return Check(False, f"no READY backup of {c} is left: the newest, {bid} (taken "
                     f"{x.get('CreateTimestamp')}), is pending deletion ({x.get('BackupState')}) "
                     f"and is deleted for good at {x.get('DeleteTimestamp')}: restore it before "
                     f"then (aws cloudhsmv2 restore-backup --backup-id {bid}) and keep it until "
                     "every key is proven (aws cloudhsmv2 modify-backup-attributes --backup-id "
                     f"{bid} --never-expires)", {"backup_id": bid, "state": x.get("BackupState"),
                                                  "delete_at": x.get("DeleteTimestamp")})
    seen = ", ".join(f"{x['BackupId']} {x.get('BackupState')}" for x in listed) or "none"
    return Check(False, f"no READY backup of {c} is listed (backups: {seen}): {NO_BACKUP_TODO}",
                 {"backup_id": None, "backups_seen": len(listed)})


def check_backup(before: ClusterState, after: ClusterState, baseline_time: dt.datetime) -> Check:
    """The newest READY backup of the baselined cluster is still there, not pending deletion."""
    c = before.cluster_id
    pool = sorted(_pool(before, after), reverse=True,
                  key=lambda p: utc(p[0].get("CreateTimestamp") or EPOCH))
    ready = [p for p in pool if p[0].get("BackupState") == READY and not pending_deletion(p[0])]
    if not ready:
        return no_backup(c, [x for x, _ in pool])
    x, listing = ready[0]
    policy = (after if after.cluster_id == c else before).backup_retention
    retention = ("never expires" if x.get("NeverExpires")
                 else f"retention policy of {c} ({policy or 'not read'})")
    facts = {"backup_id": x["BackupId"], "created": x.get("CreateTimestamp"),
             "state": READY, "hsm_type": x.get("HsmType"), "retention": retention,
             "listed_at": listing.read_at}
    warnings = []
    if utc(x.get("CreateTimestamp") or EPOCH) < utc(baseline_time):
        warnings.append(f"backup {x['BackupId']} of {c} was taken {x.get('CreateTimestamp')}, "
                        f"before the baseline ({iso(baseline_time)}): keys made after it "
                        "are not in it")
    if listing is not after:
        warnings.append(f"backup {x['BackupId']} was listed at the baseline "
                        f"({listing.read_at}) and not read again: it may have been deleted since")
    if before.cluster_id == after.cluster_id and before.hsm_type != after.hsm_type:
        old = [p[0]["BackupId"] for p in ready if p[0].get("HsmType") == before.hsm_type]
        facts["pre_change_backup_id"] = old[0] if old else None
        if not old:
            warnings.append(f"no READY backup of {c} of the old type {before.hsm_type} is "
                            "left: the cluster before the change cannot be restored")
    return Check(True, f"the newest READY backup of {c} is {x['BackupId']}, taken "
                       f"{x.get('CreateTimestamp')} ({x.get('HsmType', 'HsmType not given')}, "
                       f"{retention})", facts, warnings=tuple(warnings))


def check_rollback(after: ClusterState, now: dt.datetime) -> Check:
    """Whether the HSM type change can still be rolled back. A passed deadline does not fail
    (the keys are proven on their own) but is put in ``facts["headline"]``."""
    c, until = after.cluster_id, after.rollback_expiration
    if until is None:
        return Check(True, f"{c}: no HSM type change to roll back", {"rollback_expiration": None})
    facts: dict[str, Any] = {"rollback_expiration": until, "checked_at": iso(now)}
    left = utc(until) - utc(now)
    if left > dt.timedelta(0):
        hours, rest = divmod(int(left.total_seconds()), 3600)
        return Check(True, f"the HSM type change of {c} can be rolled back until {until} "
                           f"({hours}h {rest // 60:02d}m left)", {**facts, "rollback_open": True})
    headline = (f"the rollback window of {c} closed at {until}: the HSM type change can no "
                "longer be rolled back")
    return Check(True, f"{headline} (this does not fail the run: the keys are proven on their "
                       "own)", {**facts, "rollback_open": False, "headline": headline},
                 warnings=(headline,))


def before_after(before: ClusterState, after: ClusterState) -> dict[str, Any]:
    """A compact comparison for the evidence: each field as {"before": ..., "after": ...}."""
    def of(s: ClusterState) -> dict[str, Any]:
        return {"cluster_id": s.cluster_id, "hsm_type": s.hsm_type, "state": s.state,
                "mode": s.mode, "hsm_count": len(s.hsms),
                "hsm_types": sorted(str(h.get("HsmType")) for h in s.hsms),
                "rollback_expiration": s.rollback_expiration,
                "source_backup_id": s.source_backup_id, "read_at": s.read_at}
    b, a = of(before), of(after)
    return {k: {"before": b[k], "after": a[k]} for k in b}
