"""The clusters as AWS sees them: ``cloudhsmv2.describe_clusters``, read-only.

For a cluster with an ``aws`` block the suite ``suites/test_cluster.py`` checks what the profile
declares against what AWS reports: the cluster is ACTIVE, its ``Mode`` (FIPS / NON_FIPS) and
``HsmType`` (hsm1.medium / hsm2m.medium) are the declared ones, and enough of its HSMs are
ACTIVE (``min_active_hsms``, default 2: with one HSM a key has no second copy and the cluster
no failover). botocore errors become KeyparityError subclasses through one table (``_ERRORS``)
whose messages say what to do. No secret is read or written here: credentials come from the
usual AWS chain (``aws.profile``, optionally an assumed ``aws.role_arn``).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ..checks import Check
from ..errors import KeyparityError
from ..profile import AwsSpec, Cluster

ACTIVE = "ACTIVE"
SESSION_NAME = "keyparity-preflight"
NOT_VERIFIED = "declared, not verified (no aws block)"


class AwsError(KeyparityError):
    """The cluster could not be read from AWS; the message says what to do."""


class AwsAccessDenied(AwsError):
    """The credentials may not call cloudhsmv2:DescribeClusters (or sts:AssumeRole)."""


class AwsClusterNotFound(AwsError):
    """No cluster with the profile's id in that account and region."""


class AwsNoCredentials(AwsError):
    """No AWS credentials were found, or the named AWS profile does not exist."""


class AwsNoRegion(AwsError):
    """No region to call."""


class AwsCallFailed(AwsError):
    """Any other failure of the call (network, throttling, service error)."""


# error code (ClientError) or botocore exception class name -> (our type, what to do).
_ERRORS: dict[str, tuple[type[AwsError], str]] = {
    "AccessDeniedException": (AwsAccessDenied, "allow cloudhsmv2:DescribeClusters for these "
                              "credentials (it is read-only)"),
    "CloudHsmAccessDeniedException": (AwsAccessDenied, "allow cloudhsmv2:DescribeClusters for "
                                      "these credentials (it is read-only)"),
    "AccessDenied": (AwsAccessDenied, "the role in aws.role_arn must trust these credentials "
                     "(sts:AssumeRole) and allow cloudhsmv2:DescribeClusters"),
    "UnrecognizedClientException": (AwsNoCredentials, "the credentials are not valid: renew "
                                    "them (aws sso login / aws configure)"),
    "InvalidClientTokenId": (AwsNoCredentials, "the credentials are not valid: renew them "
                             "(aws sso login / aws configure)"),
    "ExpiredTokenException": (AwsNoCredentials, "the session token has expired: renew it "
                              "(aws sso login)"),
    "ExpiredToken": (AwsNoCredentials, "the session token has expired: renew it "
                     "(aws sso login)"),
    "CloudHsmResourceNotFoundException": (AwsClusterNotFound, "check aws.cluster_id and "
                                          "aws.region (and the account of the credentials)"),
    "NoCredentialsError": (AwsNoCredentials, "give aws.profile, or provide credentials "
                           "through the environment or an instance role"),
    "ProfileNotFound": (AwsNoCredentials, "aws.profile names no profile in ~/.aws/config; "
                        "fix the name or create it (aws configure --profile NAME)"),
    "NoRegionError": (AwsNoRegion, "set aws.region in the profile"),
    "EndpointConnectionError": (AwsCallFailed, "the CloudHSM API endpoint of aws.region is not "
                                "reachable from here: check the region, network and proxy"),
}
_DEFAULT = (AwsCallFailed, "retry later; if it persists, check the AWS service health")


def error_for(exc: BaseException, spec: AwsSpec, action: str = "DescribeClusters") -> AwsError:
    """The one place a botocore/boto3 error becomes an AwsError with what to do."""
    code = type(exc).__name__
    detail = str(exc)
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        code = err.get("Code") or code
        detail = err.get("Message") or detail
    kind, todo = _ERRORS.get(code, _DEFAULT)
    return kind(f"{action} of {spec.cluster_id} in {spec.region} failed ({code}: {detail}): "
                f"{todo}")


def client_for(spec: AwsSpec, service: str = "cloudhsmv2") -> Any:
    """A client of ``service`` (cloudhsmv2; kms for the custom key stores) for the profile's
    AWS block: ``profile`` names the AWS profile (default chain otherwise); with ``role_arn``
    the role is assumed through STS first."""
    # deferred for speed: boto3 takes a good part of a second to import, and only profiles
    # with an ``aws`` block need it
    import boto3
    import botocore.exceptions as bx

    try:
        session = boto3.Session(profile_name=spec.profile, region_name=spec.region)
        if spec.role_arn:
            creds = session.client("sts").assume_role(
                RoleArn=spec.role_arn, RoleSessionName=SESSION_NAME)["Credentials"]
            session = boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                                    aws_secret_access_key=creds["SecretAccessKey"],
                                    aws_session_token=creds["SessionToken"],
                                    region_name=spec.region)
        return session.client(service, region_name=spec.region)
    except (bx.BotoCoreError, bx.ClientError) as exc:
        raise error_for(exc, spec, "AssumeRole" if spec.role_arn else "session") from None


@dataclass(frozen=True)
class ClusterFacts:
    """What describe_clusters says of one cluster (nothing secret: no certificates' keys)."""

    cluster_id: str
    region: str
    state: str
    state_message: str | None
    hsm_type: str | None
    mode: str | None
    hsms: tuple[dict[str, Any], ...]
    read_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc)
                         .isoformat(timespec="seconds"))

    @property
    def active_hsms(self) -> int:
        return sum(1 for h in self.hsms if h.get("State") == ACTIVE)

    def record(self) -> dict[str, Any]:
        """For the evidence."""
        out: dict[str, Any] = {
            "cluster_id": self.cluster_id, "region": self.region, "state": self.state,
            "hsm_type": self.hsm_type, "mode": self.mode, "active_hsms": self.active_hsms,
            "hsms": [{k: h[k] for k in ("HsmId", "State", "AvailabilityZone", "EniIp")
                      if h.get(k) is not None} for h in self.hsms],
            "read_at": self.read_at, "source": "cloudhsmv2.describe_clusters"}
        if self.state_message:
            out["state_message"] = self.state_message
        return out


def describe(spec: AwsSpec, client: Any = None) -> ClusterFacts:
    """``describe_clusters`` for the one cluster id; AwsError if it cannot be read or is absent.
    ``client`` is a cloudhsmv2 client (made from the spec when not given)."""
    import botocore.exceptions as bx  # deferred for speed, as in client_for

    client = client if client is not None else client_for(spec)
    try:
        clusters = client.describe_clusters(
            Filters={"clusterIds": [spec.cluster_id]}).get("Clusters", [])
    except (bx.BotoCoreError, bx.ClientError) as exc:
        raise error_for(exc, spec) from None
    found = [c for c in clusters if c.get("ClusterId") == spec.cluster_id]
    if not found:
        kind, todo = _ERRORS["CloudHsmResourceNotFoundException"]
        raise kind(f"DescribeClusters found no cluster {spec.cluster_id} in {spec.region}: "
                   f"{todo}")
    c = found[0]
    return ClusterFacts(cluster_id=c["ClusterId"], region=spec.region, state=c.get("State", "?"),
                        state_message=c.get("StateMessage"), hsm_type=c.get("HsmType"),
                        mode=c.get("Mode"), hsms=tuple(c.get("Hsms", [])))


# ---- the checks: a Check whose message reads well in both cases --------------------------------
# (their facts are empty: what AWS reported is recorded once per cluster, ClusterFacts.record)

def check_active(cluster: Cluster, facts: ClusterFacts) -> Check:
    if facts.state == ACTIVE:
        return Check(True, f"{cluster.name} ({facts.cluster_id}) is ACTIVE")
    why = f" ({facts.state_message})" if facts.state_message else ""
    todo = {"UNINITIALIZED": "initialize it (sign the cluster CSR) and activate it",
            "INITIALIZED": "activate it (cloudhsm-cli cluster activate)",
            "DEGRADED": "an HSM or the cluster is impaired: see the CloudHSM console"}.get(
        facts.state, "wait until it is ACTIVE")
    return Check(False, f"{cluster.name} ({facts.cluster_id}) is {facts.state}{why}, not "
                        f"ACTIVE: {todo} before migrating")


def check_mode_and_type(cluster: Cluster, facts: ClusterFacts) -> Check:
    wrong = []
    if facts.mode != cluster.mode:
        wrong.append(f"Mode is {facts.mode} but clusters.{cluster.role}.mode declares "
                     f"{cluster.mode}")
    if cluster.hsm_type is not None and facts.hsm_type != cluster.hsm_type:
        wrong.append(f"HsmType is {facts.hsm_type} but clusters.{cluster.role}.hsm_type "
                     f"declares {cluster.hsm_type}")
    if wrong:
        return Check(False, f"{cluster.name} ({facts.cluster_id}): " + "; ".join(wrong)
                            + ": fix the profile or point it at the right cluster")
    typ = (f"HsmType {facts.hsm_type}" if cluster.hsm_type is not None
           else f"HsmType {facts.hsm_type} (not declared: not compared)")
    return Check(True, f"{cluster.name} ({facts.cluster_id}): Mode {facts.mode}, {typ}, as "
                       "declared")


def check_active_hsms(cluster: Cluster, facts: ClusterFacts) -> Check:
    need = cluster.aws.min_active_hsms if cluster.aws else 2
    have = facts.active_hsms
    states = ", ".join(f"{h.get('HsmId')} {h.get('State')} {h.get('AvailabilityZone', '')}"
                       .strip() for h in facts.hsms) or "no HSMs"
    if have < need:
        return Check(False, f"{cluster.name} ({facts.cluster_id}) has {have} ACTIVE HSM(s), "
                            f"needs >= {need} ({states}): add an HSM in another Availability "
                            "Zone (keys are only available with >= 2), or set "
                            "aws.min_active_hsms: 1 knowingly")
    note = (" (aws.min_active_hsms is 1: the two-HSM availability check is disabled by the "
            "profile)" if need < 2 else "")
    return Check(True, f"{cluster.name} ({facts.cluster_id}) has {have} ACTIVE HSM(s) >= "
                       f"{need}{note}")
