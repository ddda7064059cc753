"""keyparity.key_states: a retirement is RETIRED only when no kept backup still holds the keys
(the source cluster's backups read through a real cloudhsmv2 client whose responses botocore's
Stubber validates against the service model); otherwise "destroyed on the HSM; held by backups
until <date>". The people and the deactivation period, each refused when missing."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from keyparity import key_states
from keyparity.errors import PolicyError
from keyparity.profile import AwsSpec
from keyparity.retire import backups

REGION, CLUSTER = "eu-central-1", "cluster-hsm1fips01"
TAKEN = dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.timezone.utc)


def _backup(bid: str, **extra: Any) -> dict[str, Any]:
    return {"BackupId": bid, "BackupState": "READY", "ClusterId": CLUSTER,
            "CreateTimestamp": TAKEN, "HsmType": "hsm1.medium", "Mode": "FIPS", **extra}


def read_backups(*kept: dict[str, Any]) -> dict[str, Any]:
    client = boto3.client("cloudhsmv2", region_name=REGION, aws_access_key_id="AKIDTEST",
                          aws_secret_access_key="test")
    stub = Stubber(client)
    stub.add_response("describe_clusters", {"Clusters": [{
        "ClusterId": CLUSTER, "State": "ACTIVE", "HsmType": "hsm1.medium", "Mode": "FIPS",
        "BackupRetentionPolicy": {"Type": "DAYS", "Value": "90"}, "Hsms": []}]},
        {"Filters": {"clusterIds": [CLUSTER]}})
    stub.add_response("describe_backups", {"Backups": list(kept)},
                      {"Filters": {"clusterIds": [CLUSTER]}, "SortAscending": False})
    stub.activate()
    profile = SimpleNamespace(source=SimpleNamespace(aws=AwsSpec(CLUSTER, REGION)))
    out = backups(profile, client=client)  # type: ignore[arg-type]
    stub.assert_no_pending_responses()
    return out


def test_a_kept_backup_holds_the_destroyed_keys_so_the_retirement_is_not_retired():
    record = read_backups(_backup("backup-aaaaaaaaaaa"))
    held = key_states.held_by_backups(record)
    assert held is not None and held["backup_ids"] == ["backup-aaaaaaaaaaa"]
    # the retention policy (90 days) from the backup's creation: when it ages out
    assert held["until"] == "2027-02-28T03:00:00+00:00"
    assert held["text"] == "destroyed on the HSM; held by backups until 2027-02-28T03:00:00+00:00"
    for environment in ("test", "production"):
        assert key_states.conclusion(True, True, environment, record) == key_states.HELD


def test_a_backup_that_never_expires_holds_them_for_ever():
    record = read_backups(_backup("backup-aaaaaaaaaaa"),
                          _backup("backup-bbbbbbbbbbb", NeverExpires=True))
    held = key_states.held_by_backups(record)
    assert held is not None and held["until"].startswith("never")
    assert key_states.conclusion(True, True, "test", record) == key_states.HELD


def test_no_backup_left_is_retired_and_a_deleted_one_does_not_count():
    deleted = _backup("backup-ccccccccccc", BackupState="PENDING_DELETION",
                      DeleteTimestamp=TAKEN + dt.timedelta(days=1))
    record = read_backups(deleted)
    assert key_states.held_by_backups(record) is None
    assert key_states.conclusion(True, True, "production", record) == key_states.RETIRED


def test_backups_not_read_retire_only_outside_production():
    unread = {"read": False}
    assert key_states.conclusion(True, True, "test", unread) == key_states.RETIRED
    assert key_states.conclusion(True, True, "production", unread) == key_states.NOT_READ
    assert key_states.conclusion(True, False, "production", unread) == key_states.DEACTIVATED_ONLY
    assert key_states.conclusion(False, True, "test", unread) == key_states.INCOMPLETE


def test_the_period_is_required_in_production_and_ends_on_its_date():
    with pytest.raises(PolicyError, match="retirement.deactivation_days"):
        key_states.period_days("production", None, "p.yaml")
    with pytest.raises(PolicyError, match="retirement.deactivation_days"):
        key_states.period_days("production", 0, "p.yaml")
    assert key_states.period_days("test", None, "p.yaml") == 0
    at = "2026-12-07T10:00:00+00:00"
    said = key_states.too_early(at, 30, dt.datetime(2026, 12, 20, tzinfo=dt.timezone.utc))
    assert said is not None and "ends 2027-01-06T10:00:00+00:00" in said
    assert key_states.too_early(at, 30, dt.datetime(2027, 1, 6, 10, tzinfo=dt.timezone.utc)) \
        is None
    assert key_states.too_early(at, 0, dt.datetime.fromisoformat(at)) is None


def test_the_people_are_named_and_distinct():
    assert key_states.people("Ann", ["Bo", " Cy "]) == {"operator": "Ann",
                                                        "witnesses": ["Bo", "Cy"]}
    for operator, witnesses in ((None, ["Bo"]), ("Ann", None), ("Ann", ["Ann"]), (" ", ["Bo"])):
        with pytest.raises(PolicyError, match="nothing was changed"):
            key_states.people(operator, witnesses)
