"""The commands that make keys or public key files: ``key generate-asymmetric-pair rsa``,
``key generate-symmetric aes | generic-secret``, ``key import pem`` and ``key generate-file``.

The CLI has no ``key generate-symmetric 3des`` (cloudhsm_cli-key-generate-symmetric lists aes
and generic-secret): 3DES keys come from PKCS #11 (provisioning seeds them that way) or from
``key unwrap --key-type-class des3``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pkcs11 import Attribute as A
from pkcs11 import KeyType, ObjectClass

from . import making, rules
from .context import Ctx
from .errors import TwinError

SYMMETRIC = {"aes": (KeyType.AES, (16, 24, 32)), "generic-secret": (KeyType.GENERIC_SECRET,
                                                                     tuple(range(1, 801)))}


def asymmetric_rsa(ctx: Ctx) -> dict[str, Any]:
    """cloudhsm_cli-key-generate-asymmetric-pair-rsa. Sharing and quorum values apply to the
    private key (the page's example: the public key has none)."""
    rules.crypto_user(ctx.role, "key generate-asymmetric-pair rsa")
    a = ctx.args
    bits, exponent = ctx.number("--modulus-size-bits"), ctx.number("--public-exponent")
    rules.rsa_parameters(bits, exponent)
    public = making.wanted(a.many("--public-attributes"), "public-key", "rsa",
                           str(a.one("--public-label")))
    private = making.wanted(a.many("--private-attributes"), "private-key", "rsa",
                            str(a.one("--private-label")))
    quorum = (ctx.number("--manage-private-key-quorum-value"),
              ctx.number("--use-private-key-quorum-value"))
    share = making.associates(ctx, a.many("--share-crypto-users"), *quorum)
    assert ctx.session is not None
    session_key = a.flag("--session")
    pub_t = making.template(public, session_key)
    pub_t[A.PUBLIC_EXPONENT] = exponent.to_bytes((exponent.bit_length() + 7) // 8, "big")
    pub, priv = ctx.session.generate_keypair(
        KeyType.RSA, bits, store=not session_key, public_template=pub_t,
        private_template=making.template(private, session_key))
    pub_key = making.finish(ctx, pub, "public-key", "rsa", public)
    priv_key = making.finish(ctx, priv, "private-key", "rsa", private, share, quorum)
    return {"public_key": pub_key.entry(), "private_key": priv_key.entry()}


def symmetric(ctx: Ctx) -> dict[str, Any]:
    """cloudhsm_cli-key-generate-symmetric-aes (16, 24 or 32 bytes) and -generic-secret (1 to
    800 bytes)."""
    kind = ctx.args.words[-1]
    rules.crypto_user(ctx.role, f"key generate-symmetric {kind}")
    key_type, lengths = SYMMETRIC[kind]
    size = ctx.number("--key-length-bytes")
    if size not in lengths:
        raise TwinError(f"Invalid key length {size} bytes for {kind}")
    final = making.wanted(ctx.args.many("--attributes"), "secret-key", kind,
                          str(ctx.args.one("--label")))
    quorum = (ctx.number("--manage-key-quorum-value"), ctx.number("--use-key-quorum-value"))
    share = making.associates(ctx, ctx.args.many("--share-crypto-users"), *quorum)
    assert ctx.session is not None
    obj = ctx.session.generate_key(key_type, size * 8, store=not ctx.args.flag("--session"),
                                   template=making.template(final, ctx.args.flag("--session")))
    return {"key": making.finish(ctx, obj, "secret-key", kind, final, share, quorum,
                                 size).entry()}


def import_pem(ctx: Ctx) -> dict[str, Any]:
    """cloudhsm_cli-key-import-pem: a public key (rsa-public; ec-public is not modelled), label
    up to 126 characters."""
    rules.crypto_user(ctx.role, "key import pem")
    kind, label = ctx.args.one("--key-type-class"), str(ctx.args.one("--label"))
    if kind != "rsa-public":
        raise TwinError(f"Invalid key type class {kind!r}: the stand-in imports rsa-public")
    if len(label) > 126:
        raise TwinError("Invalid label: longer than 126 characters")
    try:
        public = serialization.load_pem_public_key(Path(str(ctx.args.one("--path"))).read_bytes())
    except (OSError, ValueError) as exc:
        raise TwinError(f"Failed to read the PEM file: {exc}") from None
    if not isinstance(public, rsa.RSAPublicKey):
        raise TwinError("The PEM file does not hold an RSA public key")
    final = making.wanted(ctx.args.many("--attributes"), "public-key", "rsa", label)
    numbers = public.public_numbers()
    template = making.template(final, False)
    template.update({A.CLASS: ObjectClass.PUBLIC_KEY, A.KEY_TYPE: KeyType.RSA,
                     A.MODULUS: numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"),
                     A.PUBLIC_EXPONENT: numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8,
                                                           "big")})
    assert ctx.session is not None
    key = making.finish(ctx, ctx.session.create_object(template), "public-key", "rsa", final)
    return {"key": key.entry(), "message": "Successfully imported key"}


def generate_file(ctx: Ctx) -> dict[str, Any]:
    """cloudhsm_cli-key-generate-file: ``--encoding pem`` writes a public key ("pem: PEM format
    (supports public keys)"); ``reference-pem`` (a private key's reference) is not modelled."""
    rules.crypto_user(ctx.role, "key generate-file")
    encoding = ctx.args.one("--encoding")
    if encoding not in ("pem", "reference-pem"):
        raise TwinError(f"Invalid encoding {encoding!r}: pem or reference-pem")
    key = ctx.one("--filter")
    if encoding == "reference-pem":
        raise TwinError("cloudhsm-cli stand-in: reference-pem is not modelled")
    if key.cls != "public-key" or key.key_type != "rsa":
        raise TwinError(f"Key {key.reference} is not an RSA public key: the pem encoding "
                        "supports public keys")
    n = int.from_bytes(bytes(key.tk.obj[A.MODULUS]), "big")
    e = int.from_bytes(bytes(key.tk.obj[A.PUBLIC_EXPONENT]), "big")
    pem = rsa.RSAPublicNumbers(e, n).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    Path(str(ctx.args.one("--path"))).write_bytes(pem)
    return {"message": "Successfully generated key file"}
