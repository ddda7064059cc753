"""A pytest plugin for suite runs in a child pytest (``-p aws_stub``): every cloudhsmv2 client
keyparity makes answers from the calls listed in ``$KP_FAKE_AWS`` (a JSON list of
``{"method", "response"}``, with ``"service": "kms"`` for a KMS call; every client of a service
is given every response of that service, in order, or with ``"cluster_id"`` only the clients of
that cluster's ``aws`` block), through botocore's Stubber on a real client, so each response is
validated against the service model. Timestamps in the file are ISO strings. A ``logs``
response may instead give ``"hsm_stream": {"hsm_id", "ops"}``: the HSM's audit log events of
``ops`` in the documented format (tests/helpers/hsm_audit.py), stamped when the client is made
(the end of the run: after the writes they show). Nothing else of keyparity is changed; no
request leaves the process."""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import boto3
from botocore.stub import Stubber

from keyparity.cloudhsm import aws

_TIMES = ("CreateTimestamp", "HsmTypeRollbackExpiration", "DeleteTimestamp", "CopyTimestamp",
          "EventTime")


def _times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: dt.datetime.fromisoformat(v) if k in _TIMES and isinstance(v, str)
                else _times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_times(v) for v in value]
    return value


def _response(call: dict[str, Any]) -> Any:
    made = call.get("hsm_stream")
    if made is None:
        return _times(call["response"])
    from hsm_audit import stream  # beside this file in the child's directory
    now = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1e6)
    return {"events": stream(made["hsm_id"], now - 2_000_000, made["ops"])}


def pytest_configure(config: Any) -> None:
    case = os.environ.get("KP_FAKE_AWS")
    if not case:
        return
    calls = json.loads(Path(case).read_text())

    def client_for(spec: Any, service: str = "cloudhsmv2") -> Any:
        client = boto3.client(service, region_name=spec.region,
                              aws_access_key_id="AKIATESTTESTTESTTEST",
                              aws_secret_access_key="test-secret-not-used")
        stub = Stubber(client)
        for call in calls:
            if call.get("service", "cloudhsmv2") == service and call.get(
                    "cluster_id", spec.cluster_id) == spec.cluster_id:
                stub.add_response(call["method"], _response(call))
        stub.activate()
        client.keyparity_stub = stub  # kept alive with the client
        return client

    aws.client_for = client_for
