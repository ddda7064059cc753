"""keyparity.cloudhsm.kms_stores: DescribeCustomKeyStores through a real kms client whose
responses come from botocore's Stubber (validated against the KMS service model), the two-HSM /
two-AZ rule for CONNECTED stores, kmsuser keys in the census, and the error table."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from conftest import TESTDATA
from keyparity.cloudhsm import aws, kms_stores
from keyparity.cloudhsm.aws import ClusterFacts
from keyparity.cloudhsm.kms_stores import Store

REGION = "eu-central-1"
SRC, TGT, OTHER = "cluster-jxhlf7644ne", "cluster-5ypa2wnddvi", "cluster-igklspoyj5v"
DATA = TESTDATA / "cloudhsm_cli"
CA = json.loads((DATA / "mtls_target_off.json").read_text())[
    "cluster mtls list-trust-anchors --cluster-id cluster-src1"]["data"]["trust_anchors"][0][
    "certificate"]
SHA_CA = "c6b79af4125c5b40a8e6a830d54279416bb7397ea0975631ce8097efebfb712c"  # openssl, DER


def store_doc(sid: str, cluster: str | None = SRC, state: str = "CONNECTED",
              kind: str = "AWS_CLOUDHSM", **extra: Any) -> dict[str, Any]:
    """A DescribeCustomKeyStores entry as KMS returns it (the shape Stubber checks)."""
    doc: dict[str, Any] = {"CustomKeyStoreId": sid, "CustomKeyStoreName": f"name-{sid}",
                           "ConnectionState": state, "CustomKeyStoreType": kind,
                           "CreationDate": dt.datetime(2025, 6, 1, 8, 0, tzinfo=dt.timezone.utc),
                           **extra}
    if kind == "AWS_CLOUDHSM":
        doc.update(CloudHsmClusterId=cluster, TrustAnchorCertificate=CA)
    else:
        doc["XksProxyConfiguration"] = {"Connectivity": "PUBLIC_ENDPOINT",
                                        "AccessKeyId": "ABCDEFGHIJKLMNOPQRST",
                                        "UriEndpoint": "https://xks.example.com",
                                        "UriPath": "/kms/xks/v1"}
    return doc


def kms(*pages: list[dict[str, Any]]) -> tuple[Any, Stubber]:
    client = boto3.client("kms", region_name=REGION, aws_access_key_id="AKIDTEST",
                          aws_secret_access_key="test")
    stub = Stubber(client)
    for i, page in enumerate(pages):
        response: dict[str, Any] = {"CustomKeyStores": page, "Truncated": i < len(pages) - 1}
        if i < len(pages) - 1:
            response["NextMarker"] = f"marker-{i + 1}"
        stub.add_response("describe_custom_key_stores", response,
                          {"Marker": f"marker-{i}"} if i else {})
    stub.activate()
    return client, stub


def cluster(cid: str, *hsms: tuple[str, str]) -> ClusterFacts:
    """ClusterFacts with HSMs given as (state, availability zone)."""
    return ClusterFacts(cid, REGION, "ACTIVE", None, "hsm2m.medium", "NON_FIPS",
                        tuple({"HsmId": f"hsm-{i}abcdefghij", "State": state,
                               "AvailabilityZone": az} for i, (state, az) in enumerate(hsms)))


TWO_AZ = (("ACTIVE", f"{REGION}a"), ("ACTIVE", f"{REGION}b"))


def store(sid: str = "cks-1", cluster_id: str = SRC, state: str = "CONNECTED",
          code: str | None = None) -> Store:
    return Store(sid, f"name-{sid}", cluster_id, state, code)


# ---- reading -----------------------------------------------------------------------------------

def test_stores_for_pages_through_and_keeps_only_cloudhsm_stores_of_these_clusters():
    client, stub = kms([store_doc("cks-1"), store_doc("cks-xks", kind="EXTERNAL_KEY_STORE")],
                       [store_doc("cks-other", OTHER),
                        store_doc("cks-2", TGT, "FAILED", ConnectionErrorCode="USER_LOGGED_IN")])
    stores = kms_stores.stores_for(client, [SRC, TGT])
    stub.assert_no_pending_responses()
    assert [s.store_id for s in stores] == ["cks-1", "cks-2"]
    assert stores[1] == Store("cks-2", "name-cks-2", TGT, "FAILED", "USER_LOGGED_IN",
                              "2025-06-01T08:00:00+00:00", (SHA_CA,))
    rec = stores[0].record()
    assert rec["trust_anchor_sha256"] == [SHA_CA] and rec["connection_error_code"] is None
    assert rec["source"] == "kms.describe_custom_key_stores" and "BEGIN" not in json.dumps(rec)


@pytest.mark.parametrize(("code", "kind", "todo"), [
    ("AccessDeniedException", aws.AwsAccessDenied,
     "allow kms:DescribeCustomKeyStores for these credentials (it is read-only)"),
    ("ExpiredTokenException", aws.AwsNoCredentials, "the session token has expired"),
    ("KMSInternalException", aws.AwsCallFailed, "KMS failed internally: retry later"),
    ("ThrottlingException", aws.AwsCallFailed, "retry later; if it persists"),
])
def test_a_failed_call_becomes_an_aws_error_with_what_to_do(code, kind, todo):
    client = boto3.client("kms", region_name=REGION, aws_access_key_id="AKIDTEST",
                          aws_secret_access_key="test")
    with Stubber(client) as stub:
        stub.add_response("describe_custom_key_stores", {"CustomKeyStores": [store_doc("cks-1")],
                                                         "NextMarker": "m1", "Truncated": True})
        stub.add_client_error("describe_custom_key_stores", code, "nope", 400,
                              expected_params={"Marker": "m1"})
        with pytest.raises(kind) as info:
            kms_stores.stores_for(client, [SRC])
    assert str(info.value).startswith(f"DescribeCustomKeyStores in {REGION} failed ({code}: "
                                      "nope): ")
    assert todo in str(info.value) and "cloudhsmv2" not in str(info.value)


# ---- the two-HSM rule --------------------------------------------------------------------------

def test_a_connected_store_on_two_active_hsms_in_two_zones_passes():
    check = kms_stores.check_stores([store()], {SRC: cluster(SRC, *TWO_AZ)})
    assert check.ok and check.warnings == () and check.name == "kms_stores"
    assert check.message == ("KMS key stores on these clusters: name-cks-1 (cks-1) CONNECTED on "
                             f"{SRC}")
    rec = check.facts["custom_key_stores"][0]
    assert (rec["active_hsms"], rec["active_hsm_zones"]) == (2, [f"{REGION}a", f"{REGION}b"])


def test_a_connected_store_on_one_hsm_fails():
    check = kms_stores.check_stores([store()], {SRC: cluster(SRC, ("ACTIVE", f"{REGION}a"))})
    assert not check.ok
    assert check.message == (
        f"KMS key store name-cks-1 (cks-1) is CONNECTED to {SRC}, which has 1 ACTIVE HSM(s) in "
        f"{REGION}a: AWS KMS needs at least two ACTIVE HSMs in different Availability Zones to "
        f"create keys in it; add an HSM in another Availability Zone (aws cloudhsmv2 create-hsm "
        f"--cluster-id {SRC} --availability-zone ...) before migrating")


@pytest.mark.parametrize("hsms", [
    (("ACTIVE", f"{REGION}a"), ("ACTIVE", f"{REGION}a"), ("ACTIVE", f"{REGION}a")),  # one AZ
    (("ACTIVE", f"{REGION}a"), ("DEGRADED", f"{REGION}b")),  # the second AZ's HSM not ACTIVE
    (),
])
def test_a_connected_store_without_two_active_hsms_in_two_zones_fails(hsms):
    check = kms_stores.check_stores([store()], {SRC: cluster(SRC, *hsms)})
    assert not check.ok and "needs at least two ACTIVE HSMs in different" in check.message


def test_a_disconnected_store_is_recorded_not_failed():
    check = kms_stores.check_stores([store(state="DISCONNECTED")],
                                    {SRC: cluster(SRC, ("ACTIVE", f"{REGION}a"))})
    assert check.ok and check.warnings == ()
    assert check.facts["custom_key_stores"][0]["connection_state"] == "DISCONNECTED"
    assert "DISCONNECTED on" in check.message


def test_a_failed_store_warns_with_its_error_code_and_connecting_asks_to_read_again():
    check = kms_stores.check_stores(
        [store(state="FAILED", code="USER_LOCKED_OUT"), store("cks-2", TGT, "CONNECTING")],
        {SRC: cluster(SRC, *TWO_AZ), TGT: cluster(TGT, *TWO_AZ)})
    assert check.ok
    assert check.warnings == (
        f"KMS key store name-cks-1 (cks-1) on {SRC} failed to connect (USER_LOCKED_OUT): its KMS "
        "keys are unavailable; see Troubleshooting a custom key store (KMS guide)",
        f"KMS key store name-cks-2 (cks-2) on {TGT} is CONNECTING: read again when it is "
        "CONNECTED or DISCONNECTED")
    assert check.facts["custom_key_stores"][0]["connection_error_code"] == "USER_LOCKED_OUT"


def test_a_connected_store_on_a_cluster_not_read_fails_and_no_store_passes():
    check = kms_stores.check_stores([store(cluster_id=OTHER)], {SRC: cluster(SRC, *TWO_AZ)})
    assert not check.ok and f"CONNECTED to {OTHER}, which was not read" in check.message
    none = kms_stores.check_stores([], {SRC: cluster(SRC)})
    assert none.ok and none.message == "KMS key stores on these clusters: none"
    assert none.facts == {"custom_key_stores": []}


# ---- kmsuser -----------------------------------------------------------------------------------

def test_keys_owned_by_kmsuser_cannot_move_by_wrap():
    assert kms_stores.classify("kmsuser") == "KMS custom key store, cannot move by wrap"
    assert kms_stores.classify("KMSUser ") == kms_stores.KMS_DISPOSITION
    assert kms_stores.classify("cu1") is None and kms_stores.classify("kmsuser2") is None


def test_the_run_never_logs_in_as_kmsuser():
    why = kms_stores.refuse_kmsuser("kmsuser")
    assert why is not None and why.startswith("keyparity never logs in as kmsuser")
    assert "USER_LOGGED_IN" in why and "USER_LOCKED_OUT" in why
    assert kms_stores.refuse_kmsuser("KmsUser") == why
    assert kms_stores.refuse_kmsuser("cu1") is None and kms_stores.refuse_kmsuser(None) is None


@pytest.mark.parametrize(("related", "follow"), [
    (True, "yes: the target shares the source's backup history"),
    (False, "no: the target does not share the source's backup history, so UpdateCustomKeyStore "
            "refuses it (CloudHsmClusterNotRelatedException)"),
    (None, "not known")])
def test_kms_facts_say_whether_a_source_store_can_follow(related, follow):
    facts = kms_stores.kms_facts([store(), store("cks-2", TGT), store("cks-3", OTHER)], SRC, TGT,
                                 related)
    assert (facts["on_source"], facts["on_target"]) == (["cks-1"], ["cks-2"])
    assert facts["store_can_follow_to_target"] == follow
    assert facts["kmsuser"]["disposition"] == kms_stores.KMS_DISPOSITION
    assert facts["what_to_do"] == kms_stores.what_to_do()
    assert len(facts["custom_key_stores"]) == 3


def test_kms_facts_without_a_source_store_and_what_to_do():
    facts = kms_stores.kms_facts([store("cks-2", TGT)], SRC)
    assert facts["on_source"] == [] and facts["on_target"] == []
    assert facts["store_can_follow_to_target"] is None
    todo = kms_stores.what_to_do()
    assert "CloudHsmClusterNotRelatedException" in todo and "re-encrypt" in todo
    assert "UpdateCustomKeyStore" in todo
