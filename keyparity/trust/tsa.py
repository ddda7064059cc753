"""A local RFC 3161 time-stamping authority for the demo and the tests (``keyparity demo tsa``).

What a real TSA answers, built with asn1crypto and cryptography: a ``TimeStampResp`` whose token
is a CMS ``SignedData`` over a ``TSTInfo`` (the request's message imprint and nonce, the TSA's
clock, a serial, a policy), signed by a TSA certificate with the critical ``id-kp-timeStamping``
extended key usage (RFC 3161 §2.3) issued by a test root, with the ESS signing-certificate-v2
attribute (RFC 5816). It serves HTTP POST ``application/timestamp-query`` on 127.0.0.1 (a free
port), as RFC 3161 §3.4 describes.

Test material only: the keys are written unencrypted (0600) beside the certificates.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from asn1crypto import cms, core, tsp, x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from .pki import issue_certificate, make_ca, make_key, subject, write_key, write_pem

__all__ = ["QUERY_TYPE", "REPLY_TYPE", "TSA_FILES", "TimestampServer", "make_tsa_pki",
           "respond"]

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
POLICY = "2.999.3161.1"  # under the ITU-T/ISO "example" arc (2.999): a test policy, no one's
TSA_FILES = {"root": "root.pem", "certificate": "tsa.pem", "key": "tsa.key"}
_MAX_REQUEST = 4096  # a TimeStampReq is a few hundred bytes


def make_tsa_pki(directory: Path, name: str = "keyparity test TSA") -> dict[str, Path]:
    """A test root and a TSA certificate it issues (critical timeStamping EKU), written under
    ``directory`` and kept once built; returns the paths (TSA_FILES' names)."""
    directory = Path(directory)
    paths = {k: directory / v for k, v in TSA_FILES.items()}
    if all(p.is_file() for p in paths.values()):
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    root, root_key = make_ca(subject(f"{name} root", organizational_unit="time-stamping"),
                             now=now)
    key = make_key()
    cert = issue_certificate(key, subject(name, organizational_unit="time-stamping"), root,
                             root_key, now - dt.timedelta(days=1), now + dt.timedelta(days=3650),
                             eku=[ExtendedKeyUsageOID.TIME_STAMPING], eku_critical=True)
    write_key(paths["key"], key)
    write_pem(paths["certificate"], cert)
    write_pem(paths["root"], root)  # last: its presence marks a complete set
    return paths


def _attribute(kind: str, value: Any) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": kind, "values": [value]})


def _signed(tst_info: bytes, cert: x509.Certificate,
            key: ec.EllipticCurvePrivateKey) -> cms.ContentInfo:
    """The time-stamp token: a CMS SignedData over ``tst_info`` by ``cert``/``key``."""
    der = cert.public_bytes(serialization.Encoding.DER)
    cert_asn1 = asn1_x509.Certificate.load(der)
    ess = tsp.SigningCertificateV2({"certs": [{
        "hash_algorithm": {"algorithm": "sha256"}, "cert_hash": hashlib.sha256(der).digest()}]})
    attributes = [_attribute("content_type", "tst_info"),
                  _attribute("message_digest", hashlib.sha256(tst_info).digest()),
                  _attribute("signing_certificate_v2", ess)]
    # DER sorts a SET OF by encoding: the verifier re-encodes the set it checks
    attributes.sort(key=lambda a: a.dump())
    signed_attrs = cms.CMSAttributes(attributes)
    signature = key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
    signer = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": {
            "issuer": cert_asn1.issuer, "serial_number": cert_asn1.serial_number}}),
        "digest_algorithm": {"algorithm": "sha256"},
        "signed_attrs": signed_attrs,
        "signature_algorithm": {"algorithm": "sha256_ecdsa"},
        "signature": signature,
    })
    return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData({
        "version": "v3",
        "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": "tst_info",
                               "content": core.ParsableOctetString(tst_info)},
        "certificates": [cert_asn1],
        "signer_infos": [signer],
    })})


def respond(request: bytes, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey,
            now: dt.datetime | None = None) -> bytes:
    """The DER TimeStampResp to a DER TimeStampReq: granted with a token, or rejected
    (badDataFormat) when the request cannot be read."""
    try:
        req = tsp.TimeStampReq.load(request)
        imprint = req["message_imprint"]
        imprint.native  # parse it all now: a malformed request is rejected, not half-answered
    except (ValueError, TypeError):
        # TimeStampResp ::= SEQUENCE { status, timeStampToken OPTIONAL }: asn1crypto's class
        # requires the token, so the rejection's SEQUENCE is written here
        status = tsp.PKIStatusInfo({"status": "rejection",
                                    "fail_info": {"bad_data_format"}}).dump()
        return b"\x30" + bytes([len(status)]) + status
    when = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    info = {"version": "v1", "policy": POLICY, "message_imprint": imprint,
            "serial_number": secrets.randbits(63), "gen_time": when,
            "accuracy": {"seconds": 1}}
    if req["nonce"].native is not None:
        info["nonce"] = req["nonce"].native
    token = _signed(tsp.TSTInfo(info).dump(), cert, key)
    return tsp.TimeStampResp({"status": {"status": "granted"},
                              "time_stamp_token": token}).dump()


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Content-Type", "").split(";")[0].strip() != QUERY_TYPE \
                or not 0 < length <= _MAX_REQUEST:
            self.send_error(400, f"POST a {QUERY_TYPE} of at most {_MAX_REQUEST} bytes")
            return
        body = respond(self.rfile.read(length), self.server.cert, self.server.key)
        self.send_response(200)
        self.send_header("Content-Type", REPLY_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Quiet: the demo's output is the ceremony's."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


class TimestampServer:
    """``with TimestampServer(paths) as tsa: tsa.url``: serves on 127.0.0.1, a free port,
    until the block ends. ``paths``: what ``make_tsa_pki`` returns."""

    def __init__(self, paths: dict[str, Path], host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.cert = x509.load_pem_x509_certificate(paths["certificate"].read_bytes())
        key = serialization.load_pem_private_key(paths["key"].read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self._server.key = key
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="keyparity-tsa")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self) -> "TimestampServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

