"""keyparity.cloudhsm.source_backups: the source cluster's newest READY backup holds every
inventory key (taken after the newest key, or at most max_age_days old when that is unknown),
and one pending deletion never counts. Backups in the shape lineage.ClusterState.backups holds,
one test reading them through lineage.read on a Stubber'd cloudhsmv2 client."""
from __future__ import annotations

import datetime as dt
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from keyparity.cloudhsm import lineage
from keyparity.cloudhsm.source_backups import check_source_backup
from keyparity.profile import AwsSpec

REGION = "eu-central-1"
SRC, OTHER = "cluster-jxhlf7644ne", "cluster-igklspoyj5v"
UTC = dt.timezone.utc
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def at(day: int, hour: int = 2) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, 0, tzinfo=UTC)


def backup(bid: str, created: dt.datetime, state: str = "READY", cluster_id: str | None = SRC,
           **extra: Any) -> dict[str, Any]:
    """As ClusterState.backups holds it: times as UTC ISO-8601 strings."""
    doc = {"BackupId": bid, "BackupState": state, "CreateTimestamp": created.isoformat(),
           "HsmType": "hsm1.medium", "Mode": "FIPS", "NeverExpires": False,
           **{k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in extra.items()}}
    if cluster_id:
        doc["ClusterId"] = cluster_id
    return doc


def check(backups: list[dict[str, Any]], newest_key: dt.datetime | None = None, **kw: Any):
    return check_source_backup(backups, newest_key, now=NOW, cluster_id=SRC, **kw)


def test_read_through_lineage_and_a_fresh_backup_passes_with_the_reminder():
    client = boto3.client("cloudhsmv2", region_name=REGION, aws_access_key_id="AKIDTEST",
                          aws_secret_access_key="test")
    with Stubber(client) as stub:
        stub.add_response("describe_clusters", {"Clusters": [{
            "ClusterId": SRC, "State": "ACTIVE", "HsmType": "hsm1.medium", "Mode": "FIPS",
            "BackupPolicy": "DEFAULT", "BackupRetentionPolicy": {"Type": "DAYS", "Value": "90"},
            "Hsms": []}]})
        stub.add_response("describe_backups", {"Backups": [
            {"BackupId": "backup-newaaaaaaaa", "BackupState": "READY", "ClusterId": SRC,
             "CreateTimestamp": at(19), "NeverExpires": False},
            {"BackupId": "backup-oldaaaaaaaa", "BackupState": "READY", "ClusterId": SRC,
             "CreateTimestamp": at(12), "NeverExpires": True}]})
        state = lineage.read(AwsSpec(cluster_id=SRC, region=REGION), client=client)
    result = check_source_backup(state.backups, None, 7, NOW, cluster_id=SRC,
                                 retention=state.backup_retention)
    assert result.ok and result.name == "source_backup"
    assert result.message == (
        f"the newest READY backup of the source {SRC} is backup-newaaaaaaaa, taken "
        f"2026-03-19T02:00:00+00:00 (retention policy of {SRC} (90 DAYS)): 1.4 days old, within "
        "7; keep the source cluster's backups until every key is proven migrated (migration "
        "guide); a backup under the retention policy is deleted when it ages out: aws cloudhsmv2 "
        "modify-backup-attributes --backup-id backup-newaaaaaaaa --never-expires keeps it")
    assert result.facts["backup_id"] == "backup-newaaaaaaaa"
    assert result.facts["created"] == "2026-03-19T02:00:00+00:00"
    assert result.facts["retention"] == f"retention policy of {SRC} (90 DAYS)"
    assert result.facts["age_days"] == 1.4 and result.facts["max_age_days"] == 7
    assert "until every key is proven migrated" in result.facts["reminder"]


def test_no_backup_fails_with_what_to_do():
    result = check([backup("backup-creatingaa", at(20, 1), "CREATE_IN_PROGRESS"),
                    backup("backup-theirsaaaa", at(19), cluster_id=OTHER)])
    assert not result.ok and result.facts == {"backup_id": None, "backups_seen": 1}
    assert result.message == (
        f"no READY backup of the source {SRC} is listed (backups: backup-creatingaa "
        "CREATE_IN_PROGRESS): no API takes a backup on demand: CloudHSM backs a cluster up at "
        "least once every 24 hours, and when an HSM is added to or removed from an active "
        "cluster (aws cloudhsmv2 create-hsm forces one); wait for a new READY backup, then run "
        "again")


def test_a_backup_too_old_fails_when_the_newest_key_time_is_unknown():
    result = check([backup("backup-oldaaaaaaaa", at(12, 13))], max_age_days=7)
    assert not result.ok
    assert result.message.startswith(
        f"the newest READY backup of the source {SRC} is backup-oldaaaaaaaa, taken "
        f"2026-03-12T13:00:00+00:00 (retention policy of {SRC} (not read)): 8.0 days old, more "
        "than 7 (aws.backup_max_age_days)")
    assert check([backup("backup-oldaaaaaaaa", at(13, 12))], max_age_days=7).ok  # 7.0 days
    assert check([backup("backup-oldaaaaaaaa", at(12, 13))], max_age_days=8).ok


def test_with_the_newest_key_time_the_backup_must_be_after_it_whatever_its_age():
    fresh = [backup("backup-freshaaaaaa", at(19))]
    before = check(fresh, newest_key=at(19, 9))
    assert not before.ok
    assert before.message.startswith(
        f"the newest READY backup of the source {SRC} is backup-freshaaaaaa, taken "
        "2026-03-19T02:00:00+00:00 (retention policy of "
        f"{SRC} (not read)), not after the newest inventory key was created "
        "(2026-03-19T09:00:00+00:00): that key is in no backup; no API takes a backup")
    assert not check(fresh, newest_key=at(19)).ok  # the same second is not after
    old = check([backup("backup-oldaaaaaaaa", at(1), NeverExpires=True)],
                newest_key=dt.datetime(2026, 2, 27, 10, 0))  # naive: UTC
    assert old.ok and old.facts["retention"] == "never expires"
    assert old.facts["newest_key_created"] == "2026-02-27T10:00:00+00:00"
    assert "after the newest inventory key was created (2026-02-27T10:00:00+00:00)" in old.message


@pytest.mark.parametrize(("state", "never_expires"), [("PENDING_DELETION", False),
                                                     ("PENDING_DELETION", True), ("READY", True)])
def test_a_backup_pending_deletion_never_counts(state, never_expires):
    pending = backup("backup-pendingaaaa", at(19), state, DeleteTimestamp=at(26),
                     NeverExpires=never_expires)
    result = check([pending, backup("backup-deletedaaaa", at(18), "DELETED")])
    assert not result.ok
    assert result.message == (
        f"no READY backup of the source {SRC} is left: the newest, backup-pendingaaaa (taken "
        f"2026-03-19T02:00:00+00:00), is pending deletion ({state}) and is deleted for good at "
        "2026-03-26T02:00:00+00:00: restore it before then (aws cloudhsmv2 restore-backup "
        "--backup-id backup-pendingaaaa) and keep it until every key is proven (aws cloudhsmv2 "
        "modify-backup-attributes --backup-id backup-pendingaaaa --never-expires)")
    assert result.facts == {"backup_id": "backup-pendingaaaa", "state": state,
                            "delete_at": "2026-03-26T02:00:00+00:00"}


def test_an_older_ready_backup_counts_when_the_newest_is_pending_deletion():
    result = check([backup("backup-pendingaaaa", at(19), "PENDING_DELETION",
                           DeleteTimestamp=at(26)), backup("backup-olderaaaaaa", at(18))])
    assert result.ok and result.facts["backup_id"] == "backup-olderaaaaaa"


def test_a_copied_backup_of_the_source_counts_and_the_newest_ready_one_is_chosen():
    copied = backup("backup-copiedaaaaa", at(18), cluster_id=None, SourceCluster=SRC)
    result = check([backup("backup-olderaaaaaa", at(16)), copied,
                    backup("backup-theirsaaaaa", at(20, 1), cluster_id=OTHER)])
    assert result.ok and result.facts["backup_id"] == "backup-copiedaaaaa"
