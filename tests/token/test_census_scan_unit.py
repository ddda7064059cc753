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


def test_objects_that_are_not_keys_come_after_the_keys_and_a_data_value_is_never_read(
        tokens, monkeypatch):
    """A data object and a certificate: listed after every key, named by label, class,
    application or certificate type and CKA_ID; a data object's CKA_VALUE is never asked for
    (it may be a password); a certificate is identified by the SHA-256 of its DER."""
    import hashlib

    from pkcs11 import CertificateType, ObjectClass

    from keyparity.hsm import attributes
    s = tokens["hsm1"]
    made = [
        s.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True,
                         Attribute.PRIVATE: True, Attribute.LABEL: "pw",
                         Attribute.APPLICATION: "vault", Attribute.VALUE: b"hunter2"}),
        s.create_object({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.TOKEN: True,
                         Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                         Attribute.LABEL: "b-rsa", Attribute.ID: b"\x07",
                         Attribute.SUBJECT: b"\x30\x00", Attribute.VALUE: b"\x30\x03\x02\x01\x01"}),
        secret(s, "zz-last-key", KeyType.AES, AES, id_=b"\x0f"),
    ]
    asked: list[tuple[str, set]] = []
    real = attributes.read

    def watched(obj, attrs):
        attrs = list(attrs)
        asked.append((str(getattr(obj, "object_class", None)), set(attrs)))
        return real(obj, attrs)

    monkeypatch.setattr(attributes, "read", watched)
    try:
        entries = census.scan(s, "hsm1")
        got = [(e.facts.cls, e.facts.label) for e in entries]
        assert got[-2:] == [("data", "pw"), ("certificate", "b-rsa")]
        assert ("secret", "zz-last-key") in got[:-2]
        data, cert = entries[-2], entries[-1]
        assert data.facts.application == "vault" and data.facts.type == ""
        assert data.describe() == "'pw', data object (application 'vault'), no CKA_ID"
        assert cert.facts.certificate_type == "X_509" and cert.facts.id == "07"
        assert cert.describe() == "'b-rsa', certificate (X_509), CKA_ID 07"
        assert all(Attribute.VALUE not in attrs for _, attrs in asked)  # the scan's reads
        data.obj = Untouchable()  # what identifies it touches the object not at all
        assert census.material(data, entries, "hsm1") == (
            None, "a data object: its value is not read")
        digest = hashlib.sha256(b"\x30\x03\x02\x01\x01").hexdigest()
        assert census.material(cert, entries, "hsm1") == (digest,
                                                          f"certificate SHA-256 {digest}")
        assert data.record() == {"label": "pw", "class": "data", "key_type": "", "id": "",
                                 "application": "vault", "disposition": "unaccounted"}
        # the census's commitment: a certificate by its DER, a data object by nothing at all
        challenge = bytes(32)
        assert census.commit(data, {}, "hsm1", challenge) == {
            "none": "a data object: its value is not read"}
        assert census.commit(cert, {}, "hsm1", challenge) == {"method": "der-sha256",
                                                              "sha256": digest}
    finally:
        for obj in made:
            obj.destroy()


class Untouchable:
    """An object whose every attribute read fails the test."""

    def __getitem__(self, attr):
        raise AssertionError(f"read {attr} of a data object")

    def __getattr__(self, name):
        raise AssertionError(f"used {name} of a data object")


def test_an_object_of_a_class_python_pkcs11_cannot_name_fails_the_census_saying_so():
    """python-pkcs11 raises ValueError while enumerating an object of a vendor's class (its
    ObjectClass has no such member): the census fails naming the cluster, instead of a
    traceback or an object left out."""
    import pytest

    from keyparity.errors import TokenError

    class VendorObjects:
        def get_objects(self, template):
            raise ValueError("2147483649 is not a valid ObjectClass")

    with pytest.raises(TokenError, match=r"^take the census on hsm1: an object of a class "
                                         r"python-pkcs11 cannot name \(2147483649 is not a "
                                         r"valid ObjectClass\): the census cannot account for "
                                         r"it; find it with the vendor's tools$"):
        census.scan(VendorObjects(), "hsm1")


def test_a_class_the_census_has_no_place_for_sorts_after_every_class_it_knows(monkeypatch):
    """python-pkcs11 names CKO_VENDOR_DEFINED itself (``_VENDOR_DEFINED``); such an object is
    listed after every class the census orders, by its class name, instead of stopping the
    sort."""
    from keyparity.hsm.keyinfo import KeyFacts

    shown = {"v": KeyFacts(cls="_VENDOR_DEFINED", type="", label="v", id=""),
             "d": KeyFacts(cls="data", type="", label="d", id=""),
             "k": KeyFacts(cls="secret", type="aes", label="k", id="")}

    class Objects:
        def get_objects(self, template):
            return ["v", "d", "k"]

    monkeypatch.setattr(census.keyinfo, "read", shown.__getitem__)
    assert [e.facts.label for e in census.scan(Objects(), "hsm1")] == ["k", "d", "v"]
