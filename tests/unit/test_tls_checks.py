"""Every TLS check passes on the good test PKI and fails, with a clear message, on its broken
case. Real certificates, real TLS handshakes on 127.0.0.1 — nothing mocked."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from keyparity.checks import Check
from keyparity.trust import chains, pki
from keyparity.trust.handshake import check_handshake
from keyparity.errors import KeyparityError
from keyparity.trust.tls_server import BANNER, MutualTlsServer

NOW = dt.datetime.now(dt.timezone.utc)
DAY = dt.timedelta(days=1)
L = chains.load_certificate


@pytest.fixture(scope="module")
def p(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return pki.build_test_pki(tmp_path_factory.mktemp("pki"), now=NOW)


@pytest.fixture(scope="module")
def ca(p: dict[str, Path]) -> x509.Certificate:
    return L(p["customer_ca"])


@pytest.fixture(scope="module")
def ca_key(p: dict[str, Path]) -> Any:
    return serialization.load_pem_private_key(p["customer_ca_key"].read_bytes(), None)


@pytest.fixture(scope="module")
def other_ca() -> tuple[x509.Certificate, Any]:
    """Another CA with the very same subject as customerCA.crt: only the key differs."""
    return pki.make_ca(pki.subject("customerCA", organizational_unit="customer"), now=NOW)


def cluster_check(cert: x509.Certificate, ca: x509.Certificate, cutover: dt.date | None = None,
                  now: dt.datetime = NOW) -> Check:
    return chains.check_cluster_certificate(cert, ca, now=now, cutover=cutover or now.date(),
                                         min_days=30, warn_days=90)


def leaf(issuer: x509.Certificate, issuer_key: Any, *, days: float = 365, start: float = -1,
         eku: list[x509.ObjectIdentifier] | None = None, key: Any = None,
         name: str = "cluster-x", **kwargs: Any) -> x509.Certificate:
    return pki.issue_certificate(key or pki.make_key(), name, issuer, issuer_key,
                                 NOW + start * DAY, NOW + days * DAY, eku=eku, **kwargs)


# --------------------------------------------------------------------------- cluster certificate


def test_cluster_certificate_good(p: dict[str, Path], ca: x509.Certificate) -> None:
    check = cluster_check(L(p["cluster_certificate"]), ca)
    assert check.ok, check.message
    assert check.warnings == ()
    assert check.facts["chain"] == [L(p["cluster_certificate"]).subject.rfc4514_string(),
                           ca.subject.rfc4514_string()]
    info = check.facts["certificates"][0]
    assert info["sha256"] == L(p["cluster_certificate"]).fingerprint(hashes.SHA256()).hex()
    assert info["serial"] == format(L(p["cluster_certificate"]).serial_number, "x")
    assert dt.datetime.fromisoformat(info["not_after"]) == L(p["cluster_certificate"]).not_valid_after_utc
    assert check.name == "cluster_certificate"
    record = json.loads(json.dumps(check.record()))
    assert list(record) == ["name", "ok", "message", "warnings", "certificates", "chain", "details"]
    assert record["certificates"][1]["subject"] == ca.subject.rfc4514_string()


def test_cluster_certificate_from_another_ca_fails(ca: x509.Certificate, other_ca: Any) -> None:
    cert = leaf(*other_ca)  # same issuer *name* as customerCA.crt, different key
    check = cluster_check(cert, ca)
    assert not check.ok
    assert "is not issued by customerCA.crt" in check.message
    assert "signature" in check.message  # the library's reason is kept
    assert check.facts["details"]["issued_by_customer_ca"] is False


@pytest.fixture(scope="module")
def old_ca() -> tuple[x509.Certificate, Any]:
    """A customer CA valid since 500 days ago, to issue certificates that have expired."""
    return pki.make_ca("customerCA (old)", now=NOW - 500 * DAY, days=3000)


def test_cluster_certificate_expired_fails(old_ca: Any) -> None:
    check = cluster_check(leaf(*old_ca, start=-400, days=-2), old_ca[0])
    assert not check.ok
    assert check.message.startswith("the cluster certificate expired on ")
    assert "not issued" not in check.message  # it *is* issued by the customer CA
    assert check.facts["details"]["issued_by_customer_ca"] is True


def test_cluster_certificate_not_yet_valid_fails(ca: x509.Certificate, ca_key: Any) -> None:
    check = cluster_check(leaf(ca, ca_key, start=5, days=400), ca)
    assert not check.ok and "is not valid before" in check.message


def test_expired_certificate_from_another_ca_says_both(old_ca: Any, ca: x509.Certificate) -> None:
    impostor = pki.make_ca(old_ca[0].subject, now=NOW - 500 * DAY, days=3000)
    check = cluster_check(leaf(*impostor, start=-400, days=-2), old_ca[0])
    assert "expired on" in check.message and "is not issued by customerCA.crt" in check.message
    assert "signature" in check.message
    # expired before customerCA.crt (valid since yesterday) even began: no common moment
    unrelated = cluster_check(leaf(*old_ca, start=-400, days=-2), ca)
    assert "never overlap" in unrelated.message


def test_cluster_certificate_lifetime_after_cutover(p: dict[str, Path], ca: x509.Certificate) -> None:
    cert = L(p["cluster_certificate"])
    end = cert.not_valid_after_utc.date()
    too_soon = cluster_check(cert, ca, cutover=end - dt.timedelta(days=10))
    assert not too_soon.ok
    assert "10 day(s) after the cutover" in too_soon.message
    assert "at least 30 days" in too_soon.message
    warned = cluster_check(cert, ca, cutover=end - dt.timedelta(days=60))
    assert warned.ok, warned.message
    assert len(warned.warnings) == 1 and "plan its renewal" in warned.warnings[0]
    fine = cluster_check(cert, ca, cutover=end - dt.timedelta(days=100))
    assert fine.ok and fine.warnings == ()


def test_customer_ca_expiring_before_the_cutover_fails(ca_key: Any) -> None:
    short_ca, short_key = pki.make_ca("short-lived customerCA", now=NOW, days=20)
    check = cluster_check(leaf(short_ca, short_key, days=15), short_ca)
    assert not check.ok
    assert "customerCA.crt expires on" in check.message


def test_openssl_style_certificates_pass_the_relaxed_policy() -> None:
    """`openssl req -x509` CA (no keyUsage) and `openssl x509 -req` leaf (no AKI, KU, EKU, SAN)."""
    key = pki.make_key()
    bare_ca = pki.issue_certificate(key, "customerCA", None, key, NOW - DAY, NOW + 900 * DAY,
                                    ca=True, key_usage=False, authority_key_identifier=False)
    bare = leaf(bare_ca, key, key_usage=False, authority_key_identifier=False)
    assert not any(isinstance(e.value, (x509.KeyUsage, x509.AuthorityKeyIdentifier))
                   for e in bare.extensions)
    check = cluster_check(bare, bare_ca)
    assert check.ok, check.message


def test_extension_rules_that_remain(ca: x509.Certificate, ca_key: Any) -> None:
    client_only = cluster_check(leaf(ca, ca_key, eku=[ExtendedKeyUsageOID.CLIENT_AUTH]), ca)
    assert not client_only.ok and "does not allow serverAuth" in client_only.message
    a_ca = cluster_check(leaf(ca, ca_key, ca=True), ca)
    assert not a_ca.ok and "must not be a CA" in a_ca.message
    key = pki.make_key()
    no_ca_flag = pki.issue_certificate(key, "customerCA", None, key, NOW - DAY, NOW + 900 * DAY)
    check = cluster_check(leaf(no_ca_flag, key), no_ca_flag)
    assert not check.ok and "basicConstraints.cA" in check.message


# --------------------------------------------------------------------------- HSM identity


def identity(p: dict[str, Path], **override: Any) -> Check:
    pins = pki.root_pins(p)
    args: dict[str, Any] = dict(
        aws_hardware=L(p["aws_hardware_certificate"]), aws_root=L(p["aws_root"]),
        aws_root_sha256=pins["aws_root_sha256"],
        manufacturer_hardware=L(p["manufacturer_hardware_certificate"]),
        manufacturer_root=L(p["manufacturer_root"]),
        manufacturer_root_sha256=pins["manufacturer_root_sha256"], now=NOW)
    args.update(override)
    hsm = args.pop("hsm_cert", L(p["hsm_certificate"]))
    return chains.check_hsm_identity(hsm, **args)


def test_hsm_identity_good(p: dict[str, Path]) -> None:
    check = identity(p)
    assert check.ok, check.message
    assert check.facts["details"]["checked"] == ["AWS", "manufacturer"]
    assert check.facts["details"]["hardware_certificates_share_key"] is True
    aws = check.facts["details"]["chains"]["AWS"]["chain"]
    assert aws == [L(p[n]).subject.rfc4514_string()
                   for n in ("hsm_certificate", "aws_hardware_certificate", "aws_root")]
    assert check.facts["chain"] == aws
    assert check.facts["details"]["chains"]["manufacturer"]["chain"][-1] == \
        L(p["manufacturer_root"]).subject.rfc4514_string()
    assert len(check.facts["certificates"]) == 5


def test_hsm_identity_pin_formats_and_single_chain(p: dict[str, Path]) -> None:
    pin = pki.root_pins(p)["aws_root_sha256"]
    colons = ":".join(pin[i:i + 2] for i in range(0, 64, 2)).upper()
    check = identity(p, aws_root_sha256=colons, manufacturer_hardware=None,
                     manufacturer_root=None, manufacturer_root_sha256=None)
    assert check.ok, check.message
    assert check.facts["details"]["checked"] == ["AWS"]


def test_hsm_identity_wrong_root_pin_names_both(p: dict[str, Path]) -> None:
    wrong = "ab" * 32
    check = identity(p, manufacturer_root_sha256=wrong)
    assert not check.ok
    actual = pki.root_pins(p)["manufacturer_root_sha256"]
    assert f"SHA-256 fingerprint {actual}, not the pinned {wrong}" in check.message
    assert "manufacturer root" in check.message and "AWS root" not in check.message


def test_hsm_identity_root_swapped_for_another_fails_the_pin(p: dict[str, Path]) -> None:
    fake_root, fake_key = pki.make_ca(L(p["aws_root"]).subject, now=NOW)
    fake_hw, _ = pki.make_ca(L(p["aws_hardware_certificate"]).subject, now=NOW,
                             issuer_cert=fake_root, issuer_key=fake_key)
    check = identity(p, aws_root=fake_root, aws_hardware=fake_hw)
    assert not check.ok
    assert "not the pinned" in check.message and "does not chain through" in check.message


def test_hsm_certificate_not_chaining_through_a_hardware_certificate(p: dict[str, Path]) -> None:
    # a manufacturer hardware certificate with the right subject but another key (under a
    # root that is correctly pinned, so that only the chain is wrong)
    other_root, other_root_key = pki.make_ca("HSM Manufacturer Root (other)", now=NOW)
    other_hw, _ = pki.make_ca(L(p["manufacturer_hardware_certificate"]).subject, now=NOW,
                              issuer_cert=other_root, issuer_key=other_root_key)
    check = identity(p, manufacturer_hardware=other_hw, manufacturer_root=other_root,
                     manufacturer_root_sha256=chains.CertInfo.of(other_root).sha256)
    assert not check.ok
    assert "does not chain through the manufacturer hardware certificate" in check.message
    assert "AWS" not in check.message
    assert check.facts["details"]["chains"]["AWS"]["verified"] is True
    assert check.facts["details"]["chains"]["manufacturer"]["verified"] is False
    assert check.facts["details"]["hardware_certificates_share_key"] is False


def test_hsm_certificate_signed_by_the_root_directly_is_not_through_hardware(p: dict[str, Path]) -> None:
    root, root_key = pki.make_ca("direct root", now=NOW)
    hw, hw_key = pki.make_ca("hardware", now=NOW, issuer_cert=root, issuer_key=root_key)
    direct = leaf(root, root_key, name="HSM direct")
    check = identity(p, hsm_cert=direct, aws_hardware=hw, aws_root=root,
                     aws_root_sha256=chains.CertInfo.of(root).sha256, manufacturer_hardware=None,
                     manufacturer_root=None, manufacturer_root_sha256=None)
    assert not check.ok
    assert "chains to the AWS root but not through the AWS hardware certificate" in check.message


def test_expired_hsm_certificate_is_named_once(p: dict[str, Path]) -> None:
    aws_root, aws_root_key = pki.make_ca("aws root", now=NOW - 900 * DAY, days=3000)
    mfr_root, mfr_root_key = pki.make_ca("mfr root", now=NOW - 900 * DAY, days=3000)
    hw_key = pki.make_key()
    aws_hw, _ = pki.make_ca("hw", key=hw_key, now=NOW - 800 * DAY, days=2000,
                            issuer_cert=aws_root, issuer_key=aws_root_key)
    mfr_hw, _ = pki.make_ca("hw", key=hw_key, now=NOW - 800 * DAY, days=2000,
                            issuer_cert=mfr_root, issuer_key=mfr_root_key)
    hsm = pki.issue_certificate(pki.make_key(), "HSM", aws_hw, hw_key, NOW - 700 * DAY, NOW - DAY)
    check = identity(p, hsm_cert=hsm, aws_hardware=aws_hw, aws_root=aws_root,
                     aws_root_sha256=chains.CertInfo.of(aws_root).sha256,
                     manufacturer_hardware=mfr_hw, manufacturer_root=mfr_root,
                     manufacturer_root_sha256=chains.CertInfo.of(mfr_root).sha256)
    assert not check.ok
    assert check.message.startswith("the HSM certificate expired on ")
    assert check.message.count("expired") == 1  # reported by both chains, said once
    assert all(c["verified"] for c in check.facts["details"]["chains"].values())  # sound otherwise


def test_hsm_identity_needs_something_to_check(p: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="needs the AWS chain, the manufacturer chain or both"):
        chains.check_hsm_identity(L(p["hsm_certificate"]), aws_hardware=None, aws_root=None,
                               aws_root_sha256=None, manufacturer_hardware=None,
                               manufacturer_root=None, manufacturer_root_sha256=None, now=NOW)
    with pytest.raises(ValueError, match="AWS chain needs"):
        identity(p, aws_root_sha256=None)


# --------------------------------------------------------------------------- cluster CSR


def test_csr_matches(p: dict[str, Path]) -> None:
    check = chains.check_csr_matches(chains.load_csr(p["cluster_csr"]), L(p["hsm_certificate"]))
    assert check.ok, check.message
    assert check.facts["details"]["csr_public_key_sha256"] == check.facts["details"]["hsm_public_key_sha256"]


def test_csr_with_another_key_fails(p: dict[str, Path]) -> None:
    csr = pki.make_csr(pki.make_key(), "cluster-test0001")
    check = chains.check_csr_matches(csr, L(p["hsm_certificate"]))
    assert not check.ok
    assert "the cluster CSR's public key" in check.message and "differs" in check.message
    assert check.facts["details"]["csr_signature_valid"] is True


def test_csr_with_a_broken_signature_fails(p: dict[str, Path]) -> None:
    der = bytearray(chains.load_csr(p["cluster_csr"]).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the ECDSA signature's s
    check = chains.check_csr_matches(x509.load_der_x509_csr(bytes(der)), L(p["hsm_certificate"]))
    assert not check.ok and "signature does not verify" in check.message


# --------------------------------------------------------------------------- client certificate


def client_check(p: dict[str, Path], cert: x509.Certificate, key: Path, password: str | None = None,
                 *, default: bool = True, cutover: dt.date | None = None) -> Check:
    return chains.check_client_certificate(
        cert, key, password, L(p["customer_ca"]),
        default_cert=L(p["default_client_certificate"]) if default else None, now=NOW,
        cutover=cutover or NOW.date(), min_days=30, warn_days=90)


def test_client_certificate_good_and_default(p: dict[str, Path]) -> None:
    good = client_check(p, L(p["client_certificate"]), p["client_key"])
    assert good.ok, good.message
    assert good.facts["details"]["accepted_as"] == "issued by customerCA.crt"
    assert good.facts["details"]["key_matches"] is True
    default = client_check(p, L(p["default_client_certificate"]), p["default_client_key"])
    assert default.ok, default.message
    assert default.facts["details"]["accepted_as"] == "the package default client certificate"
    not_configured = client_check(p, L(p["default_client_certificate"]), p["default_client_key"],
                                  default=False)
    assert not not_configured.ok and "is not issued by customerCA.crt" in not_configured.message
    assert "no issuer found" in not_configured.message


def test_client_certificate_from_another_ca_fails(p: dict[str, Path], other_ca: Any,
                                                  tmp_path: Path) -> None:
    key = pki.make_key()
    cert = leaf(*other_ca, key=key, eku=[ExtendedKeyUsageOID.CLIENT_AUTH], name="client")
    check = client_check(p, cert, pki.write_key(tmp_path / "k.pem", key))
    assert not check.ok
    assert "is not issued by customerCA.crt" in check.message
    assert "nor the package default client certificate" in check.message
    assert check.facts["details"]["key_matches"] is True


def test_client_key_that_does_not_match_fails(p: dict[str, Path]) -> None:
    check = client_check(p, L(p["client_certificate"]), p["server_key"])
    assert not check.ok
    assert "does not match the client certificate" in check.message
    assert "does not verify with the certificate's public key" in check.message


def test_client_key_of_another_type_fails(p: dict[str, Path], tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(65537, 2048)
    check = client_check(p, L(p["client_certificate"]), pki.write_key(tmp_path / "r.pem", rsa_key))
    assert not check.ok and "the key is an RSA key but the certificate holds an EC key" in check.message


def test_rsa_client_certificate_and_encrypted_key(p: dict[str, Path], ca_key: Any,
                                                  tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(65537, 2048)
    cert = leaf(L(p["customer_ca"]), ca_key, key=rsa_key, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    path = pki.write_key(tmp_path / "rsa.pem", rsa_key, password="pw-1234")
    check = client_check(p, cert, path, "pw-1234")
    assert check.ok, check.message
    assert check.facts["details"]["key_proof"].startswith("RSA-PSS SHA-256")
    missing = client_check(p, cert, path, None)
    assert not missing.ok and "encrypted and no password was given" in missing.message
    wrong = client_check(p, cert, path, "not-it")
    assert not wrong.ok and "wrong password" in wrong.message
    assert "not-it" not in json.dumps(wrong.record())


def test_client_certificate_expiring_soon_and_missing_key(p: dict[str, Path], ca_key: Any) -> None:
    key = serialization.load_pem_private_key(p["client_key"].read_bytes(), None)
    cert = leaf(L(p["customer_ca"]), ca_key, days=20, key=key, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    check = client_check(p, cert, p["client_key"])
    assert not check.ok and check.facts["details"]["key_matches"] is True
    assert check.message.startswith("the client certificate expires on ")
    assert "at least 30 days after it" in check.message
    warned = client_check(p, cert, p["client_key"], cutover=NOW.date() - dt.timedelta(days=15))
    assert warned.ok and "plan its renewal" in warned.warnings[0]
    missing = client_check(p, L(p["client_certificate"]), p["client_key"].with_name("absent.key"))
    assert not missing.ok and "absent.key: private key file not found" in missing.message


# --------------------------------------------------------------------------- loading


def test_load_certificate_pem_der_and_errors(p: dict[str, Path], tmp_path: Path) -> None:
    der = tmp_path / "c.der"
    der.write_bytes(L(p["customer_ca"]).public_bytes(serialization.Encoding.DER))
    assert L(der) == L(p["customer_ca"])
    junk = tmp_path / "junk.crt"
    junk.write_bytes(b"not a certificate")
    with pytest.raises(KeyparityError, match=r"junk\.crt: not a PEM or DER X.509 certificate"):
        L(junk)
    with pytest.raises(KeyparityError, match=r"nope\.crt: certificate file not found"):
        L(tmp_path / "nope.crt")
    with pytest.raises(KeyparityError, match="not a PEM or DER X.509 certificate"):
        L(p["client_key"])  # a key where a certificate belongs


# --------------------------------------------------------------------------- handshakes


@pytest.fixture(scope="module")
def server(p: dict[str, Path]) -> Iterator[MutualTlsServer]:
    """The server hosting the "HSM": accepts client certificates from customerCA.crt or the
    package default."""
    with MutualTlsServer(p["server_certificate"], p["server_key"],
                         [p["customer_ca"], p["default_client_certificate"]]) as srv:
        yield srv


def handshake(address: tuple[str, int], p: dict[str, Path], *, cert: Path | None = None,
              key: Path | None = None, trust_dir: Path | None = None,
              timeout: float = 3.0) -> Check:
    return check_handshake(address[0], address[1], client_cert=cert, client_key=key,
                               key_password=None, trust_dir=trust_dir or p["trust_dir"],
                               timeout=timeout)


def test_handshake_good(server: MutualTlsServer, p: dict[str, Path]) -> None:
    check = handshake(server.address, p, cert=p["client_certificate"], key=p["client_key"])
    assert check.ok, check.message
    assert check.facts["details"]["protocol"] == "TLSv1.3"
    assert check.facts["details"]["cipher"].startswith("TLS_")
    assert check.facts["details"]["server_data_bytes"] == len(BANNER)
    server_info = check.facts["certificates"][0]
    assert server_info["sha256"] == chains.CertInfo.of(L(p["server_certificate"])).sha256
    assert check.facts["chain"] == [server_info["subject"]]
    assert check.facts["certificates"][1]["subject"] == \
        L(p["client_certificate"]).subject.rfc4514_string()
    json.dumps(check.record())


def test_handshake_tls12_and_package_default(p: dict[str, Path]) -> None:
    with MutualTlsServer(p["server_certificate"], p["server_key"],
                         [p["customer_ca"], p["default_client_certificate"]],
                         maximum_version=ssl.TLSVersion.TLSv1_2) as srv:
        check = handshake(srv.address, p, cert=p["default_client_certificate"],
                          key=p["default_client_key"])
        missing = handshake(srv.address, p)
    assert check.ok, check.message
    assert check.facts["details"]["protocol"] == "TLSv1.2"
    assert check.facts["details"]["cipher"]
    assert not missing.ok
    assert missing.message.startswith("the server requires a client certificate and none was presented")


def test_handshake_trust_dir_with_hashed_names_and_der(p: dict[str, Path], server: MutualTlsServer,
                                                       tmp_path: Path) -> None:
    shutil.copy(p["server_certificate"], tmp_path / "21a10654.0")
    (tmp_path / "other.cer").write_bytes(L(p["customer_ca"]).public_bytes(serialization.Encoding.DER))
    (tmp_path / "README").write_text("not a certificate, not a certificate name")
    check = handshake(server.address, p, cert=p["client_certificate"], key=p["client_key"],
                      trust_dir=tmp_path)
    assert check.ok, check.message
    assert len(check.facts["details"]["trust_certificates"]) == 2


def test_handshake_server_certificate_not_in_trust_dir(server: MutualTlsServer, p: dict[str, Path],
                                                       tmp_path: Path) -> None:
    other, _ = pki.self_signed_server("CloudHSM", now=NOW)
    pki.write_pem(tmp_path / "server.crt", other)  # same subject, different certificate
    check = handshake(server.address, p, cert=p["client_certificate"], key=p["client_key"],
                      trust_dir=tmp_path)
    assert not check.ok
    real = chains.CertInfo.of(L(p["server_certificate"])).sha256
    assert check.message.startswith(f"server certificate (sha256 {real}")
    assert f"is not in the trust directory {tmp_path}" in check.message


def test_handshake_without_a_client_certificate(server: MutualTlsServer, p: dict[str, Path]) -> None:
    check = handshake(server.address, p)
    assert not check.ok
    assert check.message.startswith("the server requires a client certificate and none was presented")
    assert check.facts["details"]["protocol"] == "TLSv1.3"  # the handshake completed; the alert came after


def test_handshake_client_certificate_from_another_ca(server: MutualTlsServer, p: dict[str, Path],
                                                      other_ca: Any, tmp_path: Path) -> None:
    key = pki.make_key()
    cert = leaf(*other_ca, key=key, eku=[ExtendedKeyUsageOID.CLIENT_AUTH], name="client")
    check = handshake(server.address, p, cert=pki.write_pem(tmp_path / "c.crt", cert),
                      key=pki.write_key(tmp_path / "c.key", key))
    assert not check.ok
    assert "refused the client certificate (CN=client" in check.message
    assert "UNKNOWN_CA" in check.message


def test_handshake_optional_client_certificate(p: dict[str, Path]) -> None:
    with MutualTlsServer(p["server_certificate"], p["server_key"], None,
                         require_client_cert=False) as srv:
        check = handshake(srv.address, p)
    assert check.ok, check.message
    assert "no client certificate presented" in check.message


def test_handshake_client_key_not_matching_its_certificate(server: MutualTlsServer,
                                                           p: dict[str, Path]) -> None:
    check = handshake(server.address, p, cert=p["client_certificate"], key=p["server_key"])
    assert not check.ok and check.message.startswith("cannot load the client certificate")
    assert "the key does not belong to the certificate" in check.message


def test_handshake_empty_or_missing_trust_dir(server: MutualTlsServer, p: dict[str, Path],
                                              tmp_path: Path) -> None:
    assert "holds no certificates" in handshake(server.address, p, trust_dir=tmp_path).message
    assert "cannot be read" in handshake(server.address, p, trust_dir=tmp_path / "absent").message


def test_handshake_closed_port(p: dict[str, Path]) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    check = handshake(("127.0.0.1", port), p, timeout=2.0)
    assert time.monotonic() - start < 2.0 + 2
    assert not check.ok
    assert check.message.startswith(f"endpoint 127.0.0.1:{port} unreachable within 2.0 s: ")
    assert "refused" in check.message.lower()


def test_handshake_blackholed_endpoints_fail_within_the_timeout(p: dict[str, Path]) -> None:
    timeout = 1.0
    # 1. TCP is accepted (by the kernel) but nobody ever speaks TLS
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    # 2. the accept queue is full, so the kernel drops the SYN: the TCP connect itself hangs
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(full.getsockname())
        fillers.append(filler)
    time.sleep(0.05)
    try:
        for listener in (silent, full):
            port = listener.getsockname()[1]
            start = time.monotonic()
            check = handshake(("127.0.0.1", port), p, timeout=timeout)
            elapsed = time.monotonic() - start
            assert elapsed < timeout + 2, elapsed
            assert not check.ok
            assert check.message.startswith(f"endpoint 127.0.0.1:{port} unreachable within 1.0 s: ")
            assert check.facts["details"]["elapsed_s"] >= timeout * 0.9  # it did wait, then gave up
    finally:
        for s in (silent, full, *fillers):
            s.close()


def test_server_needs_a_client_ca_to_require_client_certificates(p: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="needs client_ca"):
        MutualTlsServer(p["server_certificate"], p["server_key"], None)


def test_server_records_connections_and_stops(p: dict[str, Path]) -> None:
    srv = MutualTlsServer(p["server_certificate"], p["server_key"], p["customer_ca"])
    with srv:
        address = srv.address
        assert handshake(address, p, cert=p["client_certificate"], key=p["client_key"]).ok
        assert not handshake(address, p).ok
        deadline = time.monotonic() + 2
        while len(srv.connections) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    outcomes = sorted((c["ok"], c["client_certificate"] is not None) for c in srv.connections)
    assert outcomes == [(False, False), (True, True)]
    assert srv._thread is not None and not srv._thread.is_alive()
    with socket.socket() as probe:
        assert probe.connect_ex(address) != 0  # the listening socket is closed


# --------------------------------------------------------------------------- X.509 v1 (real world)


def test_v1_cluster_certificate_is_verified_link_by_link(ca: x509.Certificate, ca_key: Any,
                                                         other_ca: Any, old_ca: Any) -> None:
    """`openssl x509 -req` (the command AWS documents) writes v1 certificates before OpenSSL
    3.2; cryptography's policy verifier refuses v1, so those chains are checked link by link."""
    csr_key = pki.make_key()
    v1 = pki.issue_v1_certificate(csr_key, "cluster-v1", ca, ca_key, NOW - DAY, NOW + 400 * DAY)
    assert v1.version == x509.Version.v1
    good = cluster_check(v1, ca)
    assert good.ok, good.message
    assert good.facts["details"]["verified_with"] == chains.V1_FALLBACK
    assert "(X.509 v1 chain: verified link by link)" in good.message
    assert good.facts["chain"] == [v1.subject.rfc4514_string(), ca.subject.rfc4514_string()]

    forged = pki.issue_v1_certificate(csr_key, "cluster-v1", other_ca[0], other_ca[1],
                                      NOW - DAY, NOW + 400 * DAY)
    bad = cluster_check(forged, ca)
    assert not bad.ok and "is not issued by customerCA.crt" in bad.message
    assert "signature" in bad.message.lower()

    expired = pki.issue_v1_certificate(csr_key, "cluster-v1", old_ca[0], old_ca[1],
                                       NOW - 400 * DAY, NOW - 2 * DAY)
    late = cluster_check(expired, old_ca[0])
    assert not late.ok and late.message.startswith("the cluster certificate expired on ")
    assert late.facts["details"]["issued_by_customer_ca"] is True


def test_v1_manufacturer_root_like_marvells(p: dict[str, Path]) -> None:
    """Marvell's LiquidSecurity root is a self-signed v1 certificate (and expired 2025-11-16)."""
    root_key, hw_key = pki.make_key(), pki.make_key()
    hsm_key = pki.make_key()

    def chain(root_days: float) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
        root = pki.issue_v1_certificate(root_key, "LiquidSecurity (test v1)", None, root_key,
                                        NOW - 3000 * DAY, NOW + root_days * DAY)
        hw = pki.issue_certificate(hw_key, "HSM hw", root, root_key, NOW - 2000 * DAY,
                                   NOW + 400 * DAY, ca=True)
        hsm = pki.issue_certificate(hsm_key, "HSM", hw, hw_key, NOW - 1000 * DAY, NOW + 300 * DAY)
        return root, hw, hsm

    root, hw, hsm = chain(100)
    check = identity(p, hsm_cert=hsm, manufacturer_hardware=hw, manufacturer_root=root,
                     manufacturer_root_sha256=chains.CertInfo.of(root).sha256, aws_hardware=None,
                     aws_root=None, aws_root_sha256=None)
    assert check.ok, check.message
    assert check.facts["details"]["chains"]["manufacturer"]["verified_with"] == chains.V1_FALLBACK

    root, hw, hsm = chain(-5)
    expired = identity(p, hsm_cert=hsm, manufacturer_hardware=hw, manufacturer_root=root,
                       manufacturer_root_sha256=chains.CertInfo.of(root).sha256, aws_hardware=None,
                       aws_root=None, aws_root_sha256=None)
    assert not expired.ok
    assert expired.message.startswith("the manufacturer root expired on ")
    assert "does not chain" not in expired.message  # the chain itself is sound


def test_v1_intermediate_is_not_a_ca(p: dict[str, Path]) -> None:
    root, root_key = pki.make_ca("v3 root", now=NOW)
    hw_key = pki.make_key()
    hw = pki.issue_v1_certificate(hw_key, "HSM hw v1", root, root_key, NOW - DAY, NOW + 99 * DAY)
    hsm = pki.issue_certificate(pki.make_key(), "HSM", hw, hw_key, NOW - DAY, NOW + 90 * DAY)
    check = identity(p, hsm_cert=hsm, aws_hardware=hw, aws_root=root,
                     aws_root_sha256=chains.CertInfo.of(root).sha256, manufacturer_hardware=None,
                     manufacturer_root=None, manufacturer_root_sha256=None)
    assert not check.ok
    assert "a v1 issuer is acceptable only as a self-signed trust anchor" in check.message
