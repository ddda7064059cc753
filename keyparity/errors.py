"""The few typed errors of keyparity, and the one table that maps PKCS #11 errors onto them.

Every message says what went wrong and what to do next; none carries a PIN or key material.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pkcs11.exceptions as p11


class KeyparityError(Exception):
    """The root of every error keyparity raises: a failure it understands and can explain in
    one line (``str(exc)``) that says what to do next. Commands print it and exit 1 (2 for a
    usage error: a ``ProfileError`` or ``PolicyError``); tests fail with it, without a
    traceback."""


def listed(kind: type[KeyparityError], summary: str, items: list[str]) -> KeyparityError:
    """An error whose message is ``summary: item; item; ...``, with the items kept apart
    (``exc.items``) so that a command can cap a long list and write it whole to a file."""
    exc = kind(f"{summary}: " + "; ".join(items))
    exc.summary, exc.items = summary, tuple(items)  # type: ignore[attr-defined]
    return exc


class ProfileError(KeyparityError):
    """Any problem with a profile: ``str(e) == f"{path}: {field}: {message}"``."""

    def __init__(self, path: Any, field: str, message: str) -> None:
        super().__init__(path, field, message)
        self.path = path
        self.field = field
        self.message = message

    def __str__(self) -> str:
        if self.field:
            return f"{self.path}: {self.field}: {self.message}"
        return f"{self.path}: {self.message}"


class SecretError(KeyparityError):
    """A secret could not be resolved; the message names the field, never the value."""


class PolicyError(KeyparityError):
    """A profile the policy refuses, before any write; ``str()`` is the whole message."""


class LoginError(KeyparityError):
    """A login failed. It is never retried: CloudHSM locks a user after failed logins."""


class TokenError(KeyparityError):
    """The token cannot be reached, or failed under us."""


class FileProblem(KeyparityError):
    """A file or directory a command was told to read or write cannot be; the message names
    it and the system's reason."""


@contextlib.contextmanager
def file_step(what: str, path: Any) -> Iterator[None]:
    """Turn an OSError of ``what`` ("write the demo PKI to") on ``path`` into one line."""
    try:
        yield
    except OSError as exc:
        raise FileProblem(f"cannot {what} {path}: {exc.strerror or exc}") from None


class KeyNotFound(KeyparityError):
    """An inventory key is not where the profile says it is."""


class KeyNotExtractable(KeyparityError):
    """The source key cannot be wrapped; it has to be rotated instead."""


class LabelConflict(KeyparityError):
    """The target label already holds other key material; nothing was written."""


class MechanismUnsupported(KeyparityError):
    """A token does not offer a mechanism or parameter that the profile needs."""


class NotPermitted(KeyparityError):
    """The key may not do what is asked of it (its CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN or
    CKA_VERIFY is false): python-pkcs11 gives such a key no method for it."""


def operation(key: Any, op: str, where: str, purpose: str) -> Callable[..., Any]:
    """``key.<op>`` (encrypt, decrypt, sign, verify), or NotPermitted saying which attribute
    forbids it on which cluster and what therefore cannot be done."""
    method = getattr(key, op, None)
    if method is None:
        flag = op.removesuffix("_key").upper()
        raise NotPermitted(f"the key on {where} may not {op} (CKA_{flag} is false there): "
                           f"{purpose}")
    return method


class RuleRefused(KeyparityError):
    """CloudHSM would refuse what is asked (a key wrapped by a user who does not own it, a key
    quorum above the users it is associated with): said before anything is written."""


class KeyMismatch(KeyparityError):
    """Source and target hold different key material. ``identity``: the proof that showed it,
    as the evidence records one (each side's SHA-256, ``match`` false), when there is one."""

    def __init__(self, message: str, *, identity: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.identity = identity


# CKR_* exceptions of python-pkcs11 -> (our type, the CKR name, what to do next).
_TABLE: dict[type[p11.PKCS11Error], tuple[type[KeyparityError], str, str]] = {
    p11.PinIncorrect: (LoginError, "CKR_PIN_INCORRECT", "check the PIN reference; not retried"),
    p11.PinInvalid: (LoginError, "CKR_PIN_INVALID", "check the PIN reference; not retried"),
    p11.PinLenRange: (LoginError, "CKR_PIN_LEN_RANGE", "check the PIN reference; not retried"),
    p11.PinLocked: (LoginError, "CKR_PIN_LOCKED", "the user is locked; ask the crypto officer"),
    p11.PinExpired: (LoginError, "CKR_PIN_EXPIRED", "change the PIN first"),
    p11.UserPinNotInitialized: (LoginError, "CKR_USER_PIN_NOT_INITIALIZED", "initialise the user PIN"),
    p11.KeyUnextractable: (KeyNotExtractable, "CKR_KEY_UNEXTRACTABLE",
                           "rotate the key: generate a new one on the target and re-encrypt"),
    p11.KeyNotWrappable: (KeyNotExtractable, "CKR_KEY_NOT_WRAPPABLE",
                          "rotate the key: generate a new one on the target and re-encrypt"),
    p11.MechanismInvalid: (MechanismUnsupported, "CKR_MECHANISM_INVALID",
                           "the token does not offer this mechanism"),
    p11.MechanismParamInvalid: (MechanismUnsupported, "CKR_MECHANISM_PARAM_INVALID",
                                "the token rejects these mechanism parameters"),
    p11.ArgumentsBad: (MechanismUnsupported, "CKR_ARGUMENTS_BAD",
                       "the token rejects these mechanism parameters"),
    p11.DeviceError: (TokenError, "CKR_DEVICE_ERROR", "check the HSM and the client daemon"),
    p11.DeviceRemoved: (TokenError, "CKR_DEVICE_REMOVED", "the token went away"),
    p11.TokenNotPresent: (TokenError, "CKR_TOKEN_NOT_PRESENT", "the token went away"),
    p11.SessionClosed: (TokenError, "CKR_SESSION_CLOSED", "the session was closed under us"),
    p11.SessionHandleInvalid: (TokenError, "CKR_SESSION_HANDLE_INVALID",
                               "the session was closed under us"),
    p11.KeySizeRange: (TokenError, "CKR_KEY_SIZE_RANGE",
                       "the token refuses a key of this size for the mechanism"),
    p11.KeyTypeInconsistent: (TokenError, "CKR_KEY_TYPE_INCONSISTENT",
                              "the key's type does not fit the mechanism"),
    p11.GeneralError: (TokenError, "CKR_GENERAL_ERROR", "the token failed; check the HSM"),
    p11.FunctionFailed: (TokenError, "CKR_FUNCTION_FAILED", "the token could not do it"),
}


def describe(exc: BaseException) -> str:
    """The CKR name of a python-pkcs11 exception, or its class name."""
    for cls, (_, ckr, _) in _TABLE.items():
        if isinstance(exc, cls):
            return ckr
    return type(exc).__name__


@contextlib.contextmanager
def pkcs11_step(step: str, where: str) -> Iterator[None]:
    """Run one PKCS #11 step; turn a token error into ours, naming the step and the cluster."""
    try:
        yield
    except p11.PKCS11Error as exc:
        for cls, (ours, ckr, advice) in _TABLE.items():
            if isinstance(exc, cls):
                said = str(exc).strip()
                said = f" ({said})" if said and said != ckr else ""
                raise ours(f"{step} on {where} failed: {ckr}{said}; {advice}") from exc
        detail = str(exc) or type(exc).__name__
        raise TokenError(f"{step} on {where} failed: {detail}") from exc
