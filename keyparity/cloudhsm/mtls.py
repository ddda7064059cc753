"""Mutual TLS between the client and the HSMs, on both clusters: read-only, through the
CloudHSM CLI.

``cluster mtls get-enforcement`` answers ``{"mtls-enforcement-level": "none" | "cluster"}``;
``cluster mtls list-trust-anchors`` answers ``{"trust_anchors": [{"certificate-reference",
"certificate" (PEM; a whole chain when an intermediate was registered), "cluster-coverage"}]}``
(AWS CloudHSM user guide, CloudHSM CLI reference). mTLS exists on hsm2m.medium only: on an
hsm1.medium cluster nothing is run and the cluster counts as not enforcing.

:func:`check_mtls`: the target must be at least as strict as the source (enforcement on if the
source has it on), since clients that had to present a certificate to reach the keys must not
reach them on the target without one. Trust anchors are recorded by the SHA-256 of each
certificate's DER. A CLI error fails the check, naming the cluster and the command. mTLS is not
supported for CloudHSM key stores of AWS KMS: a target that enforces it and backs a key store
fails too.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from ..checks import Check
from .cli_runner import CliError, CloudHsmCli, fail
from .kms_stores import pem_sha256

GET_ENFORCEMENT = ("cluster", "mtls", "get-enforcement")
LIST_TRUST_ANCHORS = ("cluster", "mtls", "list-trust-anchors")
NONE, CLUSTER = "none", "cluster"
_RANK = {NONE: 0, CLUSTER: 1}
HSM1 = "hsm1.medium"
UNSUPPORTED = "hsm1.medium has no mTLS between client and HSM (hsm2m.medium only): not enforced"
SET_TODO = ("an admin registers the CA of the client certificates on the target (cluster mtls "
            "register-trust-anchor --path <CA certificate>), configures the client certificate "
            "and key (configure-cli / configure-pkcs11 --client-cert-hsm-tls-file ... "
            "--client-key-hsm-tls-file ...), then runs `cluster mtls set-enforcement --level "
            "cluster` logged in as the admin named admin, over an mTLS connection")


@dataclass(frozen=True)
class TrustAnchor:
    """One registered trust anchor: ``sha256`` has one entry per certificate of its PEM."""

    reference: str
    sha256: tuple[str, ...]
    coverage: str | None
    subject: str | None
    not_after: str | None

    def record(self) -> dict[str, Any]:
        return {"certificate_reference": self.reference, "sha256": list(self.sha256),
                "cluster_coverage": self.coverage, "subject": self.subject,
                "not_after": self.not_after}


@dataclass(frozen=True)
class MtlsState:
    """What one cluster says of mTLS; ``error`` when a command failed (then nothing else is
    known), ``unsupported`` when the cluster has no mTLS at all."""

    where: str
    cluster_id: str | None
    level: str | None = None
    anchors: tuple[TrustAnchor, ...] = ()
    error: str | None = None
    failed_command: str | None = None
    unsupported: str | None = None

    @property
    def name(self) -> str:
        return f"{self.where} ({self.cluster_id})" if self.cluster_id else self.where

    @property
    def enforced(self) -> bool:
        return self.level == CLUSTER

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cluster_id": self.cluster_id, "enforcement_level": self.level,
                               "trust_anchors": [a.record() for a in self.anchors]}
        if self.unsupported:
            out["unsupported"] = self.unsupported
        if self.error:
            out.update(error=self.error, failed_command=self.failed_command)
        return out


def _anchor(raw: Any, cli: CloudHsmCli, command: Sequence[str]) -> TrustAnchor:
    where = f"CloudHSM CLI `{' '.join(command)}` on {cli.where}"
    if not isinstance(raw, dict) or not isinstance(raw.get("certificate"), str):
        raise fail("bad-shape", f"{where}: a trust anchor without a certificate", cli.argv(command))
    ref = str(raw.get("certificate-reference", "?"))
    try:
        digests = pem_sha256(raw["certificate"])
        cert = x509.load_pem_x509_certificates(raw["certificate"].encode())[0]
    except ValueError as exc:
        raise fail("bad-shape", f"{where}: trust anchor {ref} is not a PEM certificate ({exc})",
                   cli.argv(command)) from None
    coverage = raw.get("cluster-coverage")
    return TrustAnchor(ref, digests, coverage if isinstance(coverage, str) else None,
                       cert.subject.rfc4514_string(),
                       cert.not_valid_after_utc.isoformat(timespec="seconds"))


def read(cli: CloudHsmCli, hsm_type: str | None = None) -> MtlsState:
    """Both commands on the CLI's cluster; a CliError is kept in the state (the check fails on
    it). On hsm1.medium nothing is run: the profile's ``hsm_type``, else the type the CLI's
    configuration gives the cluster ("hsm1")."""
    if (hsm_type or cli.hsm_type or "").split(".")[0] == HSM1.split(".")[0]:
        return MtlsState(cli.where, cli.cluster_id, unsupported=UNSUPPORTED)
    command: Sequence[str] = GET_ENFORCEMENT
    try:
        data = cli.run(*command)
        level = data.get("mtls-enforcement-level") if isinstance(data, dict) else None
        if not isinstance(level, str):
            raise fail("bad-shape", f"CloudHSM CLI `{' '.join(command)}` on {cli.where}: no "
                                    "data.mtls-enforcement-level", cli.argv(command))
        command = LIST_TRUST_ANCHORS
        data = cli.run(*command)
        raw = data.get("trust_anchors") if isinstance(data, dict) else None
        if not isinstance(raw, list):
            raise fail("bad-shape", f"CloudHSM CLI `{' '.join(command)}` on {cli.where}: no "
                                    "data.trust_anchors list", cli.argv(command))
        anchors = tuple(_anchor(a, cli, command) for a in raw)
    except CliError as exc:
        return MtlsState(cli.where, cli.cluster_id, error=str(exc),
                         failed_command=" ".join(command))
    return MtlsState(cli.where, cli.cluster_id, level.lower(), anchors)


def _rank(s: MtlsState) -> int | None:
    return 0 if s.unsupported else _RANK.get(s.level or "")


def _shown(s: MtlsState) -> str:
    return "n/a (hsm1.medium)" if s.unsupported else str(s.level)


def check_mtls(source: MtlsState, target: MtlsState,
               target_key_stores: Sequence[str] = ()) -> Check:
    """The target enforces mTLS if the source does; trust anchors recorded by SHA-256.
    ``target_key_stores``: ids of KMS key stores backed by the target (kms_stores.stores_for)."""
    facts = {"source": source.record(), "target": target.record(),
             "trust_anchor_sha256": {"source": [h for a in source.anchors for h in a.sha256],
                                     "target": [h for a in target.anchors for h in a.sha256]}}
    wrong = [f"`{s.failed_command}` on {s.name} failed: {s.error}"
             for s in (source, target) if s.error]
    warnings = [f"trust anchor {a.reference} of {s.name} has cluster-coverage {a.coverage}, not "
                "full: not every HSM has it yet" for s in (source, target) for a in s.anchors
                if a.coverage != "full"]
    if not wrong:
        src, tgt = _rank(source), _rank(target)
        for s, rank in ((source, src), (target, tgt)):
            if rank is None:
                wrong.append(f"{s.name} reports mtls-enforcement-level {s.level!r}, which "
                             "keyparity does not know (none or cluster): check the CLI version")
        if src is not None and tgt is not None and tgt < src:
            wrong.append(f"{target.name} does not enforce mTLS (mtls-enforcement-level "
                         f"{_shown(target)}) while {source.name} does ({source.level}): clients "
                         "without a client certificate would reach the migrated keys; "
                         + SET_TODO)
        if target.enforced and target_key_stores:
            wrong.append(f"{target.name} enforces mTLS but backs the KMS key store(s) "
                         f"{', '.join(target_key_stores)}: mTLS is not supported for CloudHSM "
                         "key stores of AWS KMS; keep those stores on a cluster without "
                         "enforcement (set-enforcement --level none) or move them off it")
        shared = set(facts["trust_anchor_sha256"]["source"]) & set(
            facts["trust_anchor_sha256"]["target"])
        if source.enforced and target.enforced and not shared:
            warnings.append(f"no trust anchor of {source.name} is registered on {target.name}: "
                            "client certificates issued for the source are refused by the target "
                            "unless another registered anchor issued them")
    if wrong:
        return Check(False, "; ".join(wrong), facts, warnings=tuple(warnings), name="mtls")
    return Check(True, f"mTLS enforcement: {source.name} {_shown(source)}, {target.name} "
                       f"{_shown(target)} (at least as strict); trust anchors: "
                       f"{len(source.anchors)} on the source, {len(target.anchors)} on the "
                       "target (SHA-256 in the facts)", facts, warnings=tuple(warnings),
                 name="mtls")
