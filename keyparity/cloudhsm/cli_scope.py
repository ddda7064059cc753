"""Per-key checks that read a cluster through the CloudHSM CLI, and when a profile leaves them
nothing to check for any key.

A suite test marks itself ``@pytest.mark.cloudhsm_cli(*roles, unless=FIELD, note=TEXT)``: it
needs the CLI of each role (``source``, ``target``), and without it it has nothing to check,
unless a key sets ``FIELD`` of its inventory entry (``owner``, ``share_with``: asked for
without a CLI, that key's test fails, saying why). When that holds for every key, the plugin
collects the test once, as ``[every-key]``, skipped with the reason (and ``note``) before any
fixture runs, instead of one skipped test per key (five such tests per key would be half of a
SoftHSM run's tests).
"""
from __future__ import annotations

from collections.abc import Sequence

from ..profile import Profile

MARKER = "cloudhsm_cli"
EVERY_KEY = "every-key"  # the parameter id of the one test that stands for every key


def nothing_to_check(profile: Profile, roles: Sequence[str], unless: str | None = None,
                     note: str | None = None) -> str | None:
    """Why a per-key check needing the CLI of ``roles`` has nothing to check for any key of
    the profile, or None when some key may have something."""
    missing = [r for r in roles if getattr(getattr(profile, r, None), "cloudhsm_cli", None)
               is None]
    if not missing:
        return None
    if unless is not None and any(getattr(k, unless) for k in profile.keys):
        return None
    asked = f"; no key sets {unless}" if unless else ""
    return (f"nothing to check for any of the {len(profile.keys)} keys: "
            + ", ".join(f"clusters.{r} has no cloudhsm_cli block" for r in missing)
            + f" (these facts come from the CloudHSM CLI){asked}"
            + (f"; {note}" if note else ""))
