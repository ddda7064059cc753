"""Evidence signer keys as the docs promise them: ECDSA P-384, one per custodian, held to the
PIN-file rules; a run whose bundle could not be signed does not start (it ended UNSIGNED after
every write). Real SoftHSM tokens, the real suites."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import evidence, run_suites
from test_bad_input import edit_profile

AES = {"label": "k-aes128", "type": "aes", "size": 128}


def key_file(path: Path, key: Any) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def one_error(result: Any) -> str:
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert result.ret == 4 and len(errors) == 1, result.stdout.str() + result.stderr.str()
    return errors[0]


@pytest.mark.parametrize("kind", ["P-256", "RSA-2048"])
def test_a_signer_key_that_is_not_p384_stops_the_run_before_it_starts(lab, suites, kind):
    lab.seed([AES])
    key = (ec.generate_private_key(ec.SECP256R1()) if kind == "P-256"
           else rsa.generate_private_key(public_exponent=65537, key_size=2048))
    path = key_file(lab.root / "custodian.pem", key)
    profile = lab.profile([AES], evidence={"signers": [{"name": "c1", "type": "file",
                                                        "path": str(path)}]})
    error = one_error(run_suites(suites, profile))
    said = "is an EC secp256r1 key" if kind == "P-256" else "is not an EC key (RSA)"
    assert f"evidence.signers: evidence signer c1: {path} {said}; an evidence signer's key is " \
           "ECDSA P-384" in error, error
    assert lab.tokens({"op": "count", "token": "hsm2"}) == [0]
    assert not (suites.path / "reports").exists()


def test_two_copies_of_one_key_under_two_names_stop_the_run_before_it_starts(lab, suites):
    """Two paths the profile cannot tell apart: the run's start loads the signers and sees one
    key id."""
    lab.seed([AES])
    one = key_file(lab.root / "one.pem", ec.generate_private_key(ec.SECP384R1()))
    two = lab.root / "two.pem"
    shutil.copy(one, two)
    two.chmod(0o600)
    profile = lab.profile([AES], evidence={"signers": [
        {"name": "c1", "type": "file", "path": str(one)},
        {"name": "c2", "type": "file", "path": str(two)}]})
    error = one_error(run_suites(suites, profile))
    assert "evidence signers c1 and c2 use the same key (keyid" in error, error
    assert lab.tokens({"op": "count", "token": "hsm2"}) == [0]


def test_a_signer_key_others_may_read_is_refused_in_production_and_warned_of_in_test(
        lab, suites):
    lab.seed([AES])
    key = key_file(lab.root / "custodian.pem", ec.generate_private_key(ec.SECP384R1()))
    key.chmod(0o644)
    signed = {"signers": [{"name": "c1", "type": "file", "path": str(key)}]}
    result = run_suites(suites, lab.profile([AES], evidence=signed))
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([f"keyparity: WARNING: evidence.signers[0].path: {key} is "
                                 "readable by others (mode 0644): chmod 600 it (a production "
                                 "profile refuses it)"])
    assert {f["field"]: f["ok"] for f in evidence(suites)["run"]["secret_files"]}[
        "evidence.signers[0].path"] is False
    production = edit_profile(lab.profile([AES], name="prod", evidence=signed),
                              lambda d: d.update(environment="production"))
    error = one_error(run_suites(suites, production))
    assert (f"evidence.signers[0].path: secret file {key} is readable by others (mode 0644): a "
            f"production profile refuses it; chmod 600 {key}") in error, error
