"""Making a key: the attributes it gets (the CLI's defaults, then ``--attributes``, checked
against what may be set at creation), the users it is associated with and its quorum values
(checked), the SoftHSM template, and its registration in the state with the logged-in crypto
user as its owner ("In AWS CloudHSM, the crypto user (CU) who creates the key owns it",
cloudhsm-cli-share-keys; the migration guide: the CU who unwraps a key becomes its owner).

A key asked for with ``modifiable=false`` or ``destroyable=false`` is made modifiable and
destroyable first, its check value read, then copied with the requested values and the first
object destroyed: SoftHSM cannot change either attribute of an existing object, and a key that
may not change cannot have its check value computed by a session copy.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pkcs11 import Attribute as A
from pkcs11.types import Object

from . import attributes, rules, softtoken
from .context import Ctx
from .errors import TwinError
from .keystore import Key
from .state import KeyRow

# the CLI booleans a template sets (the others the token sets itself)
TEMPLATE = {n: a for n, a in softtoken.BOOLEANS.items()
            if n not in ("always-sensitive", "local", "never-extractable")}
STATE_ONLY = ("trusted", "wrap-with-trusted")  # SoftHSM lets only its SO set these


def wanted(pairs: Sequence[str], cls: str, key_type: str, label: str) -> dict[str, Any]:
    """The new key's attributes: defaults, then ``pairs``; refused as rules.at_creation says."""
    given = attributes.parse(pairs)
    rules.at_creation(given, cls, key_type)
    if "label" in given and given["label"] != label:
        raise TwinError("Key attribute label differs from --label")
    final = attributes.defaults(cls, key_type)
    final.update({k: v for k, v in given.items() if k in attributes.BOOLEAN})
    if len(label) > attributes.LABEL_MAX:
        raise TwinError(f"Invalid label: longer than {attributes.LABEL_MAX} characters")
    final.update(label=label, id=given.get("id", ""))
    return final


def template(final: dict[str, Any], session_key: bool) -> dict[A, Any]:
    out: dict[A, Any] = {TEMPLATE[n]: v for n, v in final.items() if n in TEMPLATE}
    out.update({A.PRIVATE: True, A.MODIFIABLE: True, A.DESTROYABLE: True,
                A.TOKEN: not session_key and final.get("token", True), A.LABEL: final["label"]})
    if final["id"]:
        out[A.ID] = bytes.fromhex(final["id"])
    return out


def associates(ctx: Ctx, names: Sequence[str], manage: int, use: int) -> list[str]:
    """The users a new key is shared with (``--share-crypto-users``), checked with its quorum
    values against them and the owner."""
    share = rules.crypto_users(names, ctx.roles(), ctx.user)
    rules.share_limit([], share)
    rules.quorum(manage, use, 1 + len(set(share)))
    return list(dict.fromkeys(share))


def finish(ctx: Ctx, obj: Object, cls: str, key_type: str, final: dict[str, Any],
           share: Sequence[str] = (), quorum: tuple[int, int] = (0, 0),
           length: int = 0) -> Key:
    """Register a key just made in the token (see the module for modifiable/destroyable)."""
    tk = softtoken.TokenKey(obj, cls, key_type, final["label"], final["id"])
    fingerprint, check = softtoken.identity(tk)
    locks = {A.MODIFIABLE: final.get("modifiable", True),
             A.DESTROYABLE: final.get("destroyable", True)}
    if not all(locks.values()):
        tk.obj = obj.copy(locks)
        obj.destroy()
    row = KeyRow(ctx.state.next_ref(), cls, key_type, final["label"], final["id"], fingerprint,
                 check, softtoken.length(tk) or length, ctx.user, quorum[0], quorum[1],
                 False, bool(final.get("wrap-with-trusted")))
    ctx.state.save_key(row)
    for user in share:
        ctx.state.share(row.ref, user)
    key = Key(row, tk, list(share))
    ctx.keys.append(key)
    return key
