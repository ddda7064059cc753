"""The CloudHSM users the migrated keys need on the target, checked before the cutover.

The crypto user who unwraps a key owns it; the owner alone can share it. So every ``owner`` and
``share_with`` user of the inventory, and every owner's target user of the per-owner strategy
(``owners[i].target.user``, who unwraps that owner's keys), must exist on the target as a crypto
user, unlocked and on every HSM of the cluster, and every crypto user who owns an inventory key on the source needs a
counterpart of the same name on the target, unless the inventory names the key's new owner.

Users come from ``user list`` (CloudHSM CLI; documented output, cloudhsm_cli-user-list:
``{"users": [{"username", "role", "locked": "false", "mfa": [...], "cluster-coverage"}]}``; a
``quorum`` list like ``mfa`` where the CLI reports one). The source owners come from one ``key
list --filter attr.label=<label> attr.class=<class> --verbose`` per inventory key
(:func:`source_keys`), not from one listing of everything: ``key list`` also returns every
public key of the cluster, the answer for a label is exact (two keys of one label are an
error, not a guess), a key the CLI user cannot see is reported for that key alone, and the same
entry serves the key policy checks (quorum values, ``wrap-with-trusted``). It costs one login
per key, in preflight only.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..checks import Check
from ..errors import KeyparityError
from ..profile import KeySpec, Profile
from .cli_runner import CliKey, CloudHsmCli, fail

CRYPTO_USER = "crypto-user"
_CREATE = "`user create --username {u} --role crypto-user` (CloudHSM CLI, logged in as an admin)"


@dataclass(frozen=True)
class User:
    """One user as ``user list`` reports it. ``mfa``/``quorum``: a strategy is registered
    (what it is and its keys are never kept)."""

    username: str
    role: str
    locked: bool | None  # None: neither "true" nor "false"
    mfa: bool
    quorum: bool
    cluster_coverage: str | None

    @classmethod
    def parse(cls, raw: Any, command: Sequence[str], where: str) -> User:
        if not isinstance(raw, dict) or not isinstance(raw.get("username"), str):
            raise fail("bad-shape", f"CloudHSM CLI `user list` on {where}: a user without a "
                                    "username", command)
        locked = raw.get("locked")
        text = str(locked).lower()  # documented as the strings "true"/"false"
        coverage = raw.get("cluster-coverage")
        return cls(username=raw["username"].lower(), role=str(raw.get("role", "")),
                   locked=text == "true" if text in ("true", "false") else None,
                   mfa=bool(raw.get("mfa")), quorum=bool(raw.get("quorum")),
                   cluster_coverage=coverage if isinstance(coverage, str) else None)

    def facts(self) -> dict[str, Any]:
        return {"role": self.role, "locked": self.locked, "mfa": self.mfa,
                "quorum": self.quorum, "cluster_coverage": self.cluster_coverage}


def user_list(cli: CloudHsmCli) -> list[User]:
    """``user list`` on the CLI's cluster."""
    data = cli.run("user", "list")
    argv = cli.argv(["user", "list"])
    if not isinstance(data, dict) or not isinstance(data.get("users"), list):
        raise fail("bad-shape", f"CloudHSM CLI `user list` on {cli.where}: no data.users list",
                   argv)
    return [User.parse(raw, argv, cli.where) for raw in data["users"]]


def source_filters(spec: KeySpec) -> dict[str, str]:
    """The CLI filter that selects the source key (the private half of a pair)."""
    return {"label": spec.label, "class": "private-key" if spec.is_asymmetric else "secret-key"}


def source_keys(cli: CloudHsmCli, specs: Iterable[KeySpec]) -> dict[str, CliKey | KeyparityError]:
    """label -> the source key as ``key list --verbose`` shows it, or why it could not be had."""
    out: dict[str, CliKey | KeyparityError] = {}
    for spec in specs:
        try:
            out[spec.label] = cli.one_key(source_filters(spec), spec.label)
        except KeyparityError as exc:
            out[spec.label] = exc
    return out


def owners_of(keys: Mapping[str, CliKey | KeyparityError]) -> dict[str, tuple[str, ...]]:
    """label -> key-owners, for the keys that were listed."""
    return {label: k.owners for label, k in keys.items() if isinstance(k, CliKey)}


def _migrating_user(profile: Profile) -> str | None:
    target = profile.target
    if target is None:
        return None
    return target.cloudhsm_cli.user if target.cloudhsm_cli else target.user


def _named_users(profile: Profile) -> dict[str, list[str]]:
    """user -> what the inventory needs it for on the target: owner, share_with, and with
    per-owner migration each owner's target user (who unwraps, and so owns, that owner's keys;
    a key's ``owner`` is then an owner's name, standing for that user)."""
    needed: dict[str, list[str]] = {}
    target_user = {o.name: o.target.user for o in profile.owners}
    for o in profile.owners:
        needed.setdefault(o.target.user.lower(), []).append(f"target user of owner {o.name}")
    for spec in profile.keys:
        if spec.owner:
            owner = target_user.get(spec.owner, spec.owner)
            needed.setdefault(owner.lower(), []).append(f"owner of {spec.label!r}")
        for user in spec.share_with:
            needed.setdefault(user.lower(), []).append(f"share_with of {spec.label!r}")
    return needed


def check_target_users(profile: Profile, source_users: Sequence[User] | None,
                       target_users: Sequence[User],
                       source_owners: Mapping[str, Sequence[str]] | None) -> Check:
    """Every user the inventory names, and every source owner without a new owner, is a usable
    crypto user on the target. ``source_users``/``source_owners`` None: not listed (no CLI on
    the source)."""
    assert profile.source is not None and profile.target is not None
    src, tgt = profile.source.name, profile.target.name
    needed = _named_users(profile)
    warnings: list[str] = []
    mover = _migrating_user(profile)
    for spec in profile.keys:
        if source_owners is None:
            break
        if spec.label not in source_owners:
            warnings.append(f"the owner of {spec.label!r} on {src} is not known (not listed): "
                            f"that it has a counterpart on {tgt} is not proven")
            continue
        if spec.owner:
            continue  # the inventory names the new owner, checked above
        for owner in source_owners[spec.label]:
            needed.setdefault(owner.lower(), []).append(f"owns {spec.label!r} on {src}")
            if mover and owner.lower() != mover.lower() and owner.lower() not in (
                    u.lower() for u in spec.share_with):
                warnings.append(
                    f"{spec.label!r} is owned by {owner} on {src}; the inventory names no owner, "
                    f"so on {tgt} it will be owned by the crypto user who unwraps it ({mover}): "
                    f"set owner: {owner} (and migrate as {owner}), or add {owner} to share_with")
    if source_owners is None:
        warnings.append(f"the key owners on {src} were not listed (no cloudhsm_cli block on the "
                        f"source): that each has a counterpart on {tgt} is not proven")
    on_target = {u.username: u for u in target_users}
    on_source = {u.username: u for u in source_users} if source_users is not None else None
    users: dict[str, Any] = {}
    problems: list[str] = []
    for name, why in sorted(needed.items()):
        t = on_target.get(name)
        s = on_source.get(name) if on_source is not None else None
        users[name] = {"needed_for": why, "target": t.facts() if t else None,
                       "source": s.facts() if s else None}
        reason = f"{name} ({'; '.join(why)})"
        if t is None:
            fix = _CREATE.format(u=name)
            if any(w.startswith("owns ") for w in why):
                fix += ", or name the key's new owner in the inventory (owner:)"
            problems.append(f"crypto user {reason} does not exist on {tgt}: create it with {fix}")
            continue
        if t.role != CRYPTO_USER:
            problems.append(f"{reason} has the role {t.role} on {tgt}, not crypto-user: only "
                            f"crypto users own and share keys; create a crypto user with "
                            f"{_CREATE.format(u='<name>')} and name it in the inventory")
        if t.locked is not False:
            state = "locked" if t.locked else "not reported as unlocked (locked: not true/false)"
            problems.append(f"{reason} is {state} on {tgt}: an admin unlocks it by setting a new "
                            f"password (`user change-password --username {name} --role "
                            "crypto-user`, logged in as an admin)")
        if t.cluster_coverage != "full":
            problems.append(f"{reason} is not on every HSM of {tgt} (cluster-coverage: "
                            f"{t.cluster_coverage}): wait for the cluster to synchronise, or "
                            "check its HSMs, before the cutover")
        if s is not None and s.mfa != t.mfa:
            warnings.append(f"{name} has {'' if s.mfa else 'no '}MFA on {src} but "
                            f"{'' if t.mfa else 'no '}MFA on {tgt}")
    facts = {"source": src, "target": tgt, "migrating_user": mover, "users": users,
             "source_listed": source_users is not None,
             "source_owners": ({k: list(v) for k, v in source_owners.items()}
                               if source_owners is not None else None)}
    if not needed and not problems:
        return Check(True, "", facts, skip=(
            "nothing to check: the inventory names no owner or shared user, and no source "
            "owner was listed"), warnings=tuple(warnings))
    return Check(not problems, "\n".join(problems), facts, warnings=tuple(warnings))
