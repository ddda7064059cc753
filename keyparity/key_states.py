"""The key states of a retirement, as NIST SP 800-57 Part 1 Rev. 5, section 5.3 names them
(pre-activation, active, suspended, deactivated, compromised, destroyed), and the rules
``keyparity retire`` applies between them:

* active -> deactivated (5.3.4): the key no longer applies protection on the source
  (keyparity.hsm.deactivation), at a time of its own (``deactivated_at``, journaled);
* deactivated -> destroyed (5.3.6): only once the profile's deactivation period
  (``retirement.deactivation_days``) has passed since the deactivation; in production the
  period must be given (0 is refused there): a key is kept deactivated for a while so that
  what it protected can still be processed, and a mistaken retirement can be seen before the
  material is gone. Outside production it defaults to 0 (the demo deactivates, then destroys);
* the retirement is RETIRED only when no kept backup still holds the keys; otherwise the
  record says "destroyed on the HSM; held by backups until <date>" (a backup taken while the
  key existed restores it: CloudHSM backups, cloudhsmv2 DescribeBackups). Without an ``aws``
  block keyparity reads no backup: in production that is not RETIRED (the backups are not
  known); in a test environment (SoftHSM) nothing keyparity can see backs the token up, and
  the record says so.

The people: the operator who ran the retirement and at least one witness, named on the
command line (``--operator``, ``--witness``, distinct), go in the signed record (PCI PIN:
key destruction under dual control; PCI DSS v4.0 3.7.5-3.7.6).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from .errors import PolicyError

REFERENCE = "NIST SP 800-57 Part 1 Rev. 5, section 5.3"
STATES = ("pre-activation", "active", "suspended", "deactivated", "compromised", "destroyed")
ACTIVE, DEACTIVATED, DESTROYED = "active", "deactivated", "destroyed"
WHY = {DEACTIVATED: f"{REFERENCE}.4: a deactivated key is not used to apply cryptographic "
                    "protection; it may still process what it protected until it is destroyed",
       DESTROYED: f"{REFERENCE}.6: the key material is destroyed; only its metadata is kept"}
# the retirement's signed verdicts
RETIRED, DEACTIVATED_ONLY, HELD, NOT_READ, INCOMPLETE = (
    "RETIRED", "DEACTIVATED", "DESTROYED-HELD-BY-BACKUPS", "DESTROYED-BACKUPS-NOT-READ",
    "INCOMPLETE")


def change(frm: str, to: str, at: str, **extra: Any) -> dict[str, Any]:
    """One state change as the record shows it."""
    return {"from": frm, "to": to, "at": at, "reference": WHY[to], **extra}


def people(operator: str | None, witnesses: Sequence[str] | None) -> dict[str, Any]:
    """The operator and the witnesses named; PolicyError when one is missing (nothing done)."""
    names = [w.strip() for w in witnesses or () if w and w.strip()]
    if not operator or not operator.strip():
        raise PolicyError("retire needs --operator NAME: the person who retires the keys is "
                          "named in the signed record; nothing was changed")
    if not names:
        raise PolicyError("retire needs --witness NAME (repeat for each): a key's deactivation "
                          "and destruction are witnessed, and the witnesses named in the signed "
                          "record; nothing was changed")
    if operator.strip() in names:
        raise PolicyError(f"{operator.strip()} is named both operator and witness: a witness is "
                          "another person; nothing was changed")
    return {"operator": operator.strip(), "witnesses": names}


def period_days(environment: str, days: int | None, profile_path: Any) -> int:
    """The deactivation period ``--destroy`` waits; PolicyError in production without one."""
    if environment == "production" and not days:
        raise PolicyError(f"{profile_path}: retirement.deactivation_days: a production profile "
                          "gives the days a key stays deactivated before it may be destroyed "
                          "(at least 1); nothing was destroyed")
    return int(days or 0)


def period_ends(deactivated_at: str, days: int) -> dt.datetime:
    return dt.datetime.fromisoformat(deactivated_at) + dt.timedelta(days=days)


def too_early(deactivated_at: str, days: int, now: dt.datetime) -> str | None:
    """Why the key may not be destroyed yet (the date the period ends), or None."""
    ends = period_ends(deactivated_at, days)
    if now < ends:
        return (f"not destroyed: deactivated {deactivated_at}, its deactivation period "
                f"({days} day{'s' if days != 1 else ''}, retirement.deactivation_days) ends "
                f"{ends.isoformat(timespec='seconds')}; run retire --destroy again after it")
    return None


def _expiry(backup: dict[str, Any], retention: str | None) -> str | None:
    """When a backup ages out under the cluster's retention policy (None: never, or unknown)."""
    if backup.get("never_expires"):
        return None
    value, _, unit = (retention or "").partition(" ")
    if unit != "DAYS" or not value.isdigit() or not backup.get("created"):
        return None
    created = dt.datetime.fromisoformat(str(backup["created"]))
    return (created + dt.timedelta(days=int(value))).isoformat(timespec="seconds")


def held_by_backups(backups: dict[str, Any]) -> dict[str, Any] | None:
    """The backups that still hold the destroyed keys and until when (None: none holds them).
    ``until`` is the latest expiry, or "never" when a backup never expires, or "unknown"."""
    held = backups.get("backups") or []
    if not backups.get("read") or not held:
        return None
    ends = [_expiry(b, backups.get("retention")) for b in held]
    if any(b.get("never_expires") for b in held):
        until = "never (a backup has NeverExpires: delete it)"
    elif None in ends:
        until = "unknown (the cluster's retention policy was not read)"
    else:
        until = max(e for e in ends if e)
    return {"backup_ids": [b.get("backup_id") for b in held], "until": until,
            "text": f"destroyed on the HSM; held by backups until {until}"}


def conclusion(ok: bool, destroy: bool, environment: str, backups: dict[str, Any]) -> str:
    """What the retirement record concludes (its signed verdict; a run's verdict is decided in
    keyparity.evidence.verdict alone)."""
    if not ok:
        return INCOMPLETE
    if not destroy:
        return DEACTIVATED_ONLY
    if held_by_backups(backups) is not None:
        return HELD
    if not backups.get("read") and environment == "production":
        return NOT_READ
    return RETIRED
