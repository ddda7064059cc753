"""The wrapping channel between two clusters: an RSA pair generated on the target (the private
half never leaves it), its public half imported on the source, both as session objects that
are destroyed when the channel closes (and vanish with the session if the process dies)."""
from __future__ import annotations

from typing import Any

from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.types import Key

from . import destruction, identity, wrap
from .cluster import ClusterSession
from ..errors import MechanismUnsupported, pkcs11_step
from ..journal.recorder import RunRecorder
from .mechanisms import CKM_RSA_AES_KEY_WRAP, WrapParams
from ..profile import Wrapping

_PROBE = {Attribute.TOKEN: False, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True,
          Attribute.ENCRYPT: True, Attribute.DECRYPT: True}


class WrappingChannel:
    """Moves keys from ``source`` to ``target`` with RSA-AES key wrap."""

    def __init__(self, source: ClusterSession, target: ClusterSession, wrapping: Wrapping,
                 label: str, recorder: RunRecorder) -> None:
        self.source, self.target = source, target
        self.recorder = recorder  # every write recorded before and after
        self.params = WrapParams(wrapping.oaep_hash, wrapping.mgf, wrapping.aes_bits)
        self.native = source.supports(CKM_RSA_AES_KEY_WRAP) and target.supports(CKM_RSA_AES_KEY_WRAP)
        self.method = ("CKM_RSA_AES_KEY_WRAP" if self.native else
                       "RSA-OAEP + CKM_AES_KEY_WRAP_PAD (two steps, same format as "
                       "CKM_RSA_AES_KEY_WRAP)")
        self.live: list[tuple[ClusterSession, Key]] = []
        with self.recorder.step("generate-wrapping-pair", cluster=target.name,
                                label=label) as after, \
                pkcs11_step(f"generate RSA-{wrapping.rsa_bits} wrapping pair", target.name):
            pub, self.private = target.session.generate_keypair(
                KeyType.RSA, wrapping.rsa_bits, store=False, label=label,
                public_template={Attribute.WRAP: True, Attribute.ENCRYPT: False,
                                 Attribute.VERIFY: False},
                private_template={Attribute.UNWRAP: True, Attribute.DECRYPT: False,
                                  Attribute.SIGN: False, Attribute.SENSITIVE: True,
                                  Attribute.EXTRACTABLE: False})
            self.live += [(target, pub), (target, self.private)]
            after.update(handle=f"{pub.handle},{self.private.handle}",
                         check_value=identity.fingerprint(identity.rsa_public(pub)))
        try:
            self.fingerprint = identity.fingerprint(identity.rsa_public(pub))
            with self.recorder.step("import-public", cluster=source.name, label=label,
                                    check_value=self.fingerprint) as after, \
                    pkcs11_step("import the wrapping public key", source.name):
                self.public = source.session.create_object({
                    Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA,
                    Attribute.TOKEN: False, Attribute.LABEL: label, Attribute.WRAP: True,
                    Attribute.ENCRYPT: False, Attribute.VERIFY: False,
                    Attribute.MODULUS: pub[Attribute.MODULUS],
                    Attribute.PUBLIC_EXPONENT: pub[Attribute.PUBLIC_EXPONENT]})
                self.live.append((source, self.public))
                after.update(handle=self.public.handle)
            self._probe()
        except BaseException:
            self.close()  # a refused probe leaves no wrapping objects behind either
            raise

    def _probe(self) -> None:
        """Move a throwaway session key once, so that a parameter the tokens reject is reported
        before the first inventory key, in plain words."""
        with pkcs11_step("generate probe key", self.source.name):
            probe = self.source.session.generate_key(KeyType.AES, 128, store=False,
                                                     template=_PROBE)
        try:
            moved = self.move(probe, ObjectClass.SECRET_KEY, KeyType.AES,
                              {**_PROBE, Attribute.LABEL: "keyparity-probe"})
            destruction.destroy(moved, destruction.own(moved, "the probe key, moved"),
                                self.target.name, step="destroy the probe key")
        except MechanismUnsupported as exc:
            raise MechanismUnsupported(
                f"wrapping with RSA-OAEP {self.params.oaep_hash}/{self.params.mgf} "
                f"({self.method}) is not accepted: {exc}. Choose wrapping.oaep_hash and "
                f"wrapping.mgf that both tokens accept (SoftHSM 2.6 accepts only sha1 and "
                f"mgf1-sha1; CloudHSM's RSA-AES wrap uses sha256 and mgf1-sha256)") from exc
        finally:
            destruction.destroy(probe, destruction.own(probe, "the probe key"),
                                self.source.name, step="destroy the probe key")

    def wrap(self, key: Key) -> bytes:
        return wrap.wrap(self.source.session, self.public, key, self.params,
                         native=self.native, where=self.source.name)

    def unwrap(self, blob: bytes, key_class: ObjectClass, key_type: KeyType,
               template: dict[Attribute, Any]) -> Key:
        return wrap.unwrap(self.target.session, self.private, blob, key_class, key_type,
                           template, self.params, native=self.native, where=self.target.name)

    def move(self, key: Key, key_class: ObjectClass, key_type: KeyType,
             template: dict[Attribute, Any]) -> Key:
        return self.unwrap(self.wrap(key), key_class, key_type, template)

    def close(self) -> list[str]:
        """Destroy the wrapping objects; returns what could not be destroyed."""
        left = []
        for cluster, obj in reversed(self.live):
            try:
                destruction.destroy(obj, destruction.own(obj, "a wrapping object of this run"),
                                    cluster.name, self.recorder, cluster=cluster.name,
                                    handle=obj.handle, label=obj[Attribute.LABEL])
            except Exception as exc:  # noqa: BLE001 - reported, and gone with the session anyway
                left.append(f"{cluster.name}: {type(exc).__name__}")
        self.live.clear()
        return left
