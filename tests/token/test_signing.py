"""keyparity.attest.signing: the three evidence signers with real keys.

file    PEM keys made here (plain and encrypted, passphrase from an env: reference);
pkcs11  a real SoftHSM token in a child process (tests/helpers/sign_pkcs11.py);
kms     a real boto3 KMS client under botocore's Stubber (request parameters validated against
        the service model, signatures made by a local P-384 key), and moto, whose
        MessageType=DIGEST differs from real KMS: that difference is asserted, not hidden.
"""
from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, Signature, Signer

from conftest import HELPERS, REPO
from keyparity.errors import KeyNotFound, KeyparityError
from keyparity.profile import SignerSpec, load_profile
from keyparity.secrets import SecretRef
from keyparity.attest.signing import (
    KeyFormatError, KmsError, KmsSigner, SigningError, kms_public_key, load_signer, load_signers,
    public_key_from_pem,
)
from keyparity.attest.statement import (
    ENVELOPE, PAYLOAD_TYPE, STATEMENT, EvidenceError, build_statement, canonical_json, sign_run,
)
from keyparity.attest.verify import verify_run
from signer_doubles import Mismatched

CHILD = HELPERS / "sign_pkcs11.py"
PASSPHRASE = "correct horse battery staple 7f3a"
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
KEY_ARN = f"arn:aws:kms:eu-west-1:111122223333:key/{KEY_ID}"


def write_key(directory: Path, name: str, password: str | None = None,
              curve: ec.EllipticCurve | None = None) -> tuple[Path, Path]:
    """An EC key as PKCS#8 PEM (encrypted if password) and its public PEM."""
    key = ec.generate_private_key(curve or ec.SECP384R1())
    encryption = (serialization.BestAvailableEncryption(password.encode()) if password
                  else serialization.NoEncryption())
    private = directory / f"{name}.key.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8, encryption))
    public = directory / f"{name}.pub.pem"
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def make_run(run: Path) -> Path:
    (run / "allure-results").mkdir(parents=True)
    (run / "evidence.json").write_text(json.dumps({"summary": {"verdict": "PASS"}}))
    (run / "allure-results" / "0001-result.json").write_text('{"status": "passed"}')
    (run / ".login-state.json").write_text("{}")
    return run


def crypto_verifies(public_pem: bytes, der_sig: bytes, data: bytes) -> bool:
    public = serialization.load_pem_public_key(public_pem)
    try:
        public.verify(der_sig, data, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------- file


def test_file_signer_round_trip(tmp_path):
    private, public = write_key(tmp_path, "custodian-1")
    signer = load_signer(SignerSpec(name="custodian-1", type="file", path=private), {}, None)
    assert isinstance(signer, CryptoSigner)
    key = public_key_from_pem(public.read_bytes())
    assert signer.public_key.keyid == key.keyid  # the envelope's keyid is the auditor's keyid
    assert key.scheme == "ecdsa-sha2-nistp384"
    sig = signer.sign(b"payload")
    key.verify_signature(sig, b"payload")
    assert crypto_verifies(public.read_bytes(), bytes.fromhex(sig.signature), b"payload")
    assert not crypto_verifies(public.read_bytes(), bytes.fromhex(sig.signature), b"payloaD")


def test_encrypted_pem_with_password_from_env(tmp_path, monkeypatch):
    private, public = write_key(tmp_path, "custodian-1", password=PASSPHRASE)
    monkeypatch.setenv("KP_CUSTODIAN_PASS", PASSPHRASE)
    spec = SignerSpec(name="custodian-1", type="file", path=private,
                      password=SecretRef("env", "KP_CUSTODIAN_PASS", "evidence.signers[0]"
                                         ".password"))
    signer = load_signer(spec, {}, None)
    public_key_from_pem(public.read_bytes()).verify_signature(signer.sign(b"x"), b"x")

    monkeypatch.setenv("KP_CUSTODIAN_PASS", "not the passphrase")
    with pytest.raises(KeyFormatError, match="wrong password") as wrong:
        load_signer(spec, {}, None)
    assert "env:KP_CUSTODIAN_PASS" in str(wrong.value)
    monkeypatch.delenv("KP_CUSTODIAN_PASS")
    with pytest.raises(SigningError, match="KP_CUSTODIAN_PASS is not set"):
        load_signer(spec, {}, None)
    with pytest.raises(KeyFormatError, match="is encrypted; set password"):
        load_signer(SignerSpec(name="custodian-1", type="file", path=private), {}, None)
    assert PASSPHRASE not in str(wrong.value)


def test_file_signer_errors_are_keyparity_errors(tmp_path, monkeypatch):
    private, public = write_key(tmp_path, "plain")
    monkeypatch.setenv("KP_PASS", "x")
    with pytest.raises(KeyFormatError, match="not encrypted, but a password"):
        load_signer(SignerSpec(name="c", type="file", path=private,
                               password=SecretRef("env", "KP_PASS", "f")), {}, None)
    with pytest.raises(KeyFormatError, match="not a PEM private key"):
        load_signer(SignerSpec(name="c", type="file", path=public), {}, None)
    with pytest.raises(SigningError, match="cannot read"):
        load_signer(SignerSpec(name="c", type="file", path=tmp_path / "gone.pem"), {}, None)
    with pytest.raises(KeyFormatError, match="private key; give the custodian's public"):
        public_key_from_pem(private.read_bytes())
    with pytest.raises(KeyFormatError, match="not a PEM public key"):
        public_key_from_pem(b"hello")


def test_profile_file_signers_sign_and_verify(tmp_path, monkeypatch, lab):
    """The evidence block of a profile, loaded by load_profile, through load_signers."""
    one, one_pub = write_key(tmp_path, "custodian-1")
    two, two_pub = write_key(tmp_path, "custodian-2", password=PASSPHRASE)
    monkeypatch.setenv("KP_CUSTODIAN_2_PASS", PASSPHRASE)
    profile = load_profile(lab.profile([{"label": "k", "type": "aes", "size": 128}], evidence={
        "threshold": 2,
        "signers": [{"name": "custodian-1", "type": "file", "path": str(one)},
                    {"name": "custodian-2", "type": "file", "path": str(two),
                     "password": "env:KP_CUSTODIAN_2_PASS"}]}))
    signers = load_signers(profile.evidence, profile.module_env, None)
    assert [s.name for s in signers] == ["custodian-1", "custodian-2"]
    run = make_run(tmp_path / "run")
    sign_run(run, signers, {"run_id": run.name, "threshold": 2, "profile": profile.name})
    keys = [public_key_from_pem(p.read_bytes()) for p in (one_pub, two_pub)]
    result = verify_run(run, keys, profile.evidence.threshold)
    assert result.ok, result.problems
    assert len(result.verified) == 2


def test_sign_run_refuses_one_key_twice(tmp_path):
    private, _ = write_key(tmp_path, "c")
    spec = SignerSpec(name="c", type="file", path=private)
    signers = [load_signer(spec, {}, None), load_signer(spec, {}, None)]
    run = make_run(tmp_path / "run")
    with pytest.raises(EvidenceError, match="use the same key"):
        sign_run(run, signers, {})
    assert not (run / ENVELOPE).exists() and not (run / STATEMENT).exists()


def test_sign_run_checks_each_signature_before_writing(tmp_path):
    run = make_run(tmp_path / "run")
    with pytest.raises(EvidenceError, match="mismatched made a signature that its own public"):
        sign_run(run, [Mismatched()], {})
    assert not (run / ENVELOPE).exists() and not (run / STATEMENT).exists()


# --------------------------------------------------------------------------- pkcs11


def test_pkcs11_signer_on_a_softhsm_token(tmp_path, lab):
    """custodian-2 lives in a SoftHSM token: the child signs with it, this process verifies
    with the exported public key only."""
    one, one_pub = write_key(tmp_path, "custodian-1")
    evidence_dir = tmp_path / "evidence"
    pin = lab.root / "custodian.pin"  # written by the child when it makes the token
    profile = lab.profile([{"label": "k", "type": "aes", "size": 128}], evidence={
        "threshold": 2,
        "signers": [{"name": "custodian-1", "type": "file", "path": str(one)},
                    {"name": "custodian-2", "type": "pkcs11", "module": lab.module,
                     "token_label": "custodian", "pin": f"file:{pin}",
                     "key_label": "custodian-2"}]})
    run = make_run(tmp_path / "run")
    payload = b"DSSEv1 28 application/vnd.in-toto+json 2 {}"
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"lab": str(lab.root), "evidence_dir": str(evidence_dir),
                                "profile": str(profile), "run_dir": str(run),
                                "payload_hex": payload.hex(),
                                "state": str(tmp_path / "state" / "login.json")}))
    proc = subprocess.run([sys.executable, str(CHILD), str(spec)], env=lab.env, cwd=REPO,
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["signers"] == ["CryptoSigner", "Pkcs11Signer"]

    # the token's signature over the payload, checked here with the exported public key
    token_pub = Path(out["public_pem"]).read_bytes()
    key = public_key_from_pem(token_pub)
    assert out["payload_signature"]["keyid"] == key.keyid
    der = bytes.fromhex(out["payload_signature"]["sig"])
    assert crypto_verifies(token_pub, der, payload)
    key.verify_signature(Signature(key.keyid, der.hex()), payload)
    assert not crypto_verifies(token_pub, der, payload + b" ")

    # the private key stayed in the token and cannot be read out
    assert out["private_key"] == {"sensitive": True, "extractable": False,
                                  "never_extractable": True, "always_sensitive": True,
                                  "sign": True, "value": "AttributeSensitive"}

    # dual control: the run directory signed by the file key and the token key
    keys = [public_key_from_pem(one_pub.read_bytes()), key]
    result = verify_run(run, keys, 2)
    assert result.ok, result.problems
    assert len(result.verified) == 2

    assert out["missing_key"]["type"] == KeyNotFound.__name__
    assert "no private key labelled 'no-such-key' on token 'custodian'" in (
        out["missing_key"]["message"])
    assert out["wrong_pin"]["login"] is True  # a LoginError
    assert "CKR_PIN_INCORRECT" in out["wrong_pin"]["message"]
    assert out["wrong_pin_again"]["login"] is True
    assert "not retried" in out["wrong_pin_again"]["message"]
    assert "0000000000000000" not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- kms


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """No real AWS configuration or credentials can leak into these tests."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                 "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")


def stubbed_kms():
    client = boto3.client("kms", region_name="eu-west-1")
    return client, Stubber(client)


def public_key_response(local: ec.EllipticCurvePrivateKey) -> dict:
    return {"KeyId": KEY_ARN, "KeySpec": "ECC_NIST_P384", "KeyUsage": "SIGN_VERIFY",
            "SigningAlgorithms": ["ECDSA_SHA_384"],
            "PublicKey": local.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)}


def test_kms_signer_with_stubber(tmp_path, aws_env):
    """The exact requests a real KMS would get, answered by a local P-384 key."""
    local = ec.generate_private_key(ec.SECP384R1())
    run = make_run(tmp_path / "run")
    predicate = {"run_id": run.name, "threshold": 1}
    # what sign_run will sign: the DSSE PAE of the statement, SHA-384 computed locally
    pae = Envelope(canonical_json(build_statement(run, predicate)), PAYLOAD_TYPE, {}).pae()
    digest = hashlib.sha384(pae).digest()

    client, stubber = stubbed_kms()
    stubber.add_response("get_public_key", public_key_response(local), {"KeyId": KEY_ID})
    stubber.add_response(
        "sign",
        {"KeyId": KEY_ARN, "SigningAlgorithm": "ECDSA_SHA_384",
         "Signature": local.sign(digest, ec.ECDSA(Prehashed(hashes.SHA384())))},
        {"KeyId": KEY_ID, "Message": digest, "MessageType": "DIGEST",
         "SigningAlgorithm": "ECDSA_SHA_384"})
    with stubber:
        signer = KmsSigner(KEY_ID, client=client, name="custodian-kms")
        sign_run(run, [signer], predicate)
    stubber.assert_no_pending_responses()

    local_pub = local.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = public_key_from_pem(local_pub)
    assert signer.public_key.keyid == key.keyid
    result = verify_run(run, [key], 1)
    assert result.ok, result.problems
    # and in plain cryptography: a DER ECDSA-SHA384 signature over the PAE
    envelope = json.loads((run / ENVELOPE).read_text())
    assert crypto_verifies(local_pub, base64.b64decode(envelope["signatures"][0]["sig"]), pae)


def test_kms_access_denied_is_a_clear_keyparity_error(aws_env):
    client, stubber = stubbed_kms()
    stubber.add_client_error(
        "get_public_key", service_error_code="AccessDeniedException", http_status_code=400,
        service_message=f"User: arn:aws:iam::111122223333:user/ci is not authorized to "
                        f"perform: kms:GetPublicKey on resource: {KEY_ARN}",
        expected_params={"KeyId": KEY_ID})
    with stubber, pytest.raises(KmsError) as info:
        KmsSigner(KEY_ID, client=client, name="custodian-kms")
    message = str(info.value)
    assert isinstance(info.value, KeyparityError)
    assert message.startswith(f"evidence signer custodian-kms: KMS GetPublicKey for {KEY_ID} "
                              "failed: AccessDeniedException: access denied;")
    assert "kms:GetPublicKey and kms:Sign" in message
    assert "user/ci is not authorized" in message  # AWS's own words, for the operator


def test_kms_sign_error_writes_nothing(tmp_path, aws_env):
    local = ec.generate_private_key(ec.SECP384R1())
    client, stubber = stubbed_kms()
    stubber.add_response("get_public_key", public_key_response(local), {"KeyId": KEY_ID})
    stubber.add_client_error("sign", service_error_code="DisabledException",
                             service_message=f"{KEY_ARN} is disabled.", http_status_code=400)
    run = make_run(tmp_path / "run")
    with stubber, pytest.raises(KmsError, match=f"DisabledException: key {KEY_ID} is disabled"):
        sign_run(run, [KmsSigner(KEY_ID, client=client)], {})
    assert not (run / ENVELOPE).exists() and not (run / STATEMENT).exists()


def test_kms_key_that_cannot_sign_is_refused(aws_env):
    client, stubber = stubbed_kms()
    stubber.add_response("get_public_key", {
        "KeyId": KEY_ARN, "KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "ENCRYPT_DECRYPT"},
        {"KeyId": KEY_ID})
    with stubber, pytest.raises(KmsError, match="key usage ENCRYPT_DECRYPT; a SIGN_VERIFY"):
        KmsSigner(KEY_ID, client=client)


def test_kms_configuration_errors(aws_env, monkeypatch):
    with pytest.raises(KmsError, match="AWS profile 'nope' not found"):
        load_signer(SignerSpec(name="k", type="kms", key_id=KEY_ID, region="eu-west-1",
                               aws_profile="nope"), {}, None)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(KmsError, match="no AWS credentials found"):
        load_signer(SignerSpec(name="k", type="kms", key_id=KEY_ID, region="eu-west-1"),
                    {}, None)


def test_kms_with_moto(tmp_path, aws_env):
    """moto matches real KMS for CreateKey, GetPublicKey and RAW signing, but treats
    MessageType=DIGEST as RAW: it hashes the digest again. Both facts are asserted here."""
    from moto import mock_aws

    from keyparity.cli import main as cli_main

    with mock_aws():
        client = boto3.client("kms", region_name="eu-west-1")
        key_id = client.create_key(KeySpec="ECC_NIST_P384",
                                   KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        signer = KmsSigner(key_id, client=client, name="custodian-kms")  # GetPublicKey
        key = kms_public_key(key_id, "eu-west-1")  # the path `keyparity verify` takes
        assert key.keyid == signer.public_key.keyid
        assert key.scheme == "ecdsa-sha2-nistp384"
        public = serialization.load_pem_public_key(key.keyval["public"].encode())

        # The moto quirk. Real KMS signs the 48-byte digest as given; moto hashes it again.
        payload = b"DSSEv1 28 application/vnd.in-toto+json 2 {}"
        moto_sig = bytes.fromhex(signer.sign(payload).signature)
        digest = hashlib.sha384(payload).digest()
        with pytest.raises(InvalidSignature):  # what real KMS's signature would pass
            public.verify(moto_sig, payload, ec.ECDSA(hashes.SHA384()))
        public.verify(moto_sig, hashlib.sha384(digest).digest(),  # double hashing: moto
                      ec.ECDSA(Prehashed(hashes.SHA384())))

        # So a run signed through moto would not verify; sign_run refuses to write it.
        run = make_run(tmp_path / "moto-run")
        with pytest.raises(EvidenceError, match="custodian-kms made a signature that its own "
                                                "public key .* does not verify"):
            sign_run(run, [signer], {})  # sign_run checks every signature before writing

        # Where moto matches real KMS (RAW signing), the whole verify path round-trips,
        # CLI --kms-key-id included: sign the PAE with MessageType RAW.
        class RawKms(Signer):
            name = "moto-raw"
            public_key = signer.public_key

            @classmethod
            def from_priv_key_uri(cls, *a):
                raise NotImplementedError

            def sign(self, data: bytes) -> Signature:
                sig = client.sign(KeyId=key_id, Message=data, MessageType="RAW",
                                  SigningAlgorithm="ECDSA_SHA_384")["Signature"]
                return Signature(key.keyid, sig.hex())

        run = make_run(tmp_path / "run")
        sign_run(run, [RawKms()], {"run_id": run.name, "threshold": 1})
        assert verify_run(run, [key], 1).ok
        assert cli_main(["verify", str(run), "--kms-key-id", key_id,
                         "--region", "eu-west-1"]) == 0
