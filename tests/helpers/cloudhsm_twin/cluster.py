"""``cluster mtls get-enforcement`` and ``cluster mtls list-trust-anchors``
(cloudhsm_cli-cluster-mtls-get-enforcement: admins and crypto users; ``{"mtls-enforcement-
level": "none"}``; cloudhsm_cli-cluster-mtls-list-trust-anchors: all users, ``{"trust_anchors":
[{"certificate-reference", "certificate", "cluster-coverage"}]}``), on hsm2m.medium only."""
from __future__ import annotations

from typing import Any

from . import rules
from .state import State


def get_enforcement(state: State, hsm_type: str) -> dict[str, Any]:
    rules.mtls_supported(hsm_type)
    return {"mtls-enforcement-level": state.get("mtls_enforcement", "none")}


def list_trust_anchors(state: State, hsm_type: str) -> dict[str, Any]:
    rules.mtls_supported(hsm_type)
    return {"trust_anchors": [{"certificate-reference": f"0x{ref:02x}", "certificate": pem,
                               "cluster-coverage": "full"} for ref, pem in state.anchors()]}
