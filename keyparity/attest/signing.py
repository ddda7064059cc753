"""The evidence signers of a profile (``evidence.signers``), as securesystemslib Signers.

    file    a PEM private key (securesystemslib CryptoSigner); optional passphrase reference
    pkcs11  a private key inside a PKCS #11 token (python-pkcs11): the payload is hashed here,
            the token signs the digest with CKM_ECDSA; the private key never leaves the token
    kms     an AWS KMS asymmetric key: the payload is hashed here, KMS signs the digest
            (MessageType DIGEST); the private key never leaves KMS

Every signer's public key is an SSlibKey made by SSlibKey.from_crypto with its default
scheme, exactly as ``public_key_from_pem`` makes it from the exported PEM, so the key ids in
the envelope match the key ids of the keys an auditor passes to ``keyparity verify``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters
from securesystemslib.signer import CryptoSigner, Key, SecretsHandler, Signature, Signer, SSlibKey

from . import identities
from ..hsm import identity
from ..hsm.cluster import open_cluster
from ..errors import KeyNotFound, KeyparityError, pkcs11_step
from ..hsm.login import LoginGate
from ..keytypes import CURVES
from ..profile import Cluster, EvidenceSpec, SignerSpec
from ..secrets import SecretError

__all__ = [
    "KeyFormatError", "KmsError", "KmsSigner", "Pkcs11Signer", "SigningError", "close_signers",
    "kms_client", "kms_public_key", "load_signer", "load_signers", "public_key_from_pem",
    "public_key_of",
]

_T = TypeVar("_T")

# KMS key spec -> the curve (its hash for the local digest, its KMS signing algorithm)
_KMS_SPECS = {c.kms_spec: c for c in CURVES.values()}
# The one key type of an evidence signer, whatever holds it: ECDSA on P-384 (SHA-384), as the
# source documents sign (ECC_NIST_P384, ECDSA_SHA_384) and docs/auditors.md promises: an
# auditor verifies one scheme, ecdsa-sha2-nistp384.
SIGNER_CURVE = "secp384r1"


class SigningError(KeyparityError):
    """An evidence signer cannot be loaded, or failed to sign."""


class KeyFormatError(SigningError):
    """A key file is not what it should be (not PEM, wrong kind of key, bad passphrase)."""


class KmsError(SigningError):
    """AWS KMS refused or failed a request; the message says which and what to do."""


def _require_signer_curve(curve: str | None, what: str, where: str) -> None:
    """KeyFormatError unless the key (``what``: "an RSA key", "an EC P-256 key"...) is on
    SIGNER_CURVE."""
    if curve != SIGNER_CURVE:
        raise KeyFormatError(f"{where}: {what}; an evidence signer's key is ECDSA P-384 (what "
                             "the auditors are told to verify): make a P-384 key")


def _key_kind(key: Any) -> tuple[str | None, str]:
    """(curve name or None, how a message names the key) of a cryptography key."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return key.curve.name, f"an EC {key.curve.name} key"
    return None, f"not an EC key ({type(key).__name__.removeprefix('_').replace('PrivateKey', '')})"


def _crypto_public_key(public: Any, where: str) -> SSlibKey:
    try:
        return SSlibKey.from_crypto(public)
    except ValueError as exc:
        raise KeyFormatError(f"{where}: unsupported public key for evidence signing: {exc}"
                             ) from None


def public_key_from_pem(pem: bytes) -> SSlibKey:
    """An SSlibKey (default scheme for its type, e.g. ecdsa-sha2-nistp384) from a PEM public key
    (SubjectPublicKeyInfo), as exported by ``keyparity demo custodians``."""
    if b"PRIVATE KEY" in pem:
        raise KeyFormatError("this is a private key; give the custodian's public key "
                             "(the .pub.pem beside it)")
    try:
        public = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"not a PEM public key ({str(exc).splitlines()[0]})") from None
    return _crypto_public_key(public, "PEM public key")


# --------------------------------------------------------------------------- file


def _file_signer(spec: SignerSpec) -> CryptoSigner:
    where = f"evidence signer {spec.name}"
    assert spec.path is not None
    try:
        pem = Path(spec.path).read_bytes()
    except OSError as exc:
        raise SigningError(f"{where}: cannot read {spec.path}: {exc.strerror or exc}") from None
    password: bytes | None = None
    if spec.password is not None:
        try:
            password = spec.password.resolve().encode("utf-8")
        except SecretError as exc:
            raise SigningError(f"{where}: {exc}") from None
    try:
        private = serialization.load_pem_private_key(pem, password=password)
    except TypeError:
        if password is None:
            raise KeyFormatError(f"{where}: {spec.path} is encrypted; set password "
                                 "(env:NAME or file:PATH) in the profile") from None
        raise KeyFormatError(f"{where}: {spec.path} is not encrypted, but a password is "
                             "configured; remove password from the profile") from None
    except (ValueError, UnsupportedAlgorithm):
        if password is not None:
            raise KeyFormatError(f"{where}: cannot decrypt {spec.path}: wrong password "
                                 f"({spec.password}) or not a PEM private key") from None
        raise KeyFormatError(f"{where}: {spec.path} is not a PEM private key") from None
    finally:
        del password
    curve, kind = _key_kind(private)
    _require_signer_curve(curve, f"{spec.path} is {kind}", where)
    public = _crypto_public_key(private.public_key(), where)
    try:
        signer = CryptoSigner(private, public)
    except ValueError as exc:
        raise KeyFormatError(f"{where}: {exc}") from None
    signer.name = spec.name  # type: ignore[attr-defined]
    return signer


# --------------------------------------------------------------------------- pkcs11


class _DigestSigner(Signer):
    """What our two remote signers share: they are built by load_signer (never from a
    securesystemslib URI), hold their public key, and hash the payload here."""

    _public_key: SSlibKey
    _hash_name: str

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri: str, public_key: Key,
                          secrets_handler: SecretsHandler | None = None) -> Signer:
        raise NotImplementedError("load with keyparity.attest.signing.load_signer")

    @property
    def public_key(self) -> SSlibKey:
        return self._public_key

    def _digest(self, payload: bytes) -> bytes:
        return hashlib.new(self._hash_name, payload).digest()


class Pkcs11Signer(_DigestSigner):
    """ECDSA with a private key inside a PKCS #11 token, through python-pkcs11.

    The payload is hashed in software (SHA-256/384/512 for P-256/384/521); the token signs the
    digest with CKM_ECDSA and returns r || s, which becomes a DER ECDSA-Sig-Value, the
    encoding securesystemslib and OpenSSL verify.
    """

    def __init__(self, session: Any, private_key: Any, public_key: SSlibKey, *, hash_name: str,
                 name: str, where: str) -> None:
        self._session = session
        self._private_key = private_key
        self._public_key = public_key
        self._hash_name = hash_name
        self.name = name
        self.where = where

    def sign(self, payload: bytes) -> Signature:
        digest = self._digest(payload)
        with pkcs11_step("sign the evidence", self.where):
            raw = bytes(self._private_key.sign(digest, mechanism=Mechanism.ECDSA))
        half = len(raw) // 2
        der = encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                   int.from_bytes(raw[half:], "big"))
        return Signature(self._public_key.keyid, der.hex())

    def close(self) -> None:
        """Nothing to close: the session is the process's (cluster.close_clusters)."""


def _ec_curve(params: bytes) -> str | None:
    for curve in CURVES:
        if bytes(params) == encode_named_curve_parameters(curve):
            return curve
    return None


def _pkcs11_signer(spec: SignerSpec, module_env: Mapping[str, str],
                   gate: LoginGate | None) -> Pkcs11Signer:
    """The signer's token through the process's one session per token (cluster.open_cluster):
    the module is loaded once by its real path and shared with the clusters, and a token a
    cluster of the run already logged in to is not logged in to again."""
    where = f"evidence signer {spec.name}"
    assert spec.module is not None and spec.pin is not None
    token = Cluster(role="signer", name=where, module=spec.module,
                    token_label=spec.token_label, slot=spec.slot, pin=spec.pin, mode="")
    try:
        session = open_cluster(token, module_env, gate or LoginGate(None)).session
    except SecretError as exc:
        raise SigningError(f"{where}: {exc}") from None
    return _pkcs11_key(spec, session, where)


def _pkcs11_key(spec: SignerSpec, session: Any, where: str) -> Pkcs11Signer:
    label = spec.key_label
    with pkcs11_step("find the signing key", where):
        privates = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                             Attribute.LABEL: label}))
        publics = list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                                            Attribute.LABEL: label}))
    token = spec.token_label if spec.token_label is not None else f"slot {spec.slot}"
    for kind, found in (("private", privates), ("public", publics)):
        if not found:
            raise KeyNotFound(f"{where}: no {kind} key labelled {label!r} on token {token!r}")
        if len(found) > 1:
            raise SigningError(f"{where}: {len(found)} {kind} keys labelled {label!r} on "
                               f"token {token!r}; labels must be unique")
    private, public = privates[0], publics[0]
    with pkcs11_step("read the signing key's attributes", where):
        key_type = private[Attribute.KEY_TYPE]
        params = public[Attribute.EC_PARAMS] if key_type == KeyType.EC else b""
    if key_type != KeyType.EC:
        raise SigningError(f"{where}: key {label!r} is {getattr(key_type, 'name', key_type)}; "
                           "an evidence signer's key is ECDSA P-384")
    curve = _ec_curve(params)
    _require_signer_curve(curve, f"key {label!r} is an EC key on "
                          f"{curve or 'a curve keyparity does not know'}", where)
    assert curve is not None
    with pkcs11_step("read the public key", where):
        crypto_public = identity.ec_public(public, curve)
    return Pkcs11Signer(session, private, _crypto_public_key(crypto_public, where),
                        hash_name=CURVES[curve].hash, name=spec.name, where=where)


# --------------------------------------------------------------------------- kms

# botocore ClientError code -> what to do next ({key}, {region} are filled in)
_KMS_ERRORS: dict[str, str] = {
    "AccessDeniedException": "access denied; the key policy or IAM policy must allow "
                             "kms:GetPublicKey and kms:Sign on {key} for these credentials",
    "NotFoundException": "no such key {key} in region {region}; check key_id and region",
    "DisabledException": "key {key} is disabled; enable it or configure another key",
    "KMSInvalidStateException": "key {key} is not usable in its current state (pending "
                                "deletion or pending import?)",
    "InvalidKeyUsageException": "key {key} is not an ECC SIGN_VERIFY key for this algorithm",
    "UnsupportedOperationException": "KMS does not support this operation on key {key}",
    "KeyUnavailableException": "key {key} is unavailable right now; try again later",
    "DependencyTimeoutException": "KMS timed out; try again later",
    "KMSInternalException": "KMS had an internal error; try again later",
    "ThrottlingException": "KMS throttled the request; try again later",
    "UnrecognizedClientException": "the AWS credentials are not valid (unknown access key)",
    "InvalidClientTokenId": "the AWS credentials are not valid (unknown access key)",
    "InvalidSignatureException": "AWS rejected the request signature; check the secret key "
                                 "and the system clock",
    "ExpiredTokenException": "the AWS session token has expired; refresh the credentials",
}


def _kms_call(what: str, key: str, region: str | None, call: Callable[[], _T]) -> _T:
    """Run one KMS request; turn botocore's errors into KmsError with advice."""
    from botocore.exceptions import (BotoCoreError, ClientError, EndpointConnectionError,
                                     NoCredentialsError, NoRegionError)
    try:
        return call()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        advice = _KMS_ERRORS.get(code, "unexpected KMS error").format(key=key, region=region)
        detail = " ".join(str(error.get("Message", "")).split())[:300]
        raise KmsError(f"{what} failed: {code}: {advice}"
                       + (f" (AWS: {detail})" if detail else "")) from None
    except NoCredentialsError:
        raise KmsError(f"{what} failed: no AWS credentials found; set aws_profile in the "
                       "profile or provide credentials in the environment") from None
    except NoRegionError:
        raise KmsError(f"{what} failed: no AWS region; set region") from None
    except EndpointConnectionError as exc:
        raise KmsError(f"{what} failed: cannot reach KMS ({exc})") from None
    except BotoCoreError as exc:
        raise KmsError(f"{what} failed: {type(exc).__name__}: {exc}") from None


def kms_client(region: str | None, aws_profile: str | None = None) -> Any:
    """A boto3 KMS client for a region and (optional) named AWS profile."""
    import boto3
    from botocore.exceptions import BotoCoreError, ProfileNotFound
    try:
        session = boto3.session.Session(profile_name=aws_profile, region_name=region)
        return session.client("kms")
    except ProfileNotFound:
        raise KmsError(f"AWS profile {aws_profile!r} not found in the AWS config") from None
    except BotoCoreError as exc:
        raise KmsError(f"cannot create a KMS client: {type(exc).__name__}: {exc}") from None


def _kms_describe(client: Any, key_id: str, where: str) -> tuple[SSlibKey, str, str]:
    region = getattr(getattr(client, "meta", None), "region_name", None)
    resp = _kms_call(f"{where}: KMS GetPublicKey for {key_id}", key_id, region,
                     lambda: client.get_public_key(KeyId=key_id))
    usage = resp.get("KeyUsage")
    if usage != "SIGN_VERIFY":
        raise KmsError(f"{where}: KMS key {key_id} has key usage {usage}; a SIGN_VERIFY key "
                       "is needed")
    spec = resp.get("KeySpec") or resp.get("CustomerMasterKeySpec")
    known = _KMS_SPECS.get(spec)
    if known is None or known.name != SIGNER_CURVE:
        raise KmsError(f"{where}: KMS key {key_id} is {spec}; an evidence signer's key is "
                       f"{CURVES[SIGNER_CURVE].kms_spec} (ECDSA P-384)")
    curve, hash_name, algorithm = known.name, known.hash, known.kms_algorithm
    try:
        public = serialization.load_der_public_key(resp["PublicKey"])
    except (ValueError, UnsupportedAlgorithm):
        raise KmsError(f"{where}: KMS returned a public key that cannot be parsed") from None
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != curve:
        raise KmsError(f"{where}: KMS returned a public key that does not match {spec}")
    return _crypto_public_key(public, where), hash_name, algorithm


def kms_public_key(key_id: str, region: str | None, aws_profile: str | None = None, *,
                   client: Any = None) -> SSlibKey:
    """The SSlibKey of a KMS signing key, by GetPublicKey (for ``keyparity verify``)."""
    client = client if client is not None else kms_client(region, aws_profile)
    return _kms_describe(client, key_id, "keyparity verify")[0]


class KmsSigner(_DigestSigner):
    """ECDSA with an AWS KMS key: the digest is computed here and KMS signs it
    (MessageType DIGEST); KMS returns a DER signature. Pass ``client`` to inject one."""

    def __init__(self, key_id: str, client: Any = None, *, region: str | None = None,
                 aws_profile: str | None = None, name: str | None = None) -> None:
        self.key_id = key_id
        self.name = name or f"kms {key_id}"
        self.where = f"evidence signer {self.name}"
        self._client = client if client is not None else kms_client(region, aws_profile)
        self._region = getattr(getattr(self._client, "meta", None), "region_name", region)
        self._public_key, self._hash_name, self._algorithm = _kms_describe(
            self._client, key_id, self.where)

    def sign(self, payload: bytes) -> Signature:
        digest = self._digest(payload)
        resp = _kms_call(f"{self.where}: KMS Sign with {self.key_id}", self.key_id,
                         self._region,
                         lambda: self._client.sign(KeyId=self.key_id, Message=digest,
                                                   MessageType="DIGEST",
                                                   SigningAlgorithm=self._algorithm))
        return Signature(self._public_key.keyid, bytes(resp["Signature"]).hex())


# --------------------------------------------------------------------------- loading


def load_signer(spec: SignerSpec, module_env: Mapping[str, str],
                gate: LoginGate | None) -> Signer:
    """One evidence signer from its profile entry, its ``certificate`` (when it names one)
    checked to hold its key and to be valid now. Raises a KeyparityError subclass."""
    signer: Signer
    if spec.type == "file":
        signer = _file_signer(spec)
    elif spec.type == "pkcs11":
        signer = _pkcs11_signer(spec, module_env, gate)
    elif spec.type == "kms":
        assert spec.key_id is not None
        signer = KmsSigner(spec.key_id, region=spec.region, aws_profile=spec.aws_profile,
                           name=spec.name)
    else:
        raise SigningError(f"evidence signer {spec.name}: unknown signer type {spec.type!r}")
    if spec.certificate is not None:
        try:
            _bind_certificate(spec, signer)
        except BaseException:
            close_signers([signer])
            raise
    return signer


def _bind_certificate(spec: SignerSpec, signer: Signer) -> None:
    """The signer's certificate, refused unless its public key is the signer's and it is
    valid now (a certificate names a person only for the key it certifies)."""
    assert spec.certificate is not None
    try:
        cert = identities.load_certificate(spec.certificate)
        problems = identities.binding_problems(cert, signer.public_key,  # type: ignore[arg-type]
                                               dt.datetime.now(dt.timezone.utc), None)
    except identities.CertificateError as exc:
        raise SigningError(f"evidence signer {spec.name}: {exc}") from None
    if problems:
        raise SigningError(f"evidence signer {spec.name}: certificate {spec.certificate} "
                           f"refused: {'; '.join(problems)}")
    signer.certificate = cert  # type: ignore[attr-defined]


def public_key_of(spec: SignerSpec, module_env: Mapping[str, str],
                  gate: LoginGate | None) -> tuple[Key, Any]:
    """A signer's public key and its certificate (or None), without its private key when a
    certificate names it (a custodian's key stays on the custodian's machine)."""
    if spec.certificate is not None:
        try:
            cert = identities.load_certificate(spec.certificate)
            return identities.key_of(cert), cert
        except identities.CertificateError as exc:
            raise SigningError(f"evidence signer {spec.name}: {exc}") from None
    signer = load_signer(spec, module_env, gate)
    try:
        return signer.public_key, None
    finally:
        close_signers([signer])


def load_signers(spec: EvidenceSpec, module_env: Mapping[str, str],
                 gate: LoginGate | None) -> list[Signer]:
    """Every signer of the profile's evidence block, in order; on failure the ones already
    opened are closed again. Close them with ``close_signers`` when done."""
    signers: list[Signer] = []
    try:
        seen: dict[str, str] = {}
        for signer_spec in spec.signers:
            signers.append(load_signer(signer_spec, module_env, gate))
            keyid = signers[-1].public_key.keyid
            if keyid in seen:
                raise SigningError(f"evidence signers {seen[keyid]} and {signer_spec.name} use "
                                   f"the same key (keyid {keyid[:16]}): dual control needs a "
                                   "key per custodian")
            seen[keyid] = signer_spec.name
    except BaseException:
        close_signers(signers)
        raise
    return signers


def public_keys(spec: EvidenceSpec, module_env: Mapping[str, str],
                gate: LoginGate | None) -> tuple[list[Key], dict[str, str]]:
    """The public keys of the profile's signers and each key id's signer name: to verify a
    bundle or a plan they signed. A signer's key comes from its certificate when it names
    one (its private key stays where it is), else from the signer, loaded and closed again
    (a PKCS #11 signer's token through the process's one session)."""
    keys = [public_key_of(s, module_env, gate)[0] for s in spec.signers]
    return keys, {key.keyid: s.name for key, s in zip(keys, spec.signers)}


def close_signers(signers: list[Signer]) -> None:
    """Close what needs closing (PKCS #11 sessions)."""
    for signer in signers:
        close = getattr(signer, "close", None)
        if callable(close):
            close()
