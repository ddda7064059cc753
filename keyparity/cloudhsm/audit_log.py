"""The HSM's own record of a run's writes: CloudHSM audit log events, read from CloudWatch Logs.

AWS CloudHSM sends each HSM's audit log to CloudWatch Logs, log group
``/aws/cloudhsm/<cluster id>``, one log stream per HSM (named for its HSM id); each event is
one management command in a fixed text format (AWS CloudHSM User Guide, "Interpreting HSM
audit logs", https://docs.aws.amazon.com/cloudhsm/latest/userguide/interpreting-audit-logs.html,
and the opcodes of "Audit log reference",
https://docs.aws.amazon.com/cloudhsm/latest/userguide/cloudhsm-audit-log-reference.html): a
``Time: <shown>, usecs:<microseconds since the epoch>`` line, then one ``Name : value`` line per
field - ``Sequence No``, ``Reboot counter``, ``Command Type(hex)``, ``Opcode`` (``CN_UNWRAP_KEY
(0x1b)``), ``Session Handle``, ``Response`` (``0:HSM Return: SUCCESS``), ``Log type``, then
``User Name`` and ``User Type`` (user events) or ``Priv/Secret Key Handle`` and ``Public Key
Handle`` (key events). tests/unit/test_audit_log.py parses the guide's own examples.

Key management events carry the key handle, not the user: as the guide says, the login and
logout events of a stream "help you to determine which user is responsible for management
commands that appear in sequence between the login and logout commands", so each event's user
is the one the last successful ``CN_LOGIN`` before it in its stream named (none after a
``CN_LOGOUT``). Only the HSM that ran a command logs it (the others log
``CN_INSERT_MASKED_OBJECT_USER`` when the key is synchronised), so an event is looked for in
every stream of the cluster's group.

Each write the run's journal records as done (``after``) is matched to one event
(:func:`match`): the opcode its action makes (an unwrap ``CN_UNWRAP_KEY``, a destroy
``CN_DESTROY_OBJECT`` or ``CN_TOMBSTONE_OBJECT``, and for every unwrapped key the wrap that
made it, ``CN_WRAP_KEY`` on the source), a successful response, a time between the journal's
``before`` and ``after`` (widened by ``SKEW``: the host's clock is not the HSM's), the key
handle when the journal knows the HSM's (the CloudHSM CLI's key reference; not a PKCS #11
object handle, which Client SDK 5 gives anew in each session: "Migrating from Client SDK 3 to
Client SDK 5", https://docs.aws.amazon.com/cloudhsm/latest/userguide/migrate-sdk.html), and
the user when both sides know it. An event matches one write only. A write with
no event is *unmatched*; what that means for the verdict is keyparity.evidence.hsm_records'.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..profile import AwsSpec
from . import aws

GUIDE = "https://docs.aws.amazon.com/cloudhsm/latest/userguide/interpreting-audit-logs.html"
REFERENCE = "https://docs.aws.amazon.com/cloudhsm/latest/userguide/cloudhsm-audit-log-reference.html"
SKEW = dt.timedelta(seconds=120)  # the host's clock against the HSM's
# journal action -> the opcodes the HSM logs for it
OPCODES: dict[str, tuple[str, ...]] = {
    "unwrap": ("CN_UNWRAP_KEY",), "cli-unwrap": ("CN_UNWRAP_KEY",),
    "destroy": ("CN_DESTROY_OBJECT", "CN_TOMBSTONE_OBJECT"),
    "cli-delete": ("CN_DESTROY_OBJECT", "CN_TOMBSTONE_OBJECT"),
    "wrap": ("CN_WRAP_KEY",),
    "deactivate": ("CN_MODIFY_OBJECT",),  # keyparity retire: usage attributes cleared
}
_FIELD = re.compile(r"^\s*([^:]+?)\s*:\s*(.*?)\s*$")
_TIME = re.compile(r"^Time:\s*(?P<shown>[^,]+),\s*usecs:\s*(?P<usecs>\d+)\s*$")
_NAMED = re.compile(r"^(?P<name>[A-Z0-9_]+)(?:\s*\((?P<code>[^)]*)\))?$")
_AS_USER = re.compile(r"\bas (?P<user>[A-Za-z0-9_.@-]+)")


def log_group(spec: AwsSpec) -> str:
    return f"/aws/cloudhsm/{spec.cluster_id}"


@dataclass(frozen=True)
class AuditEvent:
    """One event of an HSM's audit log, as the guide documents it."""

    stream: str           # the log stream: the HSM id
    usecs: int            # the HSM's time, microseconds since the epoch (UTC)
    sequence: int
    reboot: int
    opcode: str
    session: str
    response: str
    user: str | None = None        # CN_LOGIN/CN_LOGOUT/user management: the user named
    key_handle: int | None = None  # key management: "Priv/Secret Key Handle"
    public_handle: int | None = None

    @property
    def ok(self) -> bool:
        return self.response.startswith("0:") and "SUCCESS" in self.response

    @property
    def time(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.usecs / 1e6, dt.timezone.utc)

    def record(self, cluster_id: str) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        return {**out, "time": self.time.isoformat(timespec="microseconds"),
                "log_group": f"/aws/cloudhsm/{cluster_id}"}


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip(), 0)
    except ValueError:
        return None


def parse(message: str, stream: str) -> AuditEvent | None:
    """One CloudWatch event's message as an AuditEvent; None when it is not in the documented
    format (it is then counted, not matched)."""
    lines = [ln for ln in message.strip().splitlines() if ln.strip()]
    when = _TIME.match(lines[0]) if lines else None
    if when is None:
        return None
    fields: dict[str, str] = {}
    for line in lines[1:]:
        m = _FIELD.match(line)
        if m:
            fields[m.group(1).strip()] = m.group(2)
    opcode = _NAMED.match(fields.get("Opcode", ""))
    if opcode is None or "Sequence No" not in fields:
        return None
    return AuditEvent(
        stream=stream, usecs=int(when.group("usecs")),
        sequence=_int(fields.get("Sequence No")) or 0,
        reboot=_int(fields.get("Reboot counter")) or 0, opcode=opcode.group("name"),
        session=fields.get("Session Handle", ""), response=fields.get("Response", ""),
        user=fields.get("User Name"), key_handle=_int(fields.get("Priv/Secret Key Handle")),
        public_handle=_int(fields.get("Public Key Handle")))


def attribute_users(events: Iterable[AuditEvent]) -> dict[AuditEvent, str | None]:
    """Each event's user: the last successful CN_LOGIN before it in its stream (the guide's
    rule), None before any login or after a CN_LOGOUT."""
    out: dict[AuditEvent, str | None] = {}
    by_stream: dict[str, list[AuditEvent]] = {}
    for e in events:
        by_stream.setdefault(e.stream, []).append(e)
    for stream_events in by_stream.values():
        current: str | None = None
        for e in sorted(stream_events, key=lambda e: (e.reboot, e.sequence, e.usecs)):
            if e.opcode == "CN_LOGIN" and e.ok:
                current = e.user
            elif e.opcode == "CN_LOGOUT" and e.ok:
                current = None
            out[e] = e.user if e.opcode in ("CN_LOGIN", "CN_LOGOUT") else current
    return out


def _ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def read(spec: AwsSpec, start: dt.datetime, end: dt.datetime,
         client: Any = None) -> tuple[list[AuditEvent], int]:
    """Every event of the cluster's log group between ``start`` and ``end`` (FilterLogEvents,
    page by page), and how many were not in the documented format. AwsError when it cannot be
    read."""
    import botocore.exceptions as bx  # deferred for speed, as in aws.client_for

    client = client if client is not None else aws.client_for(spec, "logs")
    events: list[AuditEvent] = []
    other, token = 0, None
    try:
        while True:
            page = client.filter_log_events(
                logGroupName=log_group(spec), startTime=_ms(start), endTime=_ms(end),
                **({"nextToken": token} if token else {}))
            for item in page.get("events", []):
                event = parse(item.get("message", ""), item.get("logStreamName", ""))
                if event is None:
                    other += 1
                else:
                    events.append(event)
            token = page.get("nextToken")
            if not token:
                return events, other
    except (bx.BotoCoreError, bx.ClientError) as exc:
        err = aws.error_for(exc, spec, "FilterLogEvents")
        raise type(err)(str(err).replace("cloudhsmv2:DescribeClusters",
                                         "logs:FilterLogEvents")) from None


@dataclass(frozen=True)
class Write:
    """A write the journal recorded as done, and what its audit event must show."""

    seq: int
    action: str
    cluster: str
    key_label: str | None
    handle: int | None
    user: str | None
    earliest: dt.datetime
    latest: dt.datetime
    label: str | None = None  # the object's label (a keyparity object has no key_label)

    def record(self) -> dict[str, Any]:
        return {"journal_seq": self.seq, "action": self.action, "cluster": self.cluster,
                "key_label": self.key_label, "label": self.label, "handle": self.handle,
                "user": self.user,
                "opcodes": list(OPCODES[self.action]),
                "window": [self.earliest.isoformat(timespec="seconds"),
                           self.latest.isoformat(timespec="seconds")]}


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def writes(rows: Sequence[Mapping[str, Any]], source: str,
           users: Mapping[str, str | None]) -> list[Write]:
    """The writes to match, from one run's journal rows: each completed unwrap and destroy,
    and for each unwrapped key the wrap on ``source`` that made it (no handle: the journal
    keeps the target's). ``users``: cluster name -> the PKCS #11 login's user (a CLI row names
    its own, ``as USER``)."""
    befores = {(r["action"], r["cluster"], r["label"], r["key_label"]): _ts(r["ts"])
               for r in rows if r["phase"] == "before"}
    out: list[Write] = []
    for r in rows:
        if r["phase"] != "after" or r["action"] not in OPCODES:
            continue
        after = _ts(r["ts"])
        before = befores.get((r["action"], r["cluster"], r["label"], r["key_label"]), after)
        said = _AS_USER.search(str(r.get("detail") or ""))
        user = said.group("user") if said else users.get(r["cluster"])
        handle = _int(r.get("handle")) if r["action"].startswith("cli-") else None
        out.append(Write(r["seq"], r["action"], r["cluster"], r["key_label"], handle, user,
                         before - SKEW, after + SKEW, r.get("label")))
        if r["action"] in ("unwrap", "cli-unwrap"):
            # the wrap came before the unwrap's journal entry (a chunk's befores are written
            # together, after its wraps): from the run's first entry on
            first = min(_ts(x["ts"]) for x in rows)
            out.append(Write(r["seq"], "wrap", source, r["key_label"], None,
                             users.get(source), first - SKEW, after + SKEW, r["key_label"]))
    return out


def _fits(w: Write, e: AuditEvent, user: str | None) -> bool:
    return (e.opcode in OPCODES[w.action] and e.ok and w.earliest <= e.time <= w.latest
            and (w.handle is None or e.key_handle == w.handle)
            and (w.user is None or user is None or user == w.user))


def match(todo: Sequence[Write], events: Mapping[str, Sequence[AuditEvent]],
          cluster_ids: Mapping[str, str]) -> list[dict[str, Any]]:
    """Each write with the one event that shows it (the nearest in time that fits and no other
    write took), or ``matched: null``. ``events``: cluster name -> its events."""
    taken: set[AuditEvent] = set()
    users = {name: attribute_users(evs) for name, evs in events.items()}
    out = []
    for w in sorted(todo, key=lambda w: (w.handle is None, w.seq)):  # handles first
        candidates = [e for e in events.get(w.cluster, ())
                      if e not in taken and _fits(w, e, users[w.cluster].get(e))]
        best = min(candidates, key=lambda e: abs((e.time - w.latest).total_seconds()),
                   default=None)
        rec = w.record()
        if best is None:
            rec.update(status="unmatched", matched=None)
        else:
            taken.add(best)
            rec.update(status="matched", matched={**best.record(cluster_ids[w.cluster]),
                                                  "attributed_user": users[w.cluster][best]})
        out.append(rec)
    return sorted(out, key=lambda r: (r["journal_seq"], r["action"] != "wrap"))
