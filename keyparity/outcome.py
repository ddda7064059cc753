"""A check as a test's outcome: the one way a suite or a fixture ends a test on a
:class:`keyparity.checks.Check`.

A check that failed fails the test with its message and no traceback (the message says what is
wrong and what to do; the harness's code is not what failed). A check that had nothing to check
skips the test with its reason. What a check warns of becomes a pytest warning, which the
terminal summary shows. What the evidence records of the check is the caller's (each suite
records its checks in its own place of the evidence), before it calls :func:`prove`.
"""
from __future__ import annotations

import warnings

import pytest

from .checks import Check

__all__ = ["CheckWarning", "outcome", "prove"]


class CheckWarning(UserWarning):
    """What a check passes but warns of (a certificate that expires soon)."""


def outcome(*checks: Check) -> str:
    """What the checks make of a test, as the evidence says it: ``failed`` when one failed,
    ``skipped`` when none had anything to check, ``passed`` otherwise."""
    if any(not check.ok for check in checks):
        return "failed"
    if checks and all(check.skip for check in checks):
        return "skipped"
    return "passed"


def prove(*checks: Check, who: str = "", warning: type[Warning] = CheckWarning) -> None:
    """End the test on ``checks`` (usually one): each of their warnings is warned of
    (``warning``, the category); the test fails with the message of each check that failed,
    is skipped with their reasons when none had anything to check, and goes on otherwise.
    ``who`` names what was checked (``hsm2 (target)``) at the start of every line."""
    prefix = f"{who}: " if who else ""
    for check in checks:
        for text in check.warnings:
            warnings.warn(warning(prefix + text), stacklevel=2)
    verdict = outcome(*checks)
    if verdict == "failed":
        pytest.fail("\n".join(prefix + c.message for c in checks if not c.ok), pytrace=False)
    if verdict == "skipped":
        pytest.skip("; ".join(prefix + str(c.skip) for c in checks))
