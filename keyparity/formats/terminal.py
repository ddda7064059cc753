"""The run's own lines at the end of pytest's output: the verdict and what it means (the
headline), each failed key with its reason (the first FAILED_SHOWN, then a count), and where
the report is.

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
    for label, cause in list(causes.items())[:FAILED_SHOWN]:
        reason = cause.get("reason") if isinstance(cause, dict) else None
        lines.append((f"keyparity:   {label}: {reason or 'failed'}", {"red": True}))
    more = len(causes) - FAILED_SHOWN
    if more > 0:
        lines.append((f"keyparity:   and {more} more failed key{'s' if more != 1 else ''} "
                      "(report.html and evidence.json list every one)", {"red": True}))
    if report:
        lines.append((f"keyparity: report: {report}", {}))
    return lines
