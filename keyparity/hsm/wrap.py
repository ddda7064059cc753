"""RSA-AES key wrap (PKCS #11 CKM_RSA_AES_KEY_WRAP), natively or in two steps inside the HSMs.

The wrapped form is ``RSA-OAEP(K) || AES-KWP_K(key)`` (PKCS #11 v2.40, 2.1.21; AES key wrap
with padding is RFC 5649), where K is a fresh AES key. Where a token lacks the mechanism, the
same bytes are produced by two calls: an ephemeral AES key (a session object) is wrapped with
RSA-OAEP, then the payload with CKM_AES_KEY_WRAP_PAD; the ephemeral key is destroyed at once.
No key material is ever in this process in plaintext.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.types import Key, PrivateKey, PublicKey, Session

from ..errors import pkcs11_step
from . import destruction, direct
from .mechanisms import RSA_AES_KEY_WRAP, PackedRsaAesParams, WrapParams

_EPHEMERAL = {
    Attribute.TOKEN: False,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: True,
    Attribute.WRAP: True,
    Attribute.UNWRAP: True,
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.DERIVE: False,
}


def wrap(session: Session, wrapping_key: PublicKey, key: Key, params: WrapParams,
         *, native: bool, where: str) -> bytes:
    """Wrap ``key`` for the holder of the private half of ``wrapping_key``."""
    if native:
        packed = PackedRsaAesParams(params)
        with pkcs11_step("RSA-AES wrap (CKM_RSA_AES_KEY_WRAP)", where):
            return wrap_key(wrapping_key, key, RSA_AES_KEY_WRAP, packed.raw)
    with pkcs11_step("generate ephemeral AES key", where):
        ephemeral = session.generate_key(KeyType.AES, params.aes_bits, store=False,
                                         template=_EPHEMERAL)
    try:
        with pkcs11_step(f"RSA-OAEP ({params.oaep_hash}) wrap of the ephemeral key", where):
            head = wrap_key(wrapping_key, ephemeral, Mechanism.RSA_PKCS_OAEP, params.oaep)
        with pkcs11_step("AES key wrap with padding (CKM_AES_KEY_WRAP_PAD)", where):
            tail = wrap_key(ephemeral, key, Mechanism.AES_KEY_WRAP_PAD, None)
    except BaseException:
        _discard(ephemeral)
        raise
    _destroy(ephemeral, where)
    return head + tail


# room for any wrapped key: an RSA-8192 private key's PKCS #8 (about 4,800 bytes), padded, after
# an RSA-8192 block
_BLOB_ROOM = 16384


def wrap_key(wrapping_key: Key, key: Key, mechanism: Any, param: Any) -> bytes:
    """``wrapping_key.wrap_key(key, ...)`` in one C_WrapKey (keyparity.hsm.direct), or
    through python-pkcs11 (which asks the length first) where that cannot be done."""
    blob = direct.wrap(wrapping_key, key, mechanism, param, _BLOB_ROOM)
    return blob if blob is not None else bytes(
        wrapping_key.wrap_key(key, mechanism=mechanism, mechanism_param=param))


def _destroy(ephemeral: Key, where: str) -> None:
    destruction.destroy(ephemeral, destruction.own(ephemeral, "an ephemeral AES key of a "
                                                   "two-step wrap"), where,
                        step="destroy ephemeral AES key")


def _discard(ephemeral: Key) -> None:
    """Destroy an ephemeral key after a failed step without hiding that step's error (after a
    lost session the destroy fails too, and would otherwise be reported instead)."""
    try:
        _destroy(ephemeral, "its session")
    except Exception:  # noqa: BLE001 - a session object: gone with the session anyway
        pass


def unwrap(session: Session, wrapping_key: PrivateKey, blob: bytes, key_class: ObjectClass,
           key_type: KeyType, template: Mapping[Attribute, Any], params: WrapParams,
           *, native: bool, where: str) -> Key:
    """Unwrap ``blob`` into a new object made from ``template`` (label included)."""
    label = template.get(Attribute.LABEL)
    if native:
        packed = PackedRsaAesParams(params)
        with pkcs11_step("RSA-AES unwrap (CKM_RSA_AES_KEY_WRAP)", where):
            return wrapping_key.unwrap_key(key_class, key_type, blob, label=label,
                                           mechanism=RSA_AES_KEY_WRAP,
                                           mechanism_param=packed.raw, template=dict(template))
    split = wrapping_key.key_length // 8
    if len(blob) <= split:
        raise ValueError(f"wrapped blob of {len(blob)} bytes is shorter than the RSA part")
    head, tail = blob[:split], blob[split:]
    with pkcs11_step(f"RSA-OAEP ({params.oaep_hash}) unwrap of the ephemeral key", where):
        ephemeral = wrapping_key.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, head,
                                            mechanism=Mechanism.RSA_PKCS_OAEP,
                                            mechanism_param=params.oaep, store=False,
                                            template=_EPHEMERAL)
    try:
        with pkcs11_step("AES key unwrap with padding (CKM_AES_KEY_WRAP_PAD)", where):
            unwrapped = ephemeral.unwrap_key(key_class, key_type, tail, label=label,
                                             mechanism=Mechanism.AES_KEY_WRAP_PAD,
                                             template=dict(template))
    except BaseException:
        _discard(ephemeral)
        raise
    _destroy(ephemeral, where)
    return unwrapped
