"""keyparity.hsm.census.scan's order, on fresh SoftHSM tokens of this module's own: the census
lists key objects by class (secret, private, public), then label (no label first), then CKA_ID,
whatever order the token enumerates them in."""
from __future__ import annotations

from pkcs11 import Attribute, KeyType

from keyparity.hsm import census
from p11tokens import ec_key, ec_pair, rsa_key, rsa_pair, secret, tokens  # noqa: F401

AES = bytes(range(16))


def test_scan_lists_objects_by_class_then_label_then_id(tokens):
    s = tokens["hsm1"]
    # made in an order that is none of the census's: labels against CKA_IDs, classes mixed
    rsa_pair(s, "b-rsa", rsa_key(0))
    secret(s, "b", KeyType.AES, AES, id_=b"\x01")
    secret(s, "a", KeyType.AES, AES, id_=b"\x03")
    secret(s, "a", KeyType.AES, AES, id_=b"\x02")
    ec_pair(s, "A-ec", ec_key(0), "secp256r1")
    secret(s, "", KeyType.AES, AES, id_=b"\x09")   # no label: first, before "A", "K" ...
    secret(s, "K", KeyType.AES, AES, id_=b"\x00")
    got = [(e.facts.cls, e.facts.label, e.facts.id) for e in census.scan(s, "hsm1")]
    assert got == [
        ("secret", "", "09"), ("secret", "K", "00"), ("secret", "a", "02"),
        ("secret", "a", "03"), ("secret", "b", "01"),
        ("private", "A-ec", ""), ("private", "b-rsa", ""),
        ("public", "A-ec", ""), ("public", "b-rsa", "")]


def test_scan_of_an_empty_token(tokens):
    assert census.scan(tokens["hsm2"], "hsm2") == []
