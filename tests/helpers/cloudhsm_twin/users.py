"""Logging in, and the user commands.

Single-command mode takes the credentials from the environment: ``CLOUDHSM_ROLE`` and
``CLOUDHSM_PIN=<username>:<password>`` (cloudhsm_cli-modes). Every refused login counts; after
five in a row the user is locked until an admin gives it a new password (cloudhsm_cli-login:
"If you exceed five incorrect login attempts, your account is locked out. To unlock the
account, an admin must reset your password using the user change-password command"; the
stand-in reads "exceed five" as: the fifth refusal locks, so a sixth attempt is refused even
with the right password). A successful login starts the count again (not documented; assumed).
A new password is read from stdin, as the CLI prompts for it when ``--password`` is not given
(cloudhsm_cli-user-create); ``--password`` itself is refused (never a secret in argv).
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from . import rules
from .errors import LoginRefused, TwinError
from .state import State


def login(state: State, env: Mapping[str, str]) -> tuple[str, str]:
    """(username, role) of CLOUDHSM_PIN / CLOUDHSM_ROLE, or LoginRefused. Never echoes the
    password."""
    role, pin = env.get("CLOUDHSM_ROLE"), env.get("CLOUDHSM_PIN")
    if not role or not pin or ":" not in pin:
        raise LoginRefused("Login failed: single command mode needs CLOUDHSM_ROLE and "
                           "CLOUDHSM_PIN=<username>:<password> in the environment")
    if role not in rules.ROLES:
        raise LoginRefused(f"Login failed: invalid role {role!r} (crypto-user or admin)")
    name, _, password = pin.partition(":")
    name = name.lower()
    user = state.user(name)
    if user is None:
        raise LoginRefused("Login failed: invalid username or password")
    if user.locked:
        raise LoginRefused(f"Login failed: user {name} is locked")
    ok = user.role == role and state.password_matches(name, password)
    after = state.record_login(name, ok, rules.LOCK_AFTER)
    state.commit()  # a refused login counts even though the command then fails
    if not ok:
        tail = f"; user {name} is now locked" if after.locked else ""
        raise LoginRefused(f"Login failed: invalid username or password{tail}")
    return name, role


def user_list(state: State) -> dict[str, Any]:
    """cloudhsm_cli-user-list: every user, ``locked`` as the strings "true"/"false"."""
    return {"users": [{"username": u.username, "role": u.role,
                       "locked": "true" if u.locked else "false", "mfa": [],
                       "cluster-coverage": "full"} for u in state.users()]}


def _new_password() -> str:
    lines = sys.stdin.read().splitlines()
    if len(lines) < 2 or not lines[0] or lines[0] != lines[1]:
        raise TwinError("Enter the new password twice on stdin (the passwords do not match)")
    return lines[0]


def user_create(state: State, role: str, username: str, new_role: str) -> dict[str, Any]:
    rules.admin(role, "user create")
    name = rules.username(username)
    if new_role not in rules.ROLES:
        raise TwinError(f"Invalid role {new_role!r} (crypto-user or admin)")
    if state.user(name) is not None:
        raise TwinError(f"User {name} already exists")
    state.set_password(name, new_role, _new_password())
    return {"username": name, "role": new_role}


def change_password(state: State, user: str, role: str, username: str,
                    target_role: str) -> dict[str, Any]:
    """cloudhsm_cli-user-change-password: "Any user can change their own password. In
    addition, users with the admin role can change the password of another user"."""
    name = username.lower()
    if name != user:
        rules.admin(role, "user change-password of another user")
    found = state.user(name)
    if found is None or found.role != target_role:
        raise TwinError(f"User {name} with role {target_role} does not exist")
    state.set_password(name, target_role, _new_password())
    return {"username": name, "role": target_role}
