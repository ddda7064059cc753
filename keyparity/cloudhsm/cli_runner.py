"""The AWS CloudHSM CLI (``cloudhsm-cli``) in single-command mode, as one adapter.

Every call is ``cloudhsm-cli <command...>`` (with ``--cluster-id <id>`` when the CLI's
configuration holds several clusters), run without a shell and without
stdin, with a timeout; the credentials travel in the environment only (``CLOUDHSM_ROLE`` and
``CLOUDHSM_PIN=<user>:<password>``, as the CLI's single-command mode expects), never in argv,
never in a message. The CLI answers JSON: ``{"error_code": 0, "data": ...}``; a non-zero
``error_code`` carries its message as a string in ``data``.

One table (``_TABLE``) maps each way a call can fail onto a keyparity error and what to do.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import KeyNotFound, KeyparityError, LabelConflict, LoginError, TokenError
from ..hsm.login import LoginGate
from ..profile import Cluster, CloudHsmCliSpec
from ..secrets import SecretError
from . import client_config

INCONSISTENT = "inconsistent"
DEFAULT_TIMEOUT_S = 60.0
_MAX_PAGES = 1000
_REDACTED = "<redacted>"


class CliError(KeyparityError):
    """A CloudHSM CLI call failed. ``kind`` is its row in the table; ``command`` the argv
    (which never holds a secret)."""

    def __init__(self, message: str, kind: str, command: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.command = tuple(command)


class CliLoginError(CliError, LoginError):
    """The CLI refused the credentials. Not retried: CloudHSM locks a user after failures."""


class CliUnavailable(CliError, TokenError):
    """The CLI could not be run, or did not finish."""


class CliCommandFailed(CliError, TokenError):
    """The CLI ran and reported an error (``error_code`` non-zero)."""


class CliOutputInvalid(CliError, TokenError):
    """The CLI printed something that is not the JSON it documents."""


class CliKeyNotFound(CliError, KeyNotFound):
    """No key matched the filter, for this user."""


class CliInconsistent(CliError, TokenError):
    """The cluster's HSMs disagree about a key (attributes reported as "inconsistent")."""


class CliConfigError(CliError):
    """The profile does not say enough to run the CLI safely."""


# failure kind -> (our type, what to do next). The one table of this adapter.
_TABLE: dict[str, tuple[type[CliError], str]] = {
    "config": (CliConfigError, "correct the profile's cloudhsm_cli block or aws.cluster_id "
                               "(--cluster-id is passed only when the CLI's configuration "
                               "holds several clusters)"),
    "secret": (CliLoginError, "set the password reference of clusters.<role>.cloudhsm_cli"),
    "missing-binary": (CliUnavailable, "install the CloudHSM CLI on this client, or set "
                                       "clusters.<role>.cloudhsm_cli.path"),
    "not-executable": (CliUnavailable, "make clusters.<role>.cloudhsm_cli.path executable"),
    "timeout": (CliUnavailable, "check the CloudHSM client and the cluster's HSMs; the command "
                                "may have taken effect: check with `key list` before running "
                                "it again"),
    "exit": (CliUnavailable, "run the command by hand (single-command mode) to see the CLI's "
                             "own message"),
    "login": (CliLoginError, "check cloudhsm_cli.user, its role and the password reference; not "
                             "retried in this run, so that the user is not locked out"),
    "login-earlier": (CliLoginError, "fix the credentials first; not retried, so that the user "
                                     "is not locked out"),
    "not-found": (CliKeyNotFound, "the key is not on the cluster, or it is neither owned by nor "
                                  "shared with this crypto user"),
    "error-code": (CliCommandFailed, "see the CLI's message above"),
    "bad-json": (CliOutputInvalid, "the CLI printed something other than its JSON; check the "
                                   "CLI version (5.x) and run the command by hand"),
    "bad-shape": (CliOutputInvalid, "the CLI's JSON lacks fields keyparity relies on; check the "
                                    "CLI version (5.x)"),
    "inconsistent": (CliInconsistent, "the cluster's HSMs are not synchronised for this key: "
                                      "wait and check again, or check the cluster's HSMs; do not "
                                      "cut over on it"),
}

_LOGIN_WORDS = re.compile(r"login|log in|credential|password|authenticat|CLOUDHSM_PIN|locked",
                          re.I)
_CLUSTER_ID_WORDS = re.compile(r"--cluster-id")
_NOT_FOUND_WORDS = re.compile(r"no (matching )?keys? (were )?(found|matched)|key not found|"
                              r"no key matches", re.I)


def fail(kind: str, what: str, command: Sequence[str] = ()) -> CliError:
    """The error of one table row: ``what`` went wrong, then what to do."""
    cls, advice = _TABLE[kind]
    return cls(f"{what}; {advice}", kind, command)


def hex_value(value: Any) -> str | None:
    """"0x3A9b1c" -> "3a9b1c"; "" and "0x" -> ""; anything else that is not hex -> None."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    text = text[2:] if text.startswith("0x") else text
    return text if re.fullmatch(r"[0-9a-f]*", text) else None


@dataclass(frozen=True)
class CliKey:
    """One key as ``key list --verbose`` reports it."""

    key_reference: str
    owners: tuple[str, ...]
    shared_users: tuple[str, ...]
    cluster_coverage: str | None
    attributes: Mapping[str, Any]
    inconsistent: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()  # fields the JSON did not have (key-owners, shared-users...)
    coverage: Mapping[str, str] = field(default_factory=dict)  # user -> key-coverage
    quorum: Mapping[str, Any] | None = None  # key-info.key-quorum-values; None: not reported

    @property
    def label(self) -> str | None:
        value = self.attributes.get("label")
        return value if isinstance(value, str) else None

    @property
    def check_value(self) -> str | None:
        """Lower-case hex without 0x; None when absent, inconsistent or not hex."""
        return hex_value(self.attributes.get("check-value"))

    @property
    def id(self) -> str | None:
        """CKA_ID as hex; both "" and "0x" mean empty (""); None when absent or not hex."""
        return hex_value(self.attributes.get("id"))

    @classmethod
    def parse(cls, raw: Any, command: Sequence[str], where: str = "") -> CliKey:
        if not isinstance(raw, dict):
            said = f"CloudHSM CLI `key list` on {where}: " if where else ""
            raise fail("bad-shape", f"{said}a matched key is {type(raw).__name__}, not an "
                                    "object", command)
        info = raw.get("key-info")
        attrs = raw.get("attributes")
        missing = [name for name, value in (("key-info", info), ("attributes", attrs))
                   if not isinstance(value, dict)]
        info = info if isinstance(info, dict) else {}
        attrs = attrs if isinstance(attrs, dict) else {}

        def users(name: str) -> tuple[tuple[str, ...], dict[str, str]]:
            entries = info.get(name)
            if not isinstance(entries, list):
                missing.append(name)
                return (), {}
            names, coverage = [], {}
            for entry in entries:
                if isinstance(entry, dict) and isinstance(entry.get("username"), str):
                    names.append(entry["username"])
                    coverage[entry["username"]] = str(entry.get("key-coverage", "unknown"))
                elif isinstance(entry, str):
                    names.append(entry)
            return tuple(names), coverage

        owners, owner_cov = users("key-owners")
        shared, shared_cov = users("shared-users")
        inconsistent = sorted(
            [f"attributes.{k}" for k, v in attrs.items() if v == INCONSISTENT]
            + [f"key-info.{k}" for k, v in info.items() if v == INCONSISTENT])
        coverage = info.get("cluster-coverage")
        quorum = info.get("key-quorum-values")
        return cls(key_reference=str(raw.get("key-reference", "")), owners=owners,
                   shared_users=shared,
                   cluster_coverage=coverage if isinstance(coverage, str) else None,
                   attributes=dict(attrs), inconsistent=tuple(inconsistent),
                   missing=tuple(missing), coverage={**shared_cov, **owner_cov},
                   quorum=dict(quorum) if isinstance(quorum, dict) else None)


def which_cluster(cluster: Cluster,
                  spec: CloudHsmCliSpec) -> tuple[client_config.Configured, bool]:
    """(the cluster - id and HSM type as far as known -, whether to pass ``--cluster-id``) from
    the CLI's own configuration: "Required: If multiple clusters have been configured" (every
    command's ``<CLUSTER_ID>``, AWS CloudHSM cloudhsm_cli-configs-multi-cluster). With one
    cluster configured the id is not passed (the guide's layout: a client instance per
    cluster), and ``aws.cluster_id``, if given, must be that cluster; with several it is
    required and must be one of them; when the configuration cannot be read, the profile's id
    is passed if it names one."""
    named = cluster.aws.cluster_id if cluster.aws else None
    path = client_config.cli_config_path(spec.path)
    configured = client_config.configured_clusters(path)
    field_name = f"clusters.{cluster.role}.aws.cluster_id"
    where = f"{cluster.role} ({cluster.name})"
    if not configured:
        return client_config.Configured(named, None), bool(named)
    if len(configured) == 1:
        only = configured[0]
        if named and only.cluster_id and named != only.cluster_id:
            raise fail("config", f"{where}: the CloudHSM CLI configuration {path} is configured "
                                 f"for {only.cluster_id}, not {named} ({field_name})")
        return client_config.Configured(named or only.cluster_id, only.hsm_type), False
    known = ", ".join(c.cluster_id or "?" for c in configured)
    if not named:
        raise fail("config", f"{where}: the CloudHSM CLI configuration {path} holds "
                             f"{len(configured)} clusters ({known}), so the CLI must be told "
                             f"which one: add {field_name}")
    chosen = [c for c in configured if c.cluster_id == named]
    if not chosen and all(c.cluster_id for c in configured):
        raise fail("config", f"{where}: {field_name} {named} is not one of the clusters the "
                             f"CloudHSM CLI configuration {path} holds ({known})")
    return client_config.Configured(named, chosen[0].hsm_type if chosen else None), True


_PROCESS_GATE = LoginGate(None)  # CLI logins of a process without a run (keyparity cleanup)


class CloudHsmCli:
    """Runs the CLI for one cluster, as the profile's crypto user."""

    def __init__(self, spec: CloudHsmCliSpec, cluster_id: str | None, where: str,
                 timeout_s: float = DEFAULT_TIMEOUT_S, gate: LoginGate | None = None, *,
                 pass_cluster_id: bool = True) -> None:
        self.spec, self.cluster_id, self.where, self.timeout_s = spec, cluster_id, where, timeout_s
        # --cluster-id only when the CLI's configuration needs it (which_cluster)
        self.pass_cluster_id = pass_cluster_id and bool(cluster_id)
        # the configuration's "type" of the cluster (hsm1, hsm2m), when it says
        self.hsm_type: str | None = None
        self.user = spec.user
        # the run's login gate (shared by its processes), else the process's: a refused login
        # is never tried again by any CloudHsmCli of the run for this cluster and user
        self.gate = gate or _PROCESS_GATE
        self.login_name = f"CloudHSM CLI on {where} as {self.user!r}"

    @classmethod
    def for_cluster(cls, cluster: Cluster, timeout_s: float = DEFAULT_TIMEOUT_S,
                    gate: LoginGate | None = None,
                    spec: CloudHsmCliSpec | None = None) -> CloudHsmCli:
        """The CLI of ``cluster`` as its ``cloudhsm_cli`` user, or as ``spec`` (an owner's
        login: Profile.cli_spec)."""
        spec = spec or cluster.cloudhsm_cli
        if spec is None:
            raise fail("config", f"{cluster.role} ({cluster.name}) has no cloudhsm_cli block")
        found, passed = which_cluster(cluster, spec)
        made = cls(spec, found.cluster_id, f"{cluster.role} ({cluster.name})", timeout_s, gate,
                   pass_cluster_id=passed)
        made.hsm_type = found.hsm_type
        return made

    @property
    def journal_cluster(self) -> str:
        """The cluster as the journal names it: its id, else where (``target (hsm2m)``) when
        the profile gives none (the CLI's configuration holds that one cluster)."""
        return self.cluster_id or self.where

    # ---- running -----------------------------------------------------------------------------

    def argv(self, command: Sequence[str]) -> list[str]:
        out = [str(self.spec.path), *command]
        if self.pass_cluster_id:
            out += ["--cluster-id", self.cluster_id]
        return out

    def _secrets(self) -> tuple[str, str]:
        try:
            password = self.spec.password.resolve()
        except SecretError as exc:
            raise fail("secret", f"CloudHSM CLI on {self.where}: {exc}") from None
        return password, f"{self.user}:{password}"

    def _scrub(self, text: str, secrets: Sequence[str]) -> str:
        for secret in sorted(secrets, key=len, reverse=True):
            if secret:
                text = text.replace(secret, _REDACTED)
        text = " ".join(text.split())
        return text if len(text) <= 500 else text[:500] + " ..."

    def run(self, *command: str) -> Any:
        """Run one command; return its ``data``, or raise a CliError from the table. Each
        command logs in (single-command mode): through the gate, so that a refused login is
        never tried again in the run."""
        shown = " ".join(command)
        try:
            with self.gate.guard(self.login_name) as outcome:
                try:
                    data = self._run(command, shown)
                except CliLoginError as exc:
                    outcome["refused"] = str(exc).rsplit(": ", 1)[-1]
                    raise
                outcome["ok"] = True
                return data
        except LoginError as exc:
            if isinstance(exc, CliError):
                raise
            raise fail("login-earlier", f"CloudHSM CLI on {self.where}: `{shown}` not run: "
                                        f"{exc}") from None

    def _run(self, command: Sequence[str], shown: str) -> Any:
        password, pin = self._secrets()
        argv = self.argv(command)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDHSM_")}
        env.update(CLOUDHSM_ROLE=self.spec.role, CLOUDHSM_PIN=pin)
        secrets = (pin, password)
        where = f"CloudHSM CLI `{shown}` on {self.where}"
        try:
            done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self.timeout_s, shell=False, check=False)
        except FileNotFoundError:
            raise fail("missing-binary", f"{where}: {self.spec.path} not found", argv) from None
        except PermissionError:
            raise fail("not-executable", f"{where}: {self.spec.path} cannot be executed",
                       argv) from None
        except subprocess.TimeoutExpired:
            raise fail("timeout", f"{where}: no answer within {self.timeout_s:g} s", argv) from None
        out = done.stdout.decode("utf-8", "replace")
        err = done.stderr.decode("utf-8", "replace")
        try:
            doc = json.loads(out)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            doc = None
        if not isinstance(doc, dict) or "error_code" not in doc:
            if done.returncode != 0:
                said = self._scrub(err or out, secrets) or "no output"
                if _LOGIN_WORDS.search(said):
                    raise fail("login", f"{where}: exit status {done.returncode}: {said}", argv)
                raise fail("exit", f"{where}: exit status {done.returncode}: {said}", argv)
            what = "not JSON" if doc is None else "JSON without error_code"
            raise fail("bad-json", f"{where}: output is {what}: "
                                   f"{self._scrub(out, secrets) or 'empty'}", argv)
        code = doc["error_code"]
        if code != 0:
            data = doc.get("data")
            said = self._scrub(data if isinstance(data, str) else json.dumps(data), secrets)
            if _LOGIN_WORDS.search(said):
                raise fail("login", f"{where}: error_code {code}: {said}", argv)
            if _CLUSTER_ID_WORDS.search(said):
                raise fail("config", f"{where}: error_code {code}: {said}", argv)
            if _NOT_FOUND_WORDS.search(said):
                raise fail("not-found", f"{where}: error_code {code}: {said}", argv)
            raise fail("error-code", f"{where}: error_code {code}: {said}", argv)
        if done.returncode != 0:
            raise fail("exit", f"{where}: exit status {done.returncode} with error_code 0: "
                               f"{self._scrub(err, secrets) or 'no message'}", argv)
        return doc.get("data")

    # ---- commands ----------------------------------------------------------------------------

    def list_keys(self, filters: Mapping[str, str]) -> list[CliKey]:
        """``key list --filter ... --verbose``, every page (``next_token`` -> ``--starting-token``)."""
        base = ["key", "list", "--filter", *_filters(filters), "--verbose"]
        keys: list[CliKey] = []
        token: str | None = None
        seen: set[str] = set()
        total = None
        for _ in range(_MAX_PAGES):
            command = base + (["--starting-token", token] if token else [])
            data = self.run(*command)
            argv = self.argv(command)
            if not isinstance(data, dict) or not isinstance(data.get("matched_keys"), list):
                raise fail("bad-shape", f"CloudHSM CLI `key list` on {self.where}: no "
                                        "data.matched_keys list", argv)
            keys += [CliKey.parse(raw, argv, self.where) for raw in data["matched_keys"]]
            if isinstance(data.get("total_key_count"), int):
                total = data["total_key_count"]
            token = data.get("next_token", data.get("next-token"))
            if not token:
                break
            if not isinstance(token, str) or token in seen:
                raise fail("bad-shape", f"CloudHSM CLI `key list` on {self.where}: next_token "
                                        f"{token!r} repeats or is not a string", argv)
            seen.add(token)
        else:
            raise fail("bad-shape", f"CloudHSM CLI `key list` on {self.where}: more than "
                                    f"{_MAX_PAGES} pages", self.argv(base))
        if total is not None and total != len(keys):
            raise fail("bad-shape", f"CloudHSM CLI `key list` on {self.where}: total_key_count "
                                    f"{total} but {len(keys)} keys over all pages",
                       self.argv(base))
        return keys

    def one_key(self, filters: Mapping[str, str], label: str,
                where: str | None = None) -> CliKey:
        """The one key ``filters`` select (``label``: its label, ``where``: the cluster, for the
        messages; default this CLI's role and cluster): a ``not-found`` CliError when the user
        sees none, LabelConflict when it sees several."""
        where = where or self.where
        keys = self.list_keys(filters)
        if not keys:
            raise fail("not-found", f"{label!r} is not visible to crypto user {self.user!r} on "
                                    f"{where} (`key list` matched nothing)")
        if len(keys) > 1:
            refs = ", ".join(k.key_reference for k in keys)
            raise LabelConflict(f"{len(keys)} keys labelled {label!r} on {where} as the CLI "
                                f"sees them ({refs}); labels must be unique for the harness to "
                                "know which key is meant")
        return keys[0]

    def share(self, filters: Mapping[str, str], username: str,
              role: str = "crypto-user") -> Any:
        return self.run("key", "share", "--filter", *_filters(filters), "--username", username,
                        "--role", role)

    def delete(self, filters: Mapping[str, str]) -> Any:
        return self.run("key", "delete", "--filter", *_filters(filters))


def _filters(filters: Mapping[str, str]) -> list[str]:
    """``{"label": "k", "class": "secret-key"}`` -> ``["attr.label=k", "attr.class=secret-key"]``
    (one argv element each: no shell, so no quoting)."""
    return [f"attr.{name}={value}" for name, value in filters.items()]
