"""A plugin for a child pytest: token faults injected at the PKCS #11 boundary.

Nothing of keyparity is replaced. python-pkcs11's own ``wrap_key`` (C_WrapKey) is wrapped so
that, when the inventory key labelled LABEL is wrapped, the token fails the way an HSM does:

    KEYPARITY_FAULT=KIND:LABEL[:AT]   KEYPARITY_FAULT_LOG=file (one line per C_OpenSession)

  closed          the key's session is really closed (C_CloseSession), then the real call
                  runs against the dead handle and SoftHSM answers for itself
  handle-invalid  the call answers CKR_SESSION_HANDLE_INVALID
  device-error    the call answers CKR_DEVICE_ERROR
  removed         the call answers CKR_DEVICE_REMOVED, and from then on the token is gone:
                  every C_OpenSession answers CKR_TOKEN_NOT_PRESENT
  lost-reply      the real call runs (the key IS created), then CKR_DEVICE_ERROR is answered,
                  as when the reply of an HSM is lost on the way back

AT, where the fault fires (default ``wrap``):
  wrap@N          the N-th C_WrapKey of the key labelled LABEL, on the source (``wrap``: the
                  first): with the PKCS #11 backend the first is the preflight's trial wrap
                  (keyparity.hsm.trial_wrap), the second the migration's
  unwrap          C_UnwrapKey creating the key labelled LABEL, on the target
  encrypt@N       the N-th C_Encrypt (or C_Sign) with the key labelled LABEL on the target:
                  the first is the KCV of the migration's identity proof, later ones are the
                  equivalence tests'

keyparity's one-call path (keyparity.hsm.direct) is not taken for the key labelled LABEL:
its calls go through python-pkcs11 (as every call does that the one-call path cannot make,
or that fails), where the faults are injected.

The tokens are watched through a thin proxy of ``pkcs11.lib`` (the module's entry point) so
that each C_OpenSession is logged (and, once removed, refused).

The fault fires once. The raised exceptions are python-pkcs11's own, as it raises them for
those CKR codes.
"""
from __future__ import annotations

import os

import pkcs11
import pkcs11._pkcs11 as p11lib
from keyparity.hsm import direct
import pkcs11.exceptions as p11
from pkcs11 import Attribute

KIND, LABEL, *_AT = os.environ["KEYPARITY_FAULT"].split(":", 2)
AT, _, NTH = (_AT[0] if _AT else "wrap").partition("@")
LOG = os.environ.get("KEYPARITY_FAULT_LOG")
TARGET = "hsm2"
_state = {"fired": False, "seen": 0}
_real_wrap = p11lib.WrapMixin.wrap_key
_real_unwrap = p11lib.UnwrapMixin.unwrap_key
_real_encrypt = p11lib.EncryptMixin._encrypt
_real_sign = p11lib.SignMixin._sign


def _log(line: str) -> None:
    if LOG:
        with open(LOG, "a") as f:
            f.write(line + "\n")


def _fire(session, call):
    """Fail the way the token would, once; ``call`` runs the real operation."""
    _state["fired"] = True
    _log(f"fault {KIND} {LABEL}")
    if KIND == "closed":
        session.close()
    elif KIND == "handle-invalid":
        raise p11.SessionHandleInvalid()
    elif KIND == "device-error":
        raise p11.DeviceError()
    elif KIND == "removed":
        raise p11.DeviceRemoved()
    elif KIND == "lost-reply":
        call()
        _log(f"lost reply {LABEL}")
        raise p11.DeviceError()
    return call()


def wrap_key(self, key, *args, **kwargs):
    if AT == "wrap" and not _state["fired"] and key[Attribute.LABEL] == LABEL:
        _state["seen"] += 1
        if _state["seen"] == int(NTH or 1):
            return _fire(key.session, lambda: _real_wrap(self, key, *args, **kwargs))
    return _real_wrap(self, key, *args, **kwargs)


def unwrap_key(self, object_class, key_type, key_data, *args, **kwargs):
    if AT == "unwrap" and not _state["fired"] and kwargs.get("label") == LABEL:
        return _fire(self.session, lambda: _real_unwrap(self, object_class, key_type, key_data,
                                                        *args, **kwargs))
    return _real_unwrap(self, object_class, key_type, key_data, *args, **kwargs)


def _on_target(key) -> bool:
    return (AT == "encrypt" and not _state["fired"] and key[Attribute.LABEL] == LABEL
            and str(key.session.token.label).strip() == TARGET)


def _nth_on_target(real):
    """C_Encrypt / C_Sign: fire at the NTH use of the key labelled LABEL on the target."""
    def call(self, data, *args, **kwargs):
        if _on_target(self):
            _state["seen"] += 1
            if _state["seen"] == int(NTH or 1):
                return _fire(self.session, lambda: real(self, data, *args, **kwargs))
        return real(self, data, *args, **kwargs)
    return call


_encrypt, _sign = _nth_on_target(_real_encrypt), _nth_on_target(_real_sign)


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


def _not_for_label(real, obj_of):
    """keyparity.hsm.direct's ``real``, or None (python-pkcs11 makes the call) for the key
    labelled LABEL."""
    def call(*args, **kwargs):
        obj = obj_of(args)
        if obj[Attribute.LABEL] == LABEL:
            return None
        return real(*args, **kwargs)
    return call


_real_lib = pkcs11.lib
direct.wrap = _not_for_label(direct.wrap, lambda args: args[1])
direct.crypt = _not_for_label(direct.crypt, lambda args: args[0])
p11lib.WrapMixin.wrap_key = wrap_key
p11lib.UnwrapMixin.unwrap_key = unwrap_key
p11lib.EncryptMixin._encrypt = _encrypt
p11lib.SignMixin._sign = _sign
pkcs11.lib = _Lib
