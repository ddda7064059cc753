"""A plugin for a child pytest: keyparity's CK_RSA_AES_KEY_WRAP_PARAMS packed wrongly.

keyparity.hsm.mechanisms.PackedRsaAesParams packs the parameters of CKM_RSA_AES_KEY_WRAP
(PKCS #11 v2.40, 2.1.22) for every native wrap and unwrap. With

    KEYPARITY_MISPACK=KIND

each packing it makes is replaced by a wrong one, as a packing bug would make it:

  aes-bits-100   ulAESKeyBits = 100 (the specification allows only 128, 192 or 256)
  null-oaep      pOAEPParams = NULL
  short          the struct one word short (its first field only)

Nothing else changes: the bytes go to the token through python-pkcs11 as keyparity sends them.
"""
from __future__ import annotations

import ctypes
import os

from keyparity.hsm import mechanisms

_KIND = os.environ.get("KEYPARITY_MISPACK", "")
_real_init = mechanisms.PackedRsaAesParams.__init__


def _raw(outer: ctypes.Structure) -> bytes:
    return ctypes.string_at(ctypes.addressof(outer), ctypes.sizeof(outer))


def _mispacked(self: mechanisms.PackedRsaAesParams, params: mechanisms.WrapParams) -> None:
    _real_init(self, params)
    if _KIND == "aes-bits-100":
        self.outer.ulAESKeyBits = 100
        self.raw = _raw(self.outer)
    elif _KIND == "null-oaep":
        self.outer.pOAEPParams = None
        self.raw = _raw(self.outer)
    elif _KIND == "short":
        self.raw = self.raw[:ctypes.sizeof(ctypes.c_ulong)]
    else:
        raise ValueError(f"KEYPARITY_MISPACK={_KIND!r}: aes-bits-100, null-oaep or short")


def pytest_configure(config: object) -> None:
    mechanisms.PackedRsaAesParams.__init__ = _mispacked  # type: ignore[method-assign]
