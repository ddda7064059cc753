"""The test PKI (keyparity.trust.pki) is complete, CloudHSM-shaped, idempotent — and satisfies every
TLS check with real certificates and a real mutual TLS handshake on 127.0.0.1."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from keyparity.errors import KeyparityError
from keyparity.trust import chains, handshake, pki
from keyparity.trust.tls_server import MutualTlsServer

NOW = dt.datetime.now(dt.timezone.utc)
L = chains.load_certificate


def spki(cert_or_csr: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return cert_or_csr.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return pki.build_test_pki(tmp_path_factory.mktemp("pki"), now=NOW)


def test_every_named_file_exists_and_keys_are_private(paths: dict[str, Path]) -> None:
    expected = {"customer_ca", "customer_ca_key", "cluster_certificate", "hsm_certificate",
                "aws_hardware_certificate", "aws_root", "manufacturer_hardware_certificate",
                "manufacturer_root", "cluster_csr", "client_certificate", "client_key",
                "trust_dir", "server_certificate", "server_key", "pins"}
    assert expected <= set(paths)
    for name, path in paths.items():
        assert path.exists(), name
    assert paths["customer_ca"].name == "customerCA.crt"
    for name in ("customer_ca_key", "client_key", "server_key", "default_client_key"):
        assert stat.S_IMODE(paths[name].stat().st_mode) == 0o600, name


def test_pins_are_the_roots_sha256(paths: dict[str, Path]) -> None:
    pins = pki.root_pins(paths)
    for root, pin in (("aws_root", "aws_root_sha256"), ("manufacturer_root", "manufacturer_root_sha256")):
        der = L(paths[root]).public_bytes(serialization.Encoding.DER)
        assert pins[pin] == hashlib.sha256(der).hexdigest()
    assert json.loads(paths["pins"].read_text()) == pins


def test_shape_is_cloudhsm_like(paths: dict[str, Path]) -> None:
    aws_hw, mfr_hw = L(paths["aws_hardware_certificate"]), L(paths["manufacturer_hardware_certificate"])
    hsm, csr = L(paths["hsm_certificate"]), chains.load_csr(paths["cluster_csr"])
    # both hardware certificates: same subject and (hardware) key, different roots
    assert aws_hw.subject == mfr_hw.subject and spki(aws_hw) == spki(mfr_hw)
    assert aws_hw.issuer == L(paths["aws_root"]).subject
    assert mfr_hw.issuer == L(paths["manufacturer_root"]).subject
    assert hsm.issuer == aws_hw.subject
    # the HSM key: HSM certificate, cluster CSR and cluster certificate share it
    assert spki(csr) == spki(hsm) == spki(L(paths["cluster_certificate"]))
    assert L(paths["cluster_certificate"]).issuer == L(paths["customer_ca"]).subject
    # the server certificate is self-signed and is what the trust directory holds
    server = L(paths["server_certificate"])
    assert server.issuer == server.subject
    assert [p.name for p in chains.trust_files(paths["trust_dir"])] == ["server.crt"]
    assert (paths["trust_dir"] / "server.crt").read_bytes() == paths["server_certificate"].read_bytes()
    client = L(paths["client_certificate"])
    assert client.issuer == L(paths["customer_ca"]).subject
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku


def test_validity_follows_now_and_days(tmp_path: Path) -> None:
    now = dt.datetime(2030, 1, 15, 12, 0, tzinfo=dt.timezone.utc)
    paths = pki.build_test_pki(tmp_path, now=now, cluster_days=100, client_days=40)
    cluster, client = L(paths["cluster_certificate"]), L(paths["client_certificate"])
    assert cluster.not_valid_before_utc <= now
    assert cluster.not_valid_after_utc == now + dt.timedelta(days=100)
    assert client.not_valid_after_utc == now + dt.timedelta(days=40)
    assert L(paths["customer_ca"]).not_valid_after_utc > cluster.not_valid_after_utc


def test_idempotent_keeps_a_complete_pki_and_rebuilds_a_partial_one(tmp_path: Path) -> None:
    first = pki.build_test_pki(tmp_path)
    before = {name: p.read_bytes() for name, p in first.items() if p.is_file()}
    again = pki.build_test_pki(tmp_path, cluster_days=5)
    assert again == first
    assert {name: p.read_bytes() for name, p in again.items() if p.is_file()} == before
    first["client_key"].unlink()  # partial: rebuilt as a whole, consistently
    rebuilt = pki.build_test_pki(tmp_path)
    assert rebuilt["client_key"].is_file()
    assert rebuilt["customer_ca"].read_bytes() != before["customer_ca"]
    assert L(rebuilt["client_certificate"]).issuer == L(rebuilt["customer_ca"]).subject


def test_root_pins_needs_a_built_pki(tmp_path: Path) -> None:
    with pytest.raises(KeyparityError, match="no root pins"):
        pki.root_pins({"pins": tmp_path / "pins.json"})


def test_the_built_pki_satisfies_every_check(paths: dict[str, Path]) -> None:
    pins = pki.root_pins(paths)
    ca = L(paths["customer_ca"])
    cutover = NOW.date() + dt.timedelta(days=14)
    checks = [
        chains.check_cluster_certificate(L(paths["cluster_certificate"]), ca, now=NOW,
                                      cutover=cutover, min_days=30, warn_days=90),
        chains.check_hsm_identity(
            L(paths["hsm_certificate"]),
            aws_hardware=L(paths["aws_hardware_certificate"]), aws_root=L(paths["aws_root"]),
            aws_root_sha256=pins["aws_root_sha256"],
            manufacturer_hardware=L(paths["manufacturer_hardware_certificate"]),
            manufacturer_root=L(paths["manufacturer_root"]),
            manufacturer_root_sha256=pins["manufacturer_root_sha256"], now=NOW),
        chains.check_csr_matches(chains.load_csr(paths["cluster_csr"]), L(paths["hsm_certificate"])),
        chains.check_client_certificate(L(paths["client_certificate"]), paths["client_key"], None, ca,
                                     default_cert=L(paths["default_client_certificate"]),
                                     now=NOW, cutover=cutover, min_days=30, warn_days=90),
        chains.check_client_certificate(L(paths["default_client_certificate"]),
                                     paths["default_client_key"], None, ca,
                                     default_cert=L(paths["default_client_certificate"]),
                                     now=NOW, cutover=cutover, min_days=30, warn_days=90),
    ]
    with MutualTlsServer(paths["server_certificate"], paths["server_key"],
                         [paths["customer_ca"], paths["default_client_certificate"]]) as server:
        host, port = server.address
        checks.append(handshake.check_handshake(host, port, client_cert=paths["client_certificate"],
                                          client_key=paths["client_key"], key_password=None,
                                          trust_dir=paths["trust_dir"], timeout=5.0))
    for check in checks:
        assert check.ok, (check.name, check.message)
        assert check.warnings == (), (check.name, check.warnings)
        assert check.facts["certificates"] and check.facts["chain"], check.name
        json.dumps(check.record())  # JSON-able evidence


def test_helpers_issue_from_a_public_key_and_through_an_intermediate(tmp_path: Path) -> None:
    root, root_key = pki.make_ca("root", now=NOW)
    inter, inter_key = pki.make_ca("intermediate", now=NOW, issuer_cert=root, issuer_key=root_key)
    leaf_key = pki.make_key()
    csr = pki.make_csr(leaf_key, "leaf")
    leaf = pki.issue_certificate(csr.public_key(), csr.subject, inter, inter_key,
                                 NOW - dt.timedelta(hours=1), NOW + dt.timedelta(days=1),
                                 eku=[ExtendedKeyUsageOID.SERVER_AUTH], san=["localhost", "127.0.0.1"])
    assert leaf.issuer == inter.subject and inter.issuer == root.subject
    assert spki(leaf) == spki(csr)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    bundle = pki.write_pem(tmp_path / "bundle.pem", [leaf, inter])
    assert chains.load_certificates(bundle) == [leaf, inter]
    key_path = pki.write_key(tmp_path / "leaf.key", leaf_key, password="s3cret")
    assert b"ENCRYPTED" in key_path.read_bytes()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
