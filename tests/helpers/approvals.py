"""Signed approvals for a test lab's profile (keyparity.attest.signoff), made as `keyparity
approve` makes them, by a lab approver whose key is made once in the lab: the wrap exception of
the keys SoftHSM's chain (RSA-2048, OAEP-SHA-1: 112 bits) is weaker than, and in production the
non-FIPS approval. Tests of the rules themselves edit or drop what this writes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from keyparity import strength
from keyparity.attest import signoff
from keyparity.attest.custodians import file_custodian
from keyparity.errors import KeyparityError
from keyparity.policy import is_fips_to_non_fips
from keyparity.profile import Profile, SignerSpec, load_profile

APPROVER = "lab-approver"
FIELDS: dict[str, dict[str, Any]] = {
    signoff.WRAP: {"reason": "test lab: SoftHSM 2.6 wraps with OAEP-SHA-1 only",
                   "ticket": "LAB-1"},
    signoff.NON_FIPS: {"reason": "test lab: keys move to a NON_FIPS cluster", "ticket": "LAB-2",
                       "risk_assessment": "LAB-RA-1",
                       "compensating_controls": ["the lab is on one host"],
                       "target_certification": "none: SoftHSM"},
}


def needed(profile: Profile) -> list[str]:
    """The kinds of approval a run of ``profile`` needs."""
    kinds = []
    if any(strength.weaker(k, profile.wrapping) for k in signoff.moving(profile)):
        kinds.append(signoff.WRAP)
    if profile.environment == "production" and is_fips_to_non_fips(profile):
        kinds.append(signoff.NON_FIPS)
    return kinds


def approver(root: Path) -> tuple[Path, Path]:
    """The lab approver's private and public key (made once)."""
    public = file_custodian(root / "evidence", APPROVER)
    return root / "evidence" / f"{APPROVER}.key.pem", public


def sign(root: Path, path: Path, kinds: list[str] | None = None) -> list[Path]:
    """Sign the approvals the profile at ``path`` needs (or ``kinds``), and name them (and the
    lab approver) in its ``compliance``; a profile keyparity refuses is left as it is."""
    try:
        profile = load_profile(path)
    except KeyparityError:
        return []
    kinds = needed(profile) if kinds is None else kinds
    if not kinds:
        return []
    private, public = approver(root)
    doc = yaml.safe_load(path.read_text())
    files = [root / "approvals" / f"{profile.name}-{kind}.dsse.json" for kind in kinds]
    doc["compliance"] = {**(doc.get("compliance") or {}),
                         "approvers": [{"name": APPROVER, "public_key": str(public)}],
                         "approvals": [str(f) for f in files]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    profile = load_profile(path)
    from keyparity.attest.signing import load_signer, public_key_from_pem
    signer = load_signer(SignerSpec(APPROVER, "file", path=private), {}, None)
    key = public_key_from_pem(public.read_bytes())
    for kind, out in zip(kinds, files):
        out.unlink(missing_ok=True)
        signoff.write(signoff.draft(profile, kind, APPROVER, FIELDS[kind]), signer, key, out)
    return files
