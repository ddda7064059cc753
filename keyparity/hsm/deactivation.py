"""A key deactivated on its token: NIST SP 800-57 Part 1 Rev. 5, 5.3.4 - a deactivated key is
not used to apply cryptographic protection (encrypt, wrap, sign or MAC); it may still process
what it protected until it is destroyed.

What a PKCS #11 token lets us do about it: clear the usage attributes that apply protection
(``CKA_ENCRYPT``, ``CKA_WRAP``, ``CKA_SIGN``; each may be changed by ``C_SetAttributeValue``,
PKCS #11 v2.40 section 4.9 and CloudHSM ``key set-attribute``), read them back, and keep the
one the strong proof of the key's material needs before it is destroyed
(keyparity.hsm.proof: an HMAC or EC key proves its material only by signing; an AES or 3DES
key by decryption, which does not apply protection). ``CKA_END_DATE`` is not used: PKCS #11
leaves its meaning to the application (the token enforces nothing), and SoftHSM 2.6.1 returns
CKR_GENERAL_ERROR when it is read back after being set (measured: a date that cannot be read
back records nothing). The time of the deactivation is the write journal's entry and the
signed record's ``deactivated_at``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pkcs11 import Attribute, ObjectClass
from pkcs11.types import Key

from ..errors import KeyparityError, pkcs11_step
from . import proof
from .locate import Side

# what applies protection (NIST SP 800-57: encrypt, wrap, sign or MAC)
PROTECTING = (("encrypt", Attribute.ENCRYPT), ("wrap", Attribute.WRAP),
              ("sign", Attribute.SIGN))
# proof.Method.op -> the usage it needs
_NEEDS = {"encrypt": "encrypt", "wrap_key": "wrap", "sign": "sign", "decrypt": None}
KEPT_FOR_PROOF = ("kept: the strong proof of the key's material before its destruction uses "
                  "it (keyparity.hsm.proof); it is destroyed with the key")


class NotDeactivated(KeyparityError):
    """The token refused to clear a usage, or still permits it after being told to clear it."""


@dataclass
class Deactivation:
    """What was cleared on the token, what is kept and why."""

    cleared: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"cleared": list(self.cleared), "kept": dict(self.kept),
                "method": "C_SetAttributeValue of the usages that apply protection, read "
                          "back false"}


def _permits(obj: Key, attr: Attribute) -> bool:
    try:
        return obj[attr] is True
    except Exception:  # noqa: BLE001 - not an attribute of this class: not permitted
        return False


def permitted(side: Side) -> list[str]:
    """The protecting usages the token permits now on the key (and a pair's public object)."""
    out = []
    for obj, what in ((side.key, ""), (side.public, "public key: ")):
        if obj is not None:
            out += [what + name for name, attr in PROTECTING if _permits(obj, attr)]
    return out


def needed_for_proof(side: Side) -> str | None:
    """The protecting usage the strong proof of this key uses (None: it needs none)."""
    key = side.key
    if key.object_class == ObjectClass.PRIVATE_KEY:
        return "sign" if hasattr(key, "sign") else None
    try:
        method = proof.choose([key], side.cluster)
    except proof.NotProvable:
        return None
    return _NEEDS.get(method.op)


def pending(side: Side) -> bool:
    """Whether deactivating the key would change anything on the token (a write)."""
    keep = needed_for_proof(side)
    return any(u != keep for u in permitted(side))


def deactivate(side: Side) -> Deactivation:
    """Clear every protecting usage of the key (and its public object) but the one its proof
    needs, then read each back; NotDeactivated when the token refuses or still permits one."""
    keep = needed_for_proof(side)
    out = Deactivation()
    for obj, what in ((side.key, ""), (side.public, "public key: ")):
        if obj is None:
            continue
        for name, attr in PROTECTING:
            if not _permits(obj, attr):
                continue
            if obj is side.key and name == keep:
                out.kept[name] = KEPT_FOR_PROOF
                continue
            try:
                with pkcs11_step(f"clear {name} on the key", side.cluster):
                    obj[attr] = False
            except KeyparityError as exc:
                raise NotDeactivated(f"the token refused to clear {what}{name}: {exc}") from None
            if _permits(obj, attr):
                raise NotDeactivated(f"{what}{name} is still permitted after it was cleared")
            out.cleared.append(what + name)
    return out
