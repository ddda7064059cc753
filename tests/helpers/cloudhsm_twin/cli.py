"""``cloudhsm-cli`` in single-command mode: the command table, and one run of a command.

A run: refuse a secret in argv; parse and check the command line (argv); choose the cluster
from the configuration and ``--cluster-id`` (config); under the cluster's lock, log in
(users), open the token and join it with the state (keystore), run the command; print
``{"error_code": 0, "data": ...}``, or the error as the CLI prints it (errors).
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import cluster, generate, manage, users, wrapping
from .argv import Args, Spec, check, split
from .config import default_path, load, select
from .context import Cluster, Ctx
from .errors import TwinError, UsageError
from .keystore import load as load_keys
from .softtoken import session
from .state import State

ONE, MANY, FLAG = "one", "many", "flag"
CID = {"--cluster-id": ONE}
QUORUM = {"--share-crypto-users": MANY, "--manage-key-quorum-value": ONE,
          "--use-key-quorum-value": ONE}
OAEP = {"--hash-function": ONE, "--mgf": ONE}
# command words -> (what it accepts, what runs it, whether it needs the token)
Handler = Callable[[Ctx], dict[str, Any]]
COMMANDS: dict[tuple[str, ...], tuple[Spec, Handler, bool]] = {
    ("key", "generate-asymmetric-pair", "rsa"): (Spec({
        **CID, "--public-label": ONE, "--private-label": ONE, "--session": FLAG,
        "--modulus-size-bits": ONE, "--public-exponent": ONE, "--public-attributes": MANY,
        "--private-attributes": MANY, "--share-crypto-users": MANY,
        "--manage-private-key-quorum-value": ONE, "--use-private-key-quorum-value": ONE},
        ("--public-label", "--private-label", "--modulus-size-bits", "--public-exponent")),
        generate.asymmetric_rsa, True),
    ("key", "generate-symmetric", "aes"): (Spec({
        **CID, **QUORUM, "--label": ONE, "--session": FLAG, "--key-length-bytes": ONE,
        "--attributes": MANY}, ("--label", "--key-length-bytes")), generate.symmetric, True),
    ("key", "import", "pem"): (Spec({
        **CID, "--path": ONE, "--label": ONE, "--key-type-class": ONE, "--attributes": MANY},
        ("--path", "--label", "--key-type-class")), generate.import_pem, True),
    ("key", "generate-file"): (Spec({
        **CID, "--encoding": ONE, "--path": ONE, "--filter": MANY},
        ("--encoding", "--path", "--filter")), generate.generate_file, True),
    ("key", "wrap", "rsa-aes"): (Spec({
        **CID, **OAEP, "--payload-filter": MANY, "--wrapping-filter": MANY, "--path": ONE,
        "--payload-approval": ONE, "--wrapping-approval": ONE},
        ("--payload-filter", "--wrapping-filter", "--hash-function", "--mgf")),
        wrapping.wrap, True),
    ("key", "unwrap", "rsa-aes"): (Spec({
        **CID, **OAEP, **QUORUM, "--filter": MANY, "--key-type-class": ONE, "--label": ONE,
        "--data-path": ONE, "--data": ONE, "--attributes": MANY, "--approval": ONE,
        "--session": FLAG}, ("--filter", "--hash-function", "--mgf", "--key-type-class",
                             "--label", ("--data-path", "--data"))), wrapping.unwrap, True),
    ("key", "list"): (Spec({**CID, "--filter": MANY, "--max-items": ONE,
                            "--starting-token": ONE, "--verbose": FLAG}), manage.key_list, True),
    ("key", "delete"): (Spec({**CID, "--filter": MANY}, ("--filter",)), manage.delete, True),
    ("key", "share"): (Spec({**CID, "--filter": MANY, "--username": ONE, "--role": ONE,
                             "--approval": ONE}, ("--filter", "--username", "--role")),
                       manage.share, True),
    ("key", "set-attribute"): (Spec({**CID, "--filter": MANY, "--name": ONE, "--value": MANY,
                                     "--approval": ONE}, ("--filter", "--name", "--value")),
                               manage.set_attribute, True),
    ("user", "list"): (Spec(CID, login=False),
                       lambda ctx: users.user_list(ctx.state), False),
    ("user", "create"): (Spec({**CID, "--username": ONE, "--role": ONE, "--approval": ONE},
                              ("--username", "--role")),
                         lambda ctx: users.user_create(ctx.state, ctx.role,
                                                       str(ctx.args.one("--username")),
                                                       str(ctx.args.one("--role"))), False),
    ("user", "change-password"): (Spec({**CID, "--username": ONE, "--role": ONE,
                                        "--approval": ONE}, ("--username", "--role")),
                                  lambda ctx: users.change_password(
                                      ctx.state, ctx.user, ctx.role,
                                      str(ctx.args.one("--username")),
                                      str(ctx.args.one("--role"))), False),
    ("cluster", "mtls", "get-enforcement"): (
        Spec(CID), lambda ctx: cluster.get_enforcement(ctx.state, ctx.cluster.hsm_type), False),
    ("cluster", "mtls", "list-trust-anchors"): (
        Spec(CID, login=False),
        lambda ctx: cluster.list_trust_anchors(ctx.state, ctx.cluster.hsm_type), False),
}
COMMANDS[("key", "generate-symmetric", "generic-secret")] = COMMANDS[
    ("key", "generate-symmetric", "aes")]
COMMANDS[("key", "unshare")] = (COMMANDS[("key", "share")][0], manage.unshare, True)


def refuse_secrets(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """The stand-in never takes a secret in argv: ``--password`` (which the CLI accepts, see
    cloudhsm_cli-user-create) and anything holding the password of CLOUDHSM_PIN are refused,
    without saying what the secret was."""
    password = env.get("CLOUDHSM_PIN", "").partition(":")[2]
    if any(a == "--password" or a.startswith("--password=") for a in argv) or (
            password and any(password in a for a in argv)):
        raise UsageError("cloudhsm-cli stand-in: a secret in argv is refused (give it in "
                         "CLOUDHSM_PIN, or on stdin when prompted)")


def command(args: Args) -> tuple[Spec, Handler, bool]:
    if args.words not in COMMANDS:
        raise UsageError(f"unrecognized subcommand '{' '.join(args.words) or '(none)'}'")
    return COMMANDS[args.words]


def run(argv: Sequence[str], env: Mapping[str, str], config: Path) -> dict[str, Any]:
    refuse_secrets(argv, env)
    args = split(argv)
    spec, handler, needs_token = command(args)
    check(args, spec)
    ref = select(load(config), args.one("--cluster-id"))
    with State.open(ref.state) as state:
        ctx = Ctx(args, state, Cluster.of(state))
        if spec.login or env.get("CLOUDHSM_PIN"):
            ctx.user, ctx.role = users.login(state, env)
        if not needs_token:
            return handler(ctx)
        pin = ctx.cluster.pin_file.read_text().strip()
        with session(ctx.cluster.module, ctx.cluster.conf, ctx.cluster.name, pin) as s:
            ctx.session = s
            ctx.keys = load_keys(state, s, ctx.cluster.pkcs11_user)
            return handler(ctx)


def main(argv: Sequence[str] | None = None, config: Path | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    path = config or default_path(sys.argv[0])
    try:
        data = run(argv, os.environ, path)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except TwinError as exc:
        print(json.dumps({"error_code": 1, "data": str(exc)}, indent=2))
        return 1
    print(json.dumps({"error_code": 0, "data": data}, indent=2))
    return 0
