"""Who owns each migrated key on the target, who it is shared with, and whether CloudHSM's own
view of the key (CloudHSM CLI ``key list --verbose``) agrees with what PKCS #11 says.

On CloudHSM the crypto user who unwraps a key becomes its owner; the owner alone can share it,
and shared users cannot modify or re-share it. A cluster without a ``cloudhsm_cli`` block
(SoftHSM) has one token user and no sharing: that is recorded as such, and an inventory that
asks for an owner or for sharing there fails with the reason (it cannot be proven).

Each check returns a :class:`keyparity.checks.Check`: pass or fail, the message, the facts
for the evidence, and (nothing to check) the reason to skip.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..checks import Check
from ..hsm import identity
from ..hsm.attributes import ABSENT, UNAVAILABLE
from .cli_runner import CliError, CliKey, CloudHsmCli, hex_value
from ..errors import KeyparityError
from ..journal.recorder import NullJournal, RunRecorder
from ..keytypes import KEY_TYPES
from ..hsm.migrate import Migration
from ..profile import KeySpec, Profile

CLI_METHOD = "CloudHSM CLI `key list --verbose` on the target, as crypto user {user}"
TOKEN_METHOD = "PKCS #11 token user"
# the key types whose CloudHSM check value is our KCV (keyparity.keytypes says why not)
KCV_COMPARABLE = tuple(name for name, t in KEY_TYPES.items() if t.cloudhsm_kcv is None)
_CLI_CLASS = {"secret-key": "SECRET_KEY", "private-key": "PRIVATE_KEY",
              "public-key": "PUBLIC_KEY"}
_CLI_KEY_TYPE = {cli: t.pkcs11.name for t in KEY_TYPES.values() for cli in t.cli_names}
_HEX = ("id", "modulus", "public-exponent")


def cli_filters(spec: KeySpec) -> dict[str, str]:
    """The CLI filter that selects the target key (the private half of a pair)."""
    return {"label": spec.target_label,
            "class": "private-key" if spec.is_asymmetric else "secret-key"}


@dataclass
class Ownership:
    """The ownership checks of one run; ``cli`` is the target's CLI, None without one, or the
    error that made it unusable (reported by every check)."""

    profile: Profile
    cluster_name: str
    token: dict[str, Any]
    cli: CloudHsmCli | CliError | None
    # `key share` recorded before and after
    recorder: RunRecorder = field(default_factory=lambda: NullJournal().bind(""))
    # the per-owner strategy: owner -> the target CLI logged in as that owner's target user
    # (a key is seen, and shared, by its owner); other keys use ``cli``
    owners: Mapping[str, CloudHsmCli] = field(default_factory=dict)
    _views: dict[str, CliKey] = field(default_factory=dict)

    # ---- the target key as the CLI sees it ---------------------------------------------------

    def cli_for(self, spec: KeySpec) -> CloudHsmCli:
        """The target CLI that sees ``spec``: its owner's, else the cluster's."""
        if spec.owner in self.owners:
            return self.owners[spec.owner]
        if isinstance(self.cli, CliError):
            raise self.cli
        assert self.cli is not None
        return self.cli

    def view(self, spec: KeySpec, refresh: bool = False) -> CliKey:
        if refresh or spec.label not in self._views:
            self._views[spec.label] = self.cli_for(spec).one_key(
                cli_filters(spec), spec.target_label, self.cluster_name)
        return self._views[spec.label]

    def _base(self, spec: KeySpec, key: CliKey | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"method": CLI_METHOD.format(user=self.cli_for(spec).user),
                               "cluster": self.cluster_name}
        if key is not None:
            out["key_reference"] = key.key_reference
        return out

    def _token_user(self) -> str:
        label = self.token.get("label") or "?"
        user = self.profile.target.user
        return user if user else f"CKU_USER of token {label!r}"

    def _sharing_unsupported(self) -> str:
        if "softhsm" in str(self.token.get("manufacturer", "")).lower():
            return "not supported by SoftHSM"
        return "not visible through PKCS #11 (the target has no cloudhsm_cli block)"

    def _token_facts(self) -> dict[str, Any]:
        return {"method": TOKEN_METHOD, "cluster": self.cluster_name,
                "owner": self._token_user(), "sharing": self._sharing_unsupported()}

    def _no_cli(self, spec: KeySpec, asked: str) -> str:
        return (f"the inventory asks for {asked} of {spec.label!r}, but the target "
                f"{self.cluster_name} has no cloudhsm_cli block: through PKCS #11 a key has no "
                f"owner but the token's user, and sharing is {self._sharing_unsupported()}; "
                "add clusters.target.cloudhsm_cli, or remove owner/"
                "share_with from this key")

    def _nothing_to_check(self, what: str) -> str:
        return (f"nothing to check: the target {self.cluster_name} has no cloudhsm_cli block "
                f"and the inventory asks for no {what}; through PKCS #11 a key's owner is "
                f"{self._token_user()} and sharing is {self._sharing_unsupported()}")

    # ---- the three checks --------------------------------------------------------------------

    def check_owner(self, m: Migration) -> Check:
        spec = m.spec
        if self.cli is None:
            facts = {**self._token_facts(), "expected": spec.owner}
            if spec.owner:
                return Check(False, self._no_cli(spec, f"owner {spec.owner!r}"), facts)
            return Check(True, "", facts, skip=self._nothing_to_check("an owner"))
        try:
            key = self.view(spec)
        except KeyparityError as exc:
            return Check(False, str(exc), self._error_facts(exc, expected=spec.owner))
        facts = {**self._base(spec, key),
                 "owner": key.owners[0] if len(key.owners) == 1 else None,
                 "owners": list(key.owners), "expected": spec.owner}
        if "key-owners" in key.missing:
            return Check(False, f"the CLI reported no key-owners for {spec.target_label!r} on "
                                f"{self.cluster_name}; check the CLI version (5.x)", facts)
        if spec.owner is None:
            owned = ", ".join(key.owners) or "nobody"
            return Check(True, "", facts, skip=(
                f"the inventory names no owner for {spec.label!r}: {spec.target_label!r} on "
                f"{self.cluster_name} is owned by {owned} (recorded, not checked); add owner: "
                "to the key to check it"))
        if key.owners != (spec.owner,):
            owned = ", ".join(key.owners) or "nobody"
            return Check(False, (
                f"{spec.target_label!r} on {self.cluster_name} is owned by {owned}, not "
                f"{spec.owner!r} as the inventory says: the crypto user who unwraps a key owns "
                "it, and ownership cannot be handed over (shared users cannot modify or "
                f"re-share); migrate the key again as {spec.owner!r}, or correct the "
                "inventory"), facts)
        return Check(True, "", facts)

    def check_sharing(self, m: Migration) -> Check:
        spec = m.spec
        expected = sorted(spec.share_with)
        if self.cli is None:
            facts = {**self._token_facts(), "shared_users": [], "expected": expected}
            if expected:
                return Check(False, self._no_cli(spec, f"sharing with {', '.join(expected)}"),
                             facts)
            return Check(True, "", facts, skip=self._nothing_to_check("shared users"))
        try:
            key = self.view(spec)
        except KeyparityError as exc:
            return Check(False, str(exc), self._error_facts(exc, expected=expected))
        facts: dict[str, Any] = {**self._base(spec, key),
                                 "shared_users": sorted(key.shared_users),
                                 "expected": expected, "shared_now": []}
        if "shared-users" in key.missing:
            return Check(False, f"the CLI reported no shared-users for {spec.target_label!r} on "
                                f"{self.cluster_name}; check the CLI version (5.x)", facts)
        missing = [u for u in expected if u not in key.shared_users]
        notes = []
        if missing and self.profile.apply_sharing:
            done, note = self._share(spec, key, missing)
            facts["shared_now"] = done
            if note:
                notes.append(note)
            if done:
                try:
                    key = self.view(spec, refresh=True)
                except KeyparityError as exc:
                    return Check(False, f"after `key share`: {exc}", {**facts, "error": str(exc)})
                facts["shared_users"] = sorted(key.shared_users)
                facts["key_reference"] = key.key_reference
            missing = [u for u in expected if u not in key.shared_users]
        unexpected = sorted(u for u in key.shared_users if u not in expected)
        facts.update(missing=missing, unexpected=unexpected)
        problems = []
        if missing:
            hint = ("" if self.profile.apply_sharing else
                    "; share it with `key share` as its owner, or set migration.apply_sharing: "
                    "true")
            problems.append(f"{spec.target_label!r} on {self.cluster_name} is not shared with "
                            f"{', '.join(missing)} (the inventory's share_with){hint}")
        if unexpected:
            problems.append(f"{spec.target_label!r} on {self.cluster_name} is shared with "
                            f"{', '.join(unexpected)}, whom the inventory does not name; unshare "
                            "it (`key unshare`) or add them to share_with")
        return Check(not problems, "; ".join(problems + notes), facts)

    def _share(self, spec: KeySpec, key: CliKey, users: list[str]) -> tuple[list[str], str]:
        cli = self.cli_for(spec)
        if self.profile.migration_mode != "migrate":
            return [], "apply_sharing is not applied in verify-only mode: nothing is written"
        if key.owners != (cli.user,):
            return [], (f"apply_sharing: only the owner ({', '.join(key.owners) or 'unknown'}) "
                        f"can share the key, and the CLI runs as {cli.user!r}")
        done = []
        for user in users:
            try:
                with self.recorder.step("share", key_label=spec.label,
                                        cluster=self.cluster_name, label=spec.target_label,
                                        handle=key.key_reference, detail=f"with {user}"):
                    cli.share(cli_filters(spec), user)
            except KeyparityError as exc:
                return done, f"apply_sharing: `key share` with {user} failed: {exc}"
            done.append(user)
        return done, ""

    def check_attributes(self, m: Migration, pkcs11: dict[str, Any]) -> Check:
        spec = m.spec
        if self.cli is None:
            return Check(True, "", {}, skip=(
                f"the target {self.cluster_name} has no cloudhsm_cli block: there is no "
                "CloudHSM view of the key to compare with PKCS #11"))
        try:
            key = self.view(spec)
        except KeyparityError as exc:
            return Check(False, str(exc), self._error_facts(exc))
        problems = []
        if key.inconsistent:
            problems.append(f"the CLI reports {', '.join(key.inconsistent)} of "
                            f"{spec.target_label!r} as inconsistent: the HSMs of "
                            f"{self.cluster_name} are not synchronised for this key; wait and "
                            "check again, do not cut over on it")
        if key.cluster_coverage != "full":
            problems.append(f"{spec.target_label!r} is not on every HSM of {self.cluster_name} "
                            f"(cluster-coverage: {key.cluster_coverage})")
        differences = compare_cli_with_pkcs11(key, pkcs11, spec)
        if differences:
            rows = "; ".join(f"{d['attribute']}: CLI {d['cli']!r}, PKCS #11 {d['pkcs11']!r}"
                             for d in differences)
            problems.append(f"CloudHSM and PKCS #11 disagree about {spec.target_label!r}: {rows}")
        kcv = check_value(key, m)
        if kcv.get("compared") and not kcv.get("match"):
            problems.append(f"check-value of {spec.target_label!r} on {self.cluster_name}: "
                            f"CloudHSM says {kcv['cli']}, PKCS #11 KCV is {kcv['pkcs11']} "
                            f"({kcv['method']}): not the same key material")
        facts = {**self._base(spec, key), "cluster_coverage": key.cluster_coverage,
                 "inconsistent": list(key.inconsistent), "check_value": kcv,
                 "differences": differences}
        return Check(not problems, "\n".join(problems), facts)

    def _error_facts(self, exc: Exception, **extra: Any) -> dict[str, Any]:
        base = ({"method": CLI_METHOD.format(user=self.cli.user), "cluster": self.cluster_name}
                if isinstance(self.cli, CloudHsmCli) else
                {"method": "CloudHSM CLI", "cluster": self.cluster_name})
        return {**base, **extra, "error": str(exc)}


def _norm_hex(value: str | None) -> str | None:
    if value is None:
        return None
    return value.lstrip("0") or "0" if value else ""


def compare_cli_with_pkcs11(key: CliKey, pkcs11: dict[str, Any],
                            spec: KeySpec) -> list[dict[str, Any]]:
    """The attributes of the target key that CloudHSM's view (the CLI's ``key list``) and
    PKCS #11 both report, and that differ (an "inconsistent" value is reported apart)."""
    out = []
    for name, cli_value in key.attributes.items():
        if cli_value == "inconsistent":
            continue
        p_name = name.replace("-", "_")
        if name == "check-value":
            continue
        if name == "class":
            p_name, cli_cmp = "class", _CLI_CLASS.get(str(cli_value), cli_value)
        elif name == "key-type":
            p_name, cli_cmp = "key_type", _CLI_KEY_TYPE.get(str(cli_value), cli_value)
        elif name == "key-length-bytes":
            p_name, cli_cmp = "value_len", cli_value
            if not isinstance(pkcs11.get("value_len"), int) or not pkcs11["value_len"]:
                continue  # SoftHSM leaves CKA_VALUE_LEN at 0 on unwrapped keys
        elif name in _HEX:
            cli_cmp = _norm_hex(hex_value(cli_value)) if name != "id" else hex_value(cli_value)
        else:
            cli_cmp = cli_value
        if p_name not in pkcs11 or pkcs11[p_name] in (ABSENT, UNAVAILABLE):
            continue
        p_value = pkcs11[p_name]
        if name in ("modulus", "public-exponent") and isinstance(p_value, str):
            p_cmp = _norm_hex(p_value.lower())
        else:
            p_cmp = p_value
        if isinstance(p_cmp, bool) != isinstance(cli_cmp, bool):
            out.append({"attribute": name, "cli": cli_value, "pkcs11": p_value})
        elif cli_cmp != p_cmp:
            out.append({"attribute": name, "cli": cli_value, "pkcs11": p_value})
    return out


def check_value(key: CliKey, m: Migration) -> dict[str, Any]:
    """CloudHSM's check-value next to the KCV keyparity had the tokens compute."""
    spec = m.spec
    raw = key.attributes.get("check-value")
    cli = key.check_value
    out: dict[str, Any] = {"cli": cli if cli is not None else raw, "pkcs11": None,
                           "method": None, "compared": False}
    if spec.type not in KCV_COMPARABLE:
        out["reason"] = KEY_TYPES[spec.type].cloudhsm_kcv
        return out
    ours = None
    if m.target is not None:  # the 3-byte KCV, for this comparison only (never a proof)
        try:
            found = identity.kcv(m.target.key, m.target.cluster)
            ours, out["method"] = found.value, found.method
        except (KeyError, KeyparityError) as exc:
            out["reason"] = f"keyparity could not compute the KCV: {exc}"
    out["pkcs11"] = ours
    if raw == "inconsistent":
        out["reason"] = "the CLI reports the check-value as inconsistent"
        return out
    out["compared"] = True
    out["match"] = cli is not None and ours is not None and cli[:6] == ours
    if cli is None:
        out["reason"] = "the CLI reported no usable check-value"
    return out
