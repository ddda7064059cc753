"""Key quorum values and trusted wrapping: what a source key demands of its migration, read from
its CloudHSM CLI ``key list --verbose`` entry (:class:`~keyparity.cloudhsm.cli_runner.CliKey`).

Quorum. ``key-info.key-quorum-values`` (``manage-key-quorum-value``, ``use-key-quorum-value``;
documented in ``key list --verbose``, cloudhsm_cli-key-list) are set only when a key is
generated, imported or unwrapped, and must not exceed the number of users the key is associated
with (owner and shared users; AWS CloudHSM, "quorum-auth-chsm-cli-service-names"). Key
management (``key wrap``, ``key unwrap``, ``key share``...) of such a key needs quorum approval
tokens (``--approval``) when its key management quorum value is above 1: keyparity collects
none, so such a key fails its preflight (and the CLI channel refuses it before any write); a
key usage quorum alone covers ``key sign`` only and moves freely. The PKCS #11 backend cannot pass quorum values to C_UnwrapKey; ``key
unwrap`` can (``--manage-key-quorum-value``, ``--use-key-quorum-value``).

Trusted. A key with ``wrap-with-trusted: true`` can only be wrapped by a key marked ``trusted``,
and only an admin can set ``trusted`` (AWS CloudHSM, "Using trusted keys" and "Modifying PKCS #11
library attributes": CKA_TRUSTED "can be set ... by Crypto Officer (CO) only").
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..checks import Check
from ..profile import TRUSTED_AT_UNWRAP, KeySpec
from .cli_runner import CliKey

QUORUM_NAMES = ("manage-key-quorum-value", "use-key-quorum-value")
WRAPPING_LABEL = "<the wrapping key's label>"
APPROVAL = ("wrap and unwrap (key management) of a key whose manage-key-quorum-value is above 1 "
            "need quorum approval tokens (`--approval`); keyparity does not collect approvals, "
            "so its `key wrap` of this key would be refused: move it by hand with the approvals "
            "(`quorum token-sign generate --service key-management`, then `key wrap rsa-aes "
            "--payload-approval`) and exclude it here with that reason")
ADMIN_STEP = ("find the wrapping key's key-reference on {cluster} (`key list --filter "
              "attr.label={label} attr.class=public-key`), then log in to the CloudHSM CLI as "
              "an admin (`login --username <admin> --role admin`) and run `key set-attribute "
              "--filter key-reference=<key-reference> --name trusted --value true` (AWS CloudHSM "
              "guide, \"Using trusted keys\")")


def quorum_values(key: CliKey) -> dict[str, int] | None:
    """``{"manage-key-quorum-value": m, "use-key-quorum-value": u}``; None when the CLI did
    not report both as integers (absent, "inconsistent"). Read from ``CliKey.quorum``, the
    ``key-info.key-quorum-values`` object of the entry."""
    raw: Any = getattr(key, "quorum", None)
    if not isinstance(raw, Mapping):
        return None
    values = {name: raw.get(name) for name in QUORUM_NAMES}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
               for v in values.values()):
        return None
    return values  # type: ignore[return-value]


def _shown(values: Mapping[str, int] | None) -> str:
    if values is None:
        return "not reported"
    return f"manage {values[QUORUM_NAMES[0]]}, use {values[QUORUM_NAMES[1]]}"


def _unknown(spec: KeySpec, key: CliKey, where: str) -> str:
    raw = getattr(key, "quorum", None)
    return (f"the CLI reported no usable key-quorum-values for {spec.label!r} on {where} "
            f"(got {raw!r}); check the CLI version (5.x), or wait and check again if the "
            "cluster's HSMs disagree")


class Mover(Protocol):
    """What the quorum check needs of a migration backend (a keyparity.backends.BackendKind)."""

    name: str
    sets_quorum: bool   # whether a key's quorum values arrive with it at unwrap


@dataclass(frozen=True)
class Carrier:
    """A Mover by name, for a backend that knows what it is (keyparity.cloudhsm.backend)."""

    name: str
    sets_quorum: bool


def check_quorum_preflight(spec: KeySpec, source_key: CliKey, backend: Mover) -> Check:
    """A source key with a quorum can only arrive with it through a backend that sets quorum
    values at unwrap (the CLI's ``key unwrap``), with enough users associated with it on the
    target."""
    values = quorum_values(source_key)
    facts: dict[str, Any] = {"key_reference": source_key.key_reference, "quorum": values,
                             "backend": backend.name}
    if values is None:
        return Check(False, _unknown(spec, source_key, "the source"), facts)
    if not any(values.values()):
        return Check(True, "", {**facts, "needs_quorum": False})
    facts["needs_quorum"] = True
    # approvals are needed to wrap or unwrap only above a manage quorum of 1
    # (cloudhsm_cli-key-wrap-rsa-aes, <PAYLOAD_APPROVALR>)
    approval = values[QUORUM_NAMES[0]] > 1
    if approval:
        facts["approval"] = APPROVAL
    if not backend.sets_quorum:
        return Check(False, (
            f"{spec.label!r} has key quorum values ({_shown(values)}) on the source: the "
            "PKCS #11 backend cannot set key quorum values at unwrap; use migration.backend: "
            "cloudhsm-cli, which can"), facts)
    users = {u.lower() for u in spec.share_with} | {(spec.owner or "<unwrapping user>").lower()}
    facts["associated_users"] = len(users)
    need = max(values.values())
    if need > len(users):
        return Check(False, (
            f"{spec.label!r} has key quorum values ({_shown(values)}): CloudHSM requires a "
            f"key's quorum value to be at most the number of users it is associated with "
            f"(owner and shared users), and the inventory gives {spec.target_label!r} "
            f"{len(users)}; add at least {need - len(users)} crypto user(s) to its "
            "share_with"), facts)
    if approval:
        return Check(False, (f"{spec.label!r} has key quorum values ({_shown(values)}): "
                             f"{APPROVAL}"), facts)
    return Check(True, (f"{spec.label!r} has key quorum values ({_shown(values)}); "
                        "`key unwrap` sets them on the target"), facts)


def check_owner(spec: KeySpec, source_key: CliKey, user: str, where: str) -> Check:
    """Only the owner of a key may wrap it: "Only the owner of a key, that is the crypto user
    (CU) who created the key, can wrap the key. Users who share the key can use the key in
    cryptographic operations." (AWS CloudHSM, cloudhsm_cli-key-wrap-rsa-aes)."""
    owners = tuple(o.lower() for o in source_key.owners)
    facts: dict[str, Any] = {"key_reference": source_key.key_reference,
                             "owners": list(source_key.owners), "migrating_user": user}
    if "key-owners" in source_key.missing or not owners:
        return Check(False, (f"the CLI reported no key-owners for {spec.label!r} on {where}; "
                             "check the CLI version (5.x)"), facts)
    if owners == (user.lower(),):
        return Check(True, "", facts)
    shared = user.lower() in {u.lower() for u in source_key.shared_users}
    how = "it is only shared with" if shared else "it is not owned by"
    return Check(False, (
        f"{spec.label!r} on {where} is owned by {', '.join(source_key.owners)}, not by "
        f"{user!r} ({how} {user!r}): only a key's owner can wrap it; migrate it as "
        f"{', '.join(source_key.owners)} (or exclude it)"), facts)


def check_quorum_after(spec: KeySpec, source_key: CliKey, target_key: CliKey) -> Check:
    """The migrated key has the source key's quorum values."""
    src, tgt = quorum_values(source_key), quorum_values(target_key)
    facts = {"source": src, "target": tgt, "key_reference": target_key.key_reference}
    if src is None:
        return Check(False, _unknown(spec, source_key, "the source"), facts)
    if tgt is None:
        return Check(False, _unknown(spec, target_key, "the target"), facts)
    if src != tgt:
        return Check(False, (
            f"{spec.target_label!r} on the target has key quorum values {_shown(tgt)}, the "
            f"source key {_shown(src)}: quorum values are set only when a key is generated, "
            "imported or unwrapped; delete the target key and migrate it again with "
            "migration.backend: cloudhsm-cli, which sets them at unwrap"), facts)
    return Check(True, "", facts)


def wrap_with_trusted(key: CliKey) -> bool | None:
    """The key's ``wrap-with-trusted``; None when absent or not a boolean ("inconsistent")."""
    value = key.attributes.get("wrap-with-trusted")
    return value if isinstance(value, bool) else None


def check_trusted_preflight(spec: KeySpec, source_key: CliKey, wrapping_trusted: bool, *,
                            wrapping_label: str = WRAPPING_LABEL,
                            cluster: str = "the source") -> Check:
    """A ``wrap-with-trusted`` source key needs a wrapping key an admin marked ``trusted``;
    ``wrapping_trusted``: the profile says an admin will have done so before the wrap."""
    value = wrap_with_trusted(source_key)
    step = ADMIN_STEP.format(cluster=cluster, label=wrapping_label)
    facts: dict[str, Any] = {"key_reference": source_key.key_reference,
                             "wrap_with_trusted": value, "wrapping_trusted": wrapping_trusted}
    if value is None:
        got = source_key.attributes.get("wrap-with-trusted", "absent")
        return Check(False, (f"the CLI reported no usable wrap-with-trusted for {spec.label!r} "
                             f"on {cluster} (got {got!r}); check the CLI version (5.x)"), facts)
    if not value:
        return Check(True, "", facts)
    facts["admin_step"] = step
    if wrapping_trusted:
        return Check(True, (f"{spec.label!r} has wrap-with-trusted: true; the profile says the "
                            "wrapping key will be trusted"), facts, warnings=(
            f"{spec.label!r}: keyparity does not set trusted (only an admin can): {step}",))
    return Check(False, (
        f"{spec.label!r} on {cluster} has wrap-with-trusted: true: it can only be wrapped by a "
        "key marked trusted, and only an admin can set trusted (a crypto user cannot). Before "
        f"the wrap, an admin must {step}; then say so in the profile (wrapping.trusted: true)"),
        facts)


def refuse_trusted_in_inventory(spec: KeySpec) -> str | None:
    """Why the inventory may not ask for ``trusted: true`` at unwrap (profile validation of
    ``keys[i].attributes.trusted``); None when it does not."""
    if spec.attributes.get("trusted") is not True:  # the schema makes it a boolean
        return None
    return f"{spec.label!r}: {TRUSTED_AT_UNWRAP}"
