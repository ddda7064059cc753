"""Signed heads of the write journal, and the rule that a destroying command acts only on
entries a verified signed head covers.

What the hash chain alone catches (keyparity.journal.chain): an edited, deleted, inserted or
reordered entry, when it is made without recomputing the hashes after it (an accident, a hand
edit, a tool that knows nothing of the chain). The chain has no key: whoever can write the file
can append an entry, or rewrite the tail, and recompute every hash after it, and ``journal
verify`` then says "chain intact".

What a signed head adds: each run's signed statement carries the journal's head (the hash of
its last entry and that entry's seq: keyparity.evidence.bundle), and ``keyparity journal
sign-head`` has the custodians sign the head of a journal on its own (a run killed before its
bundle was signed has none). With an intact chain, a head that verifies with the profile's
evidence signers proves that every entry up to its seq is the one they signed. So:

    cleanup --run R    every entry run R recorded (the clean-ups' own destroys excepted) must
                       be covered by a head: R's bundle, or a later bundle or signed head of
                       the same journal; an entry after every signed head is refused
    retire --destroy   the journal must hold, at its seq, the head the run's bundle signed

Limits: an entry after the last signed head is not trusted, it is refused (a killed run needs
``journal sign-head`` before its clean-up); what ``sign-head`` signs is the journal as it is
then, so the custodians sign it where and when they know it to be the one their runs wrote; a
profile without evidence signers anchors nothing, and cleans nothing up.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import KeyparityError
from ..journal.chain import anchor_problem, require_intact
from ..journal.store import Journal
from ..profile import Profile
from ..attest.statement import STATEMENT, sign_run
from ..attest.timestamp import time_source
from ..attest.verify import verify_run

__all__ = ["AnchorError", "HEAD_PREFIX", "HEAD_TYPE", "require_covered", "require_run_head",
           "sign_head"]

HEAD_TYPE = "https://keyparity.dev/journal-head/v1"
HEAD_PREFIX = "journal-head-"
HEAD_FILE = "journal-head.json"


class AnchorError(KeyparityError):
    """The journal entries a destroying command would act on are not covered by a verified
    signed head: nothing is done."""


def _claimed(run_dir: Path) -> dict[str, Any] | None:
    """The journal head a directory's statement.json claims (not verified yet), or None."""
    try:
        predicate = json.loads((run_dir / STATEMENT).read_bytes()).get("predicate", {})
    except (OSError, ValueError, AttributeError):
        return None
    head = predicate.get("journal") if isinstance(predicate, dict) else None
    if (isinstance(head, dict) and isinstance(head.get("head"), str)
            and type(head.get("last_seq")) is int):
        return head
    return None


def _candidates(reports: Path, run_id: str | None) -> list[Path]:
    """The run's own directory first, then every other signed directory, newest first (run
    ids and signed heads' names sort by time)."""
    own = [reports / run_id] if run_id and (reports / run_id).is_dir() else []
    try:
        others = [d for d in reports.iterdir() if d.is_dir() and not d.is_symlink()
                  and d not in own and (d / STATEMENT).is_file()]
    except OSError:
        others = []
    return own + sorted(others, key=lambda d: d.name.removeprefix(HEAD_PREFIX), reverse=True)


def covering_head(journal: Path, upto: int, reports: Path, run_id: str | None,
                  keys: list[Any], names: Mapping[str, str],
                  threshold: int | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The first signed head in ``reports`` that covers seq ``upto`` of ``journal``, matches it
    and verifies with ``keys`` to the threshold: (its directory and head, []), or (None, why
    the candidates did not do)."""
    why: list[str] = []
    for run_dir in _candidates(reports, run_id):
        claimed = _claimed(run_dir)
        if claimed is None or claimed["last_seq"] < upto:
            continue
        problem = anchor_problem(journal, claimed["head"], claimed["last_seq"])
        if problem is not None:
            if run_dir.name == run_id:
                why.append(f"{run_dir.name}: {problem}")
            continue  # another journal's run
        result = verify_run(run_dir, keys, threshold or None, key_names=names)
        if result.ok and (result.signed or {}).get("journal") == claimed:
            return {"dir": str(run_dir), **claimed}, []
        why.append(f"{run_dir.name}: does not verify with the profile's signers"
                   + (f" ({result.problems[0]})" if result.problems else ""))
    return None, why


def _keys(profile: Profile, gate: Any) -> tuple[list[Any], dict[str, str]]:
    from ..attest.signing import public_keys  # deferred: securesystemslib's signers import boto3
    if not profile.evidence.signers:
        raise AnchorError(f"{profile.path}: evidence.signers: none, so no signed head of the "
                          "journal can be verified, and an entry anyone appended cannot be told "
                          "from one keyparity wrote; nothing is removed")
    return public_keys(profile.evidence, profile.module_env, gate)


def require_covered(journal: Path, upto: int, reports: Path, run_id: str, profile: Profile,
                    gate: Any) -> dict[str, Any]:
    """The verified signed head that covers run ``run_id``'s entries up to seq ``upto``, the
    chain being intact; AnchorError (or JournalError) otherwise."""
    require_intact(journal)
    keys, names = _keys(profile, gate)
    head, why = covering_head(journal, upto, reports, run_id, keys, names,
                              profile.evidence.threshold)
    if head is None:
        raise AnchorError(
            f"the entries of run {run_id} in {journal} (up to seq {upto}) are covered by no "
            f"signed head that verifies with {profile.name}'s evidence signers (looked in "
            f"{reports}{': ' + '; '.join(why[:3]) if why else ''}): an entry after the last "
            "signed head may have been appended by anyone who can write the file, and nothing "
            "is removed on its word. A run killed before its bundle was signed has no head: "
            f"have the custodians check the journal and sign it (keyparity journal sign-head "
            f"{profile.path} --journal {journal}), then run the clean-up again")
    return head


def require_run_head(journal: Path, run_dir: Path, keys: list[Any], names: Mapping[str, str],
                     threshold: int | None) -> None:
    """Before a retirement appends to the journal: the chain is intact and holds, at its seq,
    the head the run's bundle (verified with ``keys`` to the threshold) carries."""
    require_intact(journal)
    result = verify_run(run_dir, keys, threshold or None, key_names=names)
    if not result.ok:
        raise AnchorError(f"the bundle {run_dir} does not verify ({'; '.join(result.problems[:2])})"
                          ": nothing is destroyed")
    head = (result.signed or {}).get("journal")
    if not isinstance(head, dict) or not isinstance(head.get("head"), str):
        raise AnchorError(f"the bundle {run_dir} carries no journal head, so the journal "
                          f"{journal} cannot be shown to be the run's: nothing is destroyed")
    problem = anchor_problem(journal, head["head"], int(head.get("last_seq", 0)))
    if problem is not None:
        raise AnchorError(f"{problem}; the bundle {run_dir} signed it (give --journal the run's "
                          "journal): nothing is destroyed")


def sign_head(journal: Path, reports: Path, profile: Profile, signers: list[Any],
              head_id: str) -> Path:
    """Sign the head of an intact journal with ``signers``: ``reports/journal-head-<id>/``
    holding journal-head.json and its signed statement (``keyparity verify`` checks it)."""
    require_intact(journal)
    j = Journal(journal)
    try:
        head = {"path": profile.shown(journal), **j.head()}
    finally:
        j.close()
    out = reports / f"{HEAD_PREFIX}{head_id}"
    out.mkdir(parents=True)
    atomic.write(out / HEAD_FILE, (json.dumps({"journal": head, "profile": profile.name},
                                              indent=2, sort_keys=True) + "\n").encode())
    sign_run(out, signers, {
        "run_id": out.name, "profile": profile.name, "profile_sha256": profile.sha256,
        "verdict": "SIGNED-HEAD", "journal": head,
        "headline": f"the write journal {head['path']} as it is now: {head['entries']} entries, "
                    f"head {head['head']} (seq {head['last_seq']})",
        "summary": {"tests": {}, "keys": {}},
        "signers": [s.name for s in profile.evidence.signers],
        "threshold": profile.evidence.threshold,
        "time_source": time_source(profile.evidence.timestamp)},
        predicate_type=HEAD_TYPE, timestamp=profile.evidence.timestamp)
    return out
