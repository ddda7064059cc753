"""Signers that are wrong in a way no real custodian should be, for the tests of signing
(tests/unit/test_statement_unit.py, tests/token/test_signing.py)."""
from __future__ import annotations

from securesystemslib.signer import CryptoSigner, Signature, Signer


class Double(Signer):
    """A securesystemslib signer made in the test, never loaded from a URI."""

    def __init__(self, name: str | None) -> None:
        self._public = CryptoSigner.generate_ecdsa().public_key
        if name is not None:
            self.name = name

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri, public_key, secrets_handler=None):
        raise NotImplementedError

    @property
    def public_key(self):
        return self._public


class Mismatched(Double):
    """A signer whose public key is not its private key's (a misconfigured HSM label); with
    ``name`` None it has no name at all (a third-party signer)."""

    def __init__(self, name: str | None = "mismatched") -> None:
        super().__init__(name)
        self._private = CryptoSigner.generate_ecdsa()

    def sign(self, payload: bytes) -> Signature:
        return Signature(self._public.keyid, self._private.sign(payload).signature)


class Failing(Double):
    """A signer whose library fails (a token gone, a KMS refusal)."""

    def __init__(self, error: Exception, name: str | None = "custodian-x") -> None:
        super().__init__(name)
        self.error = error

    def sign(self, payload: bytes) -> Signature:
        raise self.error
