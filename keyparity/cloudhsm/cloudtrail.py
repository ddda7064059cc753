"""Changes to a cluster during a run, as AWS CloudTrail recorded them: ``LookupEvents`` with
``EventSource`` ``cloudhsm.amazonaws.com`` over the run's window (CreateHsm, DeleteHsm,
ModifyCluster, RestoreBackup, DeleteBackup, ...: the CloudHSM API calls CloudTrail logs,
"Logging AWS CloudHSM API calls with AWS CloudTrail",
https://docs.aws.amazon.com/cloudhsm/latest/userguide/cloudtrail.html), kept when they name
the cluster. Read-only calls (Describe*, List*) are counted, not listed: they change nothing.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from ..profile import AwsSpec
from . import aws

EVENT_SOURCE = "cloudhsm.amazonaws.com"


def _names_cluster(event: dict[str, Any], spec: AwsSpec) -> bool:
    if any(spec.cluster_id in str(r.get("ResourceName", "")) for r in event.get("Resources", [])):
        return True
    return spec.cluster_id in str(event.get("CloudTrailEvent", ""))


def _record(event: dict[str, Any]) -> dict[str, Any]:
    when = event.get("EventTime")
    detail: dict[str, Any] = {}
    try:
        detail = json.loads(event.get("CloudTrailEvent") or "{}")
    except ValueError:
        pass
    return {"event_id": event.get("EventId"), "event_name": event.get("EventName"),
            "event_time": when.isoformat() if isinstance(when, dt.datetime) else when,
            "username": event.get("Username"),
            "request_parameters": detail.get("requestParameters"),
            "error_code": detail.get("errorCode")}


def cluster_changes(spec: AwsSpec, start: dt.datetime, end: dt.datetime,
                    client: Any = None) -> dict[str, Any]:
    """The cluster's CloudHSM API calls that change something between ``start`` and ``end``;
    AwsError when CloudTrail cannot be read."""
    import botocore.exceptions as bx  # deferred for speed, as in aws.client_for

    client = client if client is not None else aws.client_for(spec, "cloudtrail")
    changes: list[dict[str, Any]] = []
    read_only, token = 0, None
    try:
        while True:
            page = client.lookup_events(
                LookupAttributes=[{"AttributeKey": "EventSource", "AttributeValue": EVENT_SOURCE}],
                StartTime=start, EndTime=end, **({"NextToken": token} if token else {}))
            for event in page.get("Events", []):
                if not _names_cluster(event, spec):
                    continue
                if str(event.get("ReadOnly")).lower() == "true":
                    read_only += 1
                else:
                    changes.append(_record(event))
            token = page.get("NextToken")
            if not token:
                break
    except (bx.BotoCoreError, bx.ClientError) as exc:
        err = aws.error_for(exc, spec, "LookupEvents")
        raise type(err)(str(err).replace("cloudhsmv2:DescribeClusters",
                                         "cloudtrail:LookupEvents")) from None
    return {"source": f"cloudtrail.lookup_events (EventSource {EVENT_SOURCE})",
            "cluster_id": spec.cluster_id, "changes": changes, "read_only_calls": read_only}
