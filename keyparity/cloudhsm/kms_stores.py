"""AWS KMS custom key stores backed by the clusters of a run (``kms.describe_custom_key_stores``),
read-only.

A CloudHSM key store is a KMS view of one cluster: KMS logs in as the crypto user ``kmsuser``
and generates non-extractable key material owned by it. Those keys cannot move by wrap/unwrap:
a key store can only be pointed at a cluster that shares the backup history of its own
(UpdateCustomKeyStore; CloudHsmClusterNotRelatedException otherwise). :func:`check_stores` fails
a CONNECTED store whose cluster lacks two ACTIVE HSMs in different Availability Zones (what KMS
needs to create keys in it); a DISCONNECTED store is recorded, not failed (KMS does not use its
cluster until it is connected again); a FAILED one is recorded with a warning naming its
ConnectionErrorCode. keyparity never logs in as ``kmsuser`` (:func:`refuse_kmsuser`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ..checks import Check
from . import aws
from .aws import AwsAccessDenied, AwsCallFailed, AwsError, ClusterFacts

KMSUSER = "kmsuser"
AWS_CLOUDHSM, CONNECTED, DISCONNECTED, FAILED = ("AWS_CLOUDHSM", "CONNECTED", "DISCONNECTED",
                                                 "FAILED")
KMS_DISPOSITION = "KMS custom key store, cannot move by wrap"
ACTION = "DescribeCustomKeyStores"

# error code or botocore exception name -> (our type, what to do): the credentials rows of
# aws._ERRORS, with this call's permission and endpoint.
_ERRORS: dict[str, tuple[type[AwsError], str]] = {
    **{code: row for code, row in aws._ERRORS.items()
       if row[0] is not AwsAccessDenied and code not in ("CloudHsmResourceNotFoundException",
                                                          "EndpointConnectionError")},
    "AccessDeniedException": (AwsAccessDenied, "allow kms:DescribeCustomKeyStores for these "
                              "credentials (it is read-only)"),
    "EndpointConnectionError": (AwsCallFailed, "the KMS API endpoint of the region is not "
                                "reachable from here: check the region, network and proxy"),
    "KMSInternalException": (AwsCallFailed, "KMS failed internally: retry later"),
}


def pem_sha256(text: str) -> tuple[str, ...]:
    """The SHA-256 (hex) of the DER of each certificate of a PEM text, in order (KMS trust
    anchors here, mTLS trust anchors in ``mtls``); ValueError if it holds none."""
    try:
        certs = x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        raise ValueError("no PEM certificate") from None
    return tuple(c.fingerprint(hashes.SHA256()).hex() for c in certs)


def error_for(exc: BaseException, region: str | None = None) -> AwsError:
    """A botocore/boto3 error of DescribeCustomKeyStores as an AwsError with what to do."""
    code, detail = type(exc).__name__, str(exc)
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        code, detail = err.get("Code") or code, err.get("Message") or detail
    kind, todo = _ERRORS.get(code, aws._DEFAULT)
    where = f" in {region}" if region else ""
    return kind(f"{ACTION}{where} failed ({code}: {detail}): {todo}")


@dataclass(frozen=True)
class Store:
    """One CloudHSM key store as KMS lists it (no password: KMS never returns it)."""

    store_id: str
    name: str
    cluster_id: str
    connection_state: str
    error_code: str | None = None
    created: str | None = None
    trust_anchor_sha256: tuple[str, ...] = ()

    def record(self) -> dict[str, Any]:
        return {"custom_key_store_id": self.store_id, "name": self.name,
                "cluster_id": self.cluster_id, "connection_state": self.connection_state,
                "connection_error_code": self.error_code, "created": self.created,
                "trust_anchor_sha256": list(self.trust_anchor_sha256),
                "source": "kms.describe_custom_key_stores"}


def _store(raw: dict[str, Any]) -> Store:
    when = raw.get("CreationDate")
    try:
        anchor = pem_sha256(raw.get("TrustAnchorCertificate") or "")
    except ValueError:
        anchor = ()
    return Store(raw["CustomKeyStoreId"], raw.get("CustomKeyStoreName", ""),
                 raw["CloudHsmClusterId"], raw.get("ConnectionState", "?"),
                 raw.get("ConnectionErrorCode"),
                 when.isoformat(timespec="seconds") if hasattr(when, "isoformat") else when,
                 anchor)


def stores_for(kms_client: Any, cluster_ids: Iterable[str]) -> list[Store]:
    """Every AWS_CLOUDHSM key store of the account and region whose cluster is one of
    ``cluster_ids`` (all pages); AwsError if KMS cannot be read."""
    import botocore.exceptions as bx  # deferred for speed, as in aws.client_for

    wanted = set(cluster_ids)
    try:
        pages = kms_client.get_paginator("describe_custom_key_stores").paginate()
        raw = [s for page in pages for s in page.get("CustomKeyStores", [])]
    except (bx.BotoCoreError, bx.ClientError) as exc:
        raise error_for(exc, getattr(getattr(kms_client, "meta", None), "region_name",
                                     None)) from None
    return [_store(s) for s in raw if s.get("CustomKeyStoreType", AWS_CLOUDHSM) == AWS_CLOUDHSM
            and s.get("CloudHsmClusterId") in wanted]


def _placement(facts: ClusterFacts) -> tuple[int, list[str]]:
    active = [h for h in facts.hsms if h.get("State") == aws.ACTIVE]
    return len(active), sorted({h["AvailabilityZone"] for h in active if h.get("AvailabilityZone")})


def check_stores(stores: Sequence[Store], cluster_facts_by_id: Mapping[str, ClusterFacts]) -> Check:
    """Each store recorded; a CONNECTED store's cluster has two ACTIVE HSMs in two AZs."""
    records, wrong, warnings = [], [], []
    for s in stores:
        rec, label = s.record(), f"KMS key store {s.name} ({s.store_id})"
        facts = cluster_facts_by_id.get(s.cluster_id)
        if facts is not None:
            rec["active_hsms"], rec["active_hsm_zones"] = _placement(facts)
        records.append(rec)
        if s.connection_state == CONNECTED:
            if facts is None:
                wrong.append(f"{label} is CONNECTED to {s.cluster_id}, which was not read: "
                             "read it with cloudhsmv2:DescribeClusters")
                continue
            count, zones = _placement(facts)
            if count < 2 or len(zones) < 2:
                wrong.append(f"{label} is CONNECTED to {s.cluster_id}, which has {count} ACTIVE "
                             f"HSM(s) in {', '.join(zones) or 'no Availability Zone'}: AWS KMS "
                             "needs at least two ACTIVE HSMs in different Availability Zones to "
                             "create keys in it; add an HSM in another Availability Zone (aws "
                             f"cloudhsmv2 create-hsm --cluster-id {s.cluster_id} "
                             "--availability-zone ...) before migrating")
        elif s.connection_state == FAILED:
            warnings.append(f"{label} on {s.cluster_id} failed to connect "
                            f"({s.error_code or 'no ConnectionErrorCode'}): its KMS keys are "
                            "unavailable; see Troubleshooting a custom key store (KMS guide)")
        elif s.connection_state != DISCONNECTED:
            warnings.append(f"{label} on {s.cluster_id} is {s.connection_state}: read again "
                            "when it is CONNECTED or DISCONNECTED")
    facts = {"custom_key_stores": records}
    if wrong:
        return Check(False, "; ".join(wrong), facts, warnings=tuple(warnings), name="kms_stores")
    listed = ", ".join(f"{s.name} ({s.store_id}) {s.connection_state} on {s.cluster_id}"
                       for s in stores)
    return Check(True, f"KMS key stores on these clusters: {listed or 'none'}", facts,
                 warnings=tuple(warnings), name="kms_stores")


def classify(owner: str) -> str | None:
    """The census disposition of a key owned by ``owner``: KMS_DISPOSITION for kmsuser."""
    return KMS_DISPOSITION if owner.strip().lower() == KMSUSER else None


def refuse_kmsuser(cluster_user: str | None) -> str | None:
    """Why the run must not log in as this user (None: it may)."""
    if cluster_user is None or cluster_user.strip().lower() != KMSUSER:
        return None
    return ("keyparity never logs in as kmsuser: it is the crypto user AWS KMS logs in as to "
            "manage the keys of a CloudHSM key store; while anyone else is logged in as it KMS "
            "cannot connect (USER_LOGGED_IN), and failed logins lock it out (USER_LOCKED_OUT); "
            "its keys cannot be moved by wrap in any case: use a crypto user of your own")


def what_to_do() -> str:
    """For the report: what to do with KMS keys whose key material is in a key store."""
    return ("KMS keys in a CloudHSM key store have non-extractable key material owned by "
            "kmsuser: they cannot be wrapped, exported or imported elsewhere. To keep them, "
            "keep their key store on a cluster that shares the backup history of its cluster "
            "(one created from a backup of it): disconnect the store, UpdateCustomKeyStore "
            "--cloud-hsm-cluster-id <that cluster>, connect it again (an unrelated cluster is "
            "refused with CloudHsmClusterNotRelatedException). Otherwise create new KMS keys "
            "(in a key store on the new cluster, or standard KMS keys) and re-encrypt the data "
            "under them (kms re-encrypt) before the old cluster and its backups are retired")


def kms_facts(stores: Sequence[Store], source_cluster_id: str,
              target_cluster_id: str | None = None, related: bool | None = None) -> dict[str, Any]:
    """For the census and the report: the stores per cluster, how kmsuser keys are counted,
    whether a source store can follow to the target (``related``: the target shares the
    source's backup history, e.g. lineage.check_lineage passed), and what to do."""
    on = {c: [s.store_id for s in stores if s.cluster_id == c]
          for c in (source_cluster_id, target_cluster_id) if c}
    follow = ("yes: the target shares the source's backup history" if related
              else "no: the target does not share the source's backup history, so "
                   "UpdateCustomKeyStore refuses it (CloudHsmClusterNotRelatedException)"
              if related is False else "not known")
    return {"custom_key_stores": [s.record() for s in stores],
            "on_source": on.get(source_cluster_id, []),
            "on_target": on.get(target_cluster_id, []) if target_cluster_id else [],
            "kmsuser": {"owner": KMSUSER, "disposition": KMS_DISPOSITION,
                        "why": "generated by AWS KMS in the cluster, non-extractable, owned by "
                               "kmsuser: cannot be exported or moved by wrap"},
            "store_can_follow_to_target": follow if on.get(source_cluster_id) else None,
            "what_to_do": what_to_do()}
