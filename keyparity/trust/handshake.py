"""The live check of a cluster's outer TLS connection: a real (mutual) TLS handshake with the
server hosting the HSM (AWS CloudHSM: port 2223). The server presents a self-signed certificate
that must be in the client's trust directory; the client presents ``client.crt``. The offline
checks of the certificates themselves are keyparity.trust.chains'.

The check returns a :class:`keyparity.checks.Check` named ``"handshake"`` whose facts are those
of the offline checks (``certificates``, ``chain``, ``details``: keyparity.trust.chains.Draft),
with the protocol, the cipher and how long it took. Handshakes use Python's :mod:`ssl`.
"""
from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..checks import Check
from ..errors import KeyparityError
from .chains import (CertInfo, Draft, finish, load_certificate, load_certificates, subjects,
                     trust_files)

__all__ = ["READ_WINDOW_S", "check_handshake"]

# How long to wait for data after a completed handshake: long enough for a TLS 1.3 server's
# "certificate required" / "unknown CA" alert (sent after it reads the client's Finished).
READ_WINDOW_S = 1.0
# TLS alerts (OpenSSL reason codes) that mean "your client certificate is not acceptable".
_REFUSED_ALERTS = ("ALERT_UNKNOWN_CA", "ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_UNKNOWN",
                   "ALERT_UNSUPPORTED_CERTIFICATE", "ALERT_CERTIFICATE_EXPIRED",
                   "ALERT_CERTIFICATE_REVOKED", "ALERT_ACCESS_DENIED", "ALERT_DECRYPT_ERROR",
                   "ALERT_HANDSHAKE_FAILURE")
_LOAD_REASONS = {
    "KEY_VALUES_MISMATCH": "the key does not belong to the certificate (KEY_VALUES_MISMATCH)",
    "BAD_DECRYPT": "the key is encrypted: wrong or missing password (BAD_DECRYPT)",
}
# X.509 verify codes meaning "no trusted certificate for this one" (vs. expired, bad signature...)
_NOT_TRUSTED_CODES = {2, 18, 19, 20, 21}


def _context(client_cert: Path | None, client_key: Path | None, key_password: str | None,
             cadata: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # the server certificate is identified by being trusted
    if cadata is None:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=cadata)
    if client_cert is not None:
        # never let OpenSSL prompt on a terminal for a missing passphrase
        password: Any = key_password if key_password is not None else (lambda: b"")
        ctx.load_cert_chain(str(client_cert), str(client_key) if client_key else None, password)
    return ctx


def _alert(exc: ssl.SSLError) -> str:
    return str(getattr(exc, "reason", None) or exc)


def _classify(exc: ssl.SSLError, client_info: CertInfo | None, endpoint: str) -> str:
    reason = _alert(exc)
    if "CERTIFICATE_REQUIRED" in reason or (client_info is None and "ALERT_HANDSHAKE_FAILURE" in reason):
        return (f"the server requires a client certificate and none was presented "
                f"(TLS alert {reason} from {endpoint})")
    if client_info is not None and any(alert in reason for alert in _REFUSED_ALERTS):
        return (f"the server {endpoint} refused the client certificate ({client_info.subject}, "
                f"sha256 {client_info.sha256}): TLS alert {reason}")
    return f"TLS handshake with {endpoint} failed: {reason}"


def _trust_chain(leaf: x509.Certificate, trusted: Sequence[x509.Certificate]) -> list[str]:
    """Subjects from the server certificate to the trust directory certificate OpenSSL
    anchored it at (named by issuer; OpenSSL has already verified the signatures)."""
    path, current = [leaf], leaf
    while current.issuer != current.subject and len(path) < 10:
        nxt = next((c for c in trusted if c.subject == current.issuer and c not in path), None)
        if nxt is None:
            break
        path.append(nxt)
        current = nxt
    return subjects(path)


def _connect(host: str, port: int, deadline: float) -> socket.socket:
    """TCP connect, trying each address of ``host`` in turn, all within the one deadline
    (``socket.create_connection`` would give every address the whole timeout)."""
    last: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, kind, proto)
        sock.settimeout(remaining)
        try:
            sock.connect(address)
            return sock
        except OSError as exc:
            last = exc
            sock.close()
    raise last or TimeoutError("timed out")


def _unverified_server_cert(host: str, port: int, ctx: ssl.SSLContext,
                            deadline: float) -> x509.Certificate | None:
    """Fetch the server certificate without verifying it, only to name it in a failure."""
    remaining = deadline - time.monotonic()
    if remaining <= 0.05:
        return None
    try:
        with _connect(host, port, deadline) as raw:
            raw.settimeout(max(deadline - time.monotonic(), 0.05))
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    return x509.load_der_x509_certificate(der) if der else None


class _Failed(Exception):
    """A step of the handshake check failed; the exception's text is the check's message."""


@dataclass
class _Handshake:
    """One run of :func:`check_handshake`, in named steps: load the trust directory, load the
    client certificate, connect (TCP), shake hands (TLS), record the session, read the
    server's verdict. A step that fails raises :class:`_Failed` with the reason; what the
    steps find goes into ``draft``."""

    host: str
    port: int
    client_cert: Path | None
    client_key: Path | None
    key_password: str | None
    trust_dir: Path
    timeout: float
    draft: Draft
    start: float = field(default_factory=time.monotonic)
    client_info: CertInfo | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def deadline(self) -> float:
        return self.start + self.timeout

    def run(self) -> str:
        """Every step, TCP and TLS within the deadline; the success message."""
        trusted = self.trusted_certificates()
        ctx = self.client_context(trusted)
        raw = self.connect()
        tls: ssl.SSLSocket | None = None
        try:
            raw.settimeout(max(self.deadline - time.monotonic(), 0.01))
            tls = ctx.wrap_socket(raw, server_hostname=self.host, do_handshake_on_connect=False)
            self.handshake(tls)
            server = self.session(tls, trusted)
            self.read_verdict(tls)
        finally:
            (tls or raw).close()
        who = (f"client certificate {self.client_info.subject} accepted" if self.client_info
               else "no client certificate presented")
        server_name = server.subject.rfc4514_string() if server is not None else "?"
        details = self.draft.details
        return (f"mutual TLS handshake with {self.endpoint} succeeded ({details['protocol']}, "
                f"{details['cipher']}): server certificate {server_name} is in the trust "
                f"directory; {who}")

    def trusted_certificates(self) -> list[x509.Certificate]:
        """The certificates of the trust directory (a file that is none: a warning)."""
        try:
            files = trust_files(self.trust_dir)
        except OSError as exc:
            raise _Failed(f"trust directory {self.trust_dir} cannot be read: "
                          f"{exc.strerror or exc}") from None
        trusted: list[x509.Certificate] = []
        for path in files:
            try:
                trusted += load_certificates(path)
            except KeyparityError as exc:
                self.draft.warnings.append(f"trust directory file skipped: {exc}")
        self.draft.details["trust_certificates"] = [CertInfo.of(c).sha256 for c in trusted]
        if not trusted:
            raise _Failed(f"trust directory {self.trust_dir} holds no certificates (*.crt, "
                          f"*.pem, *.cer or hashed names such as 21a10654.0)")
        return trusted

    def client_context(self, trusted: Sequence[x509.Certificate]) -> ssl.SSLContext:
        """The TLS context: the trusted certificates, and the client certificate with its key."""
        cadata = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in trusted)
        if self.client_cert is not None:
            try:
                self.client_info = CertInfo.of(load_certificate(self.client_cert))
            except KeyparityError as exc:
                raise _Failed(f"cannot load the client certificate: {exc}") from None
            # the server's certificate goes first, once known
            self.draft.certificates.append(self.client_info)
        try:
            return _context(self.client_cert, self.client_key, self.key_password, cadata)
        except (ssl.SSLError, OSError) as exc:
            reason = _alert(exc) if isinstance(exc, ssl.SSLError) else str(exc)
            reason = _LOAD_REASONS.get(reason, reason)
            raise _Failed(f"cannot load the client certificate {self.client_cert} with its key "
                          f"{self.client_key or self.client_cert}: {reason}") from None

    def connect(self) -> socket.socket:
        try:
            return _connect(self.host, self.port, self.deadline)
        except OSError as exc:
            raise _Failed(f"endpoint {self.endpoint} unreachable within {self.timeout} s: TCP "
                          f"connect failed: {exc.strerror or exc or type(exc).__name__}") from None

    def handshake(self, tls: ssl.SSLSocket) -> None:
        try:
            tls.do_handshake()
        except (TimeoutError, socket.timeout):
            raise _Failed(f"endpoint {self.endpoint} unreachable within {self.timeout} s: the "
                          f"TCP connection was accepted but the TLS handshake got no "
                          f"answer") from None
        except ssl.SSLCertVerificationError as exc:
            raise _Failed(self.untrusted_server(exc)) from None
        except ssl.SSLError as exc:
            raise _Failed(_classify(exc, self.client_info, self.endpoint)) from None
        except OSError as exc:  # reset / EOF during the handshake
            hint = ("; the server may require a client certificate"
                    if self.client_cert is None else "")
            raise _Failed(f"endpoint {self.endpoint} closed the connection during the TLS "
                          f"handshake: {exc.strerror or exc or type(exc).__name__}{hint}") from None

    def untrusted_server(self, exc: ssl.SSLCertVerificationError) -> str:
        """Why the server certificate was refused, naming it (fetched again, unverified)."""
        unverified = _context(self.client_cert, self.client_key, self.key_password, None)
        fetched = _unverified_server_cert(self.host, self.port, unverified, self.deadline)
        info = CertInfo.of(fetched) if fetched is not None else None
        if info is not None:
            self.draft.certificates.insert(0, info)
            self.draft.chain = [info.subject]
        named = (f"server certificate (sha256 {info.sha256}, subject {info.subject})"
                 if info else "server certificate (sha256 unknown: it could not be fetched)")
        reason = exc.verify_message or _alert(exc)
        if exc.verify_code in _NOT_TRUSTED_CODES:
            return f"{named} is not in the trust directory {self.trust_dir} ({reason})"
        return (f"{named} fails verification against the trust directory "
                f"{self.trust_dir}: {reason}")

    def session(self, tls: ssl.SSLSocket,
                trusted: Sequence[x509.Certificate]) -> x509.Certificate | None:
        """Record the protocol, the cipher and the server certificate with its trust chain."""
        der = tls.getpeercert(binary_form=True)
        server = x509.load_der_x509_certificate(der) if der else None
        cipher = tls.cipher()
        self.draft.details.update(protocol=tls.version(), cipher=cipher[0] if cipher else None,
                                  cipher_bits=cipher[2] if cipher else None)
        if server is not None:
            self.draft.certificates.insert(0, CertInfo.of(server))
            self.draft.chain = _trust_chain(server, trusted)
        return server

    def read_verdict(self, tls: ssl.SSLSocket) -> None:
        """A short read: a TLS 1.3 server's verdict on the client certificate arrives now."""
        tls.settimeout(max(min(READ_WINDOW_S, self.deadline - time.monotonic()), 0.01))
        try:
            data = tls.recv(1024)
            self.draft.details["server_data_bytes"] = len(data)
            if not data:
                self.draft.warnings.append("the server closed the connection right after the "
                                           "handshake")
        except (TimeoutError, socket.timeout):
            self.draft.details["server_data_bytes"] = 0  # silent server, no alert: accepted
        except ssl.SSLError as exc:
            raise _Failed(_classify(exc, self.client_info, self.endpoint)) from None
        except OSError as exc:
            self.draft.warnings.append(f"the connection ended right after the handshake: "
                                       f"{exc.strerror or exc or type(exc).__name__}")


def check_handshake(host: str, port: int, *, client_cert: Path | None, client_key: Path | None,
                    key_password: str | None, trust_dir: Path, timeout: float) -> Check:
    """A real (mutual) TLS handshake with the server hosting the HSM, within ``timeout``.

    The server certificate must verify against the certificates in ``trust_dir`` (no host
    name check: CloudHSM's server certificate is self-signed and identified by being there).
    After the handshake the client reads for a moment: a TLS 1.3 server that wanted a client
    certificate, or rejects it, says so with an alert that arrives only then."""
    draft = Draft("handshake", details={
        "endpoint": f"{host}:{port}", "trust_dir": str(trust_dir), "timeout_s": timeout,
        "client_certificate_presented": client_cert is not None})
    steps = _Handshake(host, port, client_cert, client_key, key_password, trust_dir, timeout,
                       draft)
    try:
        success, problems = steps.run(), []
    except _Failed as exc:
        success, problems = "", [str(exc)]
    draft.details["elapsed_s"] = round(time.monotonic() - steps.start, 3)
    return finish(draft, problems, success)
