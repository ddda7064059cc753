"""The controller's start of a run (once per run, never in an xdist worker): each cluster's
token read without logging in (two tokens, not one), the run directory, its evidence, and the
hooks that turn the reports into a signed bundle. Nothing is written before every usage check
of keyparity.settle has passed."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from . import runinfo
from . import settle
from . import minimal
from . import policy
from .attest import signoff
from .cloudhsm import cli_scope
from .formats import allure, junit
from .evidence import verdict as verdicts
from .evidence.facts import Evidence
from .hsm.cluster import find_token, load_module, token_info
from .interrupts import Interrupts
from .profile import Profile
from .reporting import EvidenceHooks
from .trust.endpoints import endpoints
from .stash import ALLURE, APPROVAL, BASELINE, DESELECTED_BY_SUITE, EVIDENCE, LOCK_DIR
from .xdist_compat import XdistHooks


def clusters(profile: Profile, probe: bool = True) -> dict[str, Any]:
    """Each cluster's module, token (read without logging in; not with ``probe`` off, as
    under ``--collect-only``) and declared mode."""
    out = {}
    for spec in profile.clusters:
        entry: dict[str, Any] = {"name": spec.name, "module": str(spec.module),
                                 "mode": spec.mode, "mode_source": "declared"}
        if spec.hsm_type is not None:
            entry["hsm_type"] = spec.hsm_type
        if spec.aws is not None:
            entry["aws_cluster_id"] = spec.aws.cluster_id
        if not probe:
            entry["token"] = {"error": "not read (--collect-only)"}
        else:
            try:
                entry["token"] = token_info(find_token(load_module(str(spec.module),
                                                                   profile.module_env), spec))
            except Exception as exc:  # noqa: BLE001 - recorded; the suites fail on it properly
                entry["token"] = {"error": str(exc)}
        out[spec.role] = entry
    return out


def expected_tests(profile: Profile) -> dict[str, tuple[str | None, ...]]:
    """The tests a PASS of this profile needs (keyparity.evidence.verdict.expected): from its
    mode, clusters, keys and TLS endpoints, whatever is collected or selected."""
    roles = [c.role for c in profile.clusters]
    once = {fn: cli_scope.EVERY_KEY for fn, (needs, unless) in verdicts.CLI_SCOPE.items()
            if profile.keys and cli_scope.nothing_to_check(profile, needs, unless)}
    return verdicts.expected(profile.migration_mode, roles=roles,
                             keys=[k.label for k in profile.keys],
                             endpoints={r: [e.id for e in endpoints(profile, r)] for r in roles},
                             once=once)


def start_run(config: pytest.Config, profile: Profile,
              write_mode: policy.WriteMode) -> runinfo.Run:
    """The tokens, the run directory and its evidence, the reporting hooks; returns the run."""
    found = clusters(profile, probe=not config.option.collectonly)
    same = settle.same_token(profile, {role: c.get("token", {}) for role, c in found.items()})
    if same:
        raise pytest.UsageError(f"{profile.path}: {same}: a migration needs two tokens; "
                                "correct the profile")
    locks = settle.lock_dir(profile, write_mode, found)
    if locks is not None:
        config.stash[LOCK_DIR] = locks
    run = _new_run(config)
    meta = {"run_id": run.run_id, "seed": run.seed, "profile": profile.name,
            "profile_path": profile.shown(profile.path), "profile_sha256": profile.sha256,
            "environment": profile.environment, "classification": profile.classification,
            "minimal_data": minimal.minimal_data(profile.production),
            "migration_mode": profile.migration_mode,
            "write_mode": write_mode.record(),
            "secret_files": [{**f, "file": profile.shown(f["file"])}
                             for f in profile.secret_files],
            **runinfo.environment(config.rootpath)}
    evidence = Evidence(run.run_dir, meta)
    evidence.doc["clusters"] = found
    evidence.doc["compliance"] = {**policy.compliance(profile),
                                  **signoff.compliance_record(profile, signoff.load(profile))}
    evidence.add_inventory(profile.keys)
    evidence.add_owners(profile)
    if BASELINE in config.stash:  # a re-verify: the baseline it is proven against
        evidence.doc["baseline"] = profile.shown_paths(config.stash[BASELINE].record())
    approval = config.stash.get(APPROVAL, None)
    if approval is not None:  # the signed plan the run follows, verified before it started
        evidence.doc["plan"] = profile.shown_paths(approval.record())
    config.stash[EVIDENCE] = evidence
    asked = config.stash[ALLURE]
    results = None if asked is False else allure.Results.for_run(
        asked, run.run_dir, profile, clean=bool(getattr(config.option, "clean_alluredir", False)),
        distributed=getattr(config.option, "dist", "no") != "no")
    interrupts = Interrupts()
    interrupts.install()  # SIGTERM too ends the session with a bundle that says so
    config.pluginmanager.register(EvidenceHooks(evidence, profile, run, results,
                                                expect=expected_tests(profile),
                                                interrupts=interrupts), "keyparity-evidence")
    if config.pluginmanager.hasplugin("xdist"):
        verified = config.stash[BASELINE].digest if BASELINE in config.stash else None
        config.pluginmanager.register(XdistHooks(
            run, config.stash[DESELECTED_BY_SUITE], verified,
            None if approval is None else approval.record()), "keyparity-xdist")
    junit.bundle_copy(config, run.run_dir, run.run_id, {
        "keyparity.run_id": run.run_id, "keyparity.profile": profile.name,
        "keyparity.seed": str(run.seed), "keyparity.clusters": profile.pair})
    return run


def _new_run(config: pytest.Config) -> runinfo.Run:
    """The run's id (``--hsm-run-id``, else a new one), seed and directory, made once."""
    reports = Path(config.getoption("hsm_reports_dir") or config.rootpath / "reports")
    run_id = config.getoption("hsm_run_id") or runinfo.new_run_id()
    seed = config.getoption("hsm_seed")
    run = runinfo.Run(run_id, reports.resolve() / run_id,
                      seed if seed is not None else random.SystemRandom().randrange(2**32),
                      runinfo.state_dir(config.rootpath.resolve(), run_id))
    try:
        run.run_dir.mkdir(parents=True, exist_ok=config.getoption("hsm_run_id") is None)
    except FileExistsError:
        raise pytest.UsageError(f"--hsm-run-id {run_id}: {run.run_dir} exists already; a run "
                                "directory is written once") from None
    except OSError as exc:  # a file, a directory it may not write to: nothing is written
        where = "--hsm-reports-dir" if config.getoption("hsm_reports_dir") else "reports"
        raise pytest.UsageError(f"{where} {reports}: the run directory {run.run_dir} cannot be "
                                f"made: {exc.strerror or exc}") from None
    return run
