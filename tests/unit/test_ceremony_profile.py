"""The ceremony's profile is the embedded demo's (hsm_profiles/softhsm.yaml) signed by people:
the same tokens, keys, roles, wrapping and compliance, only its name, its approvals' files and
its evidence block (an operator, certificates, a threshold of three) differ. Two copies of one
profile drift; this keeps them one."""
from __future__ import annotations

import yaml
from conftest import REPO

PROFILES = REPO / "hsm_profiles"
OWN = {"name", "description", "evidence"}


def load(name: str) -> dict:
    return yaml.safe_load((PROFILES / f"{name}.yaml").read_text("utf-8"))


def test_the_ceremony_profile_is_the_demo_profile_but_for_its_signers():
    demo, ceremony = load("softhsm"), load("softhsm-ceremony")
    assert ceremony["name"] == "softhsm-ceremony"
    approvals = [p.replace("/softhsm-", "/softhsm-ceremony-")
                 for p in demo["compliance"]["approvals"]]
    assert ceremony["compliance"] == {**demo["compliance"], "approvals": approvals}
    assert {k: v for k, v in ceremony.items() if k not in OWN | {"compliance"}} == \
        {k: v for k, v in demo.items() if k not in OWN | {"compliance"}}
    evidence = ceremony["evidence"]
    assert evidence["operator"] in [s["name"] for s in evidence["signers"]]
    assert all(s.get("certificate") for s in evidence["signers"])
    assert evidence["threshold"] == len(evidence["signers"]) == 3
