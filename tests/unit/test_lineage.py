"""keyparity.cloudhsm.lineage: a baseline and a re-verify of one cluster read through a real
cloudhsmv2 client whose responses come from botocore's Stubber (validated against the service
model): an HSM type change in place, restores from a backup of the baselined cluster or of
another, mode changes, backups READY / PENDING_DELETION / DELETED, and the rollback window."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from keyparity.checks import Check
from keyparity.cloudhsm import aws, lineage
from keyparity.cloudhsm.lineage import ClusterState
from keyparity.errors import KeyparityError
from keyparity.profile import AwsSpec

REGION = "eu-central-1"
OLD, NEW, OTHER = "cluster-jxhlf7644ne", "cluster-5ypa2wnddvi", "cluster-igklspoyj5v"
H1, H2 = "hsm1.medium", "hsm2m.medium"
UTC = dt.timezone.utc
BASELINE = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def iso(when: dt.datetime) -> str:
    return when.isoformat(timespec="seconds")


def hsm(n: int, cluster_id: str = OLD, hsm_type: str = H2,
        state: str = "ACTIVE") -> dict[str, Any]:
    return {"AvailabilityZone": f"{REGION}{'ab'[n % 2]}", "ClusterId": cluster_id,
            "SubnetId": f"subnet-0{n}a1b2c3d4e5f6a7b", "EniId": f"eni-0{n}1234567890abcde",
            "EniIp": f"10.0.{n}.17", "HsmId": f"hsm-{n}abcdefghij", "HsmType": hsm_type,
            "State": state, "StateMessage": "HSM created."}


def cluster_doc(cluster_id: str = OLD, hsm_type: str = H1, mode: str = "FIPS",
                state: str = "ACTIVE", hsm_types: tuple[str, ...] | None = None,
                rollback: dt.datetime | None = None, source: str | None = None) -> dict[str, Any]:
    """A describe_clusters cluster as AWS returns it (the shape Stubber checks)."""
    types = hsm_types if hsm_types is not None else (hsm_type, hsm_type)
    doc: dict[str, Any] = {
        "BackupPolicy": "DEFAULT", "BackupRetentionPolicy": {"Type": "DAYS", "Value": "90"},
        "ClusterId": cluster_id, "CreateTimestamp": at(1, 9),
        "Hsms": [hsm(i + 1, cluster_id, t) for i, t in enumerate(types)],
        "HsmType": hsm_type, "PreCoPassword": "not-a-secret-kept",
        "SecurityGroup": "sg-0123456789abcdef0",
        "State": state, "StateMessage": "Cluster is active.", "VpcId": "vpc-0a1b2c3d4e5f6a7b8",
        "SubnetMapping": {f"{REGION}a": "subnet-01a1b2c3d4e5f6a7b"}, "NetworkType": "IPV4",
        "Certificates": {"ClusterCertificate": "-----BEGIN CERTIFICATE-----\nMIIG...\n"
                                               "-----END CERTIFICATE-----"},
        "Mode": mode}
    if rollback:
        doc["HsmTypeRollbackExpiration"] = rollback
    if source:
        doc["SourceBackupId"] = source
    return doc


def backup(bid: str, created: dt.datetime, cluster_id: str | None = OLD, state: str = "READY",
           hsm_type: str = H1, **extra: Any) -> dict[str, Any]:
    doc = {"BackupId": bid, "BackupArn": f"arn:aws:cloudhsm:{REGION}:123456789012:backup/{bid}",
           "BackupState": state, "CreateTimestamp": created, "HsmType": hsm_type,
           "Mode": "FIPS", "NeverExpires": False, **extra}
    if cluster_id:
        doc["ClusterId"] = cluster_id
    return doc


# the baselined cluster's backups: daily ones, the one AWS takes before replacing the first HSM,
# and one after the change
DAILY_8 = backup("backup-daily8aaaaaa", at(8, 2))
DAILY_9 = backup("backup-daily9aaaaaa", at(9, 2))
PRE = backup("backup-prechangeaaa", at(10, 12, 30))  # after the baseline, before the change
POST = backup("backup-postchangeaa", at(11, 2), hsm_type=H2)


def stubbed(cluster: dict[str, Any] | None, *pages: list[dict[str, Any]],
            source: list[dict[str, Any]] | None = None,
            cluster_id: str = OLD) -> tuple[Any, Stubber]:
    """A real cloudhsmv2 client: describe_clusters, then describe_backups page by page (joined
    by NextToken), then the source backup by id when ``source`` is given."""
    client = boto3.client("cloudhsmv2", region_name=REGION, aws_access_key_id="AKIDTEST",
                          aws_secret_access_key="test")
    stub = Stubber(client)
    stub.add_response("describe_clusters", {"Clusters": [cluster] if cluster else []},
                      {"Filters": {"clusterIds": [cluster_id]}})
    for i, page in enumerate(pages):
        response: dict[str, Any] = {"Backups": page}
        if i < len(pages) - 1:
            response["NextToken"] = f"token-{i + 1}"
        params = {"Filters": {"clusterIds": [cluster_id]}, "SortAscending": False,
                  **({"NextToken": f"token-{i}"} if i else {})}
        stub.add_response("describe_backups", response, params)
    if source is not None:
        stub.add_response("describe_backups", {"Backups": source},
                          {"Filters": {"backupIds": [cluster["SourceBackupId"]]},
                           "SortAscending": False})
    stub.activate()
    return client, stub


def spec(cluster_id: str = OLD) -> AwsSpec:
    return AwsSpec(cluster_id=cluster_id, region=REGION)


def read(cluster: dict[str, Any], *pages: list[dict[str, Any]],
         source: list[dict[str, Any]] | None = None) -> ClusterState:
    client, stub = stubbed(cluster, *(pages or ([],)), source=source,
                           cluster_id=cluster["ClusterId"])
    state = lineage.read(spec(cluster["ClusterId"]), client=client)
    stub.assert_no_pending_responses()
    return state


def baseline(*backups: dict[str, Any], **cluster: Any) -> ClusterState:
    """The baseline as the re-verify gets it back: read, recorded as JSON, read back."""
    state = read(cluster_doc(**cluster), list(backups))
    return ClusterState.from_record(json.loads(json.dumps(state.record())))


# ---- reading -----------------------------------------------------------------------------------

def test_read_pages_through_the_backups_and_keeps_no_secret():
    state = read(cluster_doc(hsm_type=H2, rollback=at(11, 13)), [POST, PRE], [DAILY_9, DAILY_8])
    assert (state.cluster_id, state.state, state.hsm_type, state.mode) == (OLD, "ACTIVE", H2,
                                                                           "FIPS")
    assert state.rollback_expiration == "2026-03-11T13:00:00+00:00"
    assert state.source_backup_id is None and state.backup_retention == "90 DAYS"
    assert [b["BackupId"] for b in state.backups] == [
        "backup-postchangeaa", "backup-prechangeaaa", "backup-daily9aaaaaa", "backup-daily8aaaaaa"]
    assert state.backups[1] == {"BackupId": "backup-prechangeaaa", "BackupState": "READY",
                                "ClusterId": OLD, "CreateTimestamp": "2026-03-10T12:30:00+00:00",
                                "HsmType": H1, "Mode": "FIPS", "NeverExpires": False}
    assert state.hsms[0] == {"HsmId": "hsm-1abcdefghij", "HsmType": H2, "State": "ACTIVE",
                             "AvailabilityZone": f"{REGION}b"}
    text = json.dumps(state.record())
    assert "MII" not in text and "PreCoPassword" not in text and "not-a-secret" not in text
    assert state.record()["source"] == "cloudhsmv2.describe_clusters + describe_backups"


def test_read_a_restored_cluster_reads_its_source_backup_by_id():
    state = read(cluster_doc(NEW, H2, source=PRE["BackupId"]),
                 [backup("backup-newownaaaaa", at(11, 3), NEW, hsm_type=H2)], source=[PRE])
    assert state.source_backup_id == "backup-prechangeaaa"
    assert {b["BackupId"]: b.get("ClusterId") for b in state.backups} == {
        "backup-newownaaaaa": NEW, "backup-prechangeaaa": OLD}


def test_record_and_from_record_round_trip():
    state = read(cluster_doc(NEW, H2, rollback=at(11, 13), source=PRE["BackupId"]), [POST],
                 source=[PRE])
    rec = json.loads(json.dumps(state.record()))
    assert ClusterState.from_record(rec) == state
    assert rec["rollback_expiration"] == "2026-03-11T13:00:00+00:00"
    del rec["hsms"]
    with pytest.raises(KeyparityError, match="lacks 'hsms'.*take a new baseline"):
        ClusterState.from_record(rec)


# ---- lineage -----------------------------------------------------------------------------------

def test_an_in_place_change_hsm1_to_hsm2m_passes():
    before = baseline(DAILY_9, DAILY_8)
    after = read(cluster_doc(hsm_type=H2, rollback=at(11, 13)), [POST, PRE], [DAILY_9, DAILY_8])
    check = lineage.check_lineage(before, after)
    assert isinstance(check, Check) and check.ok, check.message
    assert check.message == (f"{OLD} changed in place: HsmType hsm1.medium -> hsm2m.medium; "
                             "HSMs now: hsm-1abcdefghij hsm2m.medium ACTIVE, hsm-2abcdefghij "
                             "hsm2m.medium ACTIVE")
    assert check.facts["kind"] == "in place"
    assert check.facts["hsm_type"] == {"before": H1, "after": H2}
    assert check.facts["hsm_types_now"] == [H2, H2]
    backups = lineage.check_backup(before, after, BASELINE)
    assert backups.ok and backups.warnings == ()
    assert backups.facts["backup_id"] == "backup-postchangeaa"
    assert backups.facts["pre_change_backup_id"] == "backup-prechangeaaa"
    assert backups.facts["retention"] == f"retention policy of {OLD} (90 DAYS)"
    ba = lineage.before_after(before, after)
    assert ba["hsm_type"] == {"before": H1, "after": H2}
    assert ba["hsm_types"] == {"before": [H1, H1], "after": [H2, H2]}
    assert ba["rollback_expiration"] == {"before": None, "after": "2026-03-11T13:00:00+00:00"}
    assert ba["hsm_count"] == {"before": 2, "after": 2} and ba["cluster_id"]["after"] == OLD


def test_an_in_place_change_mixing_hsm_types_is_recorded_not_failed():
    before = baseline(DAILY_9)
    after = read(cluster_doc(hsm_type=H2, hsm_types=(H2, H1)), [PRE])
    check = lineage.check_lineage(before, after)
    assert check.ok and check.facts["hsm_types_now"] == [H2, H1]
    assert "hsm-2abcdefghij hsm1.medium ACTIVE" in check.message


def test_an_in_place_change_still_in_progress_fails():
    before = baseline(DAILY_9)
    after = read(cluster_doc(hsm_type=H2, state="MODIFY_IN_PROGRESS", hsm_types=(H2, H1)), [PRE])
    check = lineage.check_lineage(before, after)
    assert not check.ok
    assert check.message.startswith(f"{OLD} changed in place: HsmType hsm1.medium -> "
                                    "hsm2m.medium")
    assert check.message.endswith(f"{OLD} is MODIFY_IN_PROGRESS, not ACTIVE: wait until the "
                                  "change is done (or rolled back), then re-verify")


def test_a_restore_from_a_backup_of_the_baselined_cluster_passes():
    before = baseline(DAILY_9, DAILY_8)
    after = read(cluster_doc(NEW, H2, source=PRE["BackupId"]),
                 [backup("backup-newownaaaaa", at(11, 3), NEW, hsm_type=H2)], source=[PRE])
    check = lineage.check_lineage(before, after)
    assert check.ok and check.message == (f"{NEW} was restored from backup backup-prechangeaaa "
                                          f"of the baselined {OLD}")
    assert (check.facts["kind"], check.facts["source_backup_cluster_id"]) == ("restore", OLD)
    backups = lineage.check_backup(before, after, BASELINE)
    assert backups.ok and backups.warnings == ()
    assert backups.facts["backup_id"] == "backup-prechangeaaa"  # not NEW's own backup
    assert backups.facts["listed_at"] == after.read_at


def test_a_restore_from_a_copied_backup_names_its_source_cluster():
    copied = backup("backup-copiedaaaaa", at(10, 14), None, SourceCluster=OLD,
                    SourceBackup=PRE["BackupId"], SourceRegion="eu-west-1",
                    CopyTimestamp=at(10, 13))
    before = baseline(DAILY_9)
    after = read(cluster_doc(NEW, H2, source="backup-copiedaaaaa"), [], source=[copied])
    assert lineage.check_lineage(before, after).ok
    assert lineage.check_backup(before, after, BASELINE).facts["backup_id"] == "backup-copiedaaaaa"


def test_a_restore_from_another_clusters_backup_fails_naming_them():
    theirs = backup("backup-theirsaaaaa", at(10, 3), OTHER)
    before = baseline(DAILY_9)
    after = read(cluster_doc(NEW, H2, source="backup-theirsaaaaa"), [], source=[theirs])
    check = lineage.check_lineage(before, after)
    assert not check.ok
    assert check.message == (f"{NEW} was restored from backup backup-theirsaaaaa of {OTHER}, "
                             f"not of the baselined {OLD}: point the re-verify at a cluster "
                             f"restored from a backup of {OLD}, or take a new baseline")
    assert check.facts["source_backup_cluster_id"] == OTHER


def test_a_new_cluster_not_restored_from_a_backup_fails():
    before = baseline(DAILY_9)
    after = read(cluster_doc(NEW, H2), [])
    check = lineage.check_lineage(before, after)
    assert not check.ok
    assert check.message.startswith(f"{NEW} is not the baselined {OLD} and has no "
                                    "SourceBackupId: it was not restored from a backup")


def test_a_source_backup_no_longer_listed_fails_but_one_listed_at_the_baseline_counts():
    before = baseline(DAILY_9)
    gone = read(cluster_doc(NEW, H2, source="backup-vanishedaaa"), [], source=[])
    check = lineage.check_lineage(before, gone)
    assert not check.ok
    assert "backup-vanishedaaa, which DescribeBackups does not list" in check.message
    listed = read(cluster_doc(NEW, H2, source=DAILY_9["BackupId"]), [], source=[])
    assert lineage.check_lineage(before, listed).ok


@pytest.mark.parametrize("restore", [False, True])
def test_a_mode_change_fails(restore):
    before = baseline(DAILY_9)
    after = (read(cluster_doc(NEW, H2, "NON_FIPS", source=PRE["BackupId"]), [], source=[PRE])
             if restore else read(cluster_doc(hsm_type=H2, mode="NON_FIPS"), [PRE]))
    check = lineage.check_lineage(before, after)
    assert not check.ok
    assert ("Mode changed from FIPS to NON_FIPS: a backup restores only into a cluster of its "
            "own mode") in check.message
    assert check.facts["mode"] == {"before": "FIPS", "after": "NON_FIPS"}


# ---- backups -----------------------------------------------------------------------------------

@pytest.mark.parametrize("listed", [[], [backup("backup-creatingaaa", at(11, 2),
                                                state="CREATE_IN_PROGRESS"),
                                         backup("backup-deletedaaaa", at(9, 2), state="DELETED")]])
def test_no_ready_backup_fails_with_what_to_do(listed):
    before = baseline(DAILY_9)
    after = read(cluster_doc(hsm_type=H2), listed)
    check = lineage.check_backup(before, after, BASELINE)
    assert not check.ok and check.facts["backup_id"] is None
    seen = ("backup-creatingaaa CREATE_IN_PROGRESS, backup-deletedaaaa DELETED" if listed
            else "none")
    assert check.message == (f"no READY backup of {OLD} is listed (backups: {seen}): no API "
                             "takes a backup on demand: CloudHSM backs a cluster up at least "
                             "once every 24 hours, and when an HSM is added to or removed from "
                             "an active cluster (aws cloudhsmv2 create-hsm forces one); wait "
                             "for a new READY backup, then run again")


@pytest.mark.parametrize(("state", "never_expires"), [("PENDING_DELETION", False),
                                                     ("PENDING_DELETION", True), ("READY", True)])
def test_a_backup_pending_deletion_fails(state, never_expires):
    """NeverExpires exempts from the retention policy; it does not undo a DeleteBackup."""
    pending = backup("backup-pendingaaaa", at(10, 13), state=state,
                     DeleteTimestamp=at(17, 13), NeverExpires=never_expires)
    before = baseline(DAILY_9)
    after = read(cluster_doc(hsm_type=H2),
                 [pending, backup("backup-deletedaaaa", at(9, 2), state="DELETED")])
    check = lineage.check_backup(before, after, BASELINE)
    assert not check.ok
    assert check.message.startswith(
        f"no READY backup of {OLD} is left: the newest, backup-pendingaaaa (taken "
        f"2026-03-10T13:00:00+00:00), is pending deletion ({state}) and is deleted for good at "
        "2026-03-17T13:00:00+00:00: restore it before then (aws cloudhsmv2 restore-backup "
        "--backup-id backup-pendingaaaa)")
    assert check.facts == {"backup_id": "backup-pendingaaaa", "state": state,
                           "delete_at": "2026-03-17T13:00:00+00:00"}


def test_an_older_ready_backup_counts_when_the_newest_is_pending_deletion():
    pending = backup("backup-pendingaaaa", at(10, 13), state="PENDING_DELETION",
                     DeleteTimestamp=at(17, 13))
    before = baseline(DAILY_9)
    check = lineage.check_backup(before, read(cluster_doc(), [pending, PRE]), BASELINE)
    assert check.ok and check.facts["backup_id"] == "backup-prechangeaaa"


def test_a_backup_older_than_the_baseline_passes_with_a_warning():
    kept = backup("backup-keptaaaaaaa", at(9, 2), NeverExpires=True)
    before = baseline(kept)
    after = read(cluster_doc(), [kept, DAILY_8])
    check = lineage.check_backup(before, after, BASELINE)
    assert check.ok
    assert check.message == (f"the newest READY backup of {OLD} is backup-keptaaaaaaa, taken "
                             "2026-03-09T02:00:00+00:00 (hsm1.medium, never expires)")
    assert check.warnings == (f"backup backup-keptaaaaaaa of {OLD} was taken "
                              "2026-03-09T02:00:00+00:00, before the baseline "
                              "(2026-03-10T12:00:00+00:00): keys made after it are not in it",)
    assert check.facts["retention"] == "never expires" and "pre_change_backup_id" not in check.facts


def test_a_restore_warns_of_a_backup_only_listed_at_the_baseline():
    before = baseline(DAILY_9, DAILY_8)
    after = read(cluster_doc(NEW, H2, source=DAILY_8["BackupId"]), [], source=[DAILY_8])
    check = lineage.check_backup(before, after, BASELINE)
    assert check.ok and check.facts["backup_id"] == "backup-daily9aaaaaa"
    assert check.facts["listed_at"] == before.read_at
    assert len(check.warnings) == 2
    assert check.warnings[1] == (f"backup backup-daily9aaaaaa was listed at the baseline "
                                 f"({before.read_at}) and not read again: it may have been "
                                 "deleted since")


def test_an_in_place_change_with_no_backup_of_the_old_type_left_warns():
    before = baseline(DAILY_9)
    after = read(cluster_doc(hsm_type=H2), [POST, backup("backup-oldgoneaaaa", at(9, 2),
                                                         state="DELETED")])
    check = lineage.check_backup(before, after, BASELINE)
    assert check.ok and check.facts["pre_change_backup_id"] is None
    assert check.warnings == (f"no READY backup of {OLD} of the old type hsm1.medium is left: "
                              "the cluster before the change cannot be restored",)


# ---- the rollback window -----------------------------------------------------------------------

def test_a_rollback_window_that_has_passed_is_a_headline_not_a_failure():
    after = read(cluster_doc(hsm_type=H2, rollback=at(11, 13)), [POST])
    check = lineage.check_rollback(after, at(12, 9))
    headline = (f"the rollback window of {OLD} closed at 2026-03-11T13:00:00+00:00: the HSM "
                "type change can no longer be rolled back")
    assert check.ok and check.skip is None
    assert check.facts["headline"] == headline and check.warnings == (headline,)
    assert check.facts["rollback_open"] is False
    assert check.message.startswith(headline)


def test_a_rollback_window_still_open_says_until_when():
    after = read(cluster_doc(hsm_type=H2, rollback=at(11, 13)), [POST])
    check = lineage.check_rollback(after, dt.datetime(2026, 3, 11, 9, 45))  # naive: UTC
    assert check.ok and check.warnings == () and "headline" not in check.facts
    assert check.message == (f"the HSM type change of {OLD} can be rolled back until "
                             "2026-03-11T13:00:00+00:00 (3h 15m left)")
    assert check.facts["rollback_open"] is True


def test_no_hsm_type_change_no_rollback():
    check = lineage.check_rollback(read(cluster_doc(), [PRE]), at(12, 9))
    assert check.ok and check.skip is None and check.warnings == ()
    assert check.message == f"{OLD}: no HSM type change to roll back"


# ---- errors ------------------------------------------------------------------------------------

def test_a_refused_describe_clusters_is_access_denied():
    client = boto3.client("cloudhsmv2", region_name=REGION, aws_access_key_id="AKIDTEST",
                          aws_secret_access_key="test")
    with Stubber(client) as stub:
        stub.add_client_error("describe_clusters", "AccessDeniedException", "not allowed", 400)
        with pytest.raises(aws.AwsAccessDenied) as info:
            lineage.read(spec(), client=client)
    assert str(info.value) == (f"DescribeClusters of {OLD} in {REGION} failed "
                               "(AccessDeniedException: not allowed): allow "
                               "cloudhsmv2:DescribeClusters for these credentials (it is "
                               "read-only)")


@pytest.mark.parametrize(("code", "kind", "todo"), [
    ("CloudHsmAccessDeniedException", aws.AwsAccessDenied,
     "allow cloudhsmv2:DescribeBackups for these credentials"),
    ("ExpiredTokenException", aws.AwsNoCredentials, "the session token has expired"),
    ("ThrottlingException", aws.AwsCallFailed, "retry later"),
])
def test_a_failed_describe_backups_becomes_an_aws_error(code, kind, todo):
    client, stub = stubbed(cluster_doc(), [DAILY_9])
    stub.deactivate()  # the first page says there is a second, whose call fails
    stub = Stubber(client)
    stub.add_response("describe_clusters", {"Clusters": [cluster_doc()]})
    stub.add_response("describe_backups", {"Backups": [DAILY_9], "NextToken": "token-1"})
    stub.add_client_error("describe_backups", code, "nope", 400, expected_params={
        "Filters": {"clusterIds": [OLD]}, "SortAscending": False, "NextToken": "token-1"})
    stub.activate()
    with pytest.raises(kind) as info:
        lineage.read(spec(), client=client)
    assert isinstance(info.value, aws.AwsError)
    assert str(info.value).startswith(f"DescribeBackups of {OLD} in {REGION} failed ({code}: "
                                      "nope): ")
    assert todo in str(info.value) and "DescribeClusters" not in str(info.value)


def test_an_unknown_cluster_is_not_found():
    client, _ = stubbed(None)
    with pytest.raises(aws.AwsClusterNotFound, match=f"DescribeClusters found no cluster {OLD} "
                       f"in {REGION}: check aws.cluster_id and aws.region"):
        lineage.read(spec(), client=client)


# ---- exact fields, defaults for what AWS omits, UTC ---------------------------------------------

def test_utc_takes_naive_as_utc_and_converts_aware_and_iso_times(monkeypatch):
    import time
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # astimezone() without UTC would give +09:00
    time.tzset()
    try:
        paris = dt.timezone(dt.timedelta(hours=1))
        assert lineage.utc(dt.datetime(2026, 3, 10, 12, 0)) == at(10, 12)
        assert lineage.utc(dt.datetime(2026, 3, 10, 12, 0)).tzinfo is UTC
        aware = lineage.utc(dt.datetime(2026, 3, 10, 13, 30, tzinfo=paris))
        assert aware.tzinfo is UTC and (aware.hour, aware.minute) == (12, 30)
        assert lineage.iso(dt.datetime(2026, 3, 10, 13, 30, tzinfo=paris)) == \
            "2026-03-10T12:30:00+00:00"
        assert lineage.iso("2026-03-10T13:30:00+01:00") == "2026-03-10T12:30:00+00:00"
        assert lineage.iso("2026-03-10T12:30:00") == "2026-03-10T12:30:00+00:00"
        assert lineage.iso(None) is None
    finally:
        monkeypatch.undo()  # TZ as it was, then re-read
        time.tzset()


def test_the_record_holds_exactly_the_state_with_lists_and_its_source():
    state = read(cluster_doc(rollback=at(11, 13)), [PRE])
    rec = state.record()
    assert set(rec) == {"cluster_id", "region", "state", "hsm_type", "mode",
                        "rollback_expiration", "source_backup_id", "hsms", "backups", "read_at",
                        "backup_retention", "source"}
    assert rec["region"] == REGION and state.region == REGION
    assert rec["hsms"] == [dict(h) for h in state.hsms] and isinstance(rec["hsms"], list)
    assert isinstance(rec["backups"], list)
    assert rec["backups"] == [{"BackupId": "backup-prechangeaaa", "BackupState": "READY",
                               "ClusterId": OLD, "CreateTimestamp": "2026-03-10T12:30:00+00:00",
                               "HsmType": H1, "Mode": "FIPS", "NeverExpires": False}]


def test_from_record_says_exactly_what_is_missing():
    rec = json.loads(json.dumps(read(cluster_doc(), [PRE]).record()))
    del rec["backups"]
    with pytest.raises(KeyparityError) as info:
        ClusterState.from_record(rec)
    assert str(info.value) == ("the baseline's cluster record lacks 'backups': it was not "
                               "written by this keyparity; take a new baseline")


def test_read_without_a_client_makes_one_for_the_spec(monkeypatch):
    client, stub = stubbed(cluster_doc(), [PRE])
    asked = []
    monkeypatch.setattr(aws, "client_for", lambda s, *a, **k: asked.append(s) or client)
    state = lineage.read(spec())
    stub.assert_no_pending_responses()
    assert asked == [spec()] and state.cluster_id == OLD


def test_read_fills_in_what_aws_omits():
    """A cluster without State, Hsms, HsmType, Mode or a retention policy; pages without
    Backups; a backup without HsmType or CreateTimestamp."""
    client = boto3.client("cloudhsmv2", region_name=REGION, aws_access_key_id="AKIDTEST",
                          aws_secret_access_key="test")
    with Stubber(client) as stub:
        stub.add_response("describe_clusters", {"Clusters": [{"ClusterId": OLD}]})
        stub.add_response("describe_backups", {"NextToken": "token-1"})
        stub.add_response("describe_backups", {"Backups": [{"BackupId": "backup-baregone",
                                                            "BackupState": "READY",
                                                            "ClusterId": OLD}],
                                               "NextToken": "token-2"},
                          {"Filters": {"clusterIds": [OLD]}, "SortAscending": False,
                           "NextToken": "token-1"})
        stub.add_response("describe_backups", {},
                          {"Filters": {"clusterIds": [OLD]}, "SortAscending": False,
                           "NextToken": "token-2"})
        state = lineage.read(spec(), client=client)
        stub.assert_no_pending_responses()
    assert (state.cluster_id, state.region, state.state, state.hsm_type, state.mode) == (
        OLD, REGION, "?", None, None)
    assert (state.hsms, state.backup_retention, state.rollback_expiration,
            state.source_backup_id) == ((), None, None, None)
    assert state.backups == ({"BackupId": "backup-baregone", "BackupState": "READY",
                              "ClusterId": OLD},)
    check = lineage.check_backup(state, state, BASELINE)
    assert check.ok
    assert check.message == (f"the newest READY backup of {OLD} is backup-baregone, taken None "
                             f"(HsmType not given, retention policy of {OLD} (not read))")
    assert check.facts == {"backup_id": "backup-baregone", "created": None, "state": "READY",
                           "hsm_type": None, "retention": f"retention policy of {OLD} (not read)",
                           "listed_at": state.read_at}
    lin = lineage.check_lineage(state, state)
    assert lin.ok is False
    assert lin.message == (f"{OLD} changed in place: HsmType None unchanged; HSMs now: no HSMs; "
                           f"{OLD} is ?, not ACTIVE: wait until the change is done (or rolled "
                           "back), then re-verify")


def test_a_describe_clusters_without_clusters_is_not_found():
    client = boto3.client("cloudhsmv2", region_name=REGION, aws_access_key_id="AKIDTEST",
                          aws_secret_access_key="test")
    with Stubber(client) as stub:
        stub.add_response("describe_clusters", {})
        with pytest.raises(aws.AwsClusterNotFound, match=f"found no cluster {OLD}"):
            lineage.read(spec(), client=client)


def test_hsms_without_type_or_state_show_a_question_mark():
    state = read(cluster_doc(hsm_type=H2), [POST])
    bare = ClusterState(**{**{k: getattr(state, k) for k in (
        "cluster_id", "region", "state", "hsm_type", "mode", "rollback_expiration",
        "source_backup_id", "backups", "read_at", "backup_retention")},
        "hsms": ({"HsmId": "hsm-1abcdefghij"},)})
    check = lineage.check_lineage(state, bare)
    assert check.ok and check.message == (f"{OLD} changed in place: HsmType hsm2m.medium "
                                          "unchanged; HSMs now: hsm-1abcdefghij ? ?")
    assert check.facts == {"before_cluster_id": OLD, "after_cluster_id": OLD,
                           "mode": {"before": "FIPS", "after": "FIPS"}, "kind": "in place",
                           "hsm_type": {"before": H2, "after": H2}, "hsm_types_now": [None]}


def test_a_restore_records_its_facts_and_a_mode_change_says_everything():
    before = baseline(DAILY_9)
    after = read(cluster_doc(NEW, H2, "NON_FIPS", state="INITIALIZED", source=PRE["BackupId"]),
                 [], source=[PRE])
    check = lineage.check_lineage(before, after)
    assert check.ok is False
    assert check.facts == {"before_cluster_id": OLD, "after_cluster_id": NEW,
                           "mode": {"before": "FIPS", "after": "NON_FIPS"}, "kind": "restore",
                           "source_backup_id": "backup-prechangeaaa",
                           "source_backup_cluster_id": OLD}
    assert check.message == (
        f"{NEW} was restored from backup backup-prechangeaaa of the baselined {OLD}; "
        "Mode changed from FIPS to NON_FIPS: a backup restores only into a cluster of its own "
        "mode and CloudHSM does not change a cluster's mode, so this is not the baselined "
        "cluster; keys move between modes by wrap/unwrap (a migration run, not a re-verify); "
        f"{NEW} is INITIALIZED, not ACTIVE: wait until the change is done (or rolled back), "
        "then re-verify")


def test_a_copied_backup_is_of_its_source_cluster_not_of_the_copy():
    copied = backup("backup-copiedaaaaa", at(10, 14), OTHER, SourceCluster=OLD,
                    SourceBackup=PRE["BackupId"], SourceRegion="eu-west-1")
    before = baseline(DAILY_9)
    after = read(cluster_doc(NEW, H2, source="backup-copiedaaaaa"), [], source=[copied])
    check = lineage.check_lineage(before, after)
    assert check.ok and check.facts["source_backup_cluster_id"] == OLD


def test_before_after_compares_every_field():
    before = baseline(DAILY_9)
    after = read(cluster_doc(NEW, H2, "NON_FIPS", state="DEGRADED", hsm_types=(H2,),
                             rollback=at(11, 13), source=DAILY_9["BackupId"]), [], source=[])
    assert lineage.before_after(before, after) == {
        "cluster_id": {"before": OLD, "after": NEW},
        "hsm_type": {"before": H1, "after": H2},
        "state": {"before": "ACTIVE", "after": "DEGRADED"},
        "mode": {"before": "FIPS", "after": "NON_FIPS"},
        "hsm_count": {"before": 2, "after": 1},
        "hsm_types": {"before": [H1, H1], "after": [H2]},
        "rollback_expiration": {"before": None, "after": "2026-03-11T13:00:00+00:00"},
        "source_backup_id": {"before": None, "after": DAILY_9["BackupId"]},
        "read_at": {"before": before.read_at, "after": after.read_at}}


def _retention(doc: dict[str, Any], days: str) -> dict[str, Any]:
    return doc | {"BackupRetentionPolicy": {"Type": "DAYS", "Value": days}}


def test_the_retention_policy_is_the_baselined_clusters():
    before = baseline(DAILY_9)  # 90 DAYS
    in_place = read(_retention(cluster_doc(hsm_type=H2), "30"), [POST, PRE])
    check = lineage.check_backup(before, in_place, BASELINE)
    assert check.facts == {"backup_id": "backup-postchangeaa",
                           "created": "2026-03-11T02:00:00+00:00", "state": "READY",
                           "hsm_type": H2, "retention": f"retention policy of {OLD} (30 DAYS)",
                           "listed_at": in_place.read_at,
                           "pre_change_backup_id": "backup-prechangeaaa"}
    assert check.message == (f"the newest READY backup of {OLD} is backup-postchangeaa, taken "
                             f"2026-03-11T02:00:00+00:00 (hsm2m.medium, retention policy of "
                             f"{OLD} (30 DAYS))")
    restored = read(_retention(cluster_doc(NEW, H2, source=PRE["BackupId"]), "7"), [],
                    source=[PRE])
    check = lineage.check_backup(before, restored, BASELINE)
    assert check.facts["retention"] == f"retention policy of {OLD} (90 DAYS)"


def test_a_backup_taken_at_the_baseline_time_is_not_older():
    taken = backup("backup-atbaselinea", BASELINE)
    check = lineage.check_backup(baseline(taken), read(cluster_doc(), [taken]), BASELINE)
    assert check.ok and check.warnings == ()
    check = lineage.check_backup(baseline(taken), read(cluster_doc(), [taken]),
                                 BASELINE - dt.timedelta(seconds=-1))
    assert len(check.warnings) == 1


def test_pending_deletion_by_state_alone_or_by_delete_timestamp():
    assert lineage.pending_deletion({"BackupState": "PENDING_DELETION"})
    assert lineage.pending_deletion({"BackupState": "READY", "DeleteTimestamp": "x"})
    assert not lineage.pending_deletion({"BackupState": "READY"})
    pending = backup("backup-pendingaaaa", at(10, 13), state="PENDING_DELETION")
    check = lineage.check_backup(baseline(DAILY_9), read(cluster_doc(), [pending]), BASELINE)
    assert check.ok is False and check.facts == {"backup_id": "backup-pendingaaaa",
                                                 "state": "PENDING_DELETION", "delete_at": None}
    assert check.message == (
        f"no READY backup of {OLD} is left: the newest, backup-pendingaaaa (taken "
        "2026-03-10T13:00:00+00:00), is pending deletion (PENDING_DELETION) and is deleted for "
        "good at None: restore it before then (aws cloudhsmv2 restore-backup --backup-id "
        "backup-pendingaaaa) and keep it until every key is proven (aws cloudhsmv2 "
        "modify-backup-attributes --backup-id backup-pendingaaaa --never-expires)")


def test_no_backup_listed_is_false_and_counts_what_was_seen():
    listed = [backup("backup-deletedaaaa", at(9, 2), state="DELETED")]
    check = lineage.check_backup(baseline(DAILY_9), read(cluster_doc(), listed), BASELINE)
    assert check.ok is False and check.facts == {"backup_id": None, "backups_seen": 1}
    check = lineage.check_backup(baseline(DAILY_9), read(cluster_doc(), []), BASELINE)
    assert check.ok is False and check.facts == {"backup_id": None, "backups_seen": 0}


def test_rollback_facts_and_the_exact_deadline():
    after = read(cluster_doc(hsm_type=H2, rollback=at(11, 13)), [POST])
    check = lineage.check_rollback(read(cluster_doc(), [PRE]), at(12, 9))
    assert check.facts == {"rollback_expiration": None}
    check = lineage.check_rollback(after, dt.datetime(2026, 3, 11, 9, 45))
    assert check.facts == {"rollback_expiration": "2026-03-11T13:00:00+00:00",
                           "checked_at": "2026-03-11T09:45:00+00:00", "rollback_open": True}
    check = lineage.check_rollback(after, at(11, 13))  # the deadline itself: closed
    headline = (f"the rollback window of {OLD} closed at 2026-03-11T13:00:00+00:00: the HSM "
                "type change can no longer be rolled back")
    assert check.facts == {"rollback_expiration": "2026-03-11T13:00:00+00:00",
                           "checked_at": "2026-03-11T13:00:00+00:00", "rollback_open": False,
                           "headline": headline}
    assert check.message == (f"{headline} (this does not fail the run: the keys are proven on "
                             "their own)")

def test_the_record_lists_the_source_backups_that_still_hold_the_keys():
    """keyparity.retire's record lists the source cluster's backups and the one it was restored
    from, read through botocore's Stubber (validated against the service model); not one
    pending deletion."""
    from types import SimpleNamespace

    from keyparity.retire import backups
    gone = backup("backup-deletedaaaaa", at(7, 2), state="PENDING_DELETION",
                  DeleteTimestamp=at(12, 2))
    client, stub = stubbed(cluster_doc(source=PRE["BackupId"]), [DAILY_9, DAILY_8, gone],
                           source=[PRE])
    found = backups(SimpleNamespace(source=SimpleNamespace(aws=spec(OLD))), client)
    stub.assert_no_pending_responses()
    assert found["read"] is True and found["cluster_id"] == OLD
    assert [b["backup_id"] for b in found["backups"]] == [
        DAILY_9["BackupId"], DAILY_8["BackupId"], PRE["BackupId"]]
    assert found["backups"][0]["state"] == "READY"
