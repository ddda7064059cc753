"""The run's own lines at the end of pytest's output: the verdict and what it means (the
headline), each failed key with its reason (the first FAILED_SHOWN, then a count; keys that
failed for one reason share its line), and where the report is.

Rendered from the finished record (``summary.headline``, ``summary.causes``: keyparity
.evidence.causes), never decided again. Each is one whole line: pytest cuts its ``-ra`` lines to
the terminal's width ("- Ass…"); these are written as they are and wrap instead.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FAILED_SHOWN = 10  # failed keys named with their reasons; report.html and evidence.json: all
_COLOUR = {"PASS": "green", "FAIL": "red"}  # any other verdict (PARTIAL, NO-TESTS...): yellow


def summary_lines(doc: Mapping[str, Any], report: str | None) -> list[tuple[str, dict[str, bool]]]:
    """(line, terminal markup) for each line, in order."""
    summary = doc.get("summary") if isinstance(doc.get("summary"), dict) else {}
    verdict = str(summary.get("verdict") or "INCOMPLETE")
    colour = _COLOUR.get(verdict, "yellow")
    headline = summary.get("headline") or ""
    lines = [(f"keyparity: {verdict}: {headline}".rstrip(": "), {colour: True, "bold": True})]
    causes = summary.get("causes") if isinstance(summary.get("causes"), dict) else {}
    by_reason: dict[str, list[str]] = {}  # one cause of many keys (a cluster down): said once
    for label, cause in causes.items():
        reason = cause.get("reason") if isinstance(cause, dict) else None
        by_reason.setdefault(str(reason or "failed"), []).append(str(label))
    shown = 0
    for reason, labels in by_reason.items():
        if shown >= FAILED_SHOWN:
            break
        named = labels[:FAILED_SHOWN - shown]
        shown += len(named)
        rest = len(labels) - len(named)
        lines.append((f"keyparity:   {', '.join(named)}"
                      + (f" and {rest} more" if rest else "") + f": {reason}", {"red": True}))
        shown += rest
    more = len(causes) - shown
    if more > 0:
        lines.append((f"keyparity:   and {more} more failed key{'s' if more != 1 else ''} "
                      "(report.html and evidence.json list every one)", {"red": True}))
    if report:
        lines.append((f"keyparity: report: {report}", {}))
    return lines
