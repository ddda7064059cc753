"""A run's evidence bundle, finished in the controller process at the end of the session.

``reports/<run-id>/`` then holds ``evidence.json``, ``report.html``,
``assessment-results.json`` (OSCAL), ``junit.xml`` (written by pytest), ``cbom.json``,
``allure-results.tar.gz`` (keyparity.formats.allure), and last ``statement.json`` with
``evidence.dsse.json``: a statement over
every file of the directory, signed by the profile's ``evidence.signers``.

No step may lose the others: each failure is recorded, the remaining steps still run, the
bundle is still signed, and the run fails with the reason (``finalize(...)["errors"]``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

from .. import runinfo
from ..errors import KeyparityError
from ..hsm.login import LoginGate
from ..journal.store import Journal
from ..profile import Profile
from ..formats.allure import Results
from .baseline import write as write_baseline
from ..formats.cbom import write_run_cbom
from ..attest.digest import sha256_file
from ..attest.timestamp import time_source
from . import hsm_records
from .facts import Evidence
from ..formats.oscal import write_assessment_results
from ..formats.report import write_report

# The files rendered from the finished record, in this order: (step, writer(run_dir, doc),
# which returns the file it wrote, or None when the run has none of that kind). Each is one
# step: one failing is recorded and the others still run.
WRITERS: tuple[tuple[str, Callable[[Path, dict[str, Any]], Path | None]], ...] = (
    ("report", write_report),  # report.html, the auditor's page
    ("assessment-results", write_assessment_results),  # OSCAL assessment results
    ("cbom", write_run_cbom),  # cbom.json: the migrated inventory as a CycloneDX 1.6 CBOM
    ("baseline", write_baseline),  # baseline.json, of a baseline run only
)
UNSIGNED = "UNSIGNED: no evidence.signers in the profile"
FAILED_EXIT = 1  # pytest.ExitCode.TESTS_FAILED: a run whose bundle is incomplete has failed


def finalize(run_dir: Path, evidence: Evidence, profile: Profile, exitstatus: int, *,
             expect: Mapping[str, Sequence[str | None]],
             allure: Results | None = None, journal: Path | None = None,
             deselected: Mapping[str, int] | None = None,
             state_dir: Path | None = None, plan_dir: Path | None = None) -> dict[str, Any]:
    """Write the bundle and sign it; called once, in the controller, after junit.xml and every
    Allure result are written. Returns::

        {"run_dir", "verdict", "files": {step: path}, "signers": [names], "threshold",
         "signed": bool, "unsigned": None | "UNSIGNED: ...", "errors": [str],
         "exitstatus": exitstatus, or 1 when a step failed on an otherwise green run}

    ``allure``: the run's Allure results, closed here (their archive is a file of the bundle).
    ``expect``: the tests the run expects, and ``deselected``: what ``-k``, ``-m`` or
    ``--deselect`` left out (keyparity.evidence.verdict). ``state_dir``: the run's runtime
    files (its login state: the signers log in under it), removed once the bundle is signed."""
    run_dir = Path(run_dir)
    spec = profile.evidence
    names = [s.name for s in spec.signers]
    out: dict[str, Any] = {"run_dir": str(run_dir), "files": {}, "errors": [],
                           "signers": names, "threshold": spec.threshold, "signed": False,
                           "unsigned": None}

    def step(name: str, write: Callable[[], Any]) -> None:
        try:
            result = write()
        except Exception as exc:  # noqa: BLE001 - recorded; the other steps must still run
            out["errors"].append(f"{name}: {_describe(exc)}")
        else:
            if result is not None:
                out["files"][name] = str(result)

    # before the verdict, which reads them; not when the run left its AWS tests out (-m "not
    # aws": the cluster suite is then partial, and the run no PASS, whatever they would say)
    if journal is not None and Path(journal).is_file() and not (deselected or {}).get("cluster"):
        step("hsm_records", functools.partial(_hsm_records, evidence, profile, Path(journal)))
    evidence.set_signing(names, spec.threshold)  # before signing: evidence.json is a subject
    evidence.doc["run"]["time_source"] = time_source(spec.timestamp)
    evidence_path = evidence.finish(exitstatus, expect=expect, deselected=deselected)
    out["files"]["evidence"] = str(evidence_path)
    doc = evidence.doc
    out["verdict"] = doc["summary"]["verdict"]

    for name, writer in WRITERS:
        step(name, functools.partial(writer, run_dir, doc))
    if allure is not None:  # its results were written as the tests ran: closed here
        step("allure", functools.partial(allure.close, doc))
    predicate = _predicate(doc, profile, evidence_path)
    if journal is not None and Path(journal).is_file():
        try:  # the chain head anchors the journal: history cannot be edited unnoticed
            j = Journal(Path(journal))
            try:
                predicate["journal"] = {"path": profile.shown(journal), **j.head()}
            finally:
                j.close()
        except Exception as exc:  # noqa: BLE001 - recorded; the bundle is still signed
            out["errors"].append(f"journal: {_describe(exc)}")
    _sign(run_dir, profile, predicate, out, state_dir,
          functools.partial(_contents, run_dir, profile, predicate, plan_dir, journal))
    if state_dir is not None:
        shutil.rmtree(state_dir, ignore_errors=True)  # nothing in it outlives the run

    problem = _link_latest(run_dir)
    if problem:
        out["errors"].append(f"reports/latest: {problem}")
    out["exitstatus"] = (FAILED_EXIT if out["errors"] and exitstatus in (0, 5)
                         else int(exitstatus))
    return out


def _contents(run_dir: Path, profile: Profile, predicate: dict[str, Any],
              plan_dir: Path | None, journal: Path | None, signers: list[Any],
              gate: LoginGate) -> None:
    """The bundle made self-contained (keyparity.attest.contents), named in the predicate:
    the keys of the signers loaded to sign, the other signers' from their certificates (or
    loaded only to read the public key)."""
    from ..attest.contents import write_contents
    from ..attest.signing import public_key_of
    loaded = {getattr(s, "name", None): s for s in signers}
    keys = {}
    for spec in profile.evidence.signers:
        signer = loaded.get(spec.name)
        try:
            keys[spec.name] = ((signer.public_key, getattr(signer, "certificate", None))
                               if signer is not None
                               else public_key_of(spec, profile.module_env, gate))
        except KeyparityError:
            continue  # its key cannot be read (the signing failed): the bundle names it not

    predicate["contents"] = write_contents(run_dir, profile, predicate["run_id"],
                                           plan_dir=plan_dir, journal=journal,
                                           signer_keys=keys)
    predicate["signed_by"] = [getattr(s, "name", None) for s in signers]
    predicate["signed_at"] = _now()  # when they sign: their certificates must be valid then


def _hsm_records(evidence: Evidence, profile: Profile, journal: Path) -> None:
    """The HSM-side records of the run's writes (keyparity.evidence.hsm_records), when a
    cluster's are read."""
    if not any(hsm_records.enabled(c, profile.environment) for c in profile.clusters):
        return
    j = Journal(journal)
    try:
        rows = j.entries(evidence.doc["run"]["run_id"])
    finally:
        j.close()
    record = hsm_records.collect(profile, rows)
    if record is not None:
        evidence.doc["hsm_records"] = record


def _sign(run_dir: Path, profile: Profile, predicate: dict[str, Any],
          out: dict[str, Any], state_dir: Path | None,
          contents: Callable[[list[Any], LoginGate], None]) -> None:
    """Sign with the operator's key (``evidence.operator``; the other signers countersign
    apart with ``keyparity sign``), or without an operator with every signer of the profile.
    With none, or when signing fails, still write the statement and an envelope without
    signatures, which ``keyparity verify`` rejects."""
    signers: list[Any] = []
    try:
        # deferred for start-up speed: securesystemslib imports boto3 (~0.65 s), needed only
        # when a run ends
        from ..attest.signing import close_signers, load_signers
        from ..attest.statement import sign_run
        try:
            shared = (None if state_dir is None else  # the run's processes' login state
                      runinfo.Run(predicate["run_id"], run_dir, 0, state_dir).login_state)
            gate = LoginGate(shared)
            if profile.evidence.signers:
                signers = load_signers(
                    dataclasses.replace(profile.evidence,
                                        signers=profile.evidence.run_signers()),
                    profile.module_env, gate)
            contents(signers, gate)
            path = sign_run(run_dir, signers, predicate,
                            timestamp=profile.evidence.timestamp)
        finally:
            close_signers(signers)
    except Exception as exc:  # noqa: BLE001 - the evidence is kept; the run fails
        out["errors"].append(f"signing failed: {_describe(exc)}")
        out["unsigned"] = "UNSIGNED: signing failed"
        try:
            from ..attest.statement import sign_run
            if "contents" not in predicate:  # the copies, whatever failed to sign
                contents([], LoginGate(None))
            path = sign_run(run_dir, [], predicate)
        except Exception as again:  # noqa: BLE001
            out["errors"].append(f"statement: {_describe(again)}")
            return
    else:
        out["signed"] = bool(signers)
        out["signed_by"] = [getattr(s, "name", None) for s in signers]
        if not signers:
            out["unsigned"] = UNSIGNED
    out["files"]["statement"] = str(path)


def _predicate(doc: dict[str, Any], profile: Profile, evidence_path: Path) -> dict[str, Any]:
    """What the signers attest, besides the digest of every file: the run, the profile, the
    verdict and the signing policy."""
    summary = doc["summary"]
    plan = doc.get("plan")
    return {
        "run_id": doc["run"]["run_id"],
        "profile": profile.name,
        "profile_sha256": profile.sha256,
        "verdict": summary["verdict"],
        "headline": summary["headline"],
        "summary": {"tests": dict(summary["tests"]), "keys": dict(summary["keys"])},
        "scope": summary["scope"],
        "evidence_sha256": sha256_file(evidence_path),  # streamed: the file can be 50 MB
        "signers": [s.name for s in profile.evidence.signers],
        "threshold": profile.evidence.threshold,
        "operator": profile.evidence.operator,
        "time_source": time_source(profile.evidence.timestamp),
        **({"plan": {k: plan[k] for k in ("plan_id", "sha256", "approved_by")}} if plan else {}),
    }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip() or '(no message)'}"


def _link_latest(run_dir: Path) -> str | None:
    """Point ``latest`` at this run; returns why it could not be (a ``latest`` that is not a
    link, which keyparity will not delete), or None. Written to a new name and renamed over
    the old link, so a reader never sees none."""
    latest = run_dir.parent / "latest"
    if latest.exists() and not latest.is_symlink():
        return (f"{latest} is not a link but a {'directory' if latest.is_dir() else 'file'}, "
                f"so it does not point at this run: remove or rename it (keyparity never "
                f"deletes it); this run is {run_dir}")
    tmp = run_dir.parent / f".latest-{run_dir.name}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, latest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        return f"{latest} could not be pointed at {run_dir.name}: {exc.strerror or exc}"
    return None
