"""Check values in a run's bundle: an AES key shows its CMAC check value (ANSI X9.24-1:2017;
AWS Payment Cryptography KeyCheckValueAlgorithm CMAC) beside the legacy ECB one, each labelled,
on both clusters, in evidence.json and report.html; a TDES key its ANSI X9.24 value. The AES key
is of known value, so both are checked against an independent implementation: red when only
the ECB value is shown (the method a payment HSM does not show for AES)."""
from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from conftest import evidence, run_suites
from test_aws import validate_evidence

VALUE = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")  # SP 800-38B's example key
# imported with SoftHSM's default usage (it may sign and wrap too): no role, usage not checked
AES = {"label": "k-aes-known", "type": "aes", "size": 128}
DES3 = {"label": "k-des3", "type": "des3", "role": "pin"}


def cmac_zero(key: bytes) -> str:
    mac = CMAC(algorithms.AES(key))
    mac.update(bytes(16))
    return mac.finalize()[:3].hex()


def test_an_aes_key_shows_its_cmac_check_value_beside_the_legacy_one(lab, suites):
    lab.tokens({"op": "import-aes", "token": "hsm1", "label": AES["label"],
                "value_hex": VALUE.hex()})
    lab.seed([DES3])
    result = run_suites(suites, lab.profile([AES, DES3]))
    doc = evidence(suites)
    validate_evidence(doc)
    assert doc["keys"]["k-aes-known"]["verdict"] == "passed", result.stdout.str()
    ecb = Cipher(algorithms.AES(VALUE), modes.ECB()).encryptor().update(bytes(16))[:3].hex()
    shown = {(c["algorithm"], c["cluster"]): c["value"]
             for c in doc["keys"]["k-aes-known"]["check_values"]}
    assert shown == {("ECB (legacy; CloudHSM's check-value)", "hsm1"): ecb,
                     ("ECB (legacy; CloudHSM's check-value)", "hsm2"): ecb,
                     ("CMAC", "hsm1"): cmac_zero(VALUE), ("CMAC", "hsm2"): cmac_zero(VALUE)}
    tdes = doc["keys"]["k-des3"]["check_values"]
    assert {c["algorithm"] for c in tdes} == {"ANSI_X9_24"}
    assert len({c["value"] for c in tdes}) == 1 and len(tdes) == 2
    html = (suites.path / "reports" / "latest" / "report.html").read_text()
    table = html[html.index('id="check-values"'):]
    assert f'>CMAC</td><td class="mono">{cmac_zero(VALUE)}</td>' in table
    assert ">ANSI_X9_24</td>" in table
