"""The native mechanism's profile (hsm_profiles/softhsm-native.yaml, ``./run demo native``) is
the embedded demo's (hsm_profiles/softhsm.yaml) with every PKCS #11 module being the forwarding
module (native/p11forward), which forwards to the demo's SoftHSM: the same tokens, keys,
roles, wrapping, compliance and signers; only its name, its description, its approvals' files,
its module lines and the module's target differ. Two copies of one profile drift; this keeps
them one."""
from __future__ import annotations

from typing import Any

import yaml
from conftest import REPO, demo_profile_copy

from keyparity.profile import load_profile

PROFILES = REPO / "hsm_profiles"
FORWARDER = "../.keyparity/native/libp11forward.so"  # where ./run builds it


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((PROFILES / f"{name}.yaml").read_text("utf-8"))


def modules(doc: dict[str, Any]) -> list[str]:
    """Every PKCS #11 module the profile loads: its clusters' and its token signers'."""
    return [c["module"] for c in doc["clusters"].values()] + [
        s["module"] for s in doc["evidence"]["signers"] if s["type"] == "pkcs11"]


def forwarded(demo: dict[str, Any]) -> dict[str, Any]:
    """The demo profile as the native one must be, but for its name and description."""
    softhsm = set(modules(demo))
    assert len(softhsm) == 1  # one SoftHSM, which the forwarding module stands in front of
    doc = yaml.safe_load(yaml.safe_dump(demo))
    for block in [*doc["clusters"].values(), *doc["evidence"]["signers"]]:
        if "module" in block:
            block["module"] = FORWARDER
    doc["module_env"]["KEYPARITY_P11_TARGET"] = softhsm.pop()
    doc["compliance"]["approvals"] = [p.replace("/softhsm-", "/softhsm-native-")
                                      for p in demo["compliance"]["approvals"]]
    return doc


def test_the_native_profile_is_the_demo_profile_through_the_forwarding_module():
    demo, native = load("softhsm"), load("softhsm-native")
    assert native["name"] == "softhsm-native"
    assert native["description"] != demo["description"]
    own = {"name", "description"}
    assert {k: v for k, v in native.items() if k not in own} == \
        {k: v for k, v in forwarded(demo).items() if k not in own}
    # SoftHSM's OAEP takes only SHA-1: the native run shows CKM_RSA_AES_KEY_WRAP with SHA-1
    assert (native["wrapping"]["oaep_hash"], native["wrapping"]["mgf"]) == ("sha1", "mgf1-sha1")


def test_the_native_profile_loads(tmp_path):
    """module_env may set the forwarding module's target (keyparity.module_env.ALLOWED)."""
    profile = load_profile(demo_profile_copy("softhsm-native", tmp_path))
    assert profile.module_env["KEYPARITY_P11_TARGET"] == "/usr/lib/softhsm/libsofthsm2.so"
    assert {str(c.module) for c in (profile.source, profile.target)} == {
        str(tmp_path / ".keyparity" / "native" / "libp11forward.so")}
