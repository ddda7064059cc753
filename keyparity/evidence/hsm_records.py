"""The HSM side of a run's evidence (``hsm_records``): each write the journal recorded as done
matched to the CloudHSM audit log event that shows it (keyparity.cloudhsm.audit_log), and the
cluster's CloudHSM API calls in the run's window from CloudTrail (keyparity.cloudhsm.cloudtrail).

Read for each cluster with an ``aws`` block whose ``audit_logs`` is on (default: in production
only), once, at the end of the run, with one client per service and cluster. CloudHSM delivers
its audit logs to CloudWatch Logs with a delay, so while writes are unmatched the logs are read
again every ``POLL_S`` seconds for up to ``WAIT_S`` (production; 0 elsewhere).

A write with no matching audit event is recorded ``unmatched`` and the run FAILs
(keyparity.evidence.verdict): either the HSM's audit trail lacks a key management command the
harness made (PCI DSS v4.0 10.2.1: audit logs capture every such action), or the journal
records a write the HSM never logged; an assessor can accept neither without follow-up. Logs
that cannot be read (AWS refused, no log group) FAIL the run the same way where they were to be
read: the evidence would claim an HSM-side record it does not hold.
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..backends import backend_for
from ..cloudhsm import audit_log, aws, cloudtrail
from ..errors import KeyparityError
from ..profile import Cluster, Profile

WAIT_S = {"production": 300}  # environment -> how long unmatched writes are waited for
POLL_S = 15


def enabled(cluster: Cluster, environment: str) -> bool:
    """Whether the cluster's HSM-side records are read: ``aws.audit_logs``, by default in
    production only."""
    if cluster.aws is None:
        return False
    on = cluster.aws.audit_logs
    return environment == "production" if on is None else bool(on)


def _journal_names(c: Cluster) -> tuple[str, ...]:
    """How the journal names the cluster: its name (PKCS #11), its cluster id or
    ``role (name)`` (the CloudHSM CLI)."""
    return (c.name, f"{c.role} ({c.name})") + ((c.aws.cluster_id,) if c.aws else ())


def _user(profile: Profile, c: Cluster) -> str | None:
    return backend_for(profile).user_of(c)


def collect(profile: Profile, rows: Sequence[Mapping[str, Any]], *,
            clients: Mapping[tuple[str, str], Any] | None = None,
            sleep: Callable[[float], None] = time.sleep) -> dict[str, Any] | None:
    """The run's HSM-side records from its journal ``rows``; None when no cluster's are read.
    ``clients``: (cluster name, service) -> a client (tests)."""
    clusters = [c for c in profile.clusters if enabled(c, profile.environment)]
    if not clusters or profile.source is None:
        return None
    named = {n: c for c in profile.clusters for n in _journal_names(c)}
    rows = [{**r, "cluster": named[r["cluster"]].name if r["cluster"] in named
             else r["cluster"]} for r in rows]
    users = {c.name: _user(profile, c) for c in profile.clusters}
    read = {c.name for c in clusters}
    todo = [w for w in audit_log.writes(rows, profile.source.name, users) if w.cluster in read]
    times = [dt.datetime.fromisoformat(r["ts"]) for r in rows]
    now = dt.datetime.now(dt.timezone.utc)
    start = (min(times) if times else now) - audit_log.SKEW
    end = max([*times, now]) + audit_log.SKEW
    made = dict(clients or {})

    def client(c: Cluster, service: str) -> Any:
        if (c.name, service) not in made:
            assert c.aws is not None
            made[(c.name, service)] = aws.client_for(c.aws, service)
        return made[(c.name, service)]

    out: dict[str, Any] = {"source": audit_log.GUIDE, "opcodes": audit_log.REFERENCE,
                           "window": [start.isoformat(timespec="seconds"),
                                      end.isoformat(timespec="seconds")],
                           "clusters": {}, "errors": [], "cloudtrail": {}}
    deadline = time.monotonic() + WAIT_S.get(profile.environment, 0)
    while True:
        events, writes = _read_and_match(clusters, todo, start, end, client, out)
        unmatched = sum(1 for w in writes if w["status"] == "unmatched")
        if not unmatched or out["errors"] or time.monotonic() >= deadline:
            break
        sleep(POLL_S)
    out.update(writes=writes, unmatched_writes=unmatched)
    for c in clusters:
        assert c.aws is not None
        try:
            out["cloudtrail"][c.name] = cloudtrail.cluster_changes(
                c.aws, start, end, client=client(c, "cloudtrail"))
        except KeyparityError as exc:
            out["errors"].append(f"{c.name}: {exc}")
    return out


def _read_and_match(clusters: Sequence[Cluster], todo: Sequence[audit_log.Write],
                    start: dt.datetime, end: dt.datetime, client: Callable[[Cluster, str], Any],
                    out: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    events: dict[str, Any] = {}
    out["errors"] = []
    for c in clusters:
        assert c.aws is not None
        try:
            found, other = audit_log.read(c.aws, start, end, client=client(c, "logs"))
        except KeyparityError as exc:
            out["errors"].append(f"{c.name}: {exc}")
            found, other = [], 0
        events[c.name] = found
        out["clusters"][c.name] = {"cluster_id": c.aws.cluster_id,
                                   "log_group": audit_log.log_group(c.aws),
                                   "events_read": len(found), "not_in_the_documented_format": other}
    ids = {c.name: c.aws.cluster_id for c in clusters if c.aws is not None}
    return events, audit_log.match(todo, events, ids)


def problems(record: Mapping[str, Any] | None) -> list[str]:
    """What keeps the HSM-side records from showing every write: for the verdict's summary."""
    if not record:
        return []
    out = [f"the HSM audit logs could not be read ({e})" for e in record.get("errors", [])]
    for w in record.get("writes", []):
        if w.get("status") == "unmatched":
            out.append(f"no CloudHSM audit event for the journal's {w['action']} of "
                       f"{w.get('key_label') or w.get('label') or 'an object'} on "
                       f"{w['cluster']} (journal seq "
                       f"{w['journal_seq']}; {'/'.join(w['opcodes'])} between "
                       f"{w['window'][0]} and {w['window'][1]})")
    return out
