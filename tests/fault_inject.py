"""A plugin for a child pytest: token faults injected at the PKCS #11 boundary.

Nothing of keyparity is replaced. python-pkcs11's own ``wrap_key`` (C_WrapKey) is wrapped so
that, when the inventory key labelled LABEL is wrapped, the token fails the way an HSM does:

    KEYPARITY_FAULT=KIND:LABEL      KEYPARITY_FAULT_LOG=file (one line per C_OpenSession)

  closed          the key's session is really closed (C_CloseSession), then the real C_WrapKey
                  runs against the dead handle and SoftHSM answers for itself
  handle-invalid  C_WrapKey answers CKR_SESSION_HANDLE_INVALID
  device-error    C_WrapKey answers CKR_DEVICE_ERROR
  removed         C_WrapKey answers CKR_DEVICE_REMOVED, and from then on the token is gone:
                  every C_OpenSession answers CKR_TOKEN_NOT_PRESENT

The tokens are watched through a thin proxy of ``pkcs11.lib`` (the module's entry point) so
that each C_OpenSession is logged (and, once removed, refused).

The fault fires once. The raised exceptions are python-pkcs11's own, as it raises them for
those CKR codes.
"""
from __future__ import annotations

import os

import pkcs11
import pkcs11._pkcs11 as p11lib
import pkcs11.exceptions as p11
from pkcs11 import Attribute

KIND, LABEL = os.environ["KEYPARITY_FAULT"].split(":", 1)
LOG = os.environ.get("KEYPARITY_FAULT_LOG")
_state = {"fired": False}
_real_wrap = p11lib.WrapMixin.wrap_key


def _log(line: str) -> None:
    if LOG:
        with open(LOG, "a") as f:
            f.write(line + "\n")


def wrap_key(self, key, *args, **kwargs):
    if not _state["fired"] and key[Attribute.LABEL] == LABEL:
        _state["fired"] = True
        _log(f"fault {KIND} {LABEL}")
        if KIND == "closed":
            key.session.close()
        elif KIND == "handle-invalid":
            raise p11.SessionHandleInvalid()
        elif KIND == "device-error":
            raise p11.DeviceError()
        elif KIND == "removed":
            raise p11.DeviceRemoved()
    return _real_wrap(self, key, *args, **kwargs)


class _Token:
    """A token as python-pkcs11 returns it, whose C_OpenSession can be watched or refused."""

    def __init__(self, token) -> None:
        self._token = token

    def __getattr__(self, name: str):
        return getattr(self._token, name)

    def open(self, *args, **kwargs):
        label = str(self._token.label).strip()
        if KIND == "removed" and _state["fired"]:
            _log(f"open {label} refused")
            raise p11.TokenNotPresent()
        _log(f"open {label}")
        return self._token.open(*args, **kwargs)


class _Lib:
    """``pkcs11.lib`` (C_Initialize, C_GetSlotList...) handing out watched tokens."""

    def __init__(self, path: str) -> None:
        self._lib = _real_lib(path)

    def __getattr__(self, name: str):
        return getattr(self._lib, name)

    def get_tokens(self, *args, **kwargs):
        return (_Token(t) for t in self._lib.get_tokens(*args, **kwargs))

    def get_token(self, *args, **kwargs):
        return _Token(self._lib.get_token(*args, **kwargs))


_real_lib = pkcs11.lib
p11lib.WrapMixin.wrap_key = wrap_key
pkcs11.lib = _Lib
