"""A pytest plugin for suite runs in a child pytest (``-p aws_stub``): every cloudhsmv2 client
keyparity makes answers from the calls listed in ``$KP_FAKE_AWS`` (a JSON list of
``{"method", "response"}``, with ``"service": "kms"`` for a KMS call; every client of a service
is given every response of that service, in order), through botocore's Stubber on a real client, so each response is
validated against the service model. Timestamps in the file are ISO strings. Nothing else of
keyparity is changed; no request leaves the process."""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import boto3
from botocore.stub import Stubber

from keyparity.cloudhsm import aws

_TIMES = ("CreateTimestamp", "HsmTypeRollbackExpiration", "DeleteTimestamp", "CopyTimestamp")


def _times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: dt.datetime.fromisoformat(v) if k in _TIMES and isinstance(v, str)
                else _times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_times(v) for v in value]
    return value


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
            if call.get("service", "cloudhsmv2") == service:
                stub.add_response(call["method"], _times(call["response"]))
        stub.activate()
        client.keyparity_stub = stub  # kept alive with the client
        return client

    aws.client_for = client_for
