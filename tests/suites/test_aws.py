"""keyparity.cloudhsm.aws and the cluster suite: describe_clusters through a real cloudhsmv2 client whose
responses come from botocore's Stubber (which validates them against the service model), in
every mode x type x state combination, and each check shown to fail on the wrong input."""
from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions as bx
import pytest
import yaml
from botocore.stub import Stubber
from jsonschema import Draft202012Validator

from conftest import REPO, evidence, run_suites
from keyparity.checks import Check
from keyparity.cloudhsm import aws
from keyparity.profile import AwsSpec, Cluster
from keyparity.secrets import parse_secret_ref

REGION = "eu-central-1"
SOURCE_ID, TARGET_ID = "cluster-hsm1fips01", "cluster-hsm2mnon02"
MODES = ("FIPS", "NON_FIPS")
TYPES = ("hsm1.medium", "hsm2m.medium")
STATES = ("ACTIVE", "UNINITIALIZED", "INITIALIZED", "DEGRADED", "UPDATE_IN_PROGRESS")


def hsm(n: int, state: str = "ACTIVE", cluster_id: str = TARGET_ID,
        hsm_type: str = "hsm2m.medium") -> dict[str, Any]:
    az = "abc"[n % 3]
    return {"AvailabilityZone": f"{REGION}{az}", "ClusterId": cluster_id,
            "SubnetId": f"subnet-0{n}a1b2c3d4e5f6a7b", "EniId": f"eni-0{n}1234567890abcde",
            "EniIp": f"10.0.{n}.17", "HsmId": f"hsm-{n}abcdefghij", "HsmType": hsm_type,
            "State": state, "StateMessage": "HSM created." if state == "ACTIVE" else state}


def cluster_doc(cluster_id: str = TARGET_ID, mode: str = "NON_FIPS",
                hsm_type: str = "hsm2m.medium", state: str = "ACTIVE",
                hsms: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A describe_clusters cluster as AWS returns it (the shape Stubber checks)."""
    hsms = [hsm(1, cluster_id=cluster_id, hsm_type=hsm_type),
            hsm(2, cluster_id=cluster_id, hsm_type=hsm_type)] if hsms is None else hsms
    doc: dict[str, Any] = {
        "BackupPolicy": "DEFAULT",
        "BackupRetentionPolicy": {"Type": "DAYS", "Value": "90"},
        "ClusterId": cluster_id,
        "CreateTimestamp": dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.timezone.utc),
        "Hsms": hsms,
        "HsmType": hsm_type,
        "SecurityGroup": "sg-0123456789abcdef0",
        "State": state,
        "StateMessage": {"ACTIVE": "Cluster is active.", "DEGRADED": "An HSM is impaired.",
                         "UNINITIALIZED": "Cluster is not initialized.",
                         "INITIALIZED": "Cluster is initialized, not activated.",
                         "UPDATE_IN_PROGRESS": "Cluster is being updated."}[state],
        "SubnetMapping": {f"{REGION}a": "subnet-01a1b2c3d4e5f6a7b",
                          f"{REGION}b": "subnet-02a1b2c3d4e5f6a7b"},
        "VpcId": "vpc-0a1b2c3d4e5f6a7b8",
        "NetworkType": "IPV4",
        "Certificates": {
            "ClusterCsr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIC...\n-----END CERTIFICATE REQUEST-----",
            "HsmCertificate": "-----BEGIN CERTIFICATE-----\nMIID...\n-----END CERTIFICATE-----",
            "AwsHardwareCertificate": "-----BEGIN CERTIFICATE-----\nMIIE...\n-----END CERTIFICATE-----",
            "ManufacturerHardwareCertificate": "-----BEGIN CERTIFICATE-----\nMIIF...\n-----END CERTIFICATE-----",
            "ClusterCertificate": "-----BEGIN CERTIFICATE-----\nMIIG...\n-----END CERTIFICATE-----",
        },
        "TagList": [{"Key": "team", "Value": "payments"}],
        "Mode": mode,
    }
    return doc


def stubbed(*clusters: dict[str, Any], cluster_id: str = TARGET_ID,
            error: tuple[str, str] | None = None) -> tuple[Any, Stubber]:
    """A real cloudhsmv2 client answering one describe_clusters call (validated by Stubber)."""
    client = boto3.client("cloudhsmv2", region_name=REGION, aws_access_key_id="AKIDTEST",
                          aws_secret_access_key="test")
    stub = Stubber(client)
    params = {"Filters": {"clusterIds": [cluster_id]}}
    if error:
        stub.add_client_error("describe_clusters", service_error_code=error[0],
                              service_message=error[1], http_status_code=400,
                              expected_params=params)
    else:
        stub.add_response("describe_clusters", {"Clusters": list(clusters)}, params)
    stub.activate()
    return client, stub


def spec(role: str = "target", mode: str = "NON_FIPS", hsm_type: str | None = "hsm2m.medium",
         min_active: int = 2, cluster_id: str = TARGET_ID) -> Cluster:
    name = "hsm1" if role == "source" else "hsm2m"
    return Cluster(role=role, name=name, module=Path("/opt/cloudhsm/lib/libcloudhsm_pkcs11.so"),
                   token_label=None, slot=1, pin=parse_secret_ref("env:X", "pin", Path("/")),
                   mode=mode, hsm_type=hsm_type,
                   aws=AwsSpec(cluster_id=cluster_id, region=REGION, min_active_hsms=min_active))


def read(cluster: Cluster, client: Any) -> aws.ClusterFacts:
    return aws.describe(cluster.aws, client=client)


def unpack(check: Check) -> tuple[bool, str]:
    return check.ok, check.message


# ---- every combination ------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "hsm_type", "state"), list(itertools.product(MODES, TYPES, STATES)))
@pytest.mark.parametrize(("declared_mode", "declared_type"), list(itertools.product(MODES, TYPES)))
def test_every_mode_type_and_state_is_checked(mode, hsm_type, state, declared_mode,
                                              declared_type):
    client, stub = stubbed(cluster_doc(mode=mode, hsm_type=hsm_type, state=state))
    cluster = spec(mode=declared_mode, hsm_type=declared_type)
    facts = read(cluster, client)
    stub.assert_no_pending_responses()
    assert (facts.mode, facts.hsm_type, facts.state, facts.active_hsms) == (mode, hsm_type,
                                                                           state, 2)
    ok, msg = unpack(aws.check_active(cluster, facts))
    assert ok is (state == "ACTIVE")
    assert (msg.startswith(f"hsm2m ({TARGET_ID}) is {state} (") and "not ACTIVE" in msg) is (
        state != "ACTIVE")
    ok, msg = unpack(aws.check_mode_and_type(cluster, facts))
    assert ok is (mode == declared_mode and hsm_type == declared_type), msg
    assert (f"Mode is {mode} but clusters.target.mode declares {declared_mode}" in msg) is (
        mode != declared_mode)
    assert (f"HsmType is {hsm_type} but clusters.target.hsm_type declares {declared_type}"
            in msg) is (hsm_type != declared_type)
    assert aws.check_active_hsms(cluster, facts).ok is True


def test_the_headline_pair_passes_and_is_recorded():
    source = spec("source", "FIPS", "hsm1.medium", cluster_id=SOURCE_ID)
    client, _ = stubbed(cluster_doc(SOURCE_ID, "FIPS", "hsm1.medium",
                                    hsms=[hsm(1, cluster_id=SOURCE_ID, hsm_type="hsm1.medium"),
                                          hsm(2, cluster_id=SOURCE_ID, hsm_type="hsm1.medium")]),
                        cluster_id=SOURCE_ID)
    facts = read(source, client)
    checks = [c(source, facts) for c in (aws.check_active, aws.check_mode_and_type,
                                         aws.check_active_hsms)]
    assert [c.ok for c in checks] == [True] * 3
    assert all(isinstance(c, Check) and c.facts == {} and c.skip is None and c.warnings == ()
               for c in checks)
    rec = facts.record()
    assert rec["mode"] == "FIPS" and rec["hsm_type"] == "hsm1.medium" and rec["active_hsms"] == 2
    assert rec["hsms"][0] == {"HsmId": "hsm-1abcdefghij", "State": "ACTIVE",
                              "AvailabilityZone": f"{REGION}b", "EniIp": "10.0.1.17"}
    assert "Certificates" not in json.dumps(rec) and "MII" not in json.dumps(rec)


def test_a_wrong_mode_fails_naming_both():
    client, _ = stubbed(cluster_doc(mode="FIPS"))
    ok, msg = unpack(aws.check_mode_and_type(spec(mode="NON_FIPS"), read(spec(), client)))
    assert not ok
    assert msg == (f"hsm2m ({TARGET_ID}): Mode is FIPS but clusters.target.mode declares "
                   "NON_FIPS: fix the profile or point it at the right cluster")


def test_undeclared_hsm_type_is_not_compared_and_says_so():
    client, _ = stubbed(cluster_doc(hsm_type="hsm1.medium"))
    ok, msg = unpack(aws.check_mode_and_type(spec(hsm_type=None), read(spec(), client)))
    assert ok and "HsmType hsm1.medium (not declared: not compared)" in msg


@pytest.mark.parametrize("state", ["UNINITIALIZED", "DEGRADED"])
def test_a_cluster_that_is_not_active_fails_with_what_to_do(state):
    client, _ = stubbed(cluster_doc(state=state))
    ok, msg = unpack(aws.check_active(spec(), read(spec(), client)))
    assert not ok
    todo = "initialize it" if state == "UNINITIALIZED" else "an HSM or the cluster is impaired"
    assert msg.startswith(f"hsm2m ({TARGET_ID}) is {state} (") and todo in msg


def test_one_hsm_fails_the_availability_check():
    client, _ = stubbed(cluster_doc(hsms=[hsm(1)]))
    ok, msg = unpack(aws.check_active_hsms(spec(), read(spec(), client)))
    assert not ok
    assert msg.startswith(f"hsm2m ({TARGET_ID}) has 1 ACTIVE HSM(s), needs >= 2 "
                          f"(hsm-1abcdefghij ACTIVE {REGION}b)")
    assert "add an HSM in another Availability Zone" in msg


def test_an_hsm_that_is_not_active_does_not_count():
    client, _ = stubbed(cluster_doc(state="DEGRADED", hsms=[hsm(1), hsm(2, "DEGRADED")]))
    facts = read(spec(), client)
    assert facts.active_hsms == 1
    assert not aws.check_active_hsms(spec(), facts).ok


def test_min_active_hsms_1_disables_the_two_hsm_check_and_says_so():
    client, _ = stubbed(cluster_doc(hsms=[hsm(1)]))
    ok, msg = unpack(aws.check_active_hsms(spec(min_active=1), read(spec(), client)))
    assert ok and "the two-HSM availability check is disabled by the profile" in msg


def test_no_hsm_at_all():
    client, _ = stubbed(cluster_doc(state="INITIALIZED", hsms=[]))
    ok, msg = unpack(aws.check_active_hsms(spec(min_active=1), read(spec(), client)))
    assert not ok and "has 0 ACTIVE HSM(s), needs >= 1 (no HSMs)" in msg


# ---- errors: one table, each with what to do ----------------------------------------------------

@pytest.mark.parametrize(("code", "kind", "todo"), [
    ("CloudHsmAccessDeniedException", aws.AwsAccessDenied, "allow cloudhsmv2:DescribeClusters"),
    ("AccessDeniedException", aws.AwsAccessDenied, "allow cloudhsmv2:DescribeClusters"),
    ("CloudHsmResourceNotFoundException", aws.AwsClusterNotFound, "check aws.cluster_id"),
    ("UnrecognizedClientException", aws.AwsNoCredentials, "renew them"),
    ("CloudHsmInternalFailureException", aws.AwsCallFailed, "retry later"),
])
def test_an_error_response_becomes_a_keyparity_error(code, kind, todo):
    client, _ = stubbed(error=(code, "User: arn:aws:iam::123456789012:user/x is not allowed"))
    with pytest.raises(kind) as info:
        read(spec(), client)
    assert isinstance(info.value, aws.AwsError)
    assert str(info.value).startswith(f"DescribeClusters of {TARGET_ID} in {REGION} failed "
                                      f"({code}: User: arn:aws:iam::123456789012:user/x is not "
                                      "allowed): ")
    assert todo in str(info.value)


def test_an_unknown_cluster_id_is_not_found():
    client, _ = stubbed()  # AWS answers an unknown id in the filter with an empty list
    with pytest.raises(aws.AwsClusterNotFound, match=f"found no cluster {TARGET_ID} in "
                       f"{REGION}: check aws.cluster_id and aws.region"):
        read(spec(), client)


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    """An environment without any AWS credentials (and no instance metadata lookup)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return {k: v for k, v in __import__("os").environ.items()}


def test_no_credentials(no_aws_credentials):
    with pytest.raises(aws.AwsNoCredentials, match=r"\(NoCredentialsError: Unable to locate "
                       r"credentials\): give aws.profile, or provide credentials"):
        aws.describe(spec().aws)  # a real client, made from the spec: nothing to sign with


def test_an_aws_profile_that_does_not_exist(no_aws_credentials):
    with pytest.raises(aws.AwsNoCredentials, match="aws.profile names no profile"):
        aws.client_for(AwsSpec(cluster_id=TARGET_ID, region=REGION, profile="nope"))


def test_no_region():
    err = aws.error_for(bx.NoRegionError(), AwsSpec(cluster_id=TARGET_ID, region=""))
    assert isinstance(err, aws.AwsNoRegion) and str(err).endswith(": set aws.region in the profile")


def test_role_arn_is_assumed_through_sts(monkeypatch):
    role = "arn:aws:iam::123456789012:role/keyparity-readonly"
    real = boto3.session.Session.client
    stubs = []

    def client(self, name, *args, **kwargs):
        made = real(self, name, *args, **kwargs)
        if name == "sts":
            stub = Stubber(made)
            stub.add_response("assume_role", {
                "Credentials": {"AccessKeyId": "ASIAASSUMEDROLE0001", "SecretAccessKey": "s",
                                "SessionToken": "t", "Expiration": dt.datetime(2030, 1, 1)},
                "AssumedRoleUser": {"AssumedRoleId": "AROA0000:keyparity-preflight",
                                    "Arn": role}},
                {"RoleArn": role, "RoleSessionName": aws.SESSION_NAME})
            stub.activate()
            stubs.append(stub)
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCALLER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    hsm_client = aws.client_for(AwsSpec(cluster_id=TARGET_ID, region=REGION, role_arn=role))
    stubs[0].assert_no_pending_responses()
    assert hsm_client.meta.region_name == REGION
    assert hsm_client._request_signer._credentials.access_key == "ASIAASSUMEDROLE0001"


# ---- the suite, end to end ---------------------------------------------------------------------

CLUSTER_NODES = {f"suites/test_cluster.py::{t}[{role}]" for t in (
    "test_cluster_is_active", "test_cluster_mode_and_hsm_type_are_as_declared",
    "test_cluster_has_enough_active_hsms") for role in ("source-hsm1", "target-hsm2")}

# A plugin for the child pytest: keyparity.cloudhsm.aws.client_for answers from Stubber with the
# clusters in clusters.json (the product has no such hook; the test patches the module).
STUBBED_AWS = '''
import json, pathlib
import boto3
from botocore.stub import Stubber
import keyparity.cloudhsm.aws as kaws

CLUSTERS = json.loads(pathlib.Path(__file__).with_name("clusters.json").read_text())
CALLS = pathlib.Path(__file__).with_name("calls.log")


def client_for(spec):
    with CALLS.open("a") as f:
        f.write(spec.cluster_id + "\\n")
    client = boto3.client("cloudhsmv2", region_name=spec.region, aws_access_key_id="AKIDTEST",
                          aws_secret_access_key="test")
    stub = Stubber(client)
    stub.add_response("describe_clusters", {"Clusters": [CLUSTERS[spec.cluster_id]]},
                      {"Filters": {"clusterIds": [spec.cluster_id]}})
    stub.activate()
    client._keyparity_stub = stub
    return client


kaws.client_for = client_for
'''


@pytest.fixture
def cluster_suite(pytester):
    """A pytester directory with the cluster suite and its fixtures only."""
    (pytester.path / "suites").mkdir()
    shutil.copy(REPO / "suites" / "test_cluster.py", pytester.path / "suites")
    shutil.copytree(REPO / "fixtures", pytester.path / "fixtures")
    shutil.copy(REPO / "conftest.py", pytester.path / "conftest.py")
    (pytester.path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    return pytester


def validate_evidence(doc: dict[str, Any]) -> None:
    schema = json.loads(resources.files("keyparity.schemas").joinpath(
        "evidence.schema.json").read_text())
    Draft202012Validator(schema).validate(doc)


def outcomes(result) -> dict[str, str]:
    return {n: k.lower() for k, n in re.findall(r"^(PASSED|FAILED|ERROR) (suites/\S+)",
                                                  result.stdout.str(), re.M)}


def skipped(doc: dict[str, Any]) -> dict[str, str]:
    """The cluster suite's skipped tests and why, from the evidence."""
    return {t["nodeid"]: t["message"] for t in doc["tests"] if t["outcome"] == "skipped"
            and t["nodeid"].startswith("suites/test_cluster.py")}


def test_clusters_without_aws_block_are_skipped_as_declared_not_verified(lab, cluster_suite):
    """Nothing to check without an aws block: each test skips, saying why; none passes."""
    result = run_suites(cluster_suite, lab.profile([{"label": "k", "type": "aes", "size": 128}]))
    assert outcomes(result) == {}  # none passed, none failed
    doc = evidence(cluster_suite)
    why = skipped(doc)
    assert set(why) == CLUSTER_NODES
    assert all("declared, not verified (no aws block): nothing to check; add clusters." in m
               for m in why.values())
    for role in ("source", "target"):
        c = doc["clusters"][role]
        assert c["mode_source"] == "declared"
        assert c["verification"] == "declared, not verified (no aws block)"
        assert len(c["verification_checks"]) == 3
        assert all(v["outcome"] == "skipped" and "declared, not verified (no aws block)" in
                   v["message"] for v in c["verification_checks"].values())
    assert "mode" not in doc
    validate_evidence(doc)
    assert "keyparity: source: hsm1, FIPS (declared), token hsm1" in result.stdout.str()
    # without an aws block nothing is marked aws: -m "not aws" deselects none of them
    run_suites(cluster_suite, lab.profile([{"label": "k", "type": "aes", "size": 128}]),
               "-m", "not aws")
    assert set(skipped(evidence(cluster_suite))) == CLUSTER_NODES


def _aws_profile(lab, source: dict[str, Any], target: dict[str, Any],
                 environment: str = "test", **aws_extra: Any):
    path = lab.profile([{"label": "k", "type": "aes", "size": 128}], environment=environment)
    doc = yaml.safe_load(path.read_text())
    doc["clusters"]["source"].update(hsm_type="hsm1.medium", aws={
        "cluster_id": SOURCE_ID, "region": REGION, **aws_extra})
    doc["clusters"]["target"].update(hsm_type="hsm2m.medium", aws={
        "cluster_id": TARGET_ID, "region": REGION, **aws_extra})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    (path.parent / "clusters.json").write_text(json.dumps({SOURCE_ID: source, TARGET_ID: target},
                                                          default=str))
    return path


def _stub_aws(lab, cluster_suite) -> None:
    cluster_suite.makeconftest((REPO / "conftest.py").read_text() + STUBBED_AWS.replace(
        'pathlib.Path(__file__).with_name("clusters.json")', f'pathlib.Path("{lab.root}/clusters.json")'
    ).replace('pathlib.Path(__file__).with_name("calls.log")', f'pathlib.Path("{lab.root}/calls.log")'))


MODE_TESTS = {f"suites/test_cluster.py::test_cluster_mode_and_hsm_type_are_as_declared[{p}]"
              for p in ("source-hsm1", "target-hsm2")}


def test_in_production_a_declared_only_mode_fails_and_the_run_is_no_pass(lab, cluster_suite):
    """A production PASS needs each cluster's mode read from AWS: a cluster without an aws
    block fails its mode test (keyparity.policy.declared_only); its other tests still skip."""
    profile = lab.profile([{"label": "k", "type": "aes", "size": 128}], environment="production")
    result = run_suites(cluster_suite, profile)
    assert outcomes(result) == {n: "failed" for n in MODE_TESTS}
    out = result.stdout.str()
    for name, role, mode in (("hsm1", "source", "FIPS"), ("hsm2", "target", "NON_FIPS")):
        assert (f"{name}: production: its mode {mode} (clusters.{role}.mode) is only declared, "
                "and a production PASS needs it verified through AWS (DescribeClusters Mode "
                f"and HsmType): add clusters.{role}.aws") in out
    doc = evidence(cluster_suite)
    assert doc["summary"]["verdict"] == "FAIL"
    assert set(skipped(doc)) == CLUSTER_NODES - MODE_TESTS
    assert doc["clusters"]["source"]["mode_source"] == "declared"
    validate_evidence(doc)


def test_in_production_a_mode_verified_through_aws_passes(lab, cluster_suite):
    _stub_aws(lab, cluster_suite)
    src = cluster_doc(SOURCE_ID, "FIPS", "hsm1.medium",
                      hsms=[hsm(1, cluster_id=SOURCE_ID, hsm_type="hsm1.medium"),
                            hsm(2, cluster_id=SOURCE_ID, hsm_type="hsm1.medium")])
    tgt = cluster_doc(TARGET_ID, "NON_FIPS", "hsm2m.medium")
    for d in (src, tgt):
        d.pop("CreateTimestamp")
    result = run_suites(cluster_suite, _aws_profile(lab, src, tgt, environment="production"))
    assert outcomes(result) == {n: "passed" for n in CLUSTER_NODES}
    doc = evidence(cluster_suite)
    assert {doc["clusters"][r]["mode_source"] for r in ("source", "target")} == {"verified"}


def test_suite_verifies_modes_through_describe_clusters(lab, cluster_suite):
    _stub_aws(lab, cluster_suite)
    src = cluster_doc(SOURCE_ID, "FIPS", "hsm1.medium",
                      hsms=[hsm(1, cluster_id=SOURCE_ID, hsm_type="hsm1.medium"),
                            hsm(2, cluster_id=SOURCE_ID, hsm_type="hsm1.medium")])
    tgt = cluster_doc(TARGET_ID, "FIPS", "hsm2m.medium", hsms=[hsm(1)])  # wrong mode, one HSM
    for d in (src, tgt):
        d.pop("CreateTimestamp")  # JSON: the stub response need not carry a datetime
    result = run_suites(cluster_suite, _aws_profile(lab, src, tgt))
    assert outcomes(result) == {
        **{n: "passed" for n in CLUSTER_NODES},
        "suites/test_cluster.py::test_cluster_mode_and_hsm_type_are_as_declared[target-hsm2]":
            "failed",
        "suites/test_cluster.py::test_cluster_has_enough_active_hsms[target-hsm2]": "failed"}
    out = result.stdout.str()
    assert (f"hsm2 ({TARGET_ID}): Mode is FIPS but clusters.target.mode declares NON_FIPS"
            in out)
    assert f"hsm2 ({TARGET_ID}) has 1 ACTIVE HSM(s), needs >= 2" in out
    # one describe_clusters per cluster in the process, not one per test
    assert sorted((lab.root / "calls.log").read_text().split()) == sorted([SOURCE_ID, TARGET_ID])
    doc = evidence(cluster_suite)
    s, t = doc["clusters"]["source"], doc["clusters"]["target"]
    assert (s["mode_source"], s["aws"]["mode"], s["aws"]["hsm_type"], s["aws"]["state"],
            s["aws"]["active_hsms"]) == ("verified", "FIPS", "hsm1.medium", "ACTIVE", 2)
    assert s["verification"] == "verified: cloudhsmv2.describe_clusters"
    assert t["mode_source"] == "declared" and t["verification"].startswith("contradicted")
    assert doc["mode"] == {
        "hsm1": {"declared": "FIPS", "observed": "FIPS", "match": True,
                 "source": "cloudhsmv2.describe_clusters"},
        "hsm2": {"declared": "NON_FIPS", "observed": "FIPS", "match": False,
                 "source": "cloudhsmv2.describe_clusters"}}
    assert doc["summary"]["verdict"] == "FAIL"
    validate_evidence(doc)
    # the aws marker deselects exactly the tests that need AWS
    again = run_suites(cluster_suite, _aws_profile(lab, src, tgt), "-m", "not aws")
    assert "6 deselected" in again.stdout.str() and again.ret == 5  # nothing left to run


def test_suite_without_credentials_fails_each_test_with_what_to_do(lab, cluster_suite):
    env = {"AWS_CONFIG_FILE": str(lab.root / "none"), "AWS_SHARED_CREDENTIALS_FILE":
           str(lab.root / "none"), "AWS_EC2_METADATA_DISABLED": "true"}
    path = _aws_profile(lab, {}, {})
    mp = pytest.MonkeyPatch()
    try:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                     "AWS_PROFILE"):
            mp.delenv(name, raising=False)
        for k, v in env.items():
            mp.setenv(k, v)
        result = run_suites(cluster_suite, path)
    finally:
        mp.undo()
    assert set(outcomes(result).values()) == {"failed"} and len(outcomes(result)) == 6
    assert ("hsm2 (target): DescribeClusters of cluster-hsm2mnon02 in eu-central-1 failed "
            "(NoCredentialsError: Unable to locate credentials): give aws.profile"
            in result.stdout.str())
    doc = evidence(cluster_suite)
    assert doc["clusters"]["target"]["verification"].startswith("not verified: DescribeClusters")
