"""A complete test PKI shaped like AWS CloudHSM's, for the SoftHSM demo and the tests.

What CloudHSM hands a customer, and what this module builds with EC P-256 keys:

* ``customerCA.crt`` (+ its key, kept to issue more certificates) — the customer's own CA;
* the **cluster certificate**, issued by the customer CA for the cluster CSR's key (the key of
  the "HSM"); the HSM presents it on the inner TLS connection;
* the **HSM identity** documents: the HSM certificate, signed by the HSM *hardware* key; the
  AWS hardware certificate and the manufacturer hardware certificate, which carry the same
  subject and the same (hardware) public key, each issued by its own root — so the *same*
  HSM certificate verifies under both roots; and the cluster CSR, made with the HSM key;
* ``client.crt`` / ``client.key`` issued by the customer CA, and a self-signed stand-in for
  the client package's default ``client.crt``;
* the self-signed certificate of the server hosting the HSM (port 2223), and a trust
  directory (``certs/``) holding it, like ``/opt/cloudhsm/etc/certs``;
* ``pins.json``: the SHA-256 fingerprints of both roots, as a profile would pin them.

The small public helpers (:func:`make_key`, :func:`make_ca`, :func:`issue_certificate`,
:func:`self_signed_server`, :func:`make_csr`, :func:`write_pem`, :func:`write_key`) exist so
tests can build broken variants: a certificate from another CA, an expired one, a CSR with
another key, and so on. Test material only: the private keys are written unencrypted (0600).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import ip_address
from pathlib import Path
from typing import Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import KeyparityError

__all__ = [
    "PKI_FILES",
    "build_test_pki",
    "issue_certificate",
    "issue_v1_certificate",
    "make_ca",
    "make_csr",
    "make_key",
    "root_pins",
    "self_signed_server",
    "sha256_fingerprint",
    "subject",
    "write_key",
    "write_pem",
]

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey,
                   ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey]
PublicKey = Union[ec.EllipticCurvePublicKey, rsa.RSAPublicKey,
                  ed25519.Ed25519PublicKey, ed448.Ed448PublicKey]

ORGANIZATION = "keyparity test PKI"

# name -> file, relative to the PKI directory. "pins" is written last: it marks completeness.
PKI_FILES: dict[str, str] = {
    "customer_ca": "customerCA.crt",
    "customer_ca_key": "customerCA.key",
    "cluster_csr": "ClusterCsr.csr",
    "cluster_certificate": "CustomerHsmCertificate.crt",
    "hsm_certificate": "HsmCertificate.crt",
    "aws_hardware_certificate": "AwsHardwareCertificate.crt",
    "aws_root": "aws_root.crt",
    "manufacturer_hardware_certificate": "ManufacturerHardwareCertificate.crt",
    "manufacturer_root": "manufacturer_root.crt",
    "client_certificate": "client.crt",
    "client_key": "client.key",
    "default_client_certificate": "default_client.crt",
    "default_client_key": "default_client.key",
    "server_certificate": "server.crt",
    "server_key": "server.key",
    "trust_dir": "certs",
    "trust_server_certificate": "certs/server.crt",
    "pins": "pins.json",
}


# --------------------------------------------------------------------------- helpers


def make_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 private key (fast, and what the test PKI uses everywhere)."""
    return ec.generate_private_key(ec.SECP256R1())


def subject(common_name: str, *, organizational_unit: str | None = None,
            organization: str = ORGANIZATION) -> x509.Name:
    """``CN=<common_name>,OU=...,O=keyparity test PKI`` as an x509.Name."""
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)]
    if organizational_unit:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, organizational_unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _name(value: str | x509.Name) -> x509.Name:
    return value if isinstance(value, x509.Name) else subject(value)


def _public(key: PrivateKey | PublicKey) -> PublicKey:
    return key.public_key() if hasattr(key, "private_bytes") else key  # type: ignore[union-attr,return-value]


def _signature_hash(key: PrivateKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else hashes.SHA256()


def _utc(now: dt.datetime | None) -> dt.datetime:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)


def _builder(public: PublicKey, subject_name: str | x509.Name,
             issuer_cert: x509.Certificate | None, not_before: dt.datetime,
             not_after: dt.datetime, serial: int | None = None) -> x509.CertificateBuilder:
    """Subject, issuer (the subject itself when ``issuer_cert`` is None), key, serial and
    validity: what every certificate here has, before its extensions."""
    name = _name(subject_name)
    return (x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name if issuer_cert is None else issuer_cert.subject)
            .public_key(public)
            .serial_number(serial if serial is not None else x509.random_serial_number())
            .not_valid_before(_utc(not_before))
            .not_valid_after(_utc(not_after)))


def issue_certificate(
    subject_key: PrivateKey | PublicKey,
    subject_name: str | x509.Name,
    issuer_cert: x509.Certificate | None,
    issuer_key: PrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
    ca: bool = False,
    eku: Sequence[x509.ObjectIdentifier] | None = None,
    *,
    san: Iterable[str] = (),
    serial: int | None = None,
    key_usage: bool = True,
    authority_key_identifier: bool = True,
    eku_critical: bool = False,
) -> x509.Certificate:
    """Issue one X.509 v3 certificate, signed with SHA-256 (or EdDSA).

    ``subject_key`` may be a private or a public key (e.g. a CSR's). ``issuer_cert=None``
    makes it self-signed (``issuer_key`` must then be the subject's key). ``eku``: extended
    key usage OIDs, or None for no EKU extension; ``san``: DNS names and IP addresses.
    ``key_usage=False`` / ``authority_key_identifier=False`` leave those extensions out, as
    ``openssl req -x509`` / ``openssl x509 -req`` do, to test the relaxed policies.
    ``eku_critical``: a time-stamping authority's EKU is critical (RFC 3161 §2.3).
    """
    public = _public(subject_key)
    builder = (
        _builder(public, subject_name, issuer_cert, not_before, not_after, serial)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if authority_key_identifier:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_public(issuer_key)),
            critical=False)
    if key_usage:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False,
            key_encipherment=isinstance(public, rsa.RSAPublicKey) and not ca,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False), critical=True)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=eku_critical)
    names: list[x509.GeneralName] = []
    for entry in san:
        try:
            names.append(x509.IPAddress(ip_address(entry)))
        except ValueError:
            names.append(x509.DNSName(entry))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, _signature_hash(issuer_key))  # type: ignore[arg-type]


def issue_v1_certificate(
    subject_key: PrivateKey | PublicKey,
    subject_name: str | x509.Name,
    issuer_cert: x509.Certificate | None,
    issuer_key: PrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """An X.509 **v1** certificate (no extensions), as ``openssl x509 -req`` before OpenSSL 3.2
    writes when a customer signs the cluster CSR with the command AWS documents, and as
    Marvell's LiquidSecurity (manufacturer) root is. ``issuer_cert=None``: self-signed.

    cryptography has no public switch for v1; this sets ``CertificateBuilder._version`` and
    checks that the result really is v1."""
    builder = _builder(_public(subject_key), subject_name, issuer_cert, not_before, not_after)
    builder._version = x509.Version.v1  # type: ignore[attr-defined]
    cert = builder.sign(issuer_key, _signature_hash(issuer_key))  # type: ignore[arg-type]
    if cert.version != x509.Version.v1:  # pragma: no cover - a cryptography change
        raise RuntimeError("this cryptography version cannot build X.509 v1 certificates")
    return cert


def make_ca(
    name: str | x509.Name,
    *,
    key: PrivateKey | None = None,
    now: dt.datetime | None = None,
    days: int = 7300,
    issuer_cert: x509.Certificate | None = None,
    issuer_key: PrivateKey | None = None,
    key_usage: bool = True,
) -> tuple[x509.Certificate, PrivateKey]:
    """A CA certificate and its key: self-signed, or issued by ``issuer_cert``/``issuer_key``."""
    key = key or make_key()
    start = _utc(now) - dt.timedelta(days=1)
    cert = issue_certificate(key, name, issuer_cert, issuer_key or key, start,
                             start + dt.timedelta(days=days + 1), ca=True, key_usage=key_usage)
    return cert, key


def self_signed_server(
    name: str | x509.Name = "CloudHSM",
    *,
    key: PrivateKey | None = None,
    now: dt.datetime | None = None,
    days: int = 3650,
    hosts: Iterable[str] = ("localhost", "127.0.0.1"),
) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed TLS server certificate (like the one on CloudHSM's port 2223) and its key."""
    key = key or make_key()
    if isinstance(name, str):
        name = subject(name, organizational_unit="AWS Cryptography (test)")
    start = _utc(now) - dt.timedelta(days=1)
    cert = issue_certificate(key, name, None, key, start, start + dt.timedelta(days=days + 1),
                             eku=[ExtendedKeyUsageOID.SERVER_AUTH], san=hosts)
    return cert, key


def make_csr(key: PrivateKey, subject_name: str | x509.Name) -> x509.CertificateSigningRequest:
    """A certificate signing request for ``key`` (signed with it)."""
    return (x509.CertificateSigningRequestBuilder().subject_name(_name(subject_name))
            .sign(key, _signature_hash(key)))  # type: ignore[arg-type]


def write_pem(path: Path, obj: x509.Certificate | x509.CertificateSigningRequest
              | Sequence[x509.Certificate]) -> Path:
    """Write a certificate, a CSR, or several certificates (a bundle) as PEM."""
    items = obj if isinstance(obj, (list, tuple)) else [obj]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(item.public_bytes(serialization.Encoding.PEM) for item in items))
    return path


def write_key(path: Path, key: PrivateKey, password: str | None = None) -> Path:
    """Write a private key as PKCS #8 PEM, mode 0600; encrypted when a password is given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encryption = (serialization.BestAvailableEncryption(password.encode())
                  if password else serialization.NoEncryption())
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)
    return path


def sha256_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER encoding, lower-case hex without colons."""
    return cert.fingerprint(hashes.SHA256()).hex()


# --------------------------------------------------------------------------- the whole PKI


def _paths(directory: Path) -> dict[str, Path]:
    return {name: directory / relative for name, relative in PKI_FILES.items()}


def build_test_pki(directory: Path, *, now: dt.datetime | None = None, cluster_days: int = 3650,
                   client_days: int = 3650) -> dict[str, Path]:
    """Write a complete CloudHSM-like test PKI into ``directory``; return its paths by name.

    Idempotent: when every file of a previous build is there, it is kept as it is (``now`` and
    the day counts are then ignored). A partial directory is rebuilt from scratch.
    """
    directory = Path(directory)
    paths = _paths(directory)
    if all(path.exists() for path in paths.values()):
        return paths
    now = _utc(now)
    start = now - dt.timedelta(days=1)
    directory.mkdir(parents=True, exist_ok=True)
    paths["pins"].unlink(missing_ok=True)  # written last: a partial build never looks complete

    ca_days = max(cluster_days, client_days) + 365
    customer_ca, customer_ca_key = make_ca(subject("customerCA", organizational_unit="customer"),
                                           now=now, days=ca_days)

    # The HSM: its hardware key (certified by AWS and by the manufacturer, same subject) signs
    # the HSM certificate for the HSM key; the cluster CSR is made with that same HSM key.
    hardware_key = make_key()
    hardware_name = subject("HSM hardware 0001 (test)", organizational_unit="HSM")
    aws_root, aws_root_key = make_ca(subject("AWS CloudHSM Root (test)", organizational_unit="AWS"),
                                     now=now, days=7300)
    manufacturer_root, manufacturer_root_key = make_ca(
        subject("HSM Manufacturer Root (test)", organizational_unit="Manufacturer"),
        now=now, days=7300)
    aws_hardware, _ = make_ca(hardware_name, key=hardware_key, now=now, days=7000,
                              issuer_cert=aws_root, issuer_key=aws_root_key)
    manufacturer_hardware, _ = make_ca(hardware_name, key=hardware_key, now=now, days=7000,
                                       issuer_cert=manufacturer_root,
                                       issuer_key=manufacturer_root_key)
    hsm_key = make_key()
    hsm_certificate = issue_certificate(hsm_key, subject("HSM 0001 (test)", organizational_unit="HSM"),
                                        aws_hardware, hardware_key, start,
                                        start + dt.timedelta(days=6000))
    cluster_csr = make_csr(hsm_key, subject("cluster-test0001", organizational_unit="CloudHSM"))
    cluster_certificate = issue_certificate(
        cluster_csr.public_key(), cluster_csr.subject, customer_ca, customer_ca_key, start,
        now + dt.timedelta(days=cluster_days), eku=[ExtendedKeyUsageOID.SERVER_AUTH])

    client_key = make_key()
    client_certificate = issue_certificate(
        client_key, subject("keyparity client", organizational_unit="customer"), customer_ca,
        customer_ca_key, start, now + dt.timedelta(days=client_days),
        eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    default_key = make_key()
    default_certificate = issue_certificate(
        default_key, subject("CloudHSM client package default (test)"), None, default_key, start,
        start + dt.timedelta(days=7300), eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    server_certificate, server_key = self_signed_server(now=now)

    write_pem(paths["customer_ca"], customer_ca)
    write_key(paths["customer_ca_key"], customer_ca_key)
    write_pem(paths["cluster_csr"], cluster_csr)
    write_pem(paths["cluster_certificate"], cluster_certificate)
    write_pem(paths["hsm_certificate"], hsm_certificate)
    write_pem(paths["aws_hardware_certificate"], aws_hardware)
    write_pem(paths["aws_root"], aws_root)
    write_pem(paths["manufacturer_hardware_certificate"], manufacturer_hardware)
    write_pem(paths["manufacturer_root"], manufacturer_root)
    write_pem(paths["client_certificate"], client_certificate)
    write_key(paths["client_key"], client_key)
    write_pem(paths["default_client_certificate"], default_certificate)
    write_key(paths["default_client_key"], default_key)
    write_pem(paths["server_certificate"], server_certificate)
    write_key(paths["server_key"], server_key)
    if paths["trust_dir"].exists():
        shutil.rmtree(paths["trust_dir"])
    write_pem(paths["trust_server_certificate"], server_certificate)
    pins = {"aws_root_sha256": sha256_fingerprint(aws_root),
            "manufacturer_root_sha256": sha256_fingerprint(manufacturer_root)}
    paths["pins"].write_text(json.dumps(pins, indent=2) + "\n", encoding="utf-8")
    return paths


def root_pins(paths: Mapping[str, Path]) -> dict[str, str]:
    """The pinned root fingerprints of a built PKI: ``aws_root_sha256``, ``manufacturer_root_sha256``."""
    pins_path = Path(paths["pins"]) if "pins" in paths else None
    if pins_path is None or not pins_path.is_file():
        raise KeyparityError(f"{pins_path or 'pins.json'}: no root pins; build the test PKI first")
    pins = json.loads(pins_path.read_text(encoding="utf-8"))
    return {name: str(pins[name]) for name in ("aws_root_sha256", "manufacturer_root_sha256")}
