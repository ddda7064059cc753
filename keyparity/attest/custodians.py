"""The demo's two evidence custodians (dual control): one ECDSA P-384 key in a PEM file, one
inside a SoftHSM token. Made once and kept in the state directory; public keys exported
beside them for `keyparity verify`."""
from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from ..hsm import identity
from ..hsm.cluster import load_module
from ..hsm.softhsm import find_module, init_token

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
