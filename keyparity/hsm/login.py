"""One login attempt per cluster per run, across every process of the run.

CloudHSM locks a crypto user after a few failed logins, and ``-n auto`` starts one process per
core. The first process to log in to a cluster does so under a file lock and writes the
outcome next to the lock; a later process that finds a failure does not try again.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pkcs11.exceptions as p11
from pkcs11 import Token
from pkcs11.types import Session

from ..errors import LoginError, describe
from ..secrets import SecretRef

_LOGIN_ERRORS = (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange, p11.PinLocked,
                 p11.PinExpired, p11.UserPinNotInitialized)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[dict[str, str]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(path.read_text()) if path.exists() else {}
        before = dict(state)
        try:
            yield state
        finally:  # a failed login leaves by exception, and must be recorded all the same
            if state != before:
                path.write_text(json.dumps(state))


class LoginGate:
    """Opens logged-in sessions, attempting each cluster's login at most once per run.

    ``state_file``: where the outcome of each cluster's login is shared by the processes of a
    pytest run (under a file lock); None for a command, whose one process remembers it in
    memory (``keyparity cleanup``, ``seed``, ``inventory``)."""

    def __init__(self, state_file: Path | None) -> None:
        self.state_file = state_file
        self._memory: dict[str, str] = {}

    def _state(self) -> contextlib.AbstractContextManager[dict[str, str]]:
        if self.state_file is None:
            return contextlib.nullcontext(self._memory)
        return _locked(self.state_file)

    @contextlib.contextmanager
    def guard(self, name: str) -> Iterator[dict[str, Any]]:
        """For a login keyparity does not make itself (the CloudHSM CLI logs in with every
        command): LoginError when ``name``'s login failed earlier in the run; until one
        attempt succeeded, the attempt runs under the run's lock, so that two processes never
        both try bad credentials. The body sets ``["ok"] = True`` when it got in, or
        ``["refused"] = why`` when the login was refused (recorded: never tried again)."""
        outcome: dict[str, Any] = {}
        with self._state() as state:
            if name in state:
                raise LoginError(f"login to {name} failed earlier in this run ({state[name]}); "
                                 "not retried, so that the user is not locked out")
            if f"ok:{name}" not in state:  # the run's first attempt: under the lock
                try:
                    yield outcome
                finally:
                    _settle(state, name, outcome)
                return
        try:
            yield outcome
        finally:
            if outcome.get("refused"):
                with self._state() as state:
                    _settle(state, name, outcome)

    def open(self, token: Token, pin: SecretRef, cluster: str, user: str | None = None) -> Session:
        with self._state() as state:
            return self._login(state, token, pin, cluster, user)

    def find_and_open(self, find: Callable[[], Token], pin: SecretRef, cluster: str,
                      user: str | None = None) -> tuple[Token, Session]:
        """Find the token and log in, both under the run's lock.

        SoftHSM's file store is not safe while processes start at once: two workers loading
        the module together have seen a token vanish or report CKR_USER_PIN_NOT_INITIALIZED.
        So each process loads the module and looks for its token under the same lock.
        """
        with self._state() as state:
            token = find()
            return token, self._login(state, token, pin, cluster, user)

    @staticmethod
    def _login(state: dict[str, str], token: Token, pin: SecretRef, cluster: str,
               user: str | None = None) -> Session:
        """``user``: CloudHSM logs a crypto user in with the PIN ``user:password``."""
        if cluster in state:
            raise LoginError(f"login to {cluster} failed earlier in this run ({state[cluster]});"
                             " not retried, so that the user is not locked out")
        secret = f"{user}:{pin.resolve()}" if user else pin.resolve()
        try:
            return token.open(user_pin=secret, rw=True)
        except _LOGIN_ERRORS as exc:
            state[cluster] = describe(exc)
            raise LoginError(f"login to {cluster} failed: {describe(exc)}; check {pin.field} "
                             f"({pin}); not retried, so that the user is not locked out"
                             ) from None
        finally:
            del secret


def _settle(state: dict[str, str], name: str, outcome: dict[str, Any]) -> None:
    if outcome.get("refused"):
        state[name] = str(outcome["refused"])
    elif outcome.get("ok"):
        state[f"ok:{name}"] = "ok"
