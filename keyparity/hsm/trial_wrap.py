"""The owner preflight through PKCS #11: can the migrating user wrap each source key?

On CloudHSM only a key's owner, the crypto user who created it, may wrap it; users it is shared
with may only use it (AWS CloudHSM, cloudhsm_cli-key-wrap-rsa-aes). PKCS #11 has no attribute
that says who owns a key, so the PKCS #11 backend's preflight asks the token itself: each key
is wrapped once, by the run's mechanism and parameters, under a wrapping key that is a session
object of the source (CKA_TOKEN false) made for this and destroyed after; the wrapped bytes are
dropped at once (their private half never leaves the source and is destroyed with it).
Nothing persistent is written to either token. A key the token refuses to wrap (not the
user's, not extractable, wrap-with-trusted without a trusted wrapping key) fails its own
preflight test, naming the key and, where a CloudHSM CLI can read it (``key list --verbose``),
its owner.
"""
from __future__ import annotations

from collections.abc import Sequence

import pkcs11.exceptions as p11
from pkcs11 import Attribute, KeyType
from pkcs11.exceptions import PKCS11Error
from pkcs11.types import Key

from ..errors import KeyparityError, MechanismUnsupported, pkcs11_step
from ..profile import KeySpec, Wrapping
from . import destruction, wrap
from .cluster import ClusterSession
from .mechanisms import CKM_RSA_AES_KEY_WRAP, WrapParams

LABEL = "keyparity-trial-wrap"
# the token or its session failed: says nothing of the key or of who may wrap it
FAULTS = (p11.DeviceError, p11.DeviceRemoved, p11.TokenNotPresent, p11.SessionClosed,
          p11.SessionHandleInvalid, p11.GeneralError)


def is_fault(exc: BaseException) -> bool:
    """The trial wrap failed because the token or the session did, not because of the key."""
    return isinstance(exc, FAULTS) or isinstance(exc.__cause__, FAULTS)


class TrialWrap:
    """A session RSA pair on the source whose public half wraps each key once, with the run's
    parameters (``native``: CKM_RSA_AES_KEY_WRAP, else its two steps)."""

    def __init__(self, source: ClusterSession, wrapping: Wrapping, native: bool) -> None:
        self.source, self.native, self.bits = source, native, wrapping.rsa_bits
        self.params = WrapParams(wrapping.oaep_hash, wrapping.mgf, wrapping.aes_bits)
        self._make()

    def _make(self) -> None:
        """The pair, in the source's current session: session objects go with the session
        that made them (PKCS #11 C_CloseSession), so a reopened session needs a new pair."""
        source = self.source
        self.made_in = source.session
        with pkcs11_step(f"generate a session RSA-{self.bits} pair for the trial wrap",
                         source.name):
            self.public, self.private = source.session.generate_keypair(
                KeyType.RSA, self.bits, store=False, label=LABEL,
                public_template={Attribute.WRAP: True, Attribute.ENCRYPT: False,
                                 Attribute.VERIFY: False, Attribute.TOKEN: False},
                private_template={Attribute.UNWRAP: True, Attribute.DECRYPT: False,
                                  Attribute.SIGN: False, Attribute.SENSITIVE: True,
                                  Attribute.EXTRACTABLE: False, Attribute.TOKEN: False})

    @classmethod
    def on(cls, source: ClusterSession, wrapping: Wrapping) -> TrialWrap:
        """The source's own: CKM_RSA_AES_KEY_WRAP where the source has it (the run's channel
        needs the target to have it too; the wrapping probe and the mechanism preflight
        check that side)."""
        return cls(source, wrapping, source.supports(CKM_RSA_AES_KEY_WRAP))

    def refusal(self, key: Key) -> Exception | None:
        """Why the token would not wrap ``key`` for the migrating user; None when it did. A
        fault of the token or session (``is_fault``) is returned too, and the session is
        reopened once for the keys after it, as the migration does."""
        try:
            if self.source.session is not self.made_in:
                self._make()
            wrap.wrap(self.source.session, self.public, key, self.params, native=self.native,
                      where=self.source.name)
        except (PKCS11Error, KeyparityError) as exc:
            if is_fault(exc):
                try:
                    self.source.reopen()
                except KeyparityError:
                    pass  # the next key's trial says so, with the reason
            return exc
        return None

    def close(self) -> list[str]:
        """Destroy the pair; returns what could not be destroyed (nothing when its session was
        replaced: the pair went with it)."""
        left: list[str] = []
        if self.source.session is not self.made_in:
            return left
        for obj in (self.public, self.private):
            try:
                destruction.destroy(obj, destruction.own(obj, "the trial wrap's session key"),
                                    self.source.name, step="destroy the trial wrap's key")
            except Exception as exc:  # noqa: BLE001 - reported; a session object goes anyway
                left.append(f"{self.source.name}: {LABEL} ({type(exc).__name__})")
        return left


def cannot_wrap(spec: KeySpec, where: str, user: str | None, refusal: Exception,
                owners: Sequence[str] | None) -> str:
    """The failure of a key the migrating user cannot wrap, naming its owner when known; a
    refusal of the wrapping mechanism or its parameters says nothing of the key, and is said
    so (the wrapping probe, test_tokens_accept_the_wrapping_parameters, says what to fix)."""
    who = f"the migrating user ({user})" if user else "the migrating user (the token's user)"
    if is_fault(refusal):
        return (f"{spec.label!r} on {where}: the trial wrap could not be made, the token or its "
                f"session failed ({refusal}): whether {who} may wrap the key is not proven; "
                "check the HSM and run the preflight again")
    if isinstance(refusal, MechanismUnsupported):
        return (f"{spec.label!r} on {where}: the trial wrap could not be made, the token refuses "
                f"the wrapping mechanism or its parameters ({refusal}): whether {who} may wrap "
                "the key is not proven; fix the wrapping parameters (the wrapping probe says "
                "how) and run the preflight again")
    if owners:
        owner = (f"it is owned by {', '.join(owners)} (CloudHSM CLI `key list --verbose`), and "
                 "only a key's owner may wrap it: migrate it as its owner (owners:) or exclude "
                 "it")
    else:
        owner = ("the migrating user may not wrap it: on CloudHSM only a key's owner may (its "
                 "owner is not known here: no cloudhsm_cli block on the source to read it "
                 "with); migrate it as its owner, or exclude it")
    return (f"{spec.label!r} on {where}: {who} could not wrap it in a trial wrap under a "
            f"session key ({refusal}): {owner}; nothing was written")
