"""RFC 3161 time-stamps of the signatures of a signed statement (the profile's
``evidence.timestamp``), through rfc3161-client (Trail of Bits, sigstore-python's client).

Every time a signed statement holds (a run's start and end, a plan's creation, a destruction)
is the signing host's own clock. A time-stamp token from an independent time-stamping authority
(TSA) over a signature proves the signature existed at the TSA's time: it cannot have been made
later, with a clock set back. Each signature of an envelope gets its own token, so a
countersignature added later (``plan sign``) is stamped when it is made.

    DIR/evidence.dsse.json   the envelope (a plan's: plan.dsse.json)
    DIR/evidence.tsr.json    {"tokens": [{"keyid", "hash", "tsa", "token": base64 TimeStampResp}]}

The tokens file stands beside the envelope and is not a subject of the statement: a token is
over a signature, which is made after the statement. The statement says which TSA was to stamp
it (``time_source``), so a token removed afterwards is a failed verification, never a bundle
whose times pass for stamped. ``keyparity verify --tsa-root PEM`` checks each token: its message
imprint is the digest of the signature's bytes, the TSA's CMS signature verifies, the TSA's
certificate chains to the given root and has the timeStamping EKU (rfc3161-client's
Verifier); it prints the TSA's name and time.

A TSA that fails or cannot be reached fails the signing (TimestampError): a profile that names
a TSA never yields a signed statement without its tokens.
"""
from __future__ import annotations

import base64
import binascii
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from .. import atomic
from ..errors import KeyparityError
from ..profile import TimestampSpec

if TYPE_CHECKING:  # securesystemslib costs every process that ends a run ~0.65 s (boto3)
    from securesystemslib.dsse import Envelope

    from .envelope import Verification

__all__ = ["HOST_CLOCK", "TimestampError", "add_tokens", "check_tokens", "reachable", "stamp",
           "stamp_envelope", "time_source", "tokens_name", "write_tokens"]

HOST_CLOCK = "host clock"
_QUERY = "application/timestamp-query"
_REPLY = "application/timestamp-reply"
_MAX_REPLY = 1 << 20


class TimestampError(KeyparityError):
    """The time-stamping authority failed, could not be reached, or answered a bad token."""


def tokens_name(envelope_name: str) -> str:
    """The tokens file beside an envelope: evidence.dsse.json -> evidence.tsr.json."""
    return envelope_name.removesuffix(".dsse.json") + ".tsr.json"


def time_source(spec: TimestampSpec | None) -> dict[str, Any]:
    """What a signed statement says of its times: the host's clock, and the TSA that stamps its
    signatures (None: no TSA, the times are the host's own). Never raises: a URL file that
    cannot be read is named as the profile names it (the stamping then fails, saying why)."""
    if spec is None:
        return {"clock": HOST_CLOCK, "tsa": None}
    try:
        url = _url(spec)
    except TimestampError:
        url = spec.url
    return {"clock": HOST_CLOCK, "tsa": url, "hash": spec.hash}


def reachable(spec: TimestampSpec | None) -> None:
    """A time-stamp of a probe, checked like every token: TimestampError unless the TSA answers
    with one that verifies under ``spec.ca``. Asked before anything is written or destroyed,
    so that a TSA that is down stops a run or a retirement at its start, not after it."""
    if spec is not None:
        stamp(b"keyparity: does the time-stamping authority answer?", spec)


def _url(spec: TimestampSpec) -> str:
    if not spec.url.startswith("file:"):
        return spec.url
    path = Path(spec.url.removeprefix("file:"))
    try:
        lines = path.read_text("utf-8").split()
    except OSError as exc:
        raise TimestampError(f"evidence.timestamp.url: cannot read {path}: "
                             f"{exc.strerror or exc}") from None
    if not lines or not lines[0].startswith(("http://", "https://")):
        raise TimestampError(f"evidence.timestamp.url: {path} holds no http(s) URL")
    return lines[0]


def _certificates(path: Path) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """(roots, intermediates) of a PEM file: the self-signed ones are roots."""
    try:
        certs = x509.load_pem_x509_certificates(Path(path).read_bytes())
    except OSError as exc:
        raise TimestampError(f"TSA root {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise TimestampError(f"TSA root {path}: not PEM certificates ({exc})") from None
    roots = [c for c in certs if c.issuer == c.subject]
    if not roots:
        raise TimestampError(f"TSA root {path}: no self-signed (root) certificate in it")
    return roots, [c for c in certs if c.issuer != c.subject]


@dataclass(frozen=True)
class Stamp:
    """A verified token: who stamped, when."""

    tsa: str  # the TSA certificate's subject (CN), from the token
    time: str  # genTime, ISO 8601 UTC
    serial: int


def _verified(token: bytes, message: bytes, ca: list[Path], nonce: int | None = None) -> Stamp:
    """The token checked against ``message`` and the roots in ``ca``; TimestampError says why
    not (rfc3161-client's reason)."""
    from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response
    roots: list[x509.Certificate] = []
    intermediates: list[x509.Certificate] = []
    for path in ca:
        more_roots, more = _certificates(path)
        roots += [c for c in more_roots if c not in roots]
        intermediates += [c for c in more if c not in intermediates]
    try:
        response = decode_timestamp_response(token)
    except ValueError as exc:
        raise TimestampError(f"not an RFC 3161 TimeStampResp ({exc})") from None
    builder = VerifierBuilder(roots=roots, intermediates=intermediates, nonce=nonce)
    try:
        builder.build().verify_message(response, message)
    except VerificationError as exc:
        raise TimestampError(str(exc)) from None
    return Stamp(tsa=_signer_name(response), time=response.tst_info.gen_time.isoformat(),
                 serial=response.tst_info.serial_number)


def _signer_name(response: Any) -> str:
    (info,) = response.signed_data.signer_infos
    for der in response.signed_data.certificates:
        cert = x509.load_der_x509_certificate(der)
        if cert.issuer == info.issuer and cert.serial_number == info.serial_number:
            names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            return str(names[0].value) if names else cert.subject.rfc4514_string()
    return "(unnamed TSA)"


def stamp(message: bytes, spec: TimestampSpec) -> bytes:
    """A TimeStampResp (DER) over ``message`` from the profile's TSA, checked before it is
    returned (imprint, nonce, signature, chain to ``spec.ca``, EKU)."""
    from rfc3161_client import HashAlgorithm, TimestampRequestBuilder
    url = _url(spec)
    request = (TimestampRequestBuilder().data(message)
               .hash_algorithm(HashAlgorithm[spec.hash.upper()]).build())
    post = urllib.request.Request(url, data=request.as_bytes(), method="POST",
                                  headers={"Content-Type": _QUERY, "Accept": _REPLY})
    try:
        with urllib.request.urlopen(post, timeout=spec.timeout_s) as reply:  # noqa: S310
            kind = reply.headers.get("Content-Type", "").split(";")[0].strip()
            body = reply.read(_MAX_REPLY)
    except urllib.error.HTTPError as exc:
        raise TimestampError(f"TSA {url} refused the request: HTTP {exc.code} "
                             f"{exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TimestampError(f"TSA {url} cannot be reached: {reason}") from None
    if kind != _REPLY:
        raise TimestampError(f"TSA {url} answered {kind or 'no content type'}, not {_REPLY}")
    try:
        _verified(body, message, [spec.ca], nonce=request.nonce)
    except TimestampError as exc:
        raise TimestampError(f"TSA {url} answered a token that does not verify: {exc}") from None
    return body


def stamp_envelope(envelope: Envelope, spec: TimestampSpec,
                   tokens: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
    """``tokens`` with one more for each signature of ``envelope`` that has none yet."""
    out = list(tokens or [])
    stamped = {t.get("keyid") for t in out}
    url = _url(spec)
    for keyid, signature in envelope.signatures.items():
        if keyid in stamped:
            continue
        token = stamp(bytes.fromhex(signature.signature), spec)
        out.append({"keyid": keyid, "hash": spec.hash, "tsa": url,
                    "token": base64.b64encode(token).decode("ascii")})
    return out


def write_tokens(directory: Path, envelope_name: str, tokens: list[dict[str, str]]) -> Path:
    path = Path(directory) / tokens_name(envelope_name)
    atomic.write(path, (json.dumps({"tokens": tokens}, indent=2) + "\n").encode("utf-8"))
    return path


def _read_tokens(directory: Path, envelope_name: str) -> list[dict[str, Any]] | None:
    """The tokens beside an envelope; None when there is no tokens file. TimestampError when
    it cannot be read."""
    path = Path(directory) / tokens_name(envelope_name)
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_file():
        raise TimestampError(f"{path.name} is not a regular file")
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TimestampError(f"{path.name} is unreadable ({exc})") from None
    tokens = doc.get("tokens") if isinstance(doc, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(t, dict) for t in tokens):
        raise TimestampError(f"{path.name} is not a tokens file ({{\"tokens\": [...]}})")
    return tokens


def add_tokens(directory: Path, envelope_name: str, envelope: Envelope,
               spec: TimestampSpec | None, fresh: tuple[str, ...] = ()) -> list[dict] | None:
    """The tokens of DIR's tokens file, and one more for each signature of ``envelope`` that
    has none (a countersignature) or was made anew (``fresh``: key ids); for the caller to
    write with ``write_tokens`` once the envelope is written. None without a TSA."""
    if spec is None:
        return None
    kept = [t for t in _read_tokens(directory, envelope_name) or []
            if t.get("keyid") not in fresh]
    return stamp_envelope(envelope, spec, kept)


def check_tokens(directory: Path, envelope_name: str, envelope: Envelope,
                 signed: Mapping[str, Any] | None, roots: list[Path],
                 names: Mapping[str, str], result: Verification) -> None:
    """Each token beside ``envelope`` against the signature it stamps and ``roots`` (verify's
    --tsa-root); one ``time:`` line per signature. A statement that names a TSA (its
    ``time_source``) and a signature without a token fail; no TSA: the host's clock, said."""
    declared = (signed or {}).get("time_source")
    tsa = declared.get("tsa") if isinstance(declared, dict) else None
    try:
        tokens = _read_tokens(directory, envelope_name)
    except TimestampError as exc:
        result.problems.append(str(exc))
        tokens = []
    if not tokens:
        result.checked.append("time: not time-stamped: every time in it is the signing host's "
                              "own clock")
        if tsa:
            result.problems.append(f"the signed statement names the time-stamping authority "
                                   f"{tsa}, but {tokens_name(envelope_name)} holds no token: "
                                   "the time-stamps were removed")
        return
    if not roots:
        result.notes.append(f"{len(tokens)} time-stamp token(s) not checked (no --tsa-root): "
                            "the times are the host's own")
        result.checked.append("time: tokens not checked: the times are the host's own")
        return
    _check_each(tokens, envelope, roots, names, result, envelope_name)
    if tsa:
        for keyid in sorted(set(envelope.signatures) - {t.get("keyid") for t in tokens}):
            result.problems.append(f"the signature by {names.get(keyid) or keyid[:16]} has no "
                                   f"time-stamp token, though the statement names the TSA {tsa}")


def _check_each(tokens: list[dict[str, Any]], envelope: Envelope, roots: list[Path],
                names: Mapping[str, str], result: Verification, envelope_name: str) -> None:
    for i, entry in enumerate(tokens):
        keyid = entry.get("keyid")
        who = (names.get(keyid) or f"keyid {keyid[:16]}") if isinstance(keyid, str) else "?"
        signature = envelope.signatures.get(keyid) if isinstance(keyid, str) else None
        if signature is None:
            result.problems.append(f"{tokens_name(envelope_name)}: token {i} stamps a signature "
                                   f"({who}) that is not in {envelope_name}")
            continue
        try:
            token = base64.b64decode(str(entry.get("token")), validate=True)
            found = _verified(token, bytes.fromhex(signature.signature), roots)
        except (binascii.Error, ValueError) as exc:
            result.problems.append(f"the time-stamp of the signature by {who} is not base64 "
                                   f"({exc})")
            result.checked.append(f"time: signature by {who}: token UNREADABLE")
        except TimestampError as exc:
            result.problems.append(f"the time-stamp of the signature by {who} does NOT verify: "
                                   f"{exc}")
            result.checked.append(f"time: signature by {who}: token REFUSED")
        else:
            result.time_stamps.append({"keyid": keyid, "signer": who, "tsa": found.tsa,
                                       "time": found.time, "serial": found.serial})
            result.checked.append(f"time: signature by {who} time-stamped by {found.tsa} at "
                                  f"{found.time} (RFC 3161, serial {found.serial})")
