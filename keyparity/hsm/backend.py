"""How a key moves: the ``Backend`` a Migrator hands each key to ("move"), and its PKCS #11
implementation. The CloudHSM CLI's is keyparity.cloudhsm.backend.CliBackend; keyparity.backends
picks one from ``migration.backend``, so the migration itself knows neither.

The PKCS #11 backend is the guide's procedure through python-pkcs11: an RSA wrapping pair made
on the target, its public half imported on the source (keyparity.hsm.channel, made on the first
move), each key wrapped on the source and unwrapped on the target under its target label with
the source key's settable attributes, or the inventory's.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pkcs11 import Attribute
from pkcs11.constants import DEFAULT

from ..errors import KeyparityError
from ..journal.recorder import RunRecorder
from ..keytypes import KEY_TYPES, key_class
from ..profile import KeySpec, Profile, Wrapping
from . import attributes
from .channel import WrappingChannel
from .cluster import ClusterSession
from .locate import Side


class Backend(Protocol):
    """What moves one key from the source to the target."""

    method: str          # how the last key moved, as the evidence says it
    asked_target: bool   # whether the last move reached the target (it may hold the key now)
    batches: bool        # whether several keys' journal entries may be committed together

    def start(self) -> list[str]:
        """Before the first write of a run: clear what a killed earlier run left behind
        (``reap(None)``); returns what was done."""

    def reap(self, run_id: str | None) -> tuple[list[str], list[str]]:
        """Remove the wrapping objects that killed runs left behind: ``run_id`` None, every
        earlier run whose process is gone; else that run's only (``keyparity cleanup --run``).
        Returns (what was done, what could not be removed)."""

    def move(self, spec: KeySpec, source: Side, source_attributes: Mapping[str, Any]) -> Side:
        """Move one key; its objects on the target (KeyparityError: it did not move)."""

    def recover(self) -> None:
        """After a session was lost: forget what lived in it."""

    def close(self) -> list[str]:
        """Remove the wrapping objects; returns what could not be removed."""


WRAP_PREFIX = "keyparity-wrap-"


def wrapping_label(run_id: str) -> str:
    """The base label of a run's wrapping objects (``-public``, ``-private``, ``-imported``
    are added): the run id in it says whose they are."""
    return f"{WRAP_PREFIX}{run_id}"


def _named(template: Mapping[Attribute, Any]) -> dict[str, Any]:
    return {attributes.name(a): (bytes(v).hex() if isinstance(v, (bytes, bytearray)) else v)
            for a, v in template.items() if v is not DEFAULT}


def unwrap_record(profile: Profile, spec: KeySpec,
                  source_attributes: Mapping[str, Any]) -> dict[str, Any]:
    """What C_UnwrapKey will be given for ``spec``, as JSON (the signed plan shows it): the
    template ``move`` builds, attribute names, CKA_ID in hex, python-pkcs11's DEFAULT left out.
    On a CloudHSM target, as ``move`` splits it (attributes.for_cloudhsm): ``template`` what
    C_UnwrapKey is given, ``set_after`` what C_SetAttributeValue sets right after, and
    ``not_set`` what CloudHSM takes neither way (the attribute suite shows the difference)."""
    template = attributes.unwrap_template(source_attributes, key_class(spec.type),
                                          spec.target_label, spec.attributes)
    if profile.target is None or not profile.target.is_cloudhsm:
        return {"template": _named(template)}
    at_unwrap, after, dropped = attributes.for_cloudhsm(template)
    return {"template": _named(at_unwrap), "set_after": _named(after),
            "not_set": _named(dropped)}


class Once:
    """Something made on first use (a wrapping channel); a KeyparityError while making it is
    kept and raised again: every later key fails with the same reason, nothing is tried twice.
    ``made``: the thing, when it was made."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._value: Any = None

    def get(self) -> Any:
        if self._value is None:
            try:
                self._value = self._make()
            except KeyparityError as exc:
                self._value = exc
        if isinstance(self._value, KeyparityError):
            raise self._value
        return self._value

    @property
    def made(self) -> Any:
        return None if isinstance(self._value, KeyparityError) else self._value

    def forget(self) -> None:
        self._value = None


class Pkcs11Backend:
    """Keys move by C_WrapKey on the source and C_UnwrapKey on the target."""

    batches = True

    def __init__(self, source: ClusterSession | None, target: ClusterSession | None,
                 wrapping: Wrapping, label: str, recorder: RunRecorder,
                 cloudhsm: bool = False) -> None:
        self.source, self.target, self.wrapping = source, target, wrapping
        self.cloudhsm = cloudhsm  # the target is a CloudHSM: attributes.for_cloudhsm
        self.label, self.recorder = label, recorder
        self.method = ""
        self.asked_target = False
        self._channel = Once(lambda: WrappingChannel(source, target, wrapping, label,
                                                     recorder))

    def start(self) -> list[str]:
        return self.reap(None)[0]

    def reap(self, run_id: str | None) -> tuple[list[str], list[str]]:
        return [], []  # session objects only: a killed run's went with its session

    @property
    def channel(self) -> WrappingChannel:
        """The wrapping channel, made on first use (a refusal: every key fails with it)."""
        return self._channel.get()

    def move(self, spec: KeySpec, source: Side, source_attributes: Mapping[str, Any]) -> Side:
        self.asked_target = False
        assert self.target is not None, "a backend made to reap moves no key"
        cls = key_class(spec.type)
        template = attributes.unwrap_template(source_attributes, cls, spec.target_label,
                                              spec.attributes)
        after: dict[Attribute, Any] = {}
        if self.cloudhsm:
            template, after, _ = attributes.for_cloudhsm(template)
        channel = self.channel
        blob = channel.wrap(source.key)
        self.asked_target = True  # from here on the target may hold the key
        key = channel.unwrap(blob, cls, KEY_TYPES[spec.type].pkcs11, template)
        for attr, value in after.items():
            with self.recorder.step("set-attribute", key_label=spec.label,
                                    cluster=self.target.name, label=spec.target_label,
                                    detail=f"{attributes.name(attr)}={value} (C_SetAttributeValue; "
                                           "CloudHSM sets it only at its default at unwrap)"):
                key[attr] = value
        self.target.index.add(key, spec.target_label,
                              bytes(template.get(Attribute.ID, b"")).hex())
        self.method = channel.method
        return Side(key, None, self.target.name, spec.curve)

    def recover(self) -> None:
        if self._channel.made is not None:
            self._channel.made.close()  # best effort: the objects are session objects anyway
        self._channel.forget()

    def close(self) -> list[str]:
        return self._channel.made.close() if self._channel.made is not None else []
