"""``key wrap rsa-aes`` and ``key unwrap rsa-aes``: the guide's migration, with real crypto.

The wrapped form is CKM_RSA_AES_KEY_WRAP's: RSA-OAEP(K) || AES-KWP_K(key) with K a fresh
256-bit AES key (PKCS #11 v2.40 2.1.21; RFC 5649). SoftHSM 2.6 has no CKM_RSA_AES_KEY_WRAP, so
the two steps are made inside the token by keyparity.hsm.wrap (the ephemeral key is a session
object, destroyed at once): no key material is ever in this process in plaintext.

The one place the stand-in differs from CloudHSM: SoftHSM's RSA-OAEP takes SHA-1 only, so
whatever ``--hash-function``/``--mgf`` a command names (checked as CloudHSM checks them), the
OAEP step is made with SHA-1/MGF1-SHA-1. A blob the stand-in writes "with sha256" therefore
unwraps on the stand-in but not on a real CloudHSM, and the other way round. So that a wrap and
an unwrap that name different hash functions still fail as they would on CloudHSM, every blob
the stand-in writes is recorded (its SHA-256, with the hash and MGF named) in the root's
``blobs.sqlite``, and an unwrap naming others is refused.
"""
from __future__ import annotations

import base64
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

from pkcs11 import KeyType, ObjectClass
from pkcs11.exceptions import PKCS11Error

from keyparity.hsm import wrap as rsa_aes
from keyparity.hsm.mechanisms import WrapParams

from . import making, rules
from .context import Ctx
from .errors import TwinError

SOFTHSM_OAEP = WrapParams("sha1", "mgf1-sha1", 256)
KEY_TYPE_CLASSES = {"aes": ("secret-key", "aes", ObjectClass.SECRET_KEY, KeyType.AES),
                    "des3": ("secret-key", "3des", ObjectClass.SECRET_KEY, KeyType.DES3),
                    "generic-secret": ("secret-key", "generic-secret", ObjectClass.SECRET_KEY,
                                       KeyType.GENERIC_SECRET),
                    "rsa-private": ("private-key", "rsa", ObjectClass.PRIVATE_KEY, KeyType.RSA),
                    "ec-private": ("private-key", "ec", ObjectClass.PRIVATE_KEY, KeyType.EC)}


def _blobs(root: Path) -> sqlite3.Connection:
    db = sqlite3.connect(root / "blobs.sqlite", timeout=30)
    db.execute("CREATE TABLE IF NOT EXISTS blobs (digest TEXT PRIMARY KEY, hash TEXT, mgf TEXT)")
    return db


def _record(root: Path, blob: bytes, hash_function: str, mgf: str) -> None:
    with _blobs(root) as db:
        db.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?)",
                   (hashlib.sha256(blob).hexdigest(), hash_function, mgf))


def _named(root: Path, blob: bytes) -> tuple[str, str] | None:
    with _blobs(root) as db:
        row = db.execute("SELECT hash, mgf FROM blobs WHERE digest = ?",
                         (hashlib.sha256(blob).hexdigest(),)).fetchone()
    return (row[0], row[1]) if row else None


def wrap(ctx: Ctx) -> dict[str, Any]:
    rules.crypto_user(ctx.role, "key wrap rsa-aes")
    a = ctx.args
    hash_function, mgf = str(a.one("--hash-function")), str(a.one("--mgf"))
    rules.oaep(hash_function, mgf)
    payload, wrapping = ctx.one("--payload-filter"), ctx.one("--wrapping-filter")
    rules.owner(payload, ctx.user, "wrap")
    rules.extractable(payload)
    if wrapping.cls != "public-key" or wrapping.key_type != "rsa":
        raise TwinError(f"Key {wrapping.reference} is not an RSA public key: RSA-AES wraps with "
                        "one")
    rules.usable_for(wrapping, "wrap")
    rules.trusted_wrap(payload, wrapping)
    rules.approval(payload, a.one("--payload-approval"), "--payload-approval")
    rules.approval(wrapping, a.one("--wrapping-approval"), "--wrapping-approval")
    assert ctx.session is not None
    try:
        blob = rsa_aes.wrap(ctx.session, wrapping.tk.obj, payload.tk.obj, SOFTHSM_OAEP,
                            native=False, where=ctx.cluster.name)
    except Exception as exc:  # noqa: BLE001 - the token's refusal, reported as the CLI's
        raise TwinError(f"Failed to wrap key {payload.reference}: {exc}") from None
    _record(ctx.cluster.root, blob, hash_function, mgf)
    out: dict[str, Any] = {"payload-key-reference": payload.reference,
                           "wrapping-key-reference": wrapping.reference}
    path = a.one("--path")
    if path is None:
        out["wrapped-key-data"] = base64.b64encode(blob).decode()
    else:
        Path(path).write_bytes(blob)
    return out


def _blob(ctx: Ctx) -> bytes:
    path, data = ctx.args.one("--data-path"), ctx.args.one("--data")
    try:
        return Path(path).read_bytes() if path is not None else base64.b64decode(str(data),
                                                                                 validate=True)
    except (OSError, ValueError) as exc:
        raise TwinError(f"Failed to read the wrapped key data: {exc}") from None


def unwrap(ctx: Ctx) -> dict[str, Any]:
    rules.crypto_user(ctx.role, "key unwrap rsa-aes")
    a = ctx.args
    hash_function, mgf = str(a.one("--hash-function")), str(a.one("--mgf"))
    rules.oaep(hash_function, mgf)
    kind = str(a.one("--key-type-class"))
    if kind not in KEY_TYPE_CLASSES:
        raise TwinError(f"Invalid key type class {kind!r}: one of " + ", ".join(KEY_TYPE_CLASSES))
    cls, key_type, p11_class, p11_type = KEY_TYPE_CLASSES[kind]
    rules.no_new_3des_in_fips(ctx.cluster.mode, key_type)
    unwrapping = ctx.one("--filter")
    if unwrapping.cls != "private-key" or unwrapping.key_type != "rsa":
        raise TwinError(f"Key {unwrapping.reference} is not an RSA private key")
    rules.usable_for(unwrapping, "unwrap")
    rules.approval(unwrapping, a.one("--approval"), "--approval")
    final = making.wanted(a.many("--attributes"), cls, key_type, str(a.one("--label")))
    quorum = (ctx.number("--manage-key-quorum-value"), ctx.number("--use-key-quorum-value"))
    share = making.associates(ctx, a.many("--share-crypto-users"), *quorum)
    blob = _blob(ctx)
    named = _named(ctx.cluster.root, blob)
    if named is not None and named != (hash_function, mgf):
        raise TwinError(f"Failed to unwrap the key: the data was wrapped with {named[0]}/"
                        f"{named[1]}, not {hash_function}/{mgf}")
    assert ctx.session is not None
    try:
        obj = rsa_aes.unwrap(ctx.session, unwrapping.tk.obj, blob, p11_class, p11_type,
                             making.template(final, a.flag("--session")), SOFTHSM_OAEP,
                             native=False, where=ctx.cluster.name)
    except (PKCS11Error, ValueError) as exc:
        raise TwinError(f"Failed to unwrap the key with {unwrapping.reference}: {exc!r}") from None
    # SoftHSM leaves CKA_VALUE_LEN at 0 on an unwrapped key: the AES-KWP part is the key
    # padded to 8 bytes plus 8 (RFC 5649), exact for the 16/24/32-byte keys CloudHSM holds
    tail = len(blob) - unwrapping.tk.obj.key_length // 8
    length = 24 if key_type == "3des" else tail - 8 if cls == "secret-key" else 0
    key = making.finish(ctx, obj, cls, key_type, final, share, quorum, length)
    return {"key": key.entry()}
