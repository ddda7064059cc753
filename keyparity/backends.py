"""The one place a profile's ``migration.backend`` is mapped to what moves its keys: the name,
how to make the keyparity.hsm.backend.Backend, what the signed plan records of its unwrap, and
what it can do that the other cannot. Nothing else compares backend names.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .cloudhsm import backend as cli
from .hsm import backend as pkcs11
from .hsm.backend import Backend
from .hsm.cluster import ClusterSession
from .hsm.login import LoginGate
from .journal.recorder import RunRecorder
from .profile import Cluster, KeySpec, Profile


@dataclass(frozen=True)
class BackendKind:
    """One ``migration.backend``. ``make(profile, source, target, recorder, run_id, gate)``: the
    run's Backend (``source``/``target`` None: one made only to reap, as ``keyparity cleanup``
    does); ``unwrap_record(profile, spec, source_attributes)``: what the plan shows of the
    unwrap (and the run compares with it before each write); ``plan_reads(profile, gate)``:
    label -> what else the plan shows of each key's move that only this backend reads from the
    source (the CLI: key quorum values), or why it could not be read; ``sets_quorum``: whether
    a key's CloudHSM quorum values arrive with it at unwrap; ``per_owner``: whether it moves
    each owner's keys as that owner (profile ``owners``); ``user_of(cluster)``: the user it
    writes as on that cluster (whom the HSM's audit log names)."""

    name: str
    make: Callable[[Profile, ClusterSession | None, ClusterSession | None, RunRecorder,
                    str, LoginGate | None], Backend]
    unwrap_record: Callable[[Profile, KeySpec, Mapping[str, Any]], dict[str, Any]]
    sets_quorum: bool
    per_owner: bool = False
    plan_reads: Callable[[Profile, LoginGate], Mapping[str, dict[str, Any] | str]] = (
        lambda profile, gate: {})
    user_of: Callable[[Cluster], str | None] = lambda cluster: cluster.user


def _cli_user(cluster: Cluster) -> str | None:
    return cluster.cloudhsm_cli.user if cluster.cloudhsm_cli is not None else cluster.user


def _pkcs11(profile: Profile, source: ClusterSession | None, target: ClusterSession | None,
            recorder: RunRecorder, run_id: str, gate: LoginGate | None) -> Backend:
    return pkcs11.Pkcs11Backend(source, target, profile.wrapping, pkcs11.wrapping_label(run_id),
                                recorder, cloudhsm=profile.target is not None
                                and profile.target.is_cloudhsm)


def _cli(profile: Profile, source: ClusterSession | None, target: ClusterSession | None,
         recorder: RunRecorder, run_id: str, gate: LoginGate | None) -> Backend:
    return cli.CliBackend(profile, target, recorder, run_id, gate)


BACKENDS: dict[str, BackendKind] = {kind.name: kind for kind in (
    BackendKind("pkcs11", _pkcs11, pkcs11.unwrap_record, sets_quorum=False),
    BackendKind("cloudhsm-cli", _cli, cli.unwrap_record, sets_quorum=True, per_owner=True,
                plan_reads=cli.plan_reads, user_of=_cli_user),
)}


def backend_for(profile: Profile) -> BackendKind:
    """The profile's backend (the schema admits only the names above)."""
    return BACKENDS[profile.migration_backend]


def owners_errors(profile: Profile) -> list[str]:
    """Why the profile's ``owners`` cannot be honoured by its backend (empty: they can)."""
    if not profile.owners or backend_for(profile).per_owner:
        return []
    return [f"{profile.path}: owners: migration.backend {profile.migration_backend} moves every "
            "key as one user; the per-owner strategy logs in as each owner with the CloudHSM "
            "CLI: set migration.backend: cloudhsm-cli"]
