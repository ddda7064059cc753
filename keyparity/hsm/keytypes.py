"""Inventory key types and their PKCS #11 classes and types."""
from __future__ import annotations

from pkcs11 import KeyType, ObjectClass

KEY_TYPES = {
    "des2": KeyType.DES2,
    "des3": KeyType.DES3,
    "aes": KeyType.AES,
    "generic-secret": KeyType.GENERIC_SECRET,
    "rsa": KeyType.RSA,
    "ec": KeyType.EC,
}
ASYMMETRIC = ("rsa", "ec")


def key_class(type_name: str) -> ObjectClass:
    """The class of the object that is moved: the secret key, or the private half."""
    return ObjectClass.PRIVATE_KEY if type_name in ASYMMETRIC else ObjectClass.SECRET_KEY
