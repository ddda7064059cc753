"""The time-stamp checks that need no TSA process: a token is refused unless the TSA's certificate
carries the critical id-kp-timeStamping EKU (RFC 3161 §2.3), and the local TSA
(keyparity.trust.tsa) answers what it cannot read with a rejection, never a token."""
from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder, decode_timestamp_response
from securesystemslib.signer import CryptoSigner

from keyparity.attest.statement import ENVELOPE, TOKENS, sign_run
from keyparity.attest.verify import verify_run
from keyparity.trust.pki import issue_certificate, make_ca, make_key, write_pem
from keyparity.trust.tsa import respond

RUN_ID = "20261207T200000Z-7e57a2"
NOW = dt.datetime.now(dt.timezone.utc)


def tsa_certificate(eku, critical: bool):
    root, root_key = make_ca("unit TSA root")
    key = make_key()
    cert = issue_certificate(key, "unit TSA", root, root_key, NOW - dt.timedelta(days=1),
                             NOW + dt.timedelta(days=30), eku=eku, eku_critical=critical)
    return root, cert, key


def stamped_run(tmp_path, cert, key):
    signer = CryptoSigner.generate_ecdsa()
    run = tmp_path / RUN_ID
    run.mkdir()
    (run / "evidence.json").write_text("{}\n")
    sign_run(run, [signer], {"run_id": RUN_ID, "threshold": 1,  # a bundle as self-contained
                             "contents": {"profile": {"file": "evidence.json"}}})  # as a run's
    sig = json.loads((run / ENVELOPE).read_text())["signatures"][0]
    request = (TimestampRequestBuilder().data(base64.b64decode(sig["sig"]))
               .hash_algorithm(HashAlgorithm.SHA256).build())
    token = respond(request.as_bytes(), cert, key)
    (run / TOKENS).write_text(json.dumps({"tokens": [{
        "keyid": sig["keyid"], "hash": "sha256", "tsa": "http://unit",
        "token": base64.b64encode(token).decode()}]}))
    return run, signer


@pytest.mark.parametrize("eku, critical, why", [
    ([ExtendedKeyUsageOID.TIME_STAMPING], True, None),
    (None, False, "does not contain the critical EKU extension"),
    ([ExtendedKeyUsageOID.TIME_STAMPING], False, "The EKU extension is not critical"),
    ([ExtendedKeyUsageOID.CODE_SIGNING], True, "does not have KeyPurposeID id-kp-timeStamping"),
], ids=["timeStamping", "no-eku", "not-critical", "code-signing"])
def test_a_token_needs_the_critical_timestamping_eku(tmp_path, eku, critical, why):
    root, cert, key = tsa_certificate(eku, critical)
    run, signer = stamped_run(tmp_path, cert, key)
    write_pem(tmp_path / "root.pem", root)

    result = verify_run(run, [signer.public_key], tsa_roots=[tmp_path / "root.pem"])

    if why is None:
        assert result.ok and len(result.time_stamps) == 1, result.problems
        assert result.time_stamps[0]["tsa"] == "unit TSA"
    else:
        assert not result.ok and result.time_stamps == []
        # refused by OpenSSL's purpose check of the chain (the rust binding asks for
        # timeStamping), else by rfc3161-client's own EKU check
        assert len(result.problems) == 1 and any(
            reason in result.problems[0] for reason in (why, "unsuitable certificate purpose")
        ), result.problems


def test_the_local_tsa_rejects_what_it_cannot_read():
    _, cert, key = tsa_certificate([ExtendedKeyUsageOID.TIME_STAMPING], True)
    answer = decode_timestamp_response(respond(b"\x30\x03\x02\x01\x01", cert, key))
    assert answer.status == 2  # rejection (RFC 3161 PKIStatus), and no token with it
