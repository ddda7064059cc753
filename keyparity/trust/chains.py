"""Offline certificate checks for a cluster (AWS CloudHSM's inner TLS connection and the files
the client uses): the certificates are read from files and their chains verified, nothing is
connected to. The live handshake is keyparity.trust.handshake's.

The HSM presents the cluster certificate, which must be issued by ``customerCA.crt``; the
client presents ``client.crt`` — the client package's default, or one issued by
``customerCA.crt`` — whose key must be the one beside it. The HSM's identity is proven by the
HSM certificate chaining through the AWS and the manufacturer hardware certificates to their
(pinned) roots, and by the cluster CSR holding the same public key as the HSM certificate.

Every check returns a :class:`keyparity.checks.Check` (named: ``"cluster_certificate"``...)
whose facts are the evidence: ``certificates`` (per certificate subject, issuer, serial,
SHA-256 fingerprint and validity), ``chain`` (subjects, leaf -> root) and ``details``
(:class:`Draft` gathers them, :func:`finish` makes the Check; the handshake uses both).

Chains are verified by ``cryptography.x509.verification`` (never by hand). Its defaults are
the CA/Browser Forum web PKI profile, which CloudHSM's certificates are not: a customer CA made
by ``openssl req -x509`` has no keyUsage, a cluster certificate from ``openssl x509 -req`` has
no authorityKeyIdentifier nor subjectAltName. The checks therefore build their extension
policies from :meth:`ExtensionPolicy.permit_all` and add back what matters for these roles
(see :func:`_ca_policy` and :func:`_ee_policy`); signatures, validity periods, issuer
matching, basicConstraints ``cA`` on issuers, unknown critical extensions and the allowed
signature algorithms stay the library's.

The policy verifier accepts X.509 v3 only. Real CloudHSM material includes v1 certificates:
``openssl x509 -req`` (the command AWS documents for signing the cluster CSR) writes v1 before
OpenSSL 3.2, and Marvell's LiquidSecurity manufacturer root is v1. When a chain holds a v1
certificate, it is verified link by link with ``Certificate.verify_directly_issued_by``
(issuer name and signature, still the library's), plus validity periods and OpenSSL's rule
that a v1 issuer is only acceptable as a self-signed trust anchor (:func:`_v1_path`); the
evidence says so (``details["verified_with"]``).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from ..checks import Check
from ..errors import KeyparityError

__all__ = [
    "POLICY_VERIFIER",
    "V1_FALLBACK",
    "CertInfo",
    "Draft",
    "check_client_certificate",
    "check_cluster_certificate",
    "check_csr_matches",
    "check_hsm_identity",
    "finish",
    "load_certificate",
    "load_certificates",
    "load_csr",
    "subjects",
    "trust_files",
]

UTC = dt.timezone.utc
_HASHED_NAME = re.compile(r"^[0-9a-f]{8}\.[0-9]+$")  # c_rehash names, as in /opt/cloudhsm/etc/certs
_TRUST_SUFFIXES = (".crt", ".pem", ".cer")


# --------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class CertInfo:
    """What the evidence records about one certificate."""

    subject: str
    issuer: str
    serial: str  # lower-case hex
    sha256: str  # SHA-256 of the DER certificate, lower-case hex
    not_before: str  # ISO 8601, UTC
    not_after: str

    @classmethod
    def of(cls, cert: x509.Certificate) -> CertInfo:
        return cls(
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            serial=format(cert.serial_number, "x"),
            sha256=_fingerprint(cert),
            not_before=cert.not_valid_before_utc.isoformat(),
            not_after=cert.not_valid_after_utc.isoformat(),
        )


@dataclass
class Draft:
    """What a check gathers as it goes; :func:`finish` turns it into the :class:`Check`."""

    name: str
    certificates: list[CertInfo] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)  # subjects, leaf -> root
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- loading


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyparityError(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise KeyparityError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file (a bundle), or the one in a DER file."""
    data = _read(path, "certificate")
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise KeyparityError(f"{path}: not a PEM or DER X.509 certificate") from None
    return certs


def load_certificate(path: Path) -> x509.Certificate:
    """The (first) certificate in a PEM or DER file; KeyparityError naming the file if unreadable."""
    return load_certificates(path)[0]


def load_csr(path: Path) -> x509.CertificateSigningRequest:
    """A PEM or DER certificate signing request; KeyparityError naming the file if unreadable."""
    data = _read(path, "certificate signing request")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError:
        raise KeyparityError(f"{path}: not a PEM or DER certificate signing request") from None


def trust_files(trust_dir: Path) -> list[Path]:
    """The certificate files of a trust directory: ``*.crt``, ``*.pem``, ``*.cer`` and the
    hashed names of ``c_rehash`` (``21a10654.0``), which CloudHSM's ``/opt/cloudhsm/etc/certs``
    uses."""
    return sorted(p for p in Path(trust_dir).iterdir() if p.is_file() and (
        p.suffix.lower() in _TRUST_SUFFIXES or _HASHED_NAME.match(p.name)))


# --------------------------------------------------------------------------- policies

ANY_EKU = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE
_PURPOSES = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}


def _ca_key_usage(policy: Any, cert: x509.Certificate, key_usage: x509.KeyUsage | None) -> None:
    if key_usage is not None and not key_usage.key_cert_sign:
        raise ValueError("keyUsage of an issuing certificate lacks keyCertSign")


def _ca_policy() -> ExtensionPolicy:
    """Issuers: basicConstraints must be present (the library then insists on cA=TRUE and
    honours pathLen); keyUsage may be absent (``openssl req -x509`` writes none), but when
    present it must allow keyCertSign. No authorityKeyIdentifier/subjectKeyIdentifier rules."""
    return (ExtensionPolicy.permit_all()
            .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
            .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage))


def _not_ca(policy: Any, cert: x509.Certificate, constraints: x509.BasicConstraints | None) -> None:
    if constraints is not None and constraints.ca:
        raise ValueError("an end-entity certificate must not be a CA (basicConstraints cA=TRUE)")


def _eku_allows(purpose: x509.ObjectIdentifier) -> Any:
    def check(policy: Any, cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
        if eku is not None and purpose not in eku and ANY_EKU not in eku:
            raise ValueError(f"extendedKeyUsage does not allow "
                             f"{_PURPOSES.get(purpose, purpose.dotted_string)}")
    return check


def _ee_policy(purpose: x509.ObjectIdentifier | None) -> ExtensionPolicy:
    """End entities: no subjectAltName/authorityKeyIdentifier requirement (these are not web
    server certificates, and no host name is checked); not a CA; when an extendedKeyUsage is
    present it must allow ``purpose`` (serverAuth for what the HSM presents, clientAuth for
    client.crt). ``purpose=None``: extendedKeyUsage and basicConstraints are not examined
    (the vendor's HSM certificate, whose extensions we do not control)."""
    policy = ExtensionPolicy.permit_all()
    if purpose is None:
        return policy
    return (policy.may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, _not_ca)
            .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _eku_allows(purpose)))


def _utc(now: dt.datetime) -> dt.datetime:
    return now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)


POLICY_VERIFIER = "cryptography.x509.verification (PolicyBuilder, relaxed extension policies)"
V1_FALLBACK = ("Certificate.verify_directly_issued_by link by link: X.509 v1 certificate(s) in "
               "the chain, which the policy verifier refuses (it accepts v3 only)")


def _ext(cert: x509.Certificate, kind: type) -> Any:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _v1_path(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
             anchors: Sequence[x509.Certificate], when: dt.datetime,
             purpose: x509.ObjectIdentifier | None) -> list[x509.Certificate]:
    """The chain for X.509 v1 certificates, as OpenSSL accepts them: each link's issuer name
    and signature checked by ``Certificate.verify_directly_issued_by``; every certificate
    valid at ``when``; an issuer is a v3 certificate with basicConstraints cA=TRUE (keyUsage,
    if any, with keyCertSign) or a self-signed v1 trust anchor; the leaf's v3 extensions (if
    any) follow the same end-entity rules as the policy verifier's."""
    if purpose is not None and leaf.version == x509.Version.v3:
        try:
            _not_ca(None, leaf, _ext(leaf, x509.BasicConstraints))
            _eku_allows(purpose)(None, leaf, _ext(leaf, x509.ExtendedKeyUsage))
        except ValueError as exc:
            raise VerificationError(f"{exc} (at {leaf.subject.rfc4514_string()})") from None
    anchor_prints = {_fingerprint(a) for a in anchors}
    path = [leaf]
    while _fingerprint(path[-1]) not in anchor_prints:
        current = path[-1]
        if len(path) > 8:
            raise VerificationError("chain too long")
        reasons = []
        for candidate in [*intermediates, *anchors]:
            if candidate.subject != current.issuer or candidate in path:
                continue
            try:
                current.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
                reasons.append(str(exc) or "signature does not match")
                continue
            if candidate.version == x509.Version.v1:
                if not (_fingerprint(candidate) in anchor_prints and candidate.issuer == candidate.subject):
                    reasons.append("a v1 issuer is acceptable only as a self-signed trust anchor")
                    continue
            else:
                constraints, usage = _ext(candidate, x509.BasicConstraints), _ext(candidate, x509.KeyUsage)
                if constraints is None or not constraints.ca:
                    reasons.append("basicConstraints.cA must be asserted in a CA certificate")
                    continue
                if usage is not None and not usage.key_cert_sign:
                    reasons.append("keyUsage of an issuing certificate lacks keyCertSign")
                    continue
            path.append(candidate)
            break
        else:
            raise VerificationError(
                f"{'; '.join(reasons) if reasons else 'no issuer found (its issuer name matches no trusted certificate)'}"
                f" (at {current.subject.rfc4514_string()})")
    for cert in path:
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            raise VerificationError(f"cert is not valid at validation time (at {cert.subject.rfc4514_string()})")
    return path


def _verify(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
            anchors: Sequence[x509.Certificate], when: dt.datetime,
            purpose: x509.ObjectIdentifier | None) -> tuple[list[x509.Certificate], str]:
    """(verified chain leaf first, how); VerificationError if there is none at ``when``."""
    verifier = (PolicyBuilder().store(Store(list(anchors))).time(when)
                .extension_policies(ca_policy=_ca_policy(), ee_policy=_ee_policy(purpose))
                .build_client_verifier())  # the client verifier needs no host name / SAN
    try:
        return list(verifier.verify(leaf, list(intermediates)).chain), POLICY_VERIFIER
    except VerificationError:
        if not any(c.version == x509.Version.v1 for c in (leaf, *intermediates, *anchors)):
            raise
    return _v1_path(leaf, intermediates, anchors, when, purpose), V1_FALLBACK


def _verification_reason(exc: Exception) -> str:
    text = str(exc).removeprefix("validation failed: ")
    text = text.replace("candidates exhausted: all candidates exhausted with no interior errors",
                        "no issuer found (its issuer name matches no trusted certificate)")
    return re.sub(r"\s*\(encountered processing <Certificate\(subject=<Name\((.*?)\)>, \.\.\.\)>\)",
                  r" (at \1)", text)


def _window_problem(cert: x509.Certificate, label: str, now: dt.datetime) -> str | None:
    if now < cert.not_valid_before_utc:
        return (f"{label} is not valid before {cert.not_valid_before_utc.isoformat()} "
                f"(now {now.isoformat(timespec='seconds')})")
    if now > cert.not_valid_after_utc:
        return (f"{label} expired on {cert.not_valid_after_utc.isoformat()} "
                f"(now {now.isoformat(timespec='seconds')})")
    return None


@dataclass
class _Chain:
    chain: list[x509.Certificate] | None  # verified at now, or (when only dates failed) at a probe time
    window_problems: list[str]  # certificates not valid now
    error: str | None  # why it is not issued as required (besides dates), or None
    method: str | None = None  # how the chain was verified


def _chain(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
           anchors: Sequence[x509.Certificate], labels: Sequence[str], now: dt.datetime,
           purpose: x509.ObjectIdentifier | None) -> _Chain:
    """Verify at ``now``; when a certificate is out of its validity period, verify again at a
    moment when all are valid so the message can say whether the chain is otherwise sound."""
    certs = [leaf, *intermediates, *anchors]
    windows = [p for c, label in zip(certs, labels) if (p := _window_problem(c, label, now))]
    try:
        return _Chain(*_pair(_verify(leaf, intermediates, anchors, now, purpose), windows))
    except VerificationError as exc:
        error = _verification_reason(exc)
    if not windows:
        return _Chain(None, windows, error)
    probe = max(c.not_valid_before_utc for c in certs) + dt.timedelta(seconds=1)
    if probe > min(c.not_valid_after_utc for c in certs):
        return _Chain(None, windows, "the validity periods of these certificates never overlap, "
                                     "so no chain can be valid at any time")
    try:
        return _Chain(*_pair(_verify(leaf, intermediates, anchors, probe, purpose), windows))
    except VerificationError as exc:
        return _Chain(None, windows, _verification_reason(exc))


def _pair(verified: tuple[list[x509.Certificate], str], windows: list[str]) -> tuple[Any, ...]:
    chain, method = verified
    return chain, windows, None, method


def _v1_note(result: _Chain) -> str:
    return " (X.509 v1 chain: verified link by link)" if result.method == V1_FALLBACK else ""


def subjects(chain: Iterable[x509.Certificate]) -> list[str]:
    return [c.subject.rfc4514_string() for c in chain]


def _lifetime(cert: x509.Certificate, label: str, cutover: dt.date, min_days: int,
              warn_days: int) -> tuple[str | None, str | None]:
    """(problem, warning) about how long after the cutover the certificate stays valid.

    "Valid past cutover + N days" means still valid at 00:00 UTC on the day N days after
    the cutover date."""
    start = dt.datetime.combine(cutover, dt.time.min, tzinfo=UTC)
    not_after = cert.not_valid_after_utc
    left = (not_after - start).days
    if not_after < start + dt.timedelta(days=min_days):
        need = (start + dt.timedelta(days=min_days)).date().isoformat()
        return (f"{label} expires on {not_after.date().isoformat()}, {left} day(s) after the "
                f"cutover on {cutover.isoformat()}; it must stay valid at least {min_days} days "
                f"after it (until {need})"), None
    if not_after < start + dt.timedelta(days=warn_days):
        return None, (f"{label} expires on {not_after.date().isoformat()}, only {left} day(s) "
                      f"after the cutover on {cutover.isoformat()} (warning below {warn_days} "
                      f"days); plan its renewal")
    return None, None


def finish(draft: Draft, problems: list[str], success: str) -> Check:
    """The check: passed without problems (``success`` is then its message), else failed with
    the problems as its message; the facts are the certificates, chain and details."""
    problems = list(dict.fromkeys(problems))  # e.g. an expired HSM certificate, seen by both chains
    facts = {"certificates": [asdict(info) for info in draft.certificates],
             "chain": list(draft.chain), "details": dict(draft.details)}
    return Check(ok=not problems, message="; ".join(problems) if problems else success,
                 facts=facts, warnings=tuple(draft.warnings), name=draft.name)


# --------------------------------------------------------------------------- inner TLS


def _check_lifetimes(draft: Draft, problems: list[str], certs: Iterable[tuple[Any, str]],
                     now: dt.datetime, cutover: dt.date, min_days: int, warn_days: int) -> None:
    """Each certificate valid past the cutover plus the margin (a problem), or plus the warning
    margin (a warning); certificates already outside their validity were reported before."""
    for cert, label in certs:
        if _window_problem(cert, label, now):
            continue
        problem, warning = _lifetime(cert, label, cutover, min_days, warn_days)
        problems += [problem] if problem else []
        draft.warnings += [warning] if warning else []


def check_cluster_certificate(cert: x509.Certificate, customer_ca: x509.Certificate, *,
                              now: dt.datetime, cutover: dt.date, min_days: int,
                              warn_days: int) -> Check:
    """The cluster certificate is issued by customerCA.crt, valid now, and stays valid at least
    ``min_days`` after the cutover (a warning below ``warn_days``). The same lifetime rule
    applies to customerCA.crt: the client checks the chain on every connection."""
    now = _utc(now)
    labels = ("the cluster certificate", "customerCA.crt")
    result = _chain(cert, [], [customer_ca], labels, now, ExtendedKeyUsageOID.SERVER_AUTH)
    draft = Draft("cluster_certificate",
                   certificates=[CertInfo.of(cert), CertInfo.of(customer_ca)],
                   chain=subjects(result.chain or [cert]),
                   details={"customer_ca": customer_ca.subject.rfc4514_string(),
                            "cutover": cutover.isoformat(), "min_days": min_days,
                            "warn_days": warn_days, "now": now.isoformat(),
                            "issued_by_customer_ca": result.chain is not None,
                            "verified_with": result.method})
    problems = list(result.window_problems)
    if result.error:
        problems.append(f"the cluster certificate ({cert.subject.rfc4514_string()}, issuer "
                        f"{cert.issuer.rfc4514_string()}) is not issued by customerCA.crt "
                        f"({customer_ca.subject.rfc4514_string()}): {result.error}")
    _check_lifetimes(draft, problems, zip((cert, customer_ca), labels), now, cutover, min_days,
                     warn_days)
    return finish(draft, problems, (
        f"the cluster certificate ({cert.subject.rfc4514_string()}) is issued by customerCA.crt "
        f"({customer_ca.subject.rfc4514_string()}){_v1_note(result)} and valid until "
        f"{cert.not_valid_after_utc.date().isoformat()}, beyond the cutover on "
        f"{cutover.isoformat()} + {min_days} days"))


def _normalise_pin(pin: str) -> str:
    return pin.strip().lower().removeprefix("sha256:").replace(":", "")


def check_hsm_identity(hsm_cert: x509.Certificate, *,
                       aws_hardware: x509.Certificate | None, aws_root: x509.Certificate | None,
                       aws_root_sha256: str | None,
                       manufacturer_hardware: x509.Certificate | None,
                       manufacturer_root: x509.Certificate | None,
                       manufacturer_root_sha256: str | None, now: dt.datetime) -> Check:
    """The HSM certificate chains through the AWS hardware certificate to the AWS root, and
    through the manufacturer hardware certificate to the manufacturer root; each root must
    match its SHA-256 pin. A chain given as all None is skipped; ValueError if both are."""
    now = _utc(now)
    chains = {
        "AWS": (aws_hardware, aws_root, aws_root_sha256, "AWS hardware certificate", "AWS root"),
        "manufacturer": (manufacturer_hardware, manufacturer_root, manufacturer_root_sha256,
                         "manufacturer hardware certificate", "manufacturer root"),
    }
    for label, (hardware, root, pin, _, _) in list(chains.items()):
        given = [v is not None for v in (hardware, root, pin)]
        if not any(given):
            del chains[label]
        elif not all(given):
            raise ValueError(f"the {label} chain needs its hardware certificate, root and root "
                             f"SHA-256 pin together")
    if not chains:
        raise ValueError("check_hsm_identity needs the AWS chain, the manufacturer chain or both")

    draft = Draft("hsm_identity", certificates=[CertInfo.of(hsm_cert)],
                   details={"now": now.isoformat(), "chains": {}, "checked": list(chains)})
    problems: list[str] = []
    for label, (hardware, root, pin, hardware_label, root_label) in chains.items():
        assert hardware is not None and root is not None and pin is not None
        draft.certificates += [CertInfo.of(hardware), CertInfo.of(root)]
        actual, pinned = _fingerprint(root), _normalise_pin(pin)
        pin_ok = actual == pinned
        if not pin_ok:
            problems.append(f"the {root_label} certificate ({root.subject.rfc4514_string()}) has "
                            f"SHA-256 fingerprint {actual}, not the pinned {pinned}")
        result = _chain(hsm_cert, [hardware], [root],
                        ("the HSM certificate", f"the {hardware_label}", f"the {root_label}"),
                        now, None)
        problems += result.window_problems
        through = result.chain is not None and any(
            _fingerprint(c) == _fingerprint(hardware) for c in result.chain[1:-1])
        if result.error:
            problems.append(f"the HSM certificate ({hsm_cert.subject.rfc4514_string()}, issuer "
                            f"{hsm_cert.issuer.rfc4514_string()}) does not chain through the "
                            f"{hardware_label} ({hardware.subject.rfc4514_string()}) to the "
                            f"{root_label}: {result.error}")
        elif result.chain is not None and not through:
            problems.append(f"the HSM certificate chains to the {root_label} but not through the "
                            f"{hardware_label}")
        path = subjects(result.chain or [])
        draft.details["chains"][label] = {"chain": path, "verified": result.error is None,
                                          "verified_with": result.method,
                                          "through_hardware": through, "root_pin_ok": pin_ok,
                                          "root_sha256": actual, "pinned_sha256": pinned}
        if not draft.chain:
            draft.chain = path
    if len(chains) == 2:
        same = _spki(aws_hardware.public_key()) == _spki(manufacturer_hardware.public_key())  # type: ignore[union-attr]
        draft.details["hardware_certificates_share_key"] = same
    names = " and ".join(f"the {chains[label][4]}" for label in chains)
    v1 = any(c["verified_with"] == V1_FALLBACK for c in draft.details["chains"].values())
    return finish(draft, problems, (
        f"the HSM certificate ({hsm_cert.subject.rfc4514_string()}) chains through the hardware "
        f"certificate(s) to {names}, root fingerprint(s) as pinned"
        f"{' (X.509 v1 certificates: verified link by link)' if v1 else ''}"))


def check_csr_matches(csr: x509.CertificateSigningRequest, hsm_cert: x509.Certificate) -> Check:
    """The cluster CSR holds the HSM certificate's public key and carries a valid signature."""
    csr_spki, hsm_spki = _spki(csr.public_key()), _spki(hsm_cert.public_key())
    csr_fp, hsm_fp = hashlib.sha256(csr_spki).hexdigest(), hashlib.sha256(hsm_spki).hexdigest()
    signature_ok = csr.is_signature_valid
    draft = Draft("cluster_csr", certificates=[CertInfo.of(hsm_cert)],
                   chain=[hsm_cert.subject.rfc4514_string()],
                   details={"csr_subject": csr.subject.rfc4514_string(),
                            "csr_public_key_sha256": csr_fp, "hsm_public_key_sha256": hsm_fp,
                            "public_keys_equal": csr_spki == hsm_spki,
                            "csr_signature_valid": signature_ok})
    problems = []
    if csr_spki != hsm_spki:
        problems.append(f"the cluster CSR's public key (SubjectPublicKeyInfo sha256 {csr_fp}) "
                        f"differs from the HSM certificate's ({hsm_fp})")
    if not signature_ok:
        problems.append("the cluster CSR's signature does not verify with its own public key")
    return finish(draft, problems, (
        f"the cluster CSR ({csr.subject.rfc4514_string()}) holds the HSM certificate's public "
        f"key (sha256 {hsm_fp}) and its signature is valid"))


# --------------------------------------------------------------------------- client certificate


def _load_private_key(path: Path, password: str | None) -> Any:
    data = _read(path, "private key")
    secret = password.encode() if password is not None else None
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_private_key(data, secret)
        return serialization.load_der_private_key(data, secret)
    except TypeError:
        if password is None:
            raise KeyparityError(f"{path}: the private key is encrypted and no password was given") from None
        raise KeyparityError(f"{path}: a password was given but the private key is not encrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        hint = "wrong password, or not" if password is not None else "not"
        raise KeyparityError(f"{path}: cannot load the private key ({hint} a PEM/DER private key)") from None


def _key_kind(key: Any) -> str:
    for kind, types in (("EC", (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)),
                        ("RSA", (rsa.RSAPrivateKey, rsa.RSAPublicKey)),
                        ("Ed25519", (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)),
                        ("Ed448", (ed448.Ed448PrivateKey, ed448.Ed448PublicKey))):
        if isinstance(key, types):
            return kind
    return type(key).__name__


def _with_article(kind: str) -> str:
    return f"an {kind}" if kind in ("RSA", "EC", "Ed25519", "Ed448") else f"a {kind}"


def _proves_possession(key: Any, cert: x509.Certificate) -> tuple[bool, str]:
    """Sign a fresh random challenge with the key and verify it with the certificate's public
    key (EC: ECDSA SHA-256, RSA: PSS SHA-256). Returns (matches, how); the key never leaves."""
    public = cert.public_key()
    if _key_kind(key) != _key_kind(public):
        return False, (f"the key is {_with_article(_key_kind(key))} key but the certificate holds "
                       f"{_with_article(_key_kind(public))} key")
    challenge = os.urandom(32)
    try:
        if isinstance(key, ec.EllipticCurvePrivateKey):
            public.verify(key.sign(challenge, ec.ECDSA(hashes.SHA256())), challenge,  # type: ignore[call-arg]
                          ec.ECDSA(hashes.SHA256()))
            return True, "ECDSA SHA-256 over a random 32-byte challenge"
        if isinstance(key, rsa.RSAPrivateKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
            public.verify(key.sign(challenge, pss, hashes.SHA256()), challenge, pss,  # type: ignore[call-arg]
                          hashes.SHA256())
            return True, "RSA-PSS SHA-256 over a random 32-byte challenge"
        if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
            public.verify(key.sign(challenge), challenge)  # type: ignore[call-arg]
            return True, f"{_key_kind(key)} over a random 32-byte challenge"
    except InvalidSignature:
        return False, "a signature made with the key does not verify with the certificate's public key"
    return False, f"unsupported key type {_key_kind(key)}"


def check_client_certificate(cert: x509.Certificate, key_path: Path, key_password: str | None,
                             customer_ca: x509.Certificate, *,
                             default_cert: x509.Certificate | None, now: dt.datetime,
                             cutover: dt.date, min_days: int, warn_days: int) -> Check:
    """client.crt is the package default (same SHA-256 fingerprint as ``default_cert``) or is
    issued by customerCA.crt; its private key matches; it stays valid past the cutover."""
    now = _utc(now)
    draft = Draft("client_certificate", certificates=[CertInfo.of(cert)],
                   details={"key_path": str(key_path), "now": now.isoformat(),
                            "cutover": cutover.isoformat(), "min_days": min_days,
                            "warn_days": warn_days})
    problems: list[str] = []
    lifetime_of: list[tuple[x509.Certificate, str]] = [(cert, "the client certificate")]
    v1_note = ""
    if default_cert is not None and _fingerprint(cert) == _fingerprint(default_cert):
        draft.details["accepted_as"] = "the package default client certificate"
        draft.chain = [cert.subject.rfc4514_string()]
        problems += [p for p in [_window_problem(cert, "the client certificate", now)] if p]
    else:
        draft.certificates.append(CertInfo.of(customer_ca))
        lifetime_of.append((customer_ca, "customerCA.crt"))
        result = _chain(cert, [], [customer_ca], ("the client certificate", "customerCA.crt"), now,
                        ExtendedKeyUsageOID.CLIENT_AUTH)
        draft.chain = subjects(result.chain or [cert])
        draft.details["accepted_as"] = "issued by customerCA.crt" if result.chain else None
        draft.details["verified_with"] = result.method
        v1_note = _v1_note(result)
        problems += result.window_problems
        if result.error:
            also = " nor the package default client certificate" if default_cert is not None else ""
            problems.append(f"the client certificate ({cert.subject.rfc4514_string()}, issuer "
                            f"{cert.issuer.rfc4514_string()}) is not issued by customerCA.crt "
                            f"({customer_ca.subject.rfc4514_string()}){also}: {result.error}")
    try:
        matches, how = _proves_possession(_load_private_key(key_path, key_password), cert)
    except KeyparityError as exc:
        matches, how = False, str(exc)
        problems.append(f"cannot prove possession of the client key: {exc}")
    else:
        if not matches:
            problems.append(f"the client key {key_path} does not match the client certificate: {how}")
    draft.details.update(key_matches=matches, key_proof=how)
    _check_lifetimes(draft, problems, lifetime_of, now, cutover, min_days, warn_days)
    return finish(draft, problems, (
        f"the client certificate ({cert.subject.rfc4514_string()}) is "
        f"{draft.details['accepted_as']}{v1_note}, its key matches, and it is valid until "
        f"{cert.not_valid_after_utc.date().isoformat()}"))

