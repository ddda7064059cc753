"""Mechanism names as profiles spell them, and CKM_RSA_AES_KEY_WRAP, which python-pkcs11 lacks.

python-pkcs11 (0.10) has no ``Mechanism.RSA_AES_KEY_WRAP`` and refuses mechanisms that are not
members of its enum. It does pass a ``bytes`` parameter through untouched, so the native path
is: a member of the enum made for the value 0x1054, and the ``CK_RSA_AES_KEY_WRAP_PARAMS``
struct packed with ctypes in this process's ABI.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

from pkcs11 import MGF, Mechanism

CKM_RSA_AES_KEY_WRAP = 0x00001054
CKZ_DATA_SPECIFIED = 0x00000001

HASHES = {
    "sha1": Mechanism.SHA_1,
    "sha256": Mechanism.SHA256,
    "sha384": Mechanism.SHA384,
    "sha512": Mechanism.SHA512,
}
MGFS = {
    "mgf1-sha1": MGF.SHA1,
    "mgf1-sha256": MGF.SHA256,
    "mgf1-sha384": MGF.SHA384,
    "mgf1-sha512": MGF.SHA512,
}


def _rsa_aes_key_wrap() -> Mechanism:
    """The enum member for CKM_RSA_AES_KEY_WRAP: python-pkcs11's own, else one made for it."""
    existing = Mechanism._value2member_map_.get(CKM_RSA_AES_KEY_WRAP)
    if existing is not None:
        return existing  # type: ignore[return-value]
    member = int.__new__(Mechanism, CKM_RSA_AES_KEY_WRAP)
    member._name_ = "RSA_AES_KEY_WRAP"
    member._value_ = CKM_RSA_AES_KEY_WRAP
    Mechanism._value2member_map_[CKM_RSA_AES_KEY_WRAP] = member
    return member


RSA_AES_KEY_WRAP = _rsa_aes_key_wrap()


class CK_RSA_PKCS_OAEP_PARAMS(ctypes.Structure):  # noqa: N801 - the PKCS #11 name
    _fields_ = [
        ("hashAlg", ctypes.c_ulong),
        ("mgf", ctypes.c_ulong),
        ("source", ctypes.c_ulong),
        ("pSourceData", ctypes.c_void_p),
        ("ulSourceDataLen", ctypes.c_ulong),
    ]


class CK_RSA_AES_KEY_WRAP_PARAMS(ctypes.Structure):  # noqa: N801
    _fields_ = [
        ("ulAESKeyBits", ctypes.c_ulong),
        ("pOAEPParams", ctypes.POINTER(CK_RSA_PKCS_OAEP_PARAMS)),
    ]


@dataclass(frozen=True)
class WrapParams:
    """RSA-AES key wrap parameters, as the profile's ``wrapping`` block gives them."""

    oaep_hash: str
    mgf: str
    aes_bits: int

    @property
    def oaep(self) -> tuple[Mechanism, MGF, None]:
        """The parameter python-pkcs11 takes for CKM_RSA_PKCS_OAEP."""
        return (HASHES[self.oaep_hash], MGFS[self.mgf], None)


class PackedRsaAesParams:
    """``CK_RSA_AES_KEY_WRAP_PARAMS`` as bytes; keep this object alive during the call.

    The outer struct holds a pointer to the OAEP struct, which lives in this object.
    """

    def __init__(self, params: WrapParams) -> None:
        self.oaep = CK_RSA_PKCS_OAEP_PARAMS(
            int(HASHES[params.oaep_hash]), int(MGFS[params.mgf]), CKZ_DATA_SPECIFIED, None, 0)
        self.outer = CK_RSA_AES_KEY_WRAP_PARAMS(params.aes_bits, ctypes.pointer(self.oaep))
        self.raw = ctypes.string_at(ctypes.addressof(self.outer), ctypes.sizeof(self.outer))
