"""Who a signing key belongs to: an X.509 certificate of the organisation's PKI binds a signer's
public key to a person (subject CN, e-mail), as PCI DSS 3.6.1.2 / 3.7.6 and PCI PIN's dual
control want people, not keys, to agree.

A certificate is accepted for a key only when its public key IS that key (same key id), it was
valid when the key signed, and it was issued by a CA the verifier trusts (``--ca``: issued
directly by one of those certificates, whose signature over it verifies). A key without such a
certificate is named by its key id and the signer's name; two keys whose certificates name one
subject are one person.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID, NameOID
from securesystemslib.signer import SSlibKey

from ..errors import KeyparityError

__all__ = ["CertificateError", "Identity", "binding_problems", "identity_of", "issued_by",
           "key_of", "load_certificate", "load_certificates", "pem_kind"]


class CertificateError(KeyparityError):
    """A certificate cannot be read, or does not bind the key it is given for."""


@dataclass(frozen=True)
class Identity:
    """A person as a certificate names them."""

    subject: str  # RFC 4514, e.g. CN=Alice Example,O=Example Bank
    common_name: str | None
    email: str | None
    issuer: str
    serial: str

    def shown(self) -> str:
        who = self.common_name or self.subject
        return f"{who} <{self.email}>" if self.email else who

    def record(self) -> dict[str, str | None]:
        return {"subject": self.subject, "common_name": self.common_name, "email": self.email,
                "issuer": self.issuer, "serial": self.serial}


def pem_kind(pem: bytes) -> str:
    """"certificate", "public key" or "private key": what a PEM file holds."""
    if b"-----BEGIN CERTIFICATE-----" in pem:
        return "certificate"
    if b"PRIVATE KEY" in pem:
        return "private key"
    return "public key"


def load_certificates(pem: bytes, where: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CertificateError(f"{where}: not a PEM certificate ({exc})") from None
    return certs


def load_certificate(path: Path) -> x509.Certificate:
    """The first certificate of a PEM file; CertificateError otherwise."""
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read certificate {path}: {exc.strerror or exc}") from None
    return load_certificates(pem, str(path))[0]


def key_of(cert: x509.Certificate) -> SSlibKey:
    """The certificate's public key as securesystemslib names it (the key id a signature
    carries)."""
    try:
        return SSlibKey.from_crypto(cert.public_key())  # type: ignore[arg-type]
    except ValueError as exc:
        raise CertificateError(f"certificate {cert.subject.rfc4514_string()}: unsupported "
                               f"public key ({exc})") from None


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def identity_of(cert: x509.Certificate) -> Identity:
    email = None
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        emails = san.value.get_values_for_type(x509.RFC822Name)
        email = emails[0] if emails else None
    except x509.ExtensionNotFound:
        pass
    email = email or _attribute(cert.subject, NameOID.EMAIL_ADDRESS)
    return Identity(subject=cert.subject.rfc4514_string(),
                    common_name=_attribute(cert.subject, NameOID.COMMON_NAME), email=email,
                    issuer=cert.issuer.rfc4514_string(), serial=format(cert.serial_number, "x"))


def issued_by(cert: x509.Certificate, cas: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The CA of ``cas`` that issued ``cert`` (names match and its signature verifies)."""
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca
    return None


def binding_problems(cert: x509.Certificate, key: SSlibKey, at: dt.datetime,
                     cas: Iterable[x509.Certificate] | None) -> list[str]:
    """Why ``cert`` does not bind ``key`` to its subject at time ``at``: its public key is
    another, it was not valid then, it was not issued by a CA of ``cas`` (None: not asked)."""
    who = cert.subject.rfc4514_string()
    problems = []
    if key_of(cert).keyid != key.keyid:
        problems.append(f"the certificate of {who} holds another public key (keyid "
                        f"{key_of(cert).keyid[:16]}) than the signer's (keyid {key.keyid[:16]})")
    at = at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        problems.append(f"the certificate of {who} was not valid at {at.isoformat()} (valid "
                        f"{cert.not_valid_before_utc.isoformat()} to "
                        f"{cert.not_valid_after_utc.isoformat()})")
    if cas is not None:
        cas = list(cas)
        if issued_by(cert, cas) is None:
            problems.append(f"the certificate of {who} (issuer "
                            f"{cert.issuer.rfc4514_string()}) was not issued by a CA given "
                            f"({len(cas)} given with --ca)")
    return problems


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
