"""The one result type of every check keyparity runs (TLS trust, the clusters as AWS sees
them, ownership and sharing): :class:`Check`.

A check says whether it passed (``ok``), in one message that reads well either way, what it
found (``facts``: JSON-able, for the evidence), why there was nothing to check (``skip``), and
what passes but deserves attention (``warnings``). Nothing of keyparity is imported here:
every layer may use it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Check"]


@dataclass(frozen=True)
class Check:
    """The outcome of one check.

    ``ok``: it passed. ``message``: one line (or a few) saying what was proven or what is wrong
    and what to do; it may be empty for a pass that needs no words. ``facts``: what the check
    found, JSON-able, for the evidence. ``skip``: when set, there was nothing to check, and
    this is why (the test is skipped with it). ``warnings``: things that pass but should be
    acted on (a certificate expiring soon). ``name``: the check's own name, when the evidence
    records it (the TLS checks: ``"handshake"``, ``"cluster_certificate"``...).
    """

    ok: bool
    message: str
    facts: dict[str, Any] = field(default_factory=dict)
    skip: str | None = None
    warnings: tuple[str, ...] = ()
    name: str | None = None

    def record(self) -> dict[str, Any]:
        """The check as the evidence stores it: ``name`` (when set), ``ok``, ``message``,
        ``warnings``, ``skip`` (when set), then the facts, copied."""
        out: dict[str, Any] = {} if self.name is None else {"name": self.name}
        out.update(ok=self.ok, message=self.message, warnings=list(self.warnings))
        if self.skip is not None:
            out["skip"] = self.skip
        out.update(copy.deepcopy(self.facts))
        return out
