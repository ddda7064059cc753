"""The demo's evidence signers: the operator's and one custodian's ECDSA P-384 key in PEM files,
the other custodian's inside a SoftHSM token; and the demo organisation's CA, which issues each
of them a certificate naming the person (``organisation``). Made once and kept in the state
directory; public keys and certificates exported beside them for `keyparity verify`."""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from ..hsm import identity
from ..hsm.cluster import load_module
from ..hsm.softhsm import find_module, init_token
from ..trust import pki

TOKEN = "custodian"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def file_custodian(evidence_dir: Path, name: str) -> Path:
    """An ECDSA P-384 PEM key, made once; returns the exported public key's path."""
    evidence_dir.mkdir(parents=True, exist_ok=True)
    private = evidence_dir / f"{name}.key.pem"
    if not private.exists():
        key = ec.generate_private_key(ec.SECP384R1())
        _write_private(private, key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    public = evidence_dir / f"{name}.pub.pem"
    public.write_bytes(_public_pem(key.public_key()))
    return public


def token_custodian(softhsm_dir: Path, evidence_dir: Path, name: str) -> Path:
    """An ECDSA P-384 key generated inside the SoftHSM token 'custodian' (never extractable),
    made once; returns the exported public key's path."""
    conf = softhsm_dir.resolve() / "softhsm2.conf"
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    init_token(softhsm_dir.resolve(), TOKEN, env, replace=False)
    lib = load_module(find_module(), {"SOFTHSM2_CONF": str(conf)})
    pin = (softhsm_dir / f"{TOKEN}.pin").read_text().strip()
    with lib.get_token(token_label=TOKEN).open(user_pin=pin, rw=True) as session:
        publics = list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                                            Attribute.LABEL: name}))
        if not publics:
            params = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp384r1")},
                local=True)
            pub, _ = params.generate_keypair(
                store=True, label=name,
                public_template={Attribute.VERIFY: True},
                private_template={Attribute.SIGN: True, Attribute.SENSITIVE: True,
                                  Attribute.EXTRACTABLE: False, Attribute.DERIVE: False})
            publics = [pub]
        key = identity.ec_public(publics[0], "secp384r1")
    evidence_dir.mkdir(parents=True, exist_ok=True)
    public = evidence_dir / f"{name}.pub.pem"
    public.write_bytes(_public_pem(key))
    return public


# The demo organisation's people: who each demo signer is, as its certificate names them.
PEOPLE = {
    "operator": ("Olivia Operator", "olivia.operator@bank.example"),
    "custodian-1": ("Carol Custodian", "carol.custodian@bank.example"),
    "custodian-2": ("Dan Custodian", "dan.custodian@bank.example"),
}
ORG = "Example Bank (keyparity demo)"
ORG_CA = "org-ca.crt"


def person_certificate(subject_key: Any, issuer: x509.Certificate, issuer_key: Any,
                       common_name: str, email: str, *, organization: str = ORG,
                       days: int = 730, now: dt.datetime | None = None) -> x509.Certificate:
    """A person's signing certificate: CN and e-mail (subject and rfc822Name), digital
    signature and non-repudiation, issued by the organisation's CA."""
    start = (now or dt.datetime.now(dt.timezone.utc)) - dt.timedelta(hours=1)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.EMAIL_ADDRESS, email)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject)
            .public_key(subject_key).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]),
                           critical=False)
            .sign(issuer_key, hashes.SHA256()))


def organisation(evidence_dir: Path) -> list[Path]:
    """The demo organisation's CA (made once: org-ca.crt, its key 0600) and a certificate for
    each demo signer whose public key is beside it (NAME.pub.pem -> NAME.crt), issued again
    when it is missing or holds another key."""
    ca_path, ca_key_path = evidence_dir / ORG_CA, evidence_dir / "org-ca.key.pem"
    if not ca_path.exists() or not ca_key_path.exists():
        ca, key = pki.make_ca(pki.subject("Example Bank signing CA", organization=ORG))
        ca_key_path.unlink(missing_ok=True)
        _write_private(ca_key_path, key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
        pki.write_pem(ca_path, ca)
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    out = []
    for name, (common_name, email) in PEOPLE.items():
        public_path, cert_path = evidence_dir / f"{name}.pub.pem", evidence_dir / f"{name}.crt"
        if not public_path.exists():
            continue
        public = serialization.load_pem_public_key(public_path.read_bytes())
        if cert_path.exists():
            held = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_key()
            if held == public:
                out.append(cert_path)
                continue
        pki.write_pem(cert_path, person_certificate(public, ca, ca_key, common_name, email))
        out.append(cert_path)
    return out
