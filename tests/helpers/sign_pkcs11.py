"""Child process for tests/token/test_signing.py: the pkcs11 evidence signer on a real SoftHSM token
(SoftHSM reads SOFTHSM2_CONF once per process, and every test has token directories of its own).

    python sign_pkcs11.py SPEC.json      with SOFTHSM2_CONF set to the lab's

SPEC.json: {"lab": dir, "evidence_dir": dir, "profile": path, "run_dir": dir,
            "payload_hex": hex, "state": path}
  1. makes the demo's token custodian in the lab (keyparity.attest.custodians.token_custodian: an
     EC P-384 key generated inside the token "custodian", non-extractable) and exports its
     public key;
  2. loads the profile's evidence signers (file + pkcs11) through a LoginGate, signs the
     payload with the pkcs11 signer alone, then signs the run directory with both;
  3. reports what the token says about the private key, and how a missing key label and a
     wrong PIN fail.
Prints one JSON object.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pkcs11.exceptions as p11
from pkcs11 import Attribute

from keyparity.attest.custodians import token_custodian
from keyparity.hsm.cluster import close_clusters
from keyparity.errors import KeyparityError, LoginError
from keyparity.hsm.login import LoginGate
from keyparity.profile import load_profile
from keyparity.secrets import SecretRef
from keyparity.attest.signing import Pkcs11Signer, close_signers, load_signer, load_signers
from keyparity.attest.statement import sign_run


def error(call) -> dict:
    try:
        call()
    except KeyparityError as exc:
        return {"type": type(exc).__name__, "message": str(exc),
                "login": isinstance(exc, LoginError)}
    return {"type": None, "message": "", "login": False}


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    lab, evidence_dir = Path(spec["lab"]), Path(spec["evidence_dir"])
    public_pem = token_custodian(lab, evidence_dir, "custodian-2")
    profile = load_profile(spec["profile"])
    gate = LoginGate(Path(spec["state"]))
    signers = load_signers(profile.evidence, profile.module_env, gate)
    out: dict = {"public_pem": str(public_pem),
                 "signers": [type(s).__name__ for s in signers]}
    try:
        token_signer = next(s for s in signers if isinstance(s, Pkcs11Signer))
        sig = token_signer.sign(bytes.fromhex(spec["payload_hex"]))
        out["payload_signature"] = {"keyid": sig.keyid, "sig": sig.signature}
        private = token_signer._private_key  # noqa: SLF001 - reading its attributes only
        out["private_key"] = {name: bool(private[getattr(Attribute, name.upper())])
                              for name in ("sensitive", "extractable", "never_extractable",
                                           "always_sensitive", "sign")}
        try:
            private[Attribute.VALUE]
            out["private_key"]["value"] = "READABLE"
        except p11.PKCS11Error as exc:
            out["private_key"]["value"] = type(exc).__name__
        out["envelope"] = str(sign_run(Path(spec["run_dir"]), signers,
                                           {"run_id": Path(spec["run_dir"]).name,
                                            "threshold": len(signers)}))
    finally:
        close_signers(signers)

    pkcs11_spec = next(s for s in profile.evidence.signers if s.type == "pkcs11")
    missing = dataclasses.replace(pkcs11_spec, key_label="no-such-key")
    out["missing_key"] = error(lambda: load_signer(missing, profile.module_env, None))
    close_clusters()  # as a new process: the token is not logged in to any more
    wrong_pin = lab / "wrong.pin"
    wrong_pin.write_text("0000000000000000\n")
    bad = dataclasses.replace(pkcs11_spec, pin=SecretRef("file", str(wrong_pin),
                                                         "evidence.signers[1].pin"))
    bad_gate = LoginGate(Path(spec["state"]).with_name("bad-login.json"))
    out["wrong_pin"] = error(lambda: load_signer(bad, profile.module_env, bad_gate))
    out["wrong_pin_again"] = error(lambda: load_signer(bad, profile.module_env, bad_gate))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
