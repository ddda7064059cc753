"""Configuration settled once, before anything runs (pytest-randomly's way): every problem of
the command line or the profile is one ``UsageError`` line, and nothing is written - no run
directory, no bundle, no session, no journal entry.

Checked here: the options (``--hsm-batch``, ``--hsm-run-id``, a path option written with a
space), the profile (its schema and rules: keyparity.profile), the FIPS policy and the
production guard (keyparity.policy), that source and target are two tokens, that a
re-verify run's baseline verifies, that the write journal's chain is intact when the run
may write, and that the signed plan of ``--hsm-plan`` verifies and is what the profile and
the source hold now (keyparity.attest.approval).
"""
from __future__ import annotations

import dataclasses

import errno
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from . import backends, policy, xdist_compat
from .cloudhsm import kms_stores
from .errors import KeyparityError
from .attest import approval, signoff
from .evidence.baseline import Baseline
from .evidence.baseline import load as load_baseline
from .evidence.baseline import load_verified
from .hsm import lockdir
from .hsm.login import LoginGate
from .journal.chain import require_intact
from .profile import Cluster, Profile, load_profile, resolve_profile_arg

# options whose value is a path: written with a space, pytest reads the value as a test path
# before keyparity's options are known, and takes its directory as the rootdir
PATH_OPTIONS = ("--hsm-profile", "--hsm-journal", "--hsm-reports-dir", "--hsm-plan")
RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")


def space_forms(args: Sequence[str]) -> list[str]:
    """The path options given as ``--opt VALUE`` where VALUE is an existing path: pytest took
    that path's directory as the rootdir. ``--opt=VALUE`` is always safe."""
    out = []
    for opt, value in zip(args, args[1:]):
        if opt in PATH_OPTIONS and not value.startswith("-") and Path(value).exists():
            out.append(f"{opt} {value}")
    return out


def options(config: pytest.Config) -> None:
    """The command line's own problems (UsageError)."""
    spaced = space_forms(list(config.invocation_params.args))
    if spaced:
        fixed = ", ".join(s.replace(" ", "=", 1) for s in spaced)
        raise pytest.UsageError(
            f"write {fixed} (with '='): given as '{spaced[0]}', pytest reads the value as a "
            "test path before keyparity's options are known, which moves the rootdir (here "
            f"{config.rootpath}) to that path's directory, where neither the profile nor the "
            "suites are")
    batch = config.getoption("hsm_batch")
    if batch is not None and batch < 1:
        raise pytest.UsageError(f"--hsm-batch must be at least 1, not {batch}")
    wait = config.getoption("hsm_lock_wait")
    if wait is not None and not 0 <= wait < float("inf"):
        raise pytest.UsageError(f"--hsm-lock-wait must be a number of seconds, 0 or more, not "
                                f"{wait}")
    run_id = config.getoption("hsm_run_id")
    if run_id is not None and not RUN_ID.fullmatch(run_id):
        raise pytest.UsageError(f"--hsm-run-id {run_id!r} is not a run id "
                                "(YYYYMMDDTHHMMSSZ-xxxxxx, as keyparity makes them)")


def _token(cluster: Cluster) -> tuple[str, str, str]:
    where = f"slot {cluster.slot}" if cluster.slot is not None else f"label {cluster.token_label}"
    return os.path.realpath(cluster.module), where, cluster.user or ""


def same_token(profile: Profile, tokens: dict[str, Any] | None = None) -> str | None:
    """Why source and target are the same token (same module and token, or the same serial
    read from the tokens), or None."""
    src, tgt = profile.source, profile.target
    if src is None or tgt is None:  # a baseline or re-verify: one cluster
        return None
    if _token(src)[:2] == _token(tgt)[:2]:
        return (f"clusters.source and clusters.target name the same token ({_token(src)[1]} "
                f"of {src.module})")
    tokens = tokens or {}
    serials = [tokens.get(role, {}).get("serial") for role in ("source", "target")]
    models = [tokens.get(role, {}).get("model") for role in ("source", "target")]
    if serials[0] and serials[0] == serials[1] and models[0] == models[1]:
        return (f"clusters.source ({src.name}) and clusters.target ({tgt.name}) are the same "
                f"token (serial {serials[0]})")
    return None


def profile(config: pytest.Config) -> tuple[Profile, policy.WriteMode]:
    """The profile, validated, with the policy applied (UsageError for anything refused)."""
    arg = config.getoption("hsm_profile")
    path = resolve_profile_arg(arg, config.rootpath)
    if path != Path(arg) and not path.exists():  # a NAME, looked up under the rootdir
        raise pytest.UsageError(
            f"{path}: profile file not found: --hsm-profile={arg} names a profile in "
            f"<rootdir>/hsm_profiles, and the rootdir is {config.rootpath} (chosen by "
            "--rootdir, -c or the paths given); give the profile's path instead")
    try:
        loaded = load_profile(path)
        # before any write: no session is open yet
        signed = signoff.load(loaded)  # each approval verified with its approver's key
        refused = (policy.fips_errors(loaded) + signoff.non_fips_errors(loaded, signed)
                   + backends.owners_errors(loaded))
        if refused:
            raise pytest.UsageError("\n".join(refused))
        loaded, write_mode = policy.write_guard(loaded, config.getoption("hsm_confirm"),
                                                planned=bool(config.getoption("hsm_plan")))
    except KeyparityError as exc:
        raise pytest.UsageError(str(exc)) from None
    logins = [(f"owners[{i}].{role}.user", getattr(o, role).user)
              for i, o in enumerate(loaded.owners) for role in ("source", "target")]
    for cluster in loaded.clusters:
        logins += [(f"clusters.{cluster.role}.user", cluster.user),
                   (f"clusters.{cluster.role}.cloudhsm_cli.user",
                    cluster.cloudhsm_cli.user if cluster.cloudhsm_cli else None)]
    for field, user in logins:  # never log in as KMS's own crypto user
        why = kms_stores.refuse_kmsuser(user)
        if why:
            raise pytest.UsageError(f"{loaded.path}: {field}: {why}")
    same = same_token(loaded)
    if same:
        raise pytest.UsageError(f"{loaded.path}: {same}: a migration needs two tokens; "
                                "correct the profile")
    return loaded, write_mode


def baseline(profile: Profile, gate: LoginGate, verified: str | None = None) -> Baseline | None:
    """A re-verify run's baseline, verified before anything else (UsageError when it does not
    verify: nothing is read from the cluster); None for any other run. ``verified``: in an
    xdist worker, the SHA-256 of the baseline.json its controller verified."""
    if profile.migration_mode != "reverify":
        return None
    try:
        found = (load_verified(profile, verified) if verified is not None
                 else load_baseline(profile, gate))
    except KeyparityError as exc:
        raise pytest.UsageError(f"{profile.path}: migration.baseline: {exc}") from None
    omitted = sorted(set(found.keys) - {k.label for k in profile.keys})
    if omitted:  # a PASS would say "all N keys unchanged" of fewer keys than were baselined
        raise pytest.UsageError(
            f"{profile.path}: keys: the baseline of {found.run_id} recorded "
            f"{len(found.keys)} keys and the profile does not list {len(omitted)} of them "
            f"({', '.join(omitted)}): a re-verify proves every key of its baseline; list them "
            "(a key retired since the baseline needs a new baseline)")
    return found


def journal(path: Path, write_mode: policy.WriteMode) -> None:
    """A run that may write refuses a journal whose chain is broken (UsageError)."""
    if write_mode.effective != "migrate":
        return
    try:
        require_intact(path)
    except KeyparityError as exc:
        raise pytest.UsageError(str(exc)) from None


# The least free space a run starts with, measured on the demo's bundle (200 KB for 8 keys)
# and journal (1 KB an entry, four or five entries a key), with room to spare: a floor that
# turns a full disk at the start into one line, not a promise that the run will fit.
SPACE_FIXED = 4 << 20
SPACE_PER_KEY = {"reports": 64 << 10, "journal": 16 << 10}


PROBE = 1 << 20  # bytes actually allocated: a quota or a file size limit shows there


def _probe(directory: Path, size: int) -> str | None:
    """Why ``size`` bytes cannot be written in ``directory`` (its nearest existing ancestor)
    now, or None: the file system's free space, and a file of PROBE bytes allocated there and
    removed (a read-only file system, a quota)."""
    here = directory
    while not here.exists() and here != here.parent:
        here = here.parent
    if not here.is_dir():
        return None  # a file in the way: making the directory says so, in its one line
    free = os.statvfs(here)
    if free.f_blocks == 0:
        return None  # a pseudo file system has no size to count: the write itself tells
    if free.f_bavail * free.f_frsize < size:
        return f"{free.f_bavail * free.f_frsize >> 10} KiB free"
    try:
        fd, name = tempfile.mkstemp(prefix=".keyparity-space-", dir=here)
    except OSError as exc:
        return exc.strerror or str(exc)
    try:
        os.posix_fallocate(fd, 0, min(size, PROBE))
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            return exc.strerror or str(exc)
    finally:
        os.close(fd)
        os.unlink(name)
    return None


def space(config: pytest.Config, profile: Profile, write_mode: policy.WriteMode,
          journal_path: Path) -> None:
    """Room for the run (UsageError otherwise): its run directory, and its journal when it may
    write. A full disk at the start is one line, not one error per test."""
    reports = Path(config.getoption("hsm_reports_dir") or config.rootpath / "reports")
    places = [("reports", "--hsm-reports-dir", reports)]
    if write_mode.effective == "migrate":
        places.append(("journal", "--hsm-journal", journal_path.parent))
    for what, option, directory in places:
        need = SPACE_FIXED + SPACE_PER_KEY[what] * len(profile.keys)
        why = _probe(directory.resolve(), need)
        if why is not None:
            raise pytest.UsageError(
                f"no room to write the run's {what} in {directory} ({why}): it needs about "
                f"{need >> 20} MiB for {len(profile.keys)} keys; free some space, or give "
                f"{option} a directory with room")


def signers(profile: Profile) -> None:
    """The profile's evidence signers, loaded once before anything runs and closed again
    (UsageError for one that cannot sign: not ECDSA P-384, two names for one key, a login
    refused): a run that would end UNSIGNED does not start. A PKCS #11 signer's session stays
    the process's, for the bundle at the end (no second login)."""
    if not profile.evidence.signers:
        return
    from .attest.signing import close_signers, load_signers, public_key_of  # ~0.65 s
    evidence = profile.evidence
    gate = LoginGate(None)
    try:  # with an operator, the others countersign apart: their certificates suffice here
        close_signers(load_signers(dataclasses.replace(evidence, signers=evidence.run_signers()),
                                   profile.module_env, gate))
        for spec in evidence.signers:
            if spec not in evidence.run_signers():
                public_key_of(spec, profile.module_env, gate)
    except KeyparityError as exc:
        raise pytest.UsageError(f"{profile.path}: evidence.signers: "
                                f"{' '.join(str(exc).split())}") from None


def timestamp_authority(profile: Profile) -> None:
    """The profile's time-stamping authority answers with a token that verifies (UsageError
    otherwise): a run whose bundle could not be time-stamped does not start."""
    from .attest.timestamp import reachable
    try:
        reachable(profile.evidence.timestamp)
    except KeyparityError as exc:
        raise pytest.UsageError(f"{profile.path}: evidence.timestamp: {exc}") from None


def distribution(config: pytest.Config, write_mode: policy.WriteMode) -> None:
    """A run that may write keeps each chunk of keys on one worker: ``--dist`` other than
    loadgroup is refused (UsageError). Spread over workers, one key's tests ran in two
    processes, and a few keys were unwrapped twice (see docs/journal.md)."""
    dist = xdist_compat.splitting_dist(config)
    if dist is not None and write_mode.effective == "migrate":
        raise pytest.UsageError(
            f"--dist {dist}: a run that may write keeps each chunk of keys on one worker; use "
            "-n alone (keyparity then uses --dist loadgroup) or --dist loadgroup")


def lock_dir(profile: Profile, write_mode: policy.WriteMode,
             tokens: dict[str, Any]) -> Path | None:
    """The target's key lock directory, created now, for a run that may write (UsageError when
    it cannot be); None for a run that writes nothing. ``tokens``: the clusters as the
    controller read them (controller.clusters)."""
    token = tokens.get("target", {}).get("token", {})
    if write_mode.effective != "migrate" or profile.target is None or "serial" not in token:
        return None  # a token that cannot be read fails the suites, each with its reason
    try:
        where = lockdir.scope(profile.target, token, profile.module_env).directory
        where.mkdir(parents=True, exist_ok=True)
    except KeyparityError as exc:
        raise pytest.UsageError(f"{profile.path}: clusters.target: {exc}") from None
    except OSError as exc:
        raise pytest.UsageError(f"{profile.path}: clusters.target: cannot create the key lock "
                                f"directory {where}: {exc.strerror or exc}; set "
                                "clusters.target.lock_dir to a directory every run on that "
                                "target can write") from None
    return where


def signed_plan(config: pytest.Config, profile: Profile,
         verified: dict[str, Any] | None = None) -> approval.Approval | None:
    """The signed plan of ``--hsm-plan`` (None without one), verified and compared with the
    profile and the source before anything is written (UsageError, one line, otherwise).
    ``verified``: in an xdist worker, the record of the plan its controller verified."""
    arg = config.getoption("hsm_plan")
    if not arg:
        return None
    if profile.single:
        raise pytest.UsageError(f"--hsm-plan: {profile.name} is a {profile.migration_mode} "
                                "profile; a plan is for a migration between two clusters")
    path = Path(arg).resolve()
    try:
        if verified is not None:
            return approval.load_verified(profile, path, verified["sha256"], verified)
        return approval.load(profile, path, LoginGate(None))
    except KeyparityError as exc:
        raise pytest.UsageError(" ".join(str(exc).split())) from None
