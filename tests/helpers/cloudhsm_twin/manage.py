"""``key list``, ``key delete``, ``key share``, ``key unshare`` and ``key set-attribute``."""
from __future__ import annotations

from typing import Any

from pkcs11 import Attribute as A
from pkcs11.exceptions import PKCS11Error

from . import attributes, rules
from .context import Ctx
from .errors import TwinError, UsageError
from .keystore import Key, select
from .softtoken import BOOLEANS

MAX_ITEMS = 10  # cloudhsm_cli-key-list, --max-items: "[default: 10]"
# set-attribute through C_SetAttributeValue; modifiable, destroyable and sensitive by a copy
# (SoftHSM holds them read-only); trusted and wrap-with-trusted in the state (softtoken, making)
DIRECT = {"label": A.LABEL, "id": A.ID, **{n: BOOLEANS[n] for n in (
    "encrypt", "decrypt", "sign", "verify", "wrap", "unwrap", "derive")}}
BY_COPY = {"modifiable": A.MODIFIABLE, "destroyable": A.DESTROYABLE, "sensitive": A.SENSITIVE}


def key_list(ctx: Ctx) -> dict[str, Any]:
    """cloudhsm_cli-key-list: the user's keys (owned, shared, every public key), ``--max-items``
    a page (default 10) and ``next_token`` for the next (``--starting-token``); ``--verbose``
    shows key-info and every attribute, without it only key-reference and label."""
    found = select(ctx.keys, ctx.args.many("--filter"), ctx.user, ctx.role)
    size = ctx.number("--max-items", MAX_ITEMS)
    start = ctx.number("--starting-token", 0)
    if size < 1 or start < 0:
        raise UsageError("--max-items must be at least 1 and --starting-token a token that a "
                         "previous key list returned")
    page = found[start:start + size]
    verbose = ctx.args.flag("--verbose") and ctx.role == rules.CRYPTO_USER
    out: dict[str, Any] = {"matched_keys": [k.entry(verbose) for k in page],
                           "total_key_count": len(found), "returned_key_count": len(page)}
    if start + size < len(found):
        out["next_token"] = str(start + size)
    return out


def delete(ctx: Ctx) -> dict[str, Any]:
    """cloudhsm_cli-key-delete: one key at a time, by its owner only."""
    rules.crypto_user(ctx.role, "key delete")
    key = ctx.one("--filter")
    rules.owner(key, ctx.user, "delete")
    try:
        key.tk.obj.destroy()
    except PKCS11Error:
        raise TwinError(f"Key {key.reference} cannot be deleted (destroyable=false)") from None
    ctx.state.drop_key(key.row.ref)
    return {"message": "Key deleted successfully"}


def _sharing(ctx: Ctx, verb: str) -> tuple[Key, str]:
    """The key and the crypto user of ``key share``/``key unshare``, by the key's owner, with
    approval when the key's management quorum asks for it."""
    rules.crypto_user(ctx.role, f"key {verb}")
    key = ctx.one("--filter")
    rules.owner(key, ctx.user, verb)
    role = ctx.args.one("--role")
    if role not in rules.ROLES:
        raise UsageError(f"invalid value '{role}' for '--role <ROLE>'")
    if role != rules.CRYPTO_USER:
        raise TwinError("Keys are shared with crypto users only")
    user = rules.crypto_users([str(ctx.args.one("--username"))], ctx.roles(), key.owner)[0]
    rules.approval(key, ctx.args.one("--approval"), "--approval")
    return key, user


def share(ctx: Ctx) -> dict[str, Any]:
    """cloudhsm_cli-key-share: by the owner, with up to seven crypto users."""
    key, user = _sharing(ctx, "share")
    rules.share_limit(key.shared, [user])
    ctx.state.share(key.row.ref, user)
    return {"message": "Key shared successfully"}


def unshare(ctx: Ctx) -> dict[str, Any]:
    """cloudhsm-cli-share-keys / cloudhsm_cli-key-unshare: by the owner."""
    key, user = _sharing(ctx, "unshare")
    if user not in key.shared:
        raise TwinError(f"Key {key.reference} is not shared with {user}")
    ctx.state.unshare(key.row.ref, user)
    return {"message": "Key unshared successfully"}


def set_attribute(ctx: Ctx) -> dict[str, Any]:
    """cloudhsm_cli-key-set-attribute: the owner (a crypto user) changes what the attribute
    table lets change; an admin sets ``trusted`` (rules.change)."""
    name = str(ctx.args.one("--name")).lower()
    if not attributes.known(name):
        raise TwinError(f"Invalid key attribute: {name}")
    new = attributes.value(name, " ".join(ctx.args.many("--value")))
    key = ctx.one("--filter")
    if ctx.role == rules.CRYPTO_USER:
        rules.owner(key, ctx.user, "set attributes of")
    rules.change(key, name, new, ctx.role, ctx.cluster.hsm_type)
    if ctx.role == rules.CRYPTO_USER:
        rules.approval(key, ctx.args.one("--approval"), "--approval")
    if name in ("trusted", "wrap-with-trusted"):
        setattr(key.row, "trusted" if name == "trusted" else "wwt", bool(new))
        ctx.state.save_key(key.row)
    elif name in DIRECT:
        key.tk.obj[DIRECT[name]] = bytes.fromhex(new) if name == "id" else new
        if name in ("label", "id"):  # the state finds the key by them first (keystore.load)
            setattr(key.row, name, new)
            ctx.state.save_key(key.row)
    elif key.attr(name) != new:
        if not key.attr("destroyable"):
            raise TwinError(f"cloudhsm-cli stand-in: {name} of a key that cannot be destroyed "
                            "is not modelled (SoftHSM changes it by a copy)")
        copy = key.tk.obj.copy({BY_COPY[name]: new})
        key.tk.obj.destroy()
        key.tk.obj = copy
    return {"message": "Attribute set successfully"}
